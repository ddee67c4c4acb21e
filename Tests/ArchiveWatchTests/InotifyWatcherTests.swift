import Foundation
import Testing

@testable import ArchiveWatch
import TestSupport

#if canImport(Glibc)
    import Glibc
#endif

/// The inotify watcher on real folders: files reported when complete and only then, new folders
/// found whole, nothing excluded or hidden, lost events turned into rescans. Every wait has a
/// deadline; none is a fixed sleep.
@Suite("Archive watching with inotify", .timeLimit(.minutes(3)))
struct InotifyWatcherTests {
    /// What a watcher said, gathered across calls.
    struct Collected {
        var files: [String] = []
        var rescans: [String] = []
        var problems: [String] = []
        var gone: [String] = []
        var fileSet: Set<String> { Set(files) }

        mutating func add(_ events: [WatchEvent]) {
            for event in events {
                switch event {
                case .file(let path): files.append(path)
                case .gone(let path): gone.append(path)
                case .rescan(let root, _): rescans.append(root)
                case .problem(let message): problems.append(message)
                }
            }
        }
    }

    /// Polls `watcher` until `done` holds or `seconds` pass.
    static func collect(
        _ watcher: InotifyWatcher, into collected: inout Collected, seconds: Double = 10, until done: (Collected) -> Bool
    ) {
        let deadline = TestFiles.now + seconds
        while !done(collected) && TestFiles.now < deadline {
            collected.add(watcher.next(timeout: 0.2))
        }
    }

    static func collect(_ watcher: InotifyWatcher, seconds: Double = 10, until done: (Collected) -> Bool) -> Collected {
        var collected = Collected()
        collect(watcher, into: &collected, seconds: seconds, until: done)
        return collected
    }

    static func missing(_ expected: Set<String>, from collected: Collected) -> String {
        let missing = expected.subtracting(collected.fileSet).sorted()
        return "\(missing.count) not reported, e.g. \(missing.prefix(5)); rescans \(collected.rescans); problems \(collected.problems.prefix(5))"
    }

    @Test func slowlyWrittenFileIsReportedOnceAndOnlyAfterItIsClosed() throws {
        let folder = try TemporaryFolder()
        let watcher = try InotifyWatcher(roots: [folder.path])
        let path = folder.path + "/slow.dcm"
        let descriptor = open(path, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0o644)
        try #require(descriptor >= 0)
        // Five writes over ~1.5 s; the watcher is asked between them (its wait is the pause).
        var whileWriting = Collected()
        let chunk = [UInt8](repeating: 0x42, count: 4096)
        for _ in 0..<5 {
            #expect(write(descriptor, chunk, chunk.count) == chunk.count)
            whileWriting.add(watcher.next(timeout: 0.3))
        }
        #expect(!whileWriting.files.contains(path), "reported while still open for writing")
        close(descriptor)
        var collected = Self.collect(watcher) { $0.files.contains(path) }
        #expect(collected.files == [path], "\(Self.missing([path], from: collected))")
        // Nothing more about it once closed.
        collected.add(watcher.next(timeout: 0.5))
        #expect(collected.files.filter { $0 == path }.count == 1)
    }

    @Test func fileRenamedInFromOutsideIsReported() throws {
        let folder = try TemporaryFolder()
        let outside = try folder.folder("outside")
        let root = try folder.folder("root")
        try TestFiles.write(outside + "/moved.dcm")
        let watcher = try InotifyWatcher(roots: [root])
        // rename(2) from outside the tree gives only MOVED_TO: no CREATE, no CLOSE_WRITE.
        #expect(rename(outside + "/moved.dcm", root + "/moved.dcm") == 0)
        let collected = Self.collect(watcher) { $0.files.contains(root + "/moved.dcm") }
        #expect(collected.fileSet == [root + "/moved.dcm"], "\(Self.missing([root + "/moved.dcm"], from: collected))")
    }

