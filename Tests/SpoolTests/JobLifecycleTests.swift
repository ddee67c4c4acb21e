import Testing

@testable import Spool

/// What follows an attempt, for every outcome an executor can report: the one table the queue
/// manager applies to pushes, plans and fetches alike.
@Suite("Job lifecycle")
struct JobLifecycleTests {
    let policy = RetryPolicy(minimumDelay: 10, maximumDelay: 600, maximumAge: 3600)

    func step(_ outcome: JobOutcome, failures: Int = 1) -> JobStep {
        var rng = SplitMix64(seed: 7)
        return JobLifecycle.step(after: outcome, failures: failures, now: 1000, policy: policy, using: &rng)
    }

    @Test func finishedAndLeftToOthersNeedNothingMore() {
        #expect(step(.finished) == .none)
        #expect(step(.leftToOthers) == .none)
    }

    @Test func aTransientFailureBacksOffAndCountsAgainstThePeer() throws {
        guard case .retry(let at, let reason, let counts, let against, let person) = step(.failed(.transient, reason: "reset"), failures: 3) else {
            Issue.record("not a retry")
            return
        }
        #expect(at >= 1020 && at <= 1040, "third failure: between half the ceiling (20 s) and the ceiling (40 s)")
        #expect(reason == "reset" && counts && against && !person)
    }

    @Test func eachClassHasItsRule() {
        #expect(step(.failed(.configuration, reason: "bad certificate")) == .retry(at: 1600, reason: "configuration fault: bad certificate", countsAsTry: true, againstPeer: true, needsPerson: true))
        #expect(step(.failed(.refused, reason: "curl 99")) == .retry(at: 1600, reason: "curl 99", countsAsTry: true, againstPeer: false, needsPerson: true))
        guard case .retry(let at, let reason, _, let against, let person) = step(.failed(.local, reason: "disk full")) else {
            Issue.record("not a retry")
            return
        }
        #expect(at >= 1005 && at <= 1010 && reason == "local fault: disk full" && !against && !person)
    }

    @Test func waitsInterruptionsHoldsAndGivingUp() {
        #expect(step(.waits(seconds: 5, reason: "announcing", countsAsTry: false)) == .retry(at: 1005, reason: "announcing", countsAsTry: false, againstPeer: false, needsPerson: false))
        #expect(step(.interrupted) == .retry(at: 1000, reason: "the agent stopped; resumes at the next start", countsAsTry: true, againstPeer: false, needsPerson: false))
        #expect(step(.heldForAPerson(reason: "IDENTITY CONFLICT")) == .hold(reason: "IDENTITY CONFLICT"))
        #expect(step(.givenUp(reason: "not held there")) == .fail(reason: "not held there"))
    }
}
