import Foundation
import TestSupport
import Testing

typealias Outcome = ProgramOutcome

enum Run {
    /// The package's root folder, from this file's place in it.
    static let packageRoot: String = {
        var url = URL(fileURLWithPath: #filePath)
        for _ in 0..<4 { url.deleteLastPathComponent() }
        return url.path
    }()

    /// The `consort` binary built beside the test bundle (swift build puts products together).
    static let consort: String = {
        let candidates = [
            URL(fileURLWithPath: CommandLine.arguments[0]).deletingLastPathComponent().appendingPathComponent("consort").path,
            Bundle.main.bundleURL.deletingLastPathComponent().appendingPathComponent("consort").path,
            packageRoot + "/.build/debug/consort",
        ]
        return candidates.first { FileManager.default.isExecutableFile(atPath: $0) } ?? candidates.last!
    }()

    static let conformanceFolder = packageRoot + "/Tests/ConsortCLITests/Conformance"

    /// Runs a program to completion, with a time limit (a hang is a failure, not a stuck suite).
    static func program(_ path: String, _ arguments: [String], timeout: TimeInterval = 300) throws -> Outcome {
        let outcome = try runProgram(path, arguments, timeout: timeout)
        if outcome.timedOut { Issue.record("\(path) \(arguments) did not finish within \(Int(timeout)) s") }
        return outcome
    }

    static func consort(_ arguments: String...) throws -> Outcome { try program(consort, arguments) }

    /// `which`: the full path of a program on PATH, or nil.
    static func find(_ name: String) -> String? {
        // Daemons (Orthanc) live in sbin, which a user's PATH may lack.
        let path = (ProcessInfo.processInfo.environment["PATH"] ?? "/usr/bin:/bin") + ":/usr/sbin:/sbin"
        for folder in path.split(separator: ":") {
            let path = "\(folder)/\(name)"
            if FileManager.default.isExecutableFile(atPath: path) { return path }
        }
        return nil
    }

    /// A tool the suite needs (installed by Tests/run-all.sh). Missing means the suite was run
    /// without its setup: fail loudly rather than skip, unless the developer opted out.
    static func require(_ name: String, package: String) throws -> String {
        if let path = find(name) { return path }
        Issue.record("\(name) is not installed: run Tests/run-all.sh, or install \(package)")
        throw CancellationError()
    }

    /// pydicom's data folders (test_files, charset_files), from the installed pydicom package.
    static func pydicomDataFolders(python: String) throws -> [String] {
        let outcome = try program(python, ["-c", "import pydicom, os; print(os.path.join(os.path.dirname(pydicom.__file__), 'data'))"])
        guard outcome.status == 0 else {
            Issue.record("pydicom is not installed for \(python): run Tests/run-all.sh or pip install pydicom")
            throw CancellationError()
        }
        let data = outcome.stdout.trimmingCharacters(in: .whitespacesAndNewlines)
        return ["test_files", "charset_files"].map { data + "/" + $0 }
    }
}

/// A fresh folder under the system's temporary folder, removed when the value goes away.
final class ScratchFolder {
    let path: String
    init() throws {
        path = NSTemporaryDirectory() + "/consort-cli-test-" + UUID().uuidString
        try FileManager.default.createDirectory(atPath: path, withIntermediateDirectories: true)
    }
    deinit { try? FileManager.default.removeItem(atPath: path) }
}
