import Testing

@testable import Spool

/// `#expect` cannot call a mutating method on its operand, so each test first records what the
/// circuit answered, then checks the answers.
@Suite("Peer circuit breaker")
struct PeerCircuitTests {
    let policy = RetryPolicy()

    /// A circuit opened at time 1000 by `threshold` failures.
    func openedCircuit(threshold: Int = 5, rng: inout SplitMix64) -> (PeerCircuit, until: Double) {
        var circuit = PeerCircuit(threshold: threshold)
        var change: CircuitChange?
        for _ in 0..<threshold { change = circuit.recordFailure(now: 1000, policy: policy, using: &rng) }
        guard case .opened(let until) = change else {
            Issue.record("expected the circuit to open, got \(String(describing: change))")
            return (circuit, 0)
        }
        return (circuit, until)
    }

    @Test func aCircuitOpensAfterFiveFailuresAndLetsOneProbeThrough() {
        var rng = SplitMix64(seed: 5)
        var circuit = PeerCircuit()
        for failure in 1...4 {
            let change = circuit.recordFailure(now: 1000, policy: policy, using: &rng)
            let allowed = circuit.mayStart(now: 1000)
            #expect(change == nil)
            #expect(circuit.state == .closed)
            #expect(circuit.consecutiveFailures == failure)
            #expect(allowed)
        }
        let change = circuit.recordFailure(now: 1000, policy: policy, using: &rng)
        guard case .opened(let until) = change else {
            Issue.record("expected .opened, got \(String(describing: change))")
            return
        }
        #expect(until >= 1005 && until <= 1010)
        #expect(circuit.state == .open(until: until))
        #expect(circuit.consecutiveFailures == 5)

        let early = circuit.mayStart(now: until - 0.001)
        let probe = circuit.mayStart(now: until)
        let stateAfterProbe = circuit.state
        let second = circuit.mayStart(now: until)
        let anHourLater = circuit.mayStart(now: until + 3600)
        #expect(!early)
        #expect(probe)
        #expect(stateAfterProbe == .halfOpen)
        #expect(!second)
        #expect(!anHourLater)
    }

    @Test func aSuccessfulProbeClosesTheCircuit() {
        var rng = SplitMix64(seed: 6)
        let (opened, until) = openedCircuit(rng: &rng)
        var circuit = opened
        let probe = circuit.mayStart(now: until + 1)
        let change = circuit.recordSuccess()
        #expect(probe)
        #expect(change == .closed)
        #expect(circuit.state == .closed)
        #expect(circuit.consecutiveFailures == 0)
        #expect(circuit.failedProbes == 0)
        let starts = (0..<3).map { _ in circuit.mayStart(now: until + 1) }
        #expect(starts == [true, true, true])
    }

    @Test func aSuccessBeforeTheThresholdStartsTheCountAgain() {
        var rng = SplitMix64(seed: 7)
        var circuit = PeerCircuit()
        for _ in 1...4 { _ = circuit.recordFailure(now: 0, policy: policy, using: &rng) }
        let change = circuit.recordSuccess()
        let changes = (1...4).map { _ in circuit.recordFailure(now: 0, policy: policy, using: &rng) }
        #expect(change == nil)
        #expect(changes == [nil, nil, nil, nil])
        #expect(circuit.state == .closed)
        #expect(circuit.consecutiveFailures == 4)
    }

    @Test func aFailedProbeReopensWithAGrowingDelay() {
        var rng = SplitMix64(seed: 8)
        var (circuit, until) = openedCircuit(rng: &rng)
        // Each failed probe waits for the backoff of one more failure: 20, 40 … up to 600 s.
        for probe in 1...8 {
            let now = until
            let allowed = circuit.mayStart(now: now)
            let change = circuit.recordFailure(now: now, policy: policy, using: &rng)
            let allowedAfter = circuit.mayStart(now: now)
            #expect(allowed)
            #expect(!allowedAfter)
            guard case .reopened(let next) = change else {
                Issue.record("probe \(probe): expected .reopened, got \(String(describing: change))")
                return
            }
            let ceiling = min(10 * Double(1 << probe), 600)
            #expect(next - now >= ceiling / 2 && next - now <= ceiling, "probe \(probe)")
            #expect(circuit.failedProbes == probe)
            #expect(circuit.consecutiveFailures == 5 + probe)
            until = next
        }
    }

