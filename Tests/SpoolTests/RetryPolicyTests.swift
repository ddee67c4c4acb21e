import Testing

@testable import Spool

@Suite("Retry policy")
struct RetryPolicyTests {
    @Test func defaultsAreTenSecondsTenMinutesAndThreeDays() {
        let policy = RetryPolicy()
        #expect(policy.minimumDelay == 10)
        #expect(policy.maximumDelay == 600)
        #expect(policy.maximumAge == 259_200)
    }

    /// (failures, ceiling before jitter) with the defaults.
    @Test(arguments: [
        (1, 10.0), (2, 20), (3, 40), (4, 80), (5, 160), (6, 320), (7, 600), (8, 600), (100, 600), (5000, 600),
        (Int.max, 600),
    ] as [(Int, Double)])
    func backoffDoublesUpToTheMaximumWithJitterInsideItsBounds(failures: Int, ceiling: Double) {
        let policy = RetryPolicy()
        #expect(policy.backoffCeiling(afterFailures: failures) == ceiling)
        var rng = SplitMix64(seed: UInt64(truncatingIfNeeded: failures))
        for _ in 0..<1000 {
            let delay = policy.delay(afterFailures: failures, using: &rng)
            #expect(delay >= ceiling / 2 && delay <= ceiling)
            #expect(delay >= policy.minimumDelay / 2 && delay <= policy.maximumDelay)
        }
    }

    @Test(arguments: [0, -1, Int.min])
    func aFailureCountBelowOneCountsAsTheFirst(_ failures: Int) {
        let policy = RetryPolicy()
        #expect(policy.backoffCeiling(afterFailures: failures) == 10)
        var rng = SplitMix64(seed: 7)
        let delay = policy.delay(afterFailures: failures, using: &rng)
        #expect(delay >= 5 && delay <= 10)
    }

    @Test func everySeedStaysInsideTheBounds() {
        let policy = RetryPolicy(minimumDelay: 3, maximumDelay: 100)
        for seed in UInt64(0)..<500 {
            var rng = SplitMix64(seed: seed)
            for failures in 1...12 {
                let ceiling = policy.backoffCeiling(afterFailures: failures)
                let delay = policy.delay(afterFailures: failures, using: &rng)
                #expect(delay >= ceiling / 2 && delay <= ceiling, "seed \(seed), \(failures) failures")
            }
        }
    }

    @Test func jobsDeferredTogetherDoNotRetryTogether() {
        let policy = RetryPolicy()
        var rng = SplitMix64(seed: 42)
        // Fifty jobs deferred by the same outage, each after its third failure (20–40 s).
        let delays = (0..<50).map { _ in policy.delay(afterFailures: 3, using: &rng) }
        #expect(Set(delays).count == 50)
        #expect(delays.contains { $0 < 25 })
        #expect(delays.contains { $0 > 35 })
    }

    @Test func theSameSeedGivesTheSameDelays() {
        let policy = RetryPolicy()
        var first = SplitMix64(seed: 1)
        var second = SplitMix64(seed: 1)
        let a = (1...10).map { policy.delay(afterFailures: $0, using: &first) }
        let b = (1...10).map { policy.delay(afterFailures: $0, using: &second) }
        #expect(a == b)
    }

    @Test func aSmallMaximumCapsTheGrowthEarly() {
        let policy = RetryPolicy(minimumDelay: 1, maximumDelay: 5)
        #expect((1...5).map { policy.backoffCeiling(afterFailures: $0) } == [1, 2, 4, 5, 5])
    }

    /// (age in seconds at `now`, too old with the default three days).
    @Test(arguments: [(0.0, false), (259_200, false), (259_200.5, true), (1_000_000, true), (-3600, false)])
    func jobsOlderThanTheMaximumAgeAreTooOld(age: Double, tooOld: Bool) {
        let created = 1_733_000_000.0
        #expect(RetryPolicy().isTooOld(created: created, now: created + age) == tooOld)
    }

    @Test func anInfiniteMaximumAgeNeverExpiresAJob() {
        let policy = RetryPolicy(maximumAge: .infinity)
        #expect(!policy.isTooOld(created: 0, now: 1e15))
    }

    /// What a failed attempt leads to, by its class: the rule pushes and fetches share.
    @Test func eachFailureClassHasItsRetry() {
        let policy = RetryPolicy()
        var rng = SplitMix64(seed: 7)
        var transient: [RetryDecision] = [], local: [RetryDecision] = []
        for failures in 1...10 {
            transient.append(policy.afterFailure(.transient, failures: failures, using: &rng))
            local.append(policy.afterFailure(.local, failures: failures, using: &rng))
        }
        let configuration = policy.afterFailure(.configuration, failures: 1, using: &rng)
        let refused = policy.afterFailure(.refused, failures: 1, using: &rng)
        // Transient: backoff within its ceiling, capped, against the peer.
        for (index, decision) in transient.enumerated() {
            #expect(decision.delay <= policy.backoffCeiling(afterFailures: index + 1) && decision.delay >= policy.backoffCeiling(afterFailures: index + 1) / 2)
            #expect(decision.countsAgainstPeer && !decision.needsPerson)
        }
        #expect(transient.last!.delay <= policy.maximumDelay)
        // Our own side: the same backoff, never against the peer.
        #expect(local.allSatisfy { !$0.countsAgainstPeer && !$0.needsPerson && $0.delay <= policy.maximumDelay })
        // A certificate or agreement fault: the longest wait at once (no tight loop), a person.
        #expect(configuration == RetryDecision(delay: policy.maximumDelay, countsAgainstPeer: true, needsPerson: true))
        #expect(refused == RetryDecision(delay: policy.maximumDelay, countsAgainstPeer: false, needsPerson: true))
    }
}
