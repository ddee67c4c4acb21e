@testable import Coordinator
import Testing

/// Which members a lookup says are still announcing: a prefetch waits for those (their priors
/// may be missing from the answer), and for nobody else — never for a trust that went quiet.
@Suite("Announcement progress")
struct AnnouncementProgressTests {
    let members = ["RSCH", "UHSX", "ASPH"]

    @Test func membersNotHeardSinceTheStartAreAwaitedOnlyDuringTheGrace() {
        var progress = AnnouncementProgress(started: 1_000)
        progress.heard(from: "UHSX", pending: 0, at: 1_005)
        let early = progress.lagging(members, at: 1_010)
        #expect(early.map(\.trust) == ["ASPH", "RSCH"])
        #expect(early.allSatisfy { $0.pending == nil && $0.reason.contains("has not announced since the coordinator started 10 s ago") }, "\(early)")
        // After the grace a member never heard is down or cut off: not waited for.
        #expect(progress.lagging(members, at: 1_000 + AnnouncementProgress.grace).isEmpty)
    }

    @Test func aMemberWithStudiesPendingIsAwaitedUntilItSaysNoneOrFallsSilent() {
        var progress = AnnouncementProgress(started: 0)
        for trust in members { progress.heard(from: trust, pending: 0, at: 1) }
        progress.heard(from: "RSCH", pending: 1_234, at: 100)
        #expect(progress.lagging(members, at: 120) == [
            AnnouncementProgress.Lagging(trust: "RSCH", pending: 1_234, reason: "RSCH has 1234 studies still to announce"),
        ])
        #expect(progress.pending(at: 120)["RSCH"] == 1_234)
        progress.heard(from: "RSCH", pending: 1, at: 130)
        #expect(progress.lagging(members, at: 131).map(\.reason) == ["RSCH has 1 study still to announce"])
        // Gone quiet in the middle of it (its agent stopped): no longer waited for.
        #expect(progress.lagging(members, at: 130 + AnnouncementProgress.silence + 1).isEmpty)
        progress.heard(from: "RSCH", pending: 0, at: 300)
        #expect(progress.lagging(members, at: 301).isEmpty)
        #expect(progress.lagging(["QVH"], at: 301).isEmpty, "past the grace, a member never heard is not awaited")
    }

    @Test func aNegativeCountIsNone() {
        var progress = AnnouncementProgress(started: 0)
        progress.heard(from: "RSCH", pending: -5, at: 100)
        #expect(progress.lagging(["RSCH"], at: 100).isEmpty)
    }
}
