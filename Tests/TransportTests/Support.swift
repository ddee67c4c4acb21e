import Foundation
import TestSupport
import Testing

typealias Outcome = ProgramOutcome

func run(_ path: String, _ arguments: [String]) throws -> Outcome {
    let outcome = try runProgram(path, arguments, timeout: 60)
    if outcome.timedOut { Issue.record("\(path) \(arguments) did not finish within 60 s") }
    return outcome
}

/// curl, the real third-party client, with our PKI's client certificate unless told otherwise.
func curl(_ arguments: [String]) throws -> Outcome {
    try run("/usr/bin/curl", ["--silent", "--show-error", "--max-time", "20"] + arguments)
}

/// Log lines a server wrote, collected for assertions.
final class LogLines: @unchecked Sendable {
    private let lock = NSLock()
    private var lines: [String] = []
    func append(_ line: String) { lock.withLock { lines.append(line) } }
    var all: [String] { lock.withLock { lines } }
    func contains(_ fragment: String) -> Bool { all.contains { $0.contains(fragment) } }

    /// Whether a line satisfying `matches` is logged within `timeout` seconds. The server logs a
    /// refused handshake on its own thread, after the client has already seen the failure, so a
    /// test polls for the line rather than sleeping a fixed time and hoping.
    func eventually(within timeout: TimeInterval = 5, _ matches: (String) -> Bool) -> Bool {
        let deadline = Date().addingTimeInterval(timeout)
        while true {
            if all.contains(where: matches) { return true }
            if Date() > deadline { return false }
            Thread.sleep(forTimeInterval: 0.02)
        }
    }

    func eventuallyContains(_ fragment: String) -> Bool { eventually { $0.contains(fragment) } }
}
