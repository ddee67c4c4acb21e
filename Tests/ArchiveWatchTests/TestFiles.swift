import Foundation

#if canImport(Glibc)
    import Glibc
#endif

/// Files made as the watchers must see them, and the tests' clock.
enum TestFiles {
    struct WriteFailed: Error, CustomStringConvertible {
        let path: String
        let code: Int32
        var description: String { "cannot write \(path): \(String(cString: strerror(code)))" }
    }

    /// Writes a file with open, write, close — inotify sees CREATE then CLOSE_WRITE, and no
    /// temporary name (unlike FileManager.createFile).
    static func write(_ path: String, _ text: String = "DICM") throws {
        let descriptor = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0o644)
        guard descriptor >= 0 else { throw WriteFailed(path: path, code: errno) }
        defer { close(descriptor) }
        let bytes = Array(text.utf8)
        guard Glibc.write(descriptor, bytes, bytes.count) == bytes.count else { throw WriteFailed(path: path, code: errno) }
    }

    /// Seconds on a monotonic clock, for test deadlines.
    static var now: Double { ProcessInfo.processInfo.systemUptime }
}