    /// A PACS consuming its import folder: files deleted, a study's folder moved away or
    /// deleted whole — each reported gone, and a file still being written is not.
    @Test func filesDeletedOrMovedAwayAndFoldersRemovedAreReportedGone() throws {
        let folder = try TemporaryFolder()
        let root = try folder.folder("root")
        let outside = try folder.folder("outside")
        let deleted = try folder.folder("root/deleted")
        let moved = try folder.folder("root/moved")
        for path in [root + "/a.dcm", root + "/b.dcm", deleted + "/1.dcm", deleted + "/2.dcm", moved + "/1.dcm"] { try TestFiles.write(path) }
        let watcher = try InotifyWatcher(roots: [root])
        #expect(unlink(root + "/a.dcm") == 0)
        #expect(rename(root + "/b.dcm", outside + "/b.dcm") == 0)
        try FileManager.default.removeItem(atPath: deleted)
        // A folder moved away: one event for it, none for its files (the folder stands for them).
        #expect(rename(moved, outside + "/moved") == 0)
        let expected: Set = [root + "/a.dcm", root + "/b.dcm", deleted + "/1.dcm", deleted + "/2.dcm", deleted, moved]
        let collected = Self.collect(watcher) { expected.isSubset(of: Set($0.gone)) }
        #expect(Set(collected.gone) == expected, "gone: \(collected.gone); problems \(collected.problems)")
        #expect(collected.files.isEmpty)
        // Its watch went with the folder moved away; one written there now is not reported.
        try TestFiles.write(outside + "/moved/later.dcm")
        #expect(!watcher.isWatching(moved))
        #expect(Self.collect(watcher, seconds: 0.5) { !$0.files.isEmpty }.files.isEmpty)
    }

    @Test func deepFolderTreeMadeAtOnceIsFoundEntirely() throws {
        let folder = try TemporaryFolder()
        let watcher = try InotifyWatcher(roots: [folder.path])
        #expect(watcher.watchCount == 1)
        // mkdir -p a/b/c/d and files at every level straight away, before the watcher looks:
        // most of them land before their folder's watch exists.
        let deepest = try folder.folder("a/b/c/d")
        var expected: Set<String> = []
        var level = deepest
        while level.count > folder.path.count {
            for name in ["1.dcm", "2.dcm"] {
                try TestFiles.write(level + "/" + name)
                expected.insert(level + "/" + name)
            }
            level = (level as NSString).deletingLastPathComponent
        }
        let collected = Self.collect(watcher) { expected.isSubset(of: $0.fileSet) }
        #expect(collected.fileSet == expected, "\(Self.missing(expected, from: collected))")
        #expect(watcher.watchCount == 5)
        #expect(watcher.isWatching(deepest))
    }

    @Test func folderTreeMovedInIsFoundEntirely() throws {
        let folder = try TemporaryFolder()
        let root = try folder.folder("root")
        let staged = try folder.folder("export/study/series")
        try TestFiles.write(folder.path + "/export/study/first.dcm")
        try TestFiles.write(staged + "/second.dcm")
        let watcher = try InotifyWatcher(roots: [root])
        // A tree renamed in reports only MOVED_TO|ISDIR for its top: nothing for what is inside.
        #expect(rename(folder.path + "/export", root + "/export") == 0)
        let expected: Set = [root + "/export/study/first.dcm", root + "/export/study/series/second.dcm"]
        let collected = Self.collect(watcher) { expected.isSubset(of: $0.fileSet) }
        #expect(collected.fileSet == expected, "\(Self.missing(expected, from: collected))")
        #expect(watcher.isWatching(root + "/export/study/series"))
    }

    @Test func tenThousandFilesDroppedAtOnceAreAllReported() throws {
        let folder = try TemporaryFolder()
        let inbound = try folder.folder("inbound")
        let watcher = try InotifyWatcher(roots: [folder.path])
        // 10,000 files, 20,000 events, none read meanwhile: more than max_queued_events (16,384
        // here), so the queue overflows and the rest must come from the rescan.
        var expected: Set<String> = []
        for number in 0..<10_000 {
            let path = inbound + "/\(number).dcm"
            try TestFiles.write(path)
            expected.insert(path)
        }
        var collected = Collected()
        var scanned = 0
        let deadline = TestFiles.now + 20
        while !expected.isSubset(of: collected.fileSet) && TestFiles.now < deadline {
            let events = watcher.next(timeout: 0.2)
            collected.add(events)
            for case .rescan(let root, _) in events {
                // What the agent does with a rescan: a catch-up scan of that root.
                let scanner = CatchUpScanner(roots: [root], filesPerSecond: 1e9, batchSize: 1000, sleep: { _ in })
                while let batch = scanner.nextBatch() {
                    scanned += batch.count
                    collected.files += batch.map(\.path)
                }
            }
        }
        #expect(expected.isSubset(of: collected.fileSet), "\(Self.missing(expected, from: collected))")
        #expect(collected.fileSet.subtracting(expected).isEmpty)
        if collected.rescans.isEmpty {
            #expect(scanned == 0)
        } else {
            #expect(collected.rescans == [folder.path])
        }
    }

