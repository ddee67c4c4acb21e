#if canImport(Glibc)
    import Glibc
#endif

/// Writes a file so that it is there whole or not at all, after a crash too (STYLE 7; Postfix's
/// `mail_queue_enter`): the content goes to a new temporary file in the target's folder
/// (mkstemp: mode 0600 from its creation), is fsynced, renamed over the target, and then the
/// folder is fsynced, so that the new name survives a power cut as well as the bytes. A reader
/// sees the old file or the new one, never a part.
///
/// Every failure is thrown (`DurableFileError`: the step, the path, errno's reason). Until the
/// rename, a failure removes the temporary file and leaves the target as it was. A failure of the
/// folder's fsync, after the rename, means the new content is in place but may not survive a
/// crash: the caller must treat it as a failed write (not acknowledge what it wrote).
///
/// Its parts are public too, for a writer whose file does not fit the whole (the STOW-RS receiver
/// stages instances in another folder, makes a batch durable with one syncfs and links rather
/// than renames, so that nothing held is ever overwritten): `createTemporary` and `syncFolder`.
public enum DurableFile {
    /// `bytes`, the whole content of `path`. `mode` as given, whatever the umask; nil leaves
    /// mkstemp's 0600.
    public static func write(_ bytes: [UInt8], to path: String, mode: mode_t? = nil) throws(DurableFileError) {
        try write(bytes, to: path, mode: mode, syncingFolder: fsyncFolder)
    }

    /// The content written by `body` into the open descriptor (at its own pace: an encoder, a
    /// library that writes through its own buffered I/O, which it must flush before it returns).
    /// `body` must not close the descriptor. Its errors are thrown as they are, after the
    /// temporary file is removed; the write's own failures are `DurableFileError`s.
    public static func write(to path: String, mode: mode_t? = nil, _ body: (_ descriptor: Int32) throws -> Void) throws {
        try replace(path, mode: mode, syncingFolder: fsyncFolder, wrapping: { $0 as any Error }) { descriptor, _ in try body(descriptor) }
    }

    /// `write(_:to:mode:)` with the folder's fsync given: a seam for tests.
    static func write(_ bytes: [UInt8], to path: String, mode: mode_t?, syncingFolder: FolderSync) throws(DurableFileError) {
        try replace(path, mode: mode, syncingFolder: syncingFolder, wrapping: { $0 }) { (descriptor, temporary) throws(DurableFileError) in
            try writeAll(bytes, to: descriptor, path: temporary)
        }
    }

    /// The whole sequence, for either kind of body: `wrap` turns the write's own failures into
    /// the body's error type, so that a body's typed error is not widened.
    static func replace<Failure: Error>(
        _ path: String, mode: mode_t?, syncingFolder: FolderSync, wrapping wrap: (DurableFileError) -> Failure,
        _ body: (_ descriptor: Int32, _ temporary: String) throws(Failure) -> Void
    ) throws(Failure) {
        let (folder, name) = split(path)
        let file: (descriptor: Int32, path: String)
        do {
            // A hidden name: archive watchers and folder listings pass dot files over.
            file = try createTemporary(in: folder, prefix: ".\(name).tmp-", mode: mode)
        } catch {
            throw wrap(error)
        }
        var open = true, renamed = false
        defer {
            if open { _ = Glibc.close(file.descriptor) }
            if !renamed { unlink(file.path) }
        }
        try body(file.descriptor, file.path)
        do throws(DurableFileError) {
            guard retryingInterrupts({ fsync(file.descriptor) }) == 0 else { throw DurableFileError(.syncFile, file.path, errno: errno) }
            // Not retried on EINTR: Linux has closed the descriptor whatever close returns.
            open = false
            guard Glibc.close(file.descriptor) == 0 else { throw DurableFileError(.close, file.path, errno: errno) }
            guard rename(file.path, path) == 0 else { throw DurableFileError(.rename(to: path), file.path, errno: errno) }
            renamed = true
            try syncFolder(folder, using: syncingFolder)
        } catch {
            throw wrap(error)
        }
    }

