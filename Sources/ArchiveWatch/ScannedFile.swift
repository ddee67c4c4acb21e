/// A regular file found by `CatchUpScanner`: where it is, and the size and modification time the
/// agent de-duplicates on.
public struct ScannedFile: Sendable, Hashable, CustomStringConvertible {
    /// Absolute path: the root as given (normalised), then the names down to the file.
    public let path: String
    /// Size in bytes when the folder was read.
    public let size: Int64
    /// Modification time, seconds since 1970 with the file system's sub-second part.
    public let mtimeSeconds: Double
    /// The latest of its mtime, its ctime and the ctime of the folder it is in (unless that
    /// folder is a root), seconds since 1970: when it last arrived or changed, as far as the
    /// file system can tell. A file written, renamed or moved in, or in a folder moved in, reads
    /// as changed then, though a copy may keep an old mtime. (A root's own ctime moves whenever
    /// anything is added to it, so it says nothing about the files already there.)
    public let changedSeconds: Double

    public init(path: String, size: Int64, mtimeSeconds: Double, changedSeconds: Double? = nil) {
        self.path = path
        self.size = size
        self.mtimeSeconds = mtimeSeconds
        self.changedSeconds = max(mtimeSeconds, changedSeconds ?? mtimeSeconds)
    }

    public var description: String { "\(path) (\(size) bytes, mtime \(mtimeSeconds))" }
}
