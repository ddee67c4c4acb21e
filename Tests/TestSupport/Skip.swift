import Foundation
import Testing

/// Skipping a test that cannot run here — visibly, counted, with the reason (Tests/run-all.sh
/// lists every skip last) — except in CI, which installs everything the tests need: there a
/// missing capability is a failure, not a skip nobody reads.
public enum Skip {
    /// CI sets CI=true (`.ci/run` runs with it).
    public static var inCI: Bool { ProcessInfo.processInfo.environment["CI"] == "true" }

    /// Carries on when `available`; otherwise skips the running test with `reason`, or, in CI,
    /// fails it with the reason.
    public static func unless(_ available: Bool, _ reason: String, sourceLocation: SourceLocation = #_sourceLocation) throws {
        guard !available else { return }
        if inCI {
            Issue.record("Cannot run in CI, where it must: \(reason)", sourceLocation: sourceLocation)
            throw SkipRefused(reason: reason)
        }
        try Test.cancel("skipped: \(reason)", sourceLocation: sourceLocation)
    }

    struct SkipRefused: Error, CustomStringConvertible {
        let reason: String
        var description: String { "not run: \(reason)" }
    }
}