    @Test func excludedAndHiddenFoldersAreNeverReportedNorWatched() throws {
        let folder = try TemporaryFolder()
        let root = try folder.folder("root")
        let inbound = try folder.folder("root/inbound")
        let state = try folder.folder("root/state")
        let held = try folder.folder("root/inbound/held")
        let staging = try folder.folder("root/inbound/.staging")
        let aliased = try folder.folder("root/quarantine")
        // Excluded through a symlink's spelling: matched by identity.
        #expect(symlink(aliased, folder.path + "/alias") == 0)
        let later = root + "/later"  // excluded before it exists
        let watcher = try InotifyWatcher(
            roots: [root], excluding: [state, held + "/", folder.path + "/alias", later])
        #expect(!watcher.isWatching(state))
        #expect(!watcher.isWatching(held))
        #expect(!watcher.isWatching(staging))
        #expect(!watcher.isWatching(aliased))

        for excluded in [state, held, staging, aliased] {
            try TestFiles.write(excluded + "/never.dcm")
            try FileManager.default.createDirectory(atPath: excluded + "/sub", withIntermediateDirectories: true)
            try TestFiles.write(excluded + "/sub/never.dcm")
        }
        try FileManager.default.createDirectory(atPath: later + "/sub", withIntermediateDirectories: true)
        try TestFiles.write(later + "/sub/never.dcm")
        try TestFiles.write(inbound + "/.hidden.dcm")
        try TestFiles.write(inbound + "/.dat.nosync1234.abcd")
        let hiddenTree = try folder.folder("root/inbound/.hidden-tree/deeper")
        try TestFiles.write(hiddenTree + "/never.dcm")
        // Events arrive in order: once the last file is reported, all the others were seen.
        let control = inbound + "/control.dcm"
        try TestFiles.write(control)
        let collected = Self.collect(watcher) { $0.files.contains(control) }
        #expect(collected.fileSet == [control], "problems: \(collected.problems)")
        #expect(!watcher.isWatching(later))
        #expect(watcher.watchCount == 2)  // root, root/inbound
    }

    @Test func foundationAtomicWriteIsReportedUnderItsFinalNameOnly() throws {
        let folder = try TemporaryFolder()
        let watcher = try InotifyWatcher(roots: [folder.path])
        let path = folder.path + "/atomic.dcm"
        // Goes through a .dat.nosync… temporary file, then MOVED_TO and CLOSE_WRITE the final name.
        try Data("DICM".utf8).write(to: URL(fileURLWithPath: path), options: .atomic)
        var collected = Self.collect(watcher) { $0.files.contains(path) }
        collected.add(watcher.next(timeout: 0.3))
        #expect(collected.fileSet == [path])
    }

    @Test func overflowAsksForARescanOfEveryRootAfterWatchingWhatWasMissed() throws {
        let folder = try TemporaryFolder()
        let first = try folder.folder("first")
        let second = try folder.folder("second")
        let watcher = try InotifyWatcher(roots: [first, second])
        // A folder made while events are (as if) lost: the recovery watches it before asking for
        // the rescan, so that nothing landing in it afterwards is missed.
        let made = try folder.folder("first/made-meanwhile")
        watcher.overflowed()
        #expect(watcher.isWatching(made))
        let events = watcher.next(timeout: 0)
        let rescans = events.compactMap { event -> String? in
            if case .rescan(let root, _) = event { return root }
            return nil
        }
        #expect(Set(rescans) == [first, second])
        #expect(rescans.count == 2)
    }

    @Test func outOfWatchesAsksForRescansUntilTheFoldersCanBeWatched() throws {
        let folder = try TemporaryFolder()
        let watcher = try InotifyWatcher(roots: [folder.path], retryInterval: 0.1)
        var full = true
        watcher.addWatchFault = { path in full && path.contains("/crowded") ? ENOSPC : nil }
        let deeper = try folder.folder("crowded/deeper")
        try TestFiles.write(deeper + "/early.dcm")
        // The new folders cannot be watched, but they are still read: their files are found.
        var collected = Self.collect(watcher) { $0.files.contains(deeper + "/early.dcm") && !$0.rescans.isEmpty }
        #expect(collected.files == [deeper + "/early.dcm"])
        #expect(collected.rescans == [folder.path])
        #expect(collected.problems.count == 1)
        #expect(collected.problems.first?.contains("max_user_watches") == true)
        #expect(watcher.unwatchedCount == 2)
        // While they stay unwatched, each retry asks for another rescan (and no new problem).
        Self.collect(watcher, into: &collected) { $0.rescans.count >= 3 }
        #expect(collected.rescans.count >= 3)
        #expect(collected.problems.count == 1)

        full = false
        Self.collect(watcher, into: &collected) { _ in watcher.isWatching(deeper) }
        #expect(watcher.unwatchedCount == 0)
        #expect(watcher.watchCount == 3)
        try TestFiles.write(deeper + "/later.dcm")
        Self.collect(watcher, into: &collected) { $0.files.contains(deeper + "/later.dcm") }
        #expect(collected.fileSet == [deeper + "/early.dcm", deeper + "/later.dcm"])
    }

