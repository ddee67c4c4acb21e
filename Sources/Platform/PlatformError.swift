#if canImport(Glibc)
    import Glibc
#endif

/// A system call that failed: what we were doing, and errno's reason.
public struct PlatformError: Error, Sendable, CustomStringConvertible {
    public let message: String
    public let code: Int32

    public init(_ message: String, errno code: Int32) {
        self.message = message
        self.code = code
    }

    public var description: String { "\(message): \(String(cString: strerror(code)))" }
}
