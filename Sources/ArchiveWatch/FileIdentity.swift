#if canImport(Glibc)
    import Glibc
#endif

/// A file system object's identity (device, inode): what a path points at, whatever the spelling.
struct FileIdentity: Hashable, Sendable {
    let device: UInt64
    let inode: UInt64

    init(_ status: stat) {
        device = UInt64(status.st_dev)
        inode = UInt64(status.st_ino)
    }

    /// The identity of what `path` names (the last component not followed if a symlink), or nil
    /// when it does not exist or cannot be reached.
    static func of(_ path: String) -> FileIdentity? {
        var status = stat()
        guard lstat(path, &status) == 0 else { return nil }
        return FileIdentity(status)
    }
}
