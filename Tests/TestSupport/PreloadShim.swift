import Foundation
import Testing

/// A fault-injection shim from Tests/Support, compiled at test time with the machine's C compiler
/// into a temporary folder, for a child process to load with LD_PRELOAD: it replaces one libc
/// call in a real program (the consort binary) to fail the way a dying disk would. Compiled
/// rather than checked in as a binary so it matches the machine's libc and is read like code.
public final class PreloadShim {
    /// The shared object to put in LD_PRELOAD.
    public let library: String
    private let folder: String

    /// Compiles `Tests/Support/<name>.c`. Skips the running test (`Skip`) when there is no C
    /// compiler; a compiler that fails on the file is a failure, quoting it.
    public init(_ name: String, sourceLocation: SourceLocation = #_sourceLocation) throws {
        let compiler = ["/usr/bin/cc", "/usr/bin/gcc", "/usr/bin/clang"].first { FileManager.default.isExecutableFile(atPath: $0) }
        try Skip.unless(compiler != nil, "no C compiler (cc, gcc or clang in /usr/bin) to build the \(name) shim", sourceLocation: sourceLocation)
        let source = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
            .appendingPathComponent("Support/\(name).c").path
        folder = NSTemporaryDirectory() + "consort-shim-\(UUID().uuidString)"
        try FileManager.default.createDirectory(atPath: folder, withIntermediateDirectories: true)
        library = "\(folder)/\(name).so"
        let outcome = try runProgram(compiler!, ["-shared", "-fPIC", "-Wall", "-o", library, source, "-ldl"], timeout: 120)
        guard outcome.status == 0 else {
            throw ShimError(description: "\(compiler!) could not build \(source): \(outcome.stderr)")
        }
    }

    /// The environment a child needs to run with the shim, plus the shim's own settings.
    public func environment(_ settings: [String: String]) -> [String: String] {
        settings.merging(["LD_PRELOAD": library]) { $1 }
    }

    deinit { try? FileManager.default.removeItem(atPath: folder) }

    public struct ShimError: Error, CustomStringConvertible {
        public let description: String
    }
}