    @Test func rootDeletedIsReportedAndWatchedAgainWhenItReappears() throws {
        let folder = try TemporaryFolder()
        let root = try folder.folder("root")
        let watcher = try InotifyWatcher(roots: [root], retryInterval: 0.1)
        try FileManager.default.removeItem(atPath: root)
        var collected = Self.collect(watcher) { !$0.problems.isEmpty }
        #expect(collected.problems.contains { $0.contains(root) }, "no problem reported: \(collected.problems)")
        #expect(watcher.watchCount == 0)

        try FileManager.default.createDirectory(atPath: root, withIntermediateDirectories: true)
        try TestFiles.write(root + "/while-unwatched.dcm")
        Self.collect(watcher, into: &collected) { $0.rescans.contains(root) }
        #expect(collected.rescans == [root])
        #expect(watcher.watchCount == 1)

        try TestFiles.write(root + "/after.dcm")
        Self.collect(watcher, into: &collected) { $0.files.contains(root + "/after.dcm") }
        #expect(collected.files == [root + "/after.dcm"])
    }

    @Test func missingRootAtStartIsAProblemAndIsWatchedOnceItExists() throws {
        let folder = try TemporaryFolder()
        let root = folder.path + "/not-yet"
        let watcher = try InotifyWatcher(roots: [root], retryInterval: 0.1)
        #expect(watcher.watchCount == 0)
        var collected = Self.collect(watcher) { !$0.problems.isEmpty }
        #expect(collected.problems.count == 1)
        #expect(collected.problems.first?.contains(root) == true)

        try folder.folder("not-yet")
        Self.collect(watcher, into: &collected) { $0.rescans.contains(root) }
        #expect(collected.rescans == [root])
        #expect(collected.problems.count == 1, "a problem repeated at each retry: \(collected.problems)")
    }

    @Test func folderMovedOutOfTheTreeIsNoLongerWatchedNorReported() throws {
        let folder = try TemporaryFolder()
        let root = try folder.folder("root")
        let leaving = try folder.folder("root/inbound/leaving/deeper")
        let outside = try folder.folder("outside")
        let watcher = try InotifyWatcher(roots: [root])
        #expect(watcher.watchCount == 4)
        #expect(rename(root + "/inbound/leaving", outside + "/leaving") == 0)
        // Its watches still exist in the kernel and would report under the old, stale paths.
        var collected = Self.collect(watcher, seconds: 2) { _ in watcher.watchCount == 2 }
        try TestFiles.write(outside + "/leaving/gone.dcm")
        try TestFiles.write(outside + "/leaving/deeper/gone.dcm")
        let control = root + "/inbound/control.dcm"
        try TestFiles.write(control)
        Self.collect(watcher, into: &collected) { $0.files.contains(control) }
        #expect(collected.fileSet == [control])
        #expect(watcher.watchCount == 2)
        #expect(!watcher.isWatching(leaving))
    }

    @Test func folderRenamedWithinTheTreeReportsUnderItsNewPath() throws {
        let folder = try TemporaryFolder()
        let before = try folder.folder("incoming/before")
        let watcher = try InotifyWatcher(roots: [folder.path])
        #expect(rename(before, folder.path + "/incoming/after") == 0)
        let after = folder.path + "/incoming/after"
        // The rename's own events first (it reports the files inside: none yet), then a new file.
        var collected = Self.collect(watcher, seconds: 2) { _ in watcher.isWatching(after) }
        try TestFiles.write(after + "/new.dcm")
        Self.collect(watcher, into: &collected) { $0.files.contains(after + "/new.dcm") }
        #expect(collected.fileSet == [after + "/new.dcm"])
        #expect(!watcher.isWatching(before))
    }
}
