import Foundation

/// A real folder under NSTemporaryDirectory() for one test, removed when the test lets go of it.
public final class TemporaryFolder {
    public let path: String

    public init() throws {
        path = URL(fileURLWithPath: NSTemporaryDirectory())
            .appendingPathComponent("consort-test-\(UUID().uuidString)").path
        try FileManager.default.createDirectory(atPath: path, withIntermediateDirectories: true)
    }

    deinit { try? FileManager.default.removeItem(atPath: path) }

    /// Makes `relative` (and its parents) and returns its absolute path.
    @discardableResult
    public func folder(_ relative: String) throws -> String {
        let made = path + "/" + relative
        try FileManager.default.createDirectory(atPath: made, withIntermediateDirectories: true)
        return made
    }

    /// Every name in the folder, hidden ones included, sorted.
    public func names() -> [String] { ((try? FileManager.default.contentsOfDirectory(atPath: path)) ?? []).sorted() }
}
