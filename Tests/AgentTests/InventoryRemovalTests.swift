import Foundation
import SQLite
import Testing

@testable import Agent

/// Files that left the disk (a PACS consuming its import folder): the inventory forgets them in
/// one transaction, its counts and every job's counts still equal a count of the rows, and a
/// study nothing is left of is queued for withdrawal — durably, until the coordinator hears it.
@Suite("Inventory: files that left the disk")
struct InventoryRemovalTests {
    static func taken(_ sop: String, study: String, size: Int, origin: String, folder: String) -> AgentStore.Taken {
        var item = SpoolCountsTests.taken(sop, study: study, size: size, origin: origin)
        item.path = "\(folder)/\(study)/\(sop).dcm"
        return item
    }

    /// A file no job has still to send (`inbound-keep` may remove it).
    static func unsent(_ sop: String, study: String, folder: String) -> AgentStore.Taken {
        var item = taken(sop, study: study, size: 1, origin: "RSCH", folder: folder)
        item.jobs = []
        return item
    }

    /// The inventory's kept totals and each study's counts against a count of the rows.
    static func expectTotalsConsistent(_ path: String, sourceLocation: SourceLocation = #_sourceLocation) throws {
        let db = try Database(path: path, readOnly: true)
        let kept = Dictionary(uniqueKeysWithValues: try db.prepare("SELECT name, value FROM totals").rows { ($0.text(0) ?? "", $0.int(1)) })
        for side in ["local", "received"] {
            let counted = try db.prepare("SELECT count(*), coalesce(sum(size), 0) FROM instances WHERE (origin = 'local') = (?1 = 'local')")
                .first([.text(side)]) { ($0.int(0), $0.int(1)) } ?? (0, 0)
            #expect(kept["instances_" + side] ?? 0 == counted.0, "\(side) instances", sourceLocation: sourceLocation)
            #expect(kept["bytes_" + side] ?? 0 == counted.1, "\(side) bytes", sourceLocation: sourceLocation)
        }
        let studies = try db.prepare("""
            SELECT uid, instances, bytes, (SELECT count(*) FROM instances i WHERE i.study = uid), (SELECT coalesce(sum(size), 0) FROM instances i WHERE i.study = uid) FROM studies
            """).rows { ($0.text(0) ?? "", $0.int(1), $0.int(2), $0.int(3), $0.int(4)) }
        for study in studies {
            #expect(study.1 == study.3 && study.2 == study.4, "study \(study.0): kept \(study.1)/\(study.2), counted \(study.3)/\(study.4)", sourceLocation: sourceLocation)
        }
    }

