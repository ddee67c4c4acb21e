import Testing
import Foundation

@testable import Agent

/// How long the announcer waits between tries: short while the coordinator answers, backing off
/// while it does not, but never so long that other trusts' prefetches plan for minutes from a
/// registry that lacks this trust's holdings.
@Suite("Announcer")
struct AnnouncerTests {
    @Test func theBackoffAfterFailuresDoublesUpToFifteenSeconds() {
        #expect(Announcer.pause(afterFailures: 0) == 2)
        #expect((1...6).map { Announcer.pause(afterFailures: $0) } == [2, 4, 8, 15, 15, 15])
        #expect(Announcer.pause(afterFailures: 10_000) == 15, "a coordinator down for days")
    }
}

/// What a prefetch waits for: the trusts the coordinator says are still announcing, among those
/// it could fetch from (never itself; only the rule's sources when it names them).
@Suite("Planning waits")
struct PlanningWaitTests {
    let announcing: [[String: Any]] = [
        ["trust": "RSCH", "pending": 12, "reason": "RSCH has 12 studies still to announce"],
        ["trust": "ASPH", "pending": 3, "reason": "ASPH has 3 studies still to announce"],
        ["trust": "UHSX", "pending": NSNull(), "reason": "UHSX has not announced since the coordinator started 4 s ago"],
    ]

    @Test func aPlanWaitsForTheOtherTrustsItCouldFetchFrom() {
        #expect(PlanExecutor.lagging(announcing, sources: [], own: "ASPH") == [
            "RSCH has 12 studies still to announce", "UHSX has not announced since the coordinator started 4 s ago",
        ])
        #expect(PlanExecutor.lagging(announcing, sources: ["UHSX"], own: "ASPH") == ["UHSX has not announced since the coordinator started 4 s ago"])
        #expect(PlanExecutor.lagging(nil, sources: [], own: "ASPH").isEmpty, "a coordinator that does not say: nothing to wait for")
        #expect(PlanExecutor.lagging([["trust": "QVH"]], sources: [], own: "ASPH") == ["QVH is still announcing"])
    }

    @Test func aWaitLongPastThePatienceIsForgotten() {
        let now = 1_000_000.0
        let waiting: [Int64: Double] = [1: now, 2: now - PlanExecutor.patience, 3: now - 2 * PlanExecutor.patience + 1, 4: now - 2 * PlanExecutor.patience, 5: now - 86_400]
        // Jobs 4 and 5 stopped planning (dropped, held) long ago: their entries go; the others wait.
        #expect(PlanExecutor.pruned(waiting, now: now) == [1: now, 2: now - PlanExecutor.patience, 3: now - 2 * PlanExecutor.patience + 1])
    }
}
