import Platform

#if canImport(Glibc)
    import Glibc
#endif

/// One open folder, read entry by entry (readdir), so that a folder of a million files is never
/// held in memory at once. Owns the `DIR*`, closed in `deinit`.
///
/// Opened with `O_NOFOLLOW` unless told otherwise: a folder replaced by a symlink is refused
/// (`ELOOP`), so a walk never leaves its tree through a link. Entries that are symlinks are
/// returned as `.other` and never followed.
final class FolderStream {
    enum Kind { case folder, file, other }

    struct Entry {
        /// The name; when `nameIsValid` is false, a lossy rendering (for a message only).
        let name: String
        let nameIsValid: Bool
        let kind: Kind
        /// Size and modification time (nanoseconds since 1970), for files when asked for.
        let size: Int64
        let modifiedNanoseconds: Int64
        /// The inode's last status change (ctime, nanoseconds since 1970), for files when asked
        /// for: a rename sets it, so a file moved in now reads as changed now whatever its mtime.
        let changedNanoseconds: Int64
    }

    let path: String
    let identity: FileIdentity
    /// The folder's own last status change (ctime, nanoseconds since 1970): an entry added or
    /// removed, or the folder itself renamed (moved in).
    let changedNanoseconds: Int64
    private let stream: OpaquePointer

    /// Opens `path`. Throws the open's errno (ENOENT, EACCES, ELOOP for a symlink, ENOTDIR…).
    init(path: String, followSymlink: Bool) throws(PlatformError) {
        let flags = O_RDONLY | O_DIRECTORY | O_CLOEXEC | (followSymlink ? 0 : O_NOFOLLOW)
        var descriptor: Int32
        repeat { descriptor = open(path, flags) } while descriptor < 0 && errno == EINTR
        guard descriptor >= 0 else { throw PlatformError("Cannot open folder \(path)", errno: errno) }
        var status = stat()
        guard fstat(descriptor, &status) == 0 else {
            let code = errno
            close(descriptor)
            throw PlatformError("Cannot read folder \(path)", errno: code)
        }
        // fdopendir takes ownership of the descriptor: closedir closes it.
        guard let stream = fdopendir(descriptor) else {
            let code = errno
            close(descriptor)
            throw PlatformError("Cannot read folder \(path)", errno: code)
        }
        self.path = path
        self.identity = FileIdentity(status)
        self.changedNanoseconds = Int64(status.st_ctim.tv_sec) * 1_000_000_000 + Int64(status.st_ctim.tv_nsec)
        self.stream = stream
    }

    deinit { closedir(stream) }

    /// The next entry other than "." and "..", nil at the end. With `statFiles`, files carry
    /// size and modification time (fstatat, not following symlinks); an entry that vanished
    /// between readdir and fstatat is skipped. Throws readdir's errno (EIO on a failing mount).
    func next(statFiles: Bool) throws(PlatformError) -> Entry? {
        while true {
            errno = 0
            guard let entry = readdir(stream) else {
                if errno != 0 { throw PlatformError("Cannot read folder \(path)", errno: errno) }
                return nil
            }
            let (name, valid): (String, Bool) = withUnsafePointer(to: &entry.pointee.d_name) { tuple in
                tuple.withMemoryRebound(to: CChar.self, capacity: MemoryLayout.size(ofValue: tuple.pointee)) { characters in
                    if let name = String(validatingCString: characters) { return (name, true) }
                    return (String(cString: characters), false)
                }
            }
            if name == "." || name == ".." { continue }
            var kind: Kind
            switch Int(entry.pointee.d_type) {
            case Int(DT_DIR): kind = .folder
            case Int(DT_REG): kind = .file
            case Int(DT_UNKNOWN): kind = .other  // decided by fstatat below
            default: kind = .other
            }
            let unknown = Int(entry.pointee.d_type) == Int(DT_UNKNOWN)
            var size: Int64 = 0
            var modified: Int64 = 0
            var changed: Int64 = 0
            if unknown || (statFiles && kind == .file) {
                var status = stat()
                // Some file systems (XFS without ftype, some NFS) leave d_type unknown.
                guard fstatat(dirfd(stream), name, &status, AT_SYMLINK_NOFOLLOW) == 0 else { continue }
                switch status.st_mode & S_IFMT {
                case S_IFDIR: kind = .folder
                case S_IFREG: kind = .file
                default: kind = .other
                }
                size = Int64(status.st_size)
                modified = Int64(status.st_mtim.tv_sec) * 1_000_000_000 + Int64(status.st_mtim.tv_nsec)
                changed = Int64(status.st_ctim.tv_sec) * 1_000_000_000 + Int64(status.st_ctim.tv_nsec)
            }
            return Entry(name: name, nameIsValid: valid, kind: kind, size: size, modifiedNanoseconds: modified, changedNanoseconds: changed)
        }
    }
}
