#if canImport(Glibc)
    import Glibc
#endif

/// A step of a durable write that failed: which step, the file or folder it was done on, and
/// errno. Its description is a sentence a sysadmin can act on, e.g. "fsync of the folder
/// /srv/consort/inbound failed: Input/output error (errno 5)".
public struct DurableFileError: Error, Sendable, Equatable, CustomStringConvertible {
    public enum Step: Sendable, Equatable {
        case createTemporary
        case setMode(mode_t)
        case write
        case syncFile
        case close
        case rename(to: String)
        case openFolder
        case syncFolder
    }

    public let step: Step
    /// The temporary file (before the rename), the folder (creating the temporary file, and
    /// making the new name durable).
    public let path: String
    public let code: Int32

    public init(_ step: Step, _ path: String, errno code: Int32) {
        self.step = step
        self.path = path
        self.code = code
    }

    /// errno's reason and number, without the path: for an answer to a peer, which must not learn
    /// the server's folders.
    public var reason: String { "\(String(cString: strerror(code))) (errno \(code))" }

    public var description: String {
        switch step {
        case .createTemporary: return "cannot create a temporary file in \(path): \(reason)"
        case .setMode(let mode): return "cannot set the mode of \(path) to 0\(String(mode, radix: 8)): \(reason)"
        case .write: return "cannot write \(path): \(reason)"
        case .syncFile: return "fsync of \(path) failed: \(reason)"
        case .close: return "cannot close \(path): \(reason)"
        case .rename(let target): return "cannot rename \(path) to \(target): \(reason)"
        case .openFolder: return "cannot open the folder \(path): \(reason)"
        case .syncFolder: return "fsync of the folder \(path) failed: \(reason)"
        }
    }
}
