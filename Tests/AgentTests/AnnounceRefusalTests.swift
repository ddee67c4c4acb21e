import Foundation
import Testing

@testable import Agent

/// A study whose announcement the coordinator refuses (a header field out of its kind or range)
/// is set aside at its present instance count — not offered again, so the studies after it are
/// announced — and offered again once it changes; `consort status` has the refusal to show.
@Suite("Inventory: announcements the coordinator refuses")
struct AnnounceRefusalTests {
    @Test func aRefusedStudyIsSetAsideUntilItChanges() throws {
        let path = SpoolCountsTests.scratch()
        defer { SpoolCountsTests.remove(path) }
        let store = try AgentStore(path: path)
        let first = (1...2).map { InventoryRemovalTests.taken("1.2.826.0.5.\($0)", study: "5.5", size: 10, origin: "local", folder: "/archive") }
        let second = [InventoryRemovalTests.taken("1.2.826.0.6.1", study: "6.6", size: 10, origin: "local", folder: "/archive")]
        try store.record(taken: first + second, problems: [], now: 10)
        #expect(Set(try store.unannounced(limit: 10).map(\.facts.uid)) == ["5.5", "6.6"])
        try store.recordAnnounceRefusal(uid: "5.5", instances: 2, reason: "Study 0 of the batch (5.5): \"date\" is \"20261345\"", now: 11)
        #expect(try store.unannounced(limit: 10).map(\.facts.uid) == ["6.6"])
        #expect(try store.unannouncedCount() == 1)
        #expect(try store.announceRefusals().map(\.uid) == ["5.5"])
        // The study grows: offered again (its header may be mended), no longer listed as refused.
        let third = [InventoryRemovalTests.taken("1.2.826.0.5.3", study: "5.5", size: 10, origin: "local", folder: "/archive")]
        try store.record(taken: third, problems: [], now: 12)
        #expect(Set(try store.unannounced(limit: 10).map(\.facts.uid)) == ["5.5", "6.6"])
        #expect(try store.announceRefusals().isEmpty)
    }
}