    @Test func lateFailuresWhileOpenDoNotExtendIt() {
        var rng = SplitMix64(seed: 9)
        let (opened, until) = openedCircuit(rng: &rng)
        var circuit = opened
        // Attempts started before the circuit opened end later, failing.
        let changes = (0..<3).map { _ in circuit.recordFailure(now: 1001, policy: policy, using: &rng) }
        #expect(changes == [nil, nil, nil])
        #expect(circuit.state == .open(until: until))
        #expect(circuit.consecutiveFailures == 8)
        #expect(circuit.failedProbes == 0)
    }

    @Test func anOperatorRetryLetsOneProbeThroughAtOnce() {
        var rng = SplitMix64(seed: 10)
        let (opened, until) = openedCircuit(rng: &rng)
        var circuit = opened
        let before = circuit.mayStart(now: 1000)
        let forced = circuit.forceProbe()
        let status = circuit.description
        let probe = circuit.mayStart(now: 1000)
        let stateAfterProbe = circuit.state
        let second = circuit.mayStart(now: until)
        #expect(!before)
        #expect(forced)
        #expect(status == "open (probe allowed now)")
        #expect(probe)
        #expect(stateAfterProbe == .halfOpen)
        #expect(!second)
    }

    @Test func forcingAProbeOnAClosedOrProbingCircuitChangesNothing() {
        var rng = SplitMix64(seed: 11)
        var closed = PeerCircuit()
        let forcedClosed = closed.forceProbe()
        #expect(!forcedClosed)
        #expect(closed.state == .closed)

        let (opened, until) = openedCircuit(rng: &rng)
        var probing = opened
        let probe = probing.mayStart(now: until)
        let forcedProbing = probing.forceProbe()
        let stateAfter = probing.state
        let second = probing.mayStart(now: until)
        #expect(probe)
        #expect(!forcedProbing)
        #expect(stateAfter == .halfOpen)
        #expect(!second)
    }

    @Test(arguments: [1, 2, 10])
    func theThresholdIsTheNumberOfConsecutiveFailuresThatOpens(_ threshold: Int) {
        var rng = SplitMix64(seed: 12)
        var circuit = PeerCircuit(threshold: threshold)
        let before = (1..<threshold).map { _ in circuit.recordFailure(now: 0, policy: policy, using: &rng) }
        let change = circuit.recordFailure(now: 0, policy: policy, using: &rng)
        #expect(before.allSatisfy { $0 == nil })
        guard case .opened = change else {
            Issue.record("expected .opened, got \(String(describing: change))")
            return
        }
    }

    @Test func statusDescriptionsNameTheState() {
        var rng = SplitMix64(seed: 13)
        var circuit = PeerCircuit(threshold: 1)
        let closed = circuit.description
        let change = circuit.recordFailure(now: 1_733_000_000.25, policy: policy, using: &rng)
        let open = circuit.description
        _ = circuit.mayStart(now: 1_733_000_011)
        let probing = circuit.description
        #expect(closed == "closed")
        guard case .opened(let until) = change else {
            Issue.record("expected .opened, got \(String(describing: change))")
            return
        }
        // 5–10 s after now, in whole seconds rounded up.
        #expect(until > 1_733_000_005 && until < 1_733_000_010.25)
        #expect(open == "open until \(Int64(until.rounded(.up)))")
        #expect(open.hasPrefix("open until 173300001") || open.hasPrefix("open until 173300000"))
        #expect(probing == "half-open (probing)")
    }

    @Test func anAbandonedProbeLetsTheNextStartProbe() {
        var circuit = PeerCircuit(threshold: 1)
        var rng = SplitMix64(seed: 3)
        _ = circuit.recordFailure(now: 0, policy: RetryPolicy(minimumDelay: 10, maximumDelay: 20), using: &rng)
        let probe = circuit.mayStart(now: 100)
        #expect(probe)  // the probe
        let second = circuit.mayStart(now: 100)
        #expect(!second)  // half-open: one at a time
        circuit.probeAbandoned()
        let again = circuit.mayStart(now: 100)
        #expect(again)  // a new probe, not stuck half-open
    }
}
