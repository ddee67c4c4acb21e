import Testing

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
