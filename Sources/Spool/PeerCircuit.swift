/// A circuit breaker for one peer: stops the agent hammering a peer that is down, then lets a
/// single attempt (the probe) find out whether it is back.
///
/// States:
/// - `closed`: attempts start freely. `threshold` consecutive failures (default 5) open it.
/// - `open(until:)`: no attempt starts before `until`. The first `mayStart(now:)` at or after it
///   moves to `halfOpen` and is the only start allowed.
/// - `halfOpen`: one probe in flight; nothing else starts. Its success closes the circuit; its
///   failure reopens it, each time with a longer delay from the `RetryPolicy` (the backoff for
///   one more failure than last time: with the defaults about 10, 20, 40 … up to 600 s).
///
/// Pure and clock-free: times are arguments (seconds, on the caller's clock), randomness comes
/// from the caller's generator. The caller records every attempt's end (a timeout is a failure).
/// Results are not matched to attempts: a late result of an attempt started before the circuit
/// opened may count as the probe's. That is harmless — a success is real evidence that the peer
/// answers, and a failure only reopens the circuit. Failures that arrive while open change
/// nothing but the count.
///
/// Record only failures that mean the peer or the path is unwell (`FailureClass.transient`); a
/// refused instance or a certificate fault says nothing about whether the peer is up.
public struct PeerCircuit: Sendable, Hashable, CustomStringConvertible {
    public enum State: Sendable, Hashable {
        case closed
        /// `until` is `-infinity` after an operator's `forceProbe()`: the probe may start at once.
        case open(until: Double)
        /// The probe is in flight.
        case halfOpen
    }

    public static let defaultThreshold = 5

    /// Consecutive failures that open a closed circuit.
    public let threshold: Int
    public private(set) var state: State = .closed
    /// Failures since the last success, whatever the state (for status output).
    public private(set) var consecutiveFailures = 0
    /// Probes that failed since the last success; sets the reopening delay.
    public private(set) var failedProbes = 0

    /// - Precondition: `threshold >= 1`.
    public init(threshold: Int = PeerCircuit.defaultThreshold) {
        precondition(threshold >= 1, "a circuit breaker threshold must be at least 1")
        self.threshold = threshold
    }

    /// Whether the caller may start one attempt now; ask once for each attempt about to start.
    /// Closed: always true. Open: false before its time; at or after it, true exactly once (the
    /// probe; the circuit becomes `halfOpen`). Half-open: false until the probe's result is
    /// recorded.
    public mutating func mayStart(now: Double) -> Bool {
        switch state {
        case .closed:
            return true
        case .halfOpen:
            return false
        case .open(let until):
            guard now >= until else { return false }
            state = .halfOpen
            return true
        }
    }

    /// An attempt succeeded: the circuit closes and every count resets. Returns `.closed` when
    /// the circuit was open or probing, nil when it already was closed.
    @discardableResult
    public mutating func recordSuccess() -> CircuitChange? {
        let wasClosed = state == .closed
        state = .closed
        consecutiveFailures = 0
        failedProbes = 0
        return wasClosed ? nil : .closed
    }

    /// An attempt failed at `now`. Closed: counts it, and opens the circuit at the `threshold`-th
    /// consecutive failure for `policy.delay(afterFailures: 1)`. Half-open: the probe failed; the
    /// circuit reopens for `policy.delay(afterFailures: failedProbes + 1)` (after this failure
    /// is counted), so each failed probe waits about twice as long as the one before, up to the
    /// policy's maximum. Open: only counted (a late result of an attempt started earlier).
    public mutating func recordFailure(
        now: Double, policy: RetryPolicy, using rng: inout some RandomNumberGenerator
    ) -> CircuitChange? {
        if consecutiveFailures < Int.max { consecutiveFailures += 1 }
        switch state {
        case .closed:
            guard consecutiveFailures >= threshold else { return nil }
            let until = now + policy.delay(afterFailures: 1, using: &rng)
            state = .open(until: until)
            return .opened(until: until)
        case .halfOpen:
            if failedProbes < Int.max { failedProbes += 1 }
            let until = now + policy.delay(afterFailures: failedProbes + 1, using: &rng)
            state = .open(until: until)
            return .reopened(until: until)
        case .open:
            return nil
        }
    }

    /// The operator's "retry now": an open circuit lets its probe start at the next
    /// `mayStart(now:)`, whatever the time. Returns false, changing nothing, when the circuit is
    /// closed (nothing to retry) or half-open (a probe is already in flight).
    @discardableResult
    public mutating func forceProbe() -> Bool {
        guard case .open = state else { return false }
        state = .open(until: -.infinity)
        return true
    }

    /// The probe ended without trying the peer (its job had nothing to send, the agent
    /// stopped): the circuit opens again at once, so the next start is a probe — never left
    /// half-open with no probe in flight.
    public mutating func probeAbandoned() {
        if case .halfOpen = state { state = .open(until: -.infinity) }
    }

    /// "closed", "open until 1733000010" (seconds on the caller's clock, rounded up),
    /// "open (probe allowed now)" after `forceProbe()`, or "half-open (probing)".
    public var description: String {
        switch state {
        case .closed:
            return "closed"
        case .halfOpen:
            return "half-open (probing)"
        case .open(let until):
            guard until.isFinite else { return "open (probe allowed now)" }
            // Whole seconds read better than "1733000009.731"; rounding up never claims the
            // circuit reopens earlier than it does.
            let seconds = until.rounded(.up)
            guard seconds.magnitude < 9.0e18 else { return "open until \(until)" }
            return "open until \(Int64(seconds))"
        }
    }
}
