import Foundation
import Testing

@testable import ArchiveWatch
import TestSupport

/// The polling watcher on real folders, driven with explicit clock values: a file is reported
/// once it has stayed unchanged (size and modification time) across a full period.
@Suite("Archive watching by polling", .timeLimit(.minutes(3)))
struct PollingWatcherTests {
    static func setModified(_ path: String, to seconds: Double) throws {
        try FileManager.default.setAttributes([.modificationDate: Date(timeIntervalSince1970: seconds)], ofItemAtPath: path)
    }

    @Test func fileIsReportedOnlyAfterStayingUnchangedForAFullPeriod() throws {
        let folder = try TemporaryFolder()
        let watcher = PollingWatcher(roots: [folder.path], period: 10)
        #expect(watcher.next(now: 0).isEmpty)  // the baseline scan: an empty folder
        let path = folder.path + "/growing.dcm"
        try TestFiles.write(path, "part one")
        #expect(watcher.next(now: 5).isEmpty)  // not yet time to scan
        #expect(watcher.next(now: 10).isEmpty)  // first seen: remembered
        try TestFiles.write(path, "part one, part two")
        #expect(watcher.next(now: 20).isEmpty)  // changed since: not stable
        #expect(watcher.next(now: 30) == [.file(path: path)])  // unchanged for a period
        #expect(watcher.next(now: 40).isEmpty)  // reported once
        #expect(watcher.fileCount == 1)
    }

    @Test func fileChangedAfterItWasReportedIsReportedAgainOnceStable() throws {
        let folder = try TemporaryFolder()
        let watcher = PollingWatcher(roots: [folder.path], period: 10)
        _ = watcher.next(now: 0)
        let path = folder.path + "/rewritten.dcm"
        try TestFiles.write(path, "same size")
        try Self.setModified(path, to: 1_700_000_000)
        _ = watcher.next(now: 10)
        #expect(watcher.next(now: 20) == [.file(path: path)])
        // Same size, new modification time: a change.
        try TestFiles.write(path, "SAME SIZE")
        try Self.setModified(path, to: 1_700_000_100)
        #expect(watcher.next(now: 30).isEmpty)
        #expect(watcher.next(now: 40) == [.file(path: path)])
        #expect(watcher.next(now: 50).isEmpty)
    }

    @Test func filesPresentAtStartAreLeftToTheCatchUpScanUnlessAskedFor() throws {
        let folder = try TemporaryFolder()
        let path = folder.path + "/old.dcm"
        try TestFiles.write(path)
        let baseline = PollingWatcher(roots: [folder.path], period: 10)
        #expect(baseline.next(now: 0).isEmpty)
        #expect(baseline.next(now: 10).isEmpty)
        #expect(baseline.next(now: 20).isEmpty)
        let reporting = PollingWatcher(roots: [folder.path], period: 10, reportFilesPresentAtStart: true)
        #expect(reporting.next(now: 0).isEmpty)
        #expect(reporting.next(now: 10) == [.file(path: path)])
    }

    @Test func excludedAndHiddenFilesAreNeverReportedAndDeletedFilesAreReportedGone() throws {
        let folder = try TemporaryFolder()
        let state = try folder.folder("state")
        let staging = try folder.folder("inbound/.staging")
        let watcher = PollingWatcher(roots: [folder.path], excluding: [state], period: 10)
        _ = watcher.next(now: 0)
        try TestFiles.write(state + "/never.dcm")
        try TestFiles.write(staging + "/never.dcm")
        try TestFiles.write(folder.path + "/inbound/.dat.nosync99.x")
        try TestFiles.write(folder.path + "/inbound/new.dcm")
        try TestFiles.write(folder.path + "/inbound/gone.dcm")
        #expect(watcher.next(now: 10).isEmpty)
        try FileManager.default.removeItem(atPath: folder.path + "/inbound/gone.dcm")
        #expect(watcher.next(now: 20) == [.file(path: folder.path + "/inbound/new.dcm"), .gone(path: folder.path + "/inbound/gone.dcm")])
        #expect(watcher.fileCount == 1)
    }

    @Test func missingRootIsAProblemOnceAndTheOtherRootsCarryOn() throws {
        let folder = try TemporaryFolder()
        let missing = folder.path + "/missing"
        let present = try folder.folder("present")
        let watcher = PollingWatcher(roots: [missing, present], period: 1)
        let first = watcher.next(now: 0)
        #expect(first.count == 1)
        if case .problem(let message) = first.first { #expect(message.contains(missing)) } else { Issue.record("expected a problem, got \(first)") }
        try TestFiles.write(present + "/a.dcm")
        #expect(watcher.next(now: 1).isEmpty)  // the problem is not repeated
        #expect(watcher.next(now: 2) == [.file(path: present + "/a.dcm")])
    }

    @Test func aRootEmptiedAtOnceReportsNothingGoneButFilesDeletedOneByOneAre() throws {
        let folder = try TemporaryFolder()
        let root = try folder.folder("share")
        for name in ["a", "b", "c"] { try TestFiles.write(root + "/\(name).dcm") }
        let watcher = PollingWatcher(roots: [root], period: 1)
        #expect(watcher.next(now: 0).isEmpty)  // the baseline
        try FileManager.default.removeItem(atPath: root + "/c.dcm")
        #expect(watcher.next(now: 1) == [.gone(path: root + "/c.dcm")])
        // The share is unmounted: its mount point is empty. Nothing is gone, one problem said.
        for name in ["a", "b"] { try FileManager.default.removeItem(atPath: root + "/\(name).dcm") }
        let empty = watcher.next(now: 2)
        #expect(empty.count == 1)
        if case .problem(let message) = empty.first { #expect(message.contains(root) && message.contains("unmounted")) } else { Issue.record("expected a problem, got \(empty)") }
        #expect(watcher.next(now: 3).isEmpty)  // not repeated
        #expect(watcher.fileCount == 2)
        // Mounted again with one file left: the other is gone.
        try TestFiles.write(root + "/a.dcm")
        #expect(watcher.next(now: 4) == [.gone(path: root + "/b.dcm")])
    }
}