    @Test func filesGoneAreForgottenWithConsistentCountsAndAnEmptiedStudyIsQueuedForWithdrawal() throws {
        let path = SpoolCountsTests.scratch()
        defer { SpoolCountsTests.remove(path) }
        let store = try AgentStore(path: path)
        // A study received from RSCH (three instances, one of them also pushed on), and one of
        // the archive's (two instances).
        let received = (1...3).map { Self.taken("1.2.826.0.3.\($0)", study: "7.7", size: 100 * $0, origin: "RSCH", folder: "/inbound") }
        let archived = (1...2).map { Self.taken("1.2.826.0.4.\($0)", study: "6.6", size: 1000 + $0, origin: "local", folder: "/archive") }
        try store.record(taken: received + archived, problems: [], now: 10)
        try store.markAnnounced([("7.7", 3), ("6.6", 2)])
        try SpoolCountsTests.expectConsistent(path)
        // One archive file leaves: the study shrinks (announced again with its new count), its
        // pending push refuses it.
        var forgotten = try store.forget(paths: [archived[0].path], now: 11)
        #expect(forgotten == {
            var expected = AgentStore.Forgotten()
            expected.instances = 1
            expected.bytes = 1001
            expected.shrunk = ["6.6"]
            return expected
        }())
        #expect(try store.unannounced(limit: 10).map(\.facts.uid) == ["6.6"])
        try SpoolCountsTests.expectConsistent(path)
        try Self.expectTotalsConsistent(path)
        let push = try #require(try store.jobs().first { $0.study == "6.6" })
        #expect(push.refused == 1 && push.total == 2)
        // The received study's folder leaves whole: the study is gone from the inventory and
        // queued for withdrawal; asking again changes nothing.
        let folder = try store.knownPaths(at: "/inbound/7.7/")
        #expect(folder == received.map(\.path))
        forgotten = try store.forget(paths: folder, now: 12)
        #expect(forgotten.instances == 3 && forgotten.bytes == 600 && forgotten.withdrawn == ["7.7"] && forgotten.shrunk.isEmpty)
        #expect(try store.forget(paths: folder, now: 13) == AgentStore.Forgotten())
        #expect(try store.study("7.7") == nil)
        #expect(try store.pendingWithdrawals(limit: 10) == ["7.7"])
        try SpoolCountsTests.expectConsistent(path)
        try Self.expectTotalsConsistent(path)
        let counts = try store.counts()
        #expect((counts.studies, counts.instances, counts.receivedInstances, counts.bytes) == (1, 1, 0, 1002))
        // Durable: a restart still has it to withdraw; the coordinator's answer clears it.
        let reopened = try AgentStore(path: path)
        #expect(try reopened.pendingWithdrawals(limit: 10) == ["7.7"])
        try reopened.markWithdrawn(["7.7"])
        #expect(try reopened.pendingWithdrawals(limit: 10).isEmpty)
    }

    @Test func aStudyReceivedAgainBeforeItsWithdrawalIsSentIsNotWithdrawn() throws {
        let path = SpoolCountsTests.scratch()
        defer { SpoolCountsTests.remove(path) }
        let store = try AgentStore(path: path)
        let item = Self.taken("1.2.826.0.5.1", study: "5.5", size: 10, origin: "RSCH", folder: "/inbound")
        try store.record(taken: [item], problems: [], now: 10)
        #expect(try store.forget(paths: [item.path], now: 11).withdrawn == ["5.5"])
        try store.record(taken: [item], problems: [], now: 12)
        #expect(try store.pendingWithdrawals(limit: 10).isEmpty)
        #expect(try store.study("5.5")?.instances == 1)
        try Self.expectTotalsConsistent(path)
    }

    @Test func theSweepPagesThroughOneRootOnly() throws {
        let path = SpoolCountsTests.scratch()
        defer { SpoolCountsTests.remove(path) }
        let store = try AgentStore(path: path)
        let items = (1...5).map { Self.taken("1.2.826.0.6.\($0)", study: "4.4", size: 1, origin: "local", folder: "/archive") }
            + [Self.unsent("1.2.826.0.6.9", study: "4.5", folder: "/archive2")]
        try store.record(taken: items, problems: [], now: 10)
        var seen: [String] = []
        var cursor: String?
        while true {
            let page = try store.knownPaths(under: "/archive", after: cursor, limit: 2)
            guard let last = page.last else { break }
            #expect(page.count <= 2)
            seen += page
            cursor = last
        }
        #expect(seen == items.prefix(5).map(\.path))
        #expect(try store.pathsTaken(under: "/archive2", before: 11, limit: 10) == [items[5].path])
        #expect(try store.pathsTaken(under: "/archive2", before: 10, limit: 10).isEmpty)
    }

    @Test func aReceivedCopyFiledIntoAWatchedArchiveFolderKeepsItsInstanceWhenTheInboundCopyLeaves() throws {
        let path = SpoolCountsTests.scratch()
        defer { SpoolCountsTests.remove(path) }
        let store = try AgentStore(path: path)
        // Received from RSCH (pushed on), then filed by the PACS into a watched archive folder:
        // the archive copy gets its `files` row, the instance stays at the inbound copy.
        let received = (1...2).map { Self.taken("1.2.826.0.7.\($0)", study: "8.8", size: 100 * $0, origin: "RSCH", folder: "/inbound") }
        try store.record(taken: received, problems: [], now: 10)
        try store.markAnnounced([("8.8", 2)])
        let filed = received.map { item in
            var copy = item
            copy.path = item.path.replacingOccurrences(of: "/inbound/", with: "/archive/")
            copy.origin = "local"
            copy.size += 1
            copy.jobs = []
            return copy
        }
        try store.record(taken: filed, problems: [], now: 11)
        // The PACS deletes the inbound copies: the instances are held at the archive's.
        let forgotten = try store.forget(paths: received.map(\.path), now: 12, present: { $0.hasPrefix("/archive/") })
        #expect(forgotten.instances == 0 && forgotten.withdrawn.isEmpty && forgotten.shrunk.isEmpty && forgotten.kept == 2)
        #expect(try store.pendingWithdrawals(limit: 10).isEmpty)
        #expect(try store.paths(ofStudy: "8.8").sorted() == filed.map(\.path))
        #expect(try store.origins(of: filed.map(\.sop)).values.allSatisfy { $0 == "local" })
        let counts = try store.counts()
        #expect((counts.studies, counts.instances, counts.receivedInstances, counts.bytes) == (1, 2, 0, 302))
        let push = try #require(try store.jobs().first { $0.study == "8.8" })
        #expect(push.refused == 0 && push.total == 2)
        try SpoolCountsTests.expectConsistent(path)
        try Self.expectTotalsConsistent(path)
        // The archive copies leave too: now the study goes, and is withdrawn.
        let gone = try store.forget(paths: filed.map(\.path), now: 13, present: { _ in false })
        #expect(gone.instances == 2 && gone.withdrawn == ["8.8"])
        try Self.expectTotalsConsistent(path)
    }

    @Test func aReceivedCopyWhoseOtherCopyIsNotOnDiskIsForgotten() throws {
        let path = SpoolCountsTests.scratch()
        defer { SpoolCountsTests.remove(path) }
        let store = try AgentStore(path: path)
        let item = Self.taken("1.2.826.0.8.1", study: "9.9", size: 10, origin: "RSCH", folder: "/inbound")
        var filed = item
        filed.path = "/archive/9.9/1.2.826.0.8.1.dcm"
        filed.origin = "local"
        filed.jobs = []
        try store.record(taken: [item], problems: [], now: 10)
        try store.record(taken: [filed], problems: [], now: 11)
        #expect(try store.forget(paths: [item.path], now: 12, present: { _ in false }).withdrawn == ["9.9"])
        try Self.expectTotalsConsistent(path)
    }

    @Test func inboundKeepSkipsCopiesAPendingJobHasStillToSend() throws {
        let path = SpoolCountsTests.scratch()
        defer { SpoolCountsTests.remove(path) }
        let store = try AgentStore(path: path)
        let pushed = Self.taken("1.2.826.0.9.1", study: "3.3", size: 10, origin: "RSCH", folder: "/inbound")
        let kept = Self.unsent("1.2.826.0.9.2", study: "3.4", folder: "/inbound")
        try store.record(taken: [pushed, kept], problems: [], now: 10)
        #expect(try store.pathsTaken(under: "/inbound", before: 11, limit: 10) == [kept.path])
        let db = try Database(path: path)
        try db.prepare("UPDATE job_instances SET state = 'acknowledged'").run([])
        #expect(try store.pathsTaken(under: "/inbound", before: 11, limit: 10).sorted() == [pushed.path, kept.path].sorted())
    }

    @Test func aPathWrittenAgainBeforeTheTransactionIsNotForgotten() throws {
        let path = SpoolCountsTests.scratch()
        defer { SpoolCountsTests.remove(path) }
        let store = try AgentStore(path: path)
        let item = Self.taken("1.2.826.0.10.1", study: "2.2", size: 10, origin: "RSCH", folder: "/inbound")
        try store.record(taken: [item], problems: [], now: 10)
        // The caller found it gone; fetched again to the same path before the forgetting.
        #expect(try store.forget(paths: [item.path], now: 11, present: { $0 == item.path }) == AgentStore.Forgotten())
        #expect(try store.study("2.2")?.instances == 1 && store.pendingWithdrawals(limit: 10).isEmpty)
        #expect(try store.knownPaths(at: item.path) == [item.path])
    }

    @Test(arguments: [
        // (known, missing, the root lists something, refused)
        (2, 2, false, true),  // an empty or missing root: an unmounted share
        (2, 1, false, true),
        (30, 0, false, false),  // nothing to forget
        (30, 16, true, true),  // most of a root's files gone at once
        (30, 15, true, false),
        (20, 20, true, false),  // few files: a study deleted whole is forgotten
        (2, 2, true, false),
    ])
    func aSweepForgetsNothingUnderAnEmptyRootOrWhenMostOfItsFilesAreGone(known: Int, missing: Int, rootHasEntries: Bool, refused: Bool) {
        let refusal = AgentDaemon.sweepRefusal(root: "/mnt/pacs", known: known, missing: missing, rootHasEntries: rootHasEntries)
        #expect((refusal != nil) == refused)
        if let refusal { #expect(refusal.hasPrefix("not forgetting \(missing) of \(known) files under /mnt/pacs: an unmounted share?")) }
    }

    @Test func aRootListsSomethingOnlyWhenItIsThereAndNotEmpty() throws {
        let folder = NSTemporaryDirectory() + "consort-root-\(UUID().uuidString)"
        #expect(!AgentDaemon.hasEntries(folder))
        try FileManager.default.createDirectory(atPath: folder, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(atPath: folder) }
        #expect(!AgentDaemon.hasEntries(folder))
        try FileManager.default.createDirectory(atPath: folder + "/.staging", withIntermediateDirectories: true)
        #expect(!AgentDaemon.hasEntries(folder), "the agent's own staging folder is not a file of the share")
        try Data().write(to: URL(fileURLWithPath: folder + "/a.dcm"))
        #expect(AgentDaemon.hasEntries(folder))
    }

    @Test func inboundKeepRemovesACopyOnlyIfItStillHasTheSizeAndTimeRecorded() throws {
        let folder = NSTemporaryDirectory() + "consort-keep-\(UUID().uuidString)"
        try FileManager.default.createDirectory(atPath: folder, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(atPath: folder) }
        let file = folder + "/a.dcm"
        try Data("DICM".utf8).write(to: URL(fileURLWithPath: file))
        let mtime = AgentDaemon.mtime(file)
        #expect(AgentDaemon.unchanged(file, size: 4, mtime: mtime))
        #expect(!AgentDaemon.unchanged(file, size: 5, mtime: mtime), "fetched again: another size")
        #expect(!AgentDaemon.unchanged(file, size: 4, mtime: mtime - 10), "fetched again: another time")
        #expect(AgentDaemon.unchanged(folder + "/gone.dcm", size: 4, mtime: mtime), "gone: nothing to keep")
        // The store's page of due files carries what was recorded, after a cursor.
        let path = SpoolCountsTests.scratch()
        defer { SpoolCountsTests.remove(path) }
        let store = try AgentStore(path: path)
        let items = (1...3).map { Self.unsent("1.2.826.0.11.\($0)", study: "1.1", folder: "/inbound") }
        try store.record(taken: items, problems: [], now: 10)
        let first = try store.filesTaken(under: "/inbound", before: 11, after: nil, limit: 2)
        #expect(first.map(\.path) == items.prefix(2).map(\.path) && first.allSatisfy { $0.size == 1 && $0.mtime == 1 })
        #expect(try store.filesTaken(under: "/inbound", before: 11, after: first.last?.path, limit: 2).map(\.path) == [items[2].path])
    }
}
