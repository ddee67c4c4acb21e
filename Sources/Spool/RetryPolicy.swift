/// When to try a deferred job again, and when to give up on it: configuration with documented
/// defaults (STYLE 9, after Postfix's `minimal_backoff_time`, `maximal_backoff_time` and
/// `maximal_queue_lifetime`).
///
/// Pure: times are seconds as `Double` on whatever clock the caller uses (monotonic or wall, the
/// same one for every argument), and randomness comes from the caller's generator, so tests can
/// seed it.
///
/// The initializer's checks are preconditions: the configuration reader rejects bad values with a
/// message for the operator before it builds a policy.
public struct RetryPolicy: Sendable, Hashable {
    /// Seconds before the first retry, before jitter (default 10 s).
    public let minimumDelay: Double
    /// The longest wait between two attempts (default 600 s, ten minutes).
    public let maximumDelay: Double
    /// Seconds after its creation at which a job that has still not gone is given up on
    /// (default 3 days).
    public let maximumAge: Double

    public static let defaultMinimumDelay: Double = 10
    public static let defaultMaximumDelay: Double = 600
    public static let defaultMaximumAge: Double = 3 * 24 * 3600

    /// - Precondition: `0 < minimumDelay <= maximumDelay`, both finite; `maximumAge > 0`
    ///   (`.infinity` means jobs never expire).
    public init(
        minimumDelay: Double = RetryPolicy.defaultMinimumDelay,
        maximumDelay: Double = RetryPolicy.defaultMaximumDelay,
        maximumAge: Double = RetryPolicy.defaultMaximumAge
    ) {
        precondition(minimumDelay > 0 && minimumDelay.isFinite, "minimum retry delay must be a positive number of seconds")
        precondition(maximumDelay >= minimumDelay && maximumDelay.isFinite, "maximum retry delay must be at least the minimum")
        precondition(maximumAge > 0, "maximum job age must be positive")
        self.minimumDelay = minimumDelay
        self.maximumDelay = maximumDelay
        self.maximumAge = maximumAge
    }

    /// The upper bound of the wait after `failures` consecutive failures, before jitter:
    /// `minimumDelay × 2^(failures − 1)`, capped at `maximumDelay`. A count below 1 counts as 1.
    public func backoffCeiling(afterFailures failures: Int) -> Double {
        // Past 2^1100 every finite minimum has overflowed to +infinity, and min() gives the cap;
        // clamping the exponent keeps the arithmetic away from Int.max.
        let exponent = min(max(failures, 1) - 1, 1100)
        let grown = Double(sign: .plus, exponent: exponent, significand: minimumDelay)
        return min(grown, maximumDelay)
    }

    /// Seconds to wait before the next attempt after `failures` consecutive failures (1 after the
    /// first; a count below 1 counts as 1).
    ///
    /// Exponential backoff with "equal jitter": half of `backoffCeiling(afterFailures:)` is fixed
    /// and the other half uniformly random, so jobs deferred together (a peer went down under
    /// fifty queued jobs) spread out instead of retrying in one burst, while each still waits at
    /// least half the nominal delay. The result is always within
    /// `minimumDelay / 2 ... maximumDelay`.
    public func delay(afterFailures failures: Int, using rng: inout some RandomNumberGenerator) -> Double {
        let ceiling = backoffCeiling(afterFailures: failures)
        // ceiling / 2 is exact in binary, and rounding is monotonic: half + (≤ half) ≤ ceiling.
        let half = ceiling / 2
        return half + Double.random(in: 0...half, using: &rng)
    }

    /// Whether a job created at `created` has outlived `maximumAge` at `now` (strictly more than
    /// the maximum age has passed). A clock that went backwards (`now < created`) never makes a
    /// job too old.
    public func isTooOld(created: Double, now: Double) -> Bool {
        now - created > maximumAge
    }
}

/// What happens to a job after a failed attempt: when it is tried again, and whether the failure
/// counts against the peer's circuit. The one rule for pushes and fetches alike, by the failure's
/// class (`FailureClassifier` in Exchange decides the class).
public struct RetryDecision: Sendable, Hashable {
    /// Seconds until the next attempt.
    public var delay: Double
    /// Evidence that the peer or the path is unwell: its circuit counts it.
    public var countsAgainstPeer: Bool
    /// Nothing will change until a person does something (a certificate, the rules, an address):
    /// logged at error level, and the job waits the longest delay rather than backing off.
    public var needsPerson: Bool
}

extension RetryPolicy {
    /// After the `failures`-th failure in a row, of class `failure`:
    /// - transient: exponential backoff with jitter, capped at `maximumDelay`; counted against
    ///   the peer;
    /// - configuration: `maximumDelay` at once (a certificate or an agreement does not fix itself;
    ///   never a tight loop); counted, so the peer's other jobs wait too;
    /// - refused (a failure of the exchange that retrying will not fix, e.g. an unknown transport
    ///   error): `maximumDelay`, for a person; not evidence against the peer;
    /// - local (our own file or disk): backoff as transient, but not counted against the peer.
    public func afterFailure(_ failure: FailureClass, failures: Int, using rng: inout some RandomNumberGenerator) -> RetryDecision {
        switch failure {
        case .transient: return RetryDecision(delay: delay(afterFailures: failures, using: &rng), countsAgainstPeer: true, needsPerson: false)
        case .configuration: return RetryDecision(delay: maximumDelay, countsAgainstPeer: true, needsPerson: true)
        case .refused: return RetryDecision(delay: maximumDelay, countsAgainstPeer: false, needsPerson: true)
        case .local: return RetryDecision(delay: delay(afterFailures: failures, using: &rng), countsAgainstPeer: false, needsPerson: false)
        }
    }
}