    /// A new file named `prefix` and six random characters in `folder`, open for writing, closed
    /// on exec, and given `mode` (nil: mkstemp's 0600). The caller closes it, and removes it if
    /// it is not kept.
    public static func createTemporary(in folder: String, prefix: String, mode: mode_t? = nil) throws(DurableFileError) -> (descriptor: Int32, path: String) {
        var template = Array("\(folder)/\(prefix)XXXXXX".utf8CString)
        let descriptor = template.withUnsafeMutableBufferPointer { mkstemp($0.baseAddress!) }
        guard descriptor >= 0 else { throw DurableFileError(.createTemporary, folder, errno: errno) }
        _ = fcntl(descriptor, F_SETFD, FD_CLOEXEC)
        let path = String(decoding: template.dropLast().map { UInt8(bitPattern: $0) }, as: UTF8.self)
        // The mode asked for, whatever the umask: a service's UMask=0077 would otherwise make a
        // published CRL readable by its owner alone, or a received instance unreadable by the
        // group (the local PACS's import account).
        if let mode, fchmod(descriptor, mode) != 0 {
            let code = errno
            _ = Glibc.close(descriptor)
            unlink(path)
            throw DurableFileError(.setMode(mode), path, errno: code)
        }
        return (descriptor, path)
    }

    /// All of `bytes` into `descriptor` (write(2) may write less than asked); `path` names it in
    /// the error.
    public static func writeAll(_ bytes: [UInt8], to descriptor: Int32, path: String) throws(DurableFileError) {
        let failure: Int32? = bytes.withUnsafeBytes { raw in
            var written = 0
            while written < raw.count {
                let n = retryingInterrupts { Glibc.write(descriptor, raw.baseAddress! + written, raw.count - written) }
                // A regular file never takes nothing without an error; if one did, do not spin.
                guard n > 0 else { return n < 0 ? errno : EIO }
                written += n
            }
            return nil
        }
        if let failure { throw DurableFileError(.write, path, errno: failure) }
    }

    /// A folder's fsync, given the folder's path (for a test that fails some folders) and an
    /// open descriptor of it: 0, or the errno.
    public typealias FolderSync = (_ path: String, _ descriptor: Int32) -> Int32

    /// The real folder fsync, the one used unless a test gives another.
    public static func fsyncFolder(_ path: String, _ descriptor: Int32) -> Int32 {
        retryingInterrupts { fsync(descriptor) } == 0 ? 0 : errno
    }

    /// Makes the entries of `folder` durable (new names, renames, removals in it): its fsync.
    public static func syncFolder(_ folder: String, using sync: FolderSync = fsyncFolder) throws(DurableFileError) {
        let descriptor = retryingInterrupts { open(folder, O_RDONLY | O_DIRECTORY | O_CLOEXEC) }
        guard descriptor >= 0 else { throw DurableFileError(.openFolder, folder, errno: errno) }
        defer { _ = Glibc.close(descriptor) }
        let code = sync(folder, descriptor)
        guard code == 0 else { throw DurableFileError(.syncFolder, folder, errno: code) }
    }

    /// The folder and the name of `path`: "." for a bare name, "/" for a name at the root.
    static func split(_ path: String) -> (folder: String, name: String) {
        guard let slash = path.lastIndex(of: "/") else { return (".", path) }
        let folder = String(path[..<slash])
        return (folder.isEmpty ? "/" : folder, String(path[path.index(after: slash)...]))
    }

    /// A call that failed with EINTR (a signal arrived) is made again.
    static func retryingInterrupts<T: BinaryInteger>(_ call: () -> T) -> T {
        while true {
            let result = call()
            if result == -1 && errno == EINTR { continue }
            return result
        }
    }
}
