import Foundation

#if canImport(Glibc)
    import Glibc
#endif

/// A real folder under NSTemporaryDirectory() for one test, removed when the test lets go of it.
final class TemporaryFolder {
    let path: String

    init() throws {
        path = URL(fileURLWithPath: NSTemporaryDirectory())
            .appendingPathComponent("consort-archivewatch-\(UUID().uuidString)").path
        try FileManager.default.createDirectory(atPath: path, withIntermediateDirectories: true)
    }

    deinit { try? FileManager.default.removeItem(atPath: path) }

    /// Makes `relative` (and its parents) and returns its absolute path.
    @discardableResult
    func folder(_ relative: String) throws -> String {
        let made = path + "/" + relative
        try FileManager.default.createDirectory(atPath: made, withIntermediateDirectories: true)
        return made
    }
}

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
