/// A regular file found by `CatchUpScanner`: where it is, and the size and modification time the
/// agent de-duplicates on.
public struct ScannedFile: Sendable, Hashable, CustomStringConvertible {
    /// Absolute path: the root as given (normalised), then the names down to the file.
    public let path: String
    /// Size in bytes when the folder was read.
    public let size: Int64
    /// Modification time, seconds since 1970 with the file system's sub-second part.
    public let mtimeSeconds: Double

    public init(path: String, size: Int64, mtimeSeconds: Double) {
        self.path = path
        self.size = size
        self.mtimeSeconds = mtimeSeconds
    }

    public var description: String { "\(path) (\(size) bytes, mtime \(mtimeSeconds))" }
}
