import ArchiveWatch
import DICOM
import DICOMweb
import Foundation
import Platform
import Routing

/// The archive folders: inotify or polling, and the catch-up scan of what changed while the agent
/// was down.
extension AgentDaemon {
    // MARK: - Watching

    /// Never taken as archive files, wherever they are: the agent's own state, staging and quarantine.
    var excluded: [String] {
        [configuration.state, configuration.stagingFolder, configuration.inbound + "/" + StowIngest.quarantineFolderName, configuration.inbound + "/" + StowIngest.heldFolderName]
    }

    func startWatchers() throws {
        if configuration.dimse != nil { try FileManager.default.createDirectory(atPath: configuration.dimseIntakeFolder, withIntermediateDirectories: true) }
        let inotifyRoots = watchRoots.filter { $0.pollSeconds == nil }.map(\.path)
        let watchLog = log.named("watcher")
        if !inotifyRoots.isEmpty {
            let watcher = try InotifyWatcher(roots: inotifyRoots, excluding: excluded)
            watchLog.info("watching with inotify", ["roots": inotifyRoots.joined(separator: ","), "folders": watcher.watchCount])
            // The wait for events is the loop's rest: it turns again at once.
            try services.start(WakeableLoop(name: "consort-inotify", interval: 0) { [self] in
                handle(watcher.next(timeout: 0.5), log: watchLog)
                telemetry.beat("watch")
                return 0
            })
        }
        for watch in configuration.watches where watch.pollSeconds != nil {
            let poller = PollingWatcher(roots: [watch.path], excluding: excluded, period: watch.pollSeconds!, reportFilesPresentAtStart: false)
            watchLog.info("watching by polling", ["root": watch.path, "period": "\(watch.pollSeconds!) s"])
            try services.start(WakeableLoop(name: "consort-poll", interval: 0.25) { [self] in
                handle(poller.next(now: MonotonicClock.now), log: watchLog)
                return nil
            })
        }
        // The catch-up scan: what changed while the agent was down, at a bounded rate.
        let first = beginFirstStart(log: watchLog)
        let scan = Thread { [self] in catchUp(roots: watchRoots.map(\.path), log: watchLog, first: first) }
        scan.name = "consort-catch-up"
        scan.start()
        try startInboundWatcher()
    }

    func handle(_ events: [WatchEvent], log watchLog: Logger) {
        var files: [Ingest.Candidate] = []
        // What left first: a path gone and written again in one batch is forgotten, then taken
        // again (`forgetGone` keeps what is on disk now).
        let gone = events.compactMap { event -> String? in
            if case .gone(let path) = event { return path } else { return nil }
        }
        if !gone.isEmpty { forgetGone(gone, why: "left a watched folder", log: watchLog) }
        for event in events {
            switch event {
            case .gone:
                continue
            case .file(let path):
                var info = stat()
                guard stat(path, &info) == 0, (info.st_mode & S_IFMT) == S_IFREG else { continue }
                files.append(Ingest.Candidate(path: path, size: Int(info.st_size), mtime: Double(info.st_mtim.tv_sec) + Double(info.st_mtim.tv_nsec) / 1e9))
            case .rescan(let root, let reason):
                watchLog.warning("events were lost; rescanning", ["root": root, "reason": reason])
                rescan(root, log: watchLog)
            case .problem(let message):
                watchLog.warning(message)
            }
        }
        if !files.isEmpty {
            ingest.take(files)
            telemetry.taken(files.map { ($0.path, $0.mtime) }, now: clock.now, live: true)
            queue.nudge()
        }
    }

    /// `first`: the agent's first catch-up (`beginFirstStart`): once it has walked everything it
    /// could, it is recorded as finished (`finishCatchUp`). Every catch-up takes files unchanged
    /// since the first began as history (`Ingest.historyBefore`).
    func catchUp(roots: [String], log watchLog: Logger, first: Bool = false) {
        let scanner = CatchUpScanner(roots: roots, excluding: excluded, filesPerSecond: configuration.scanFilesPerSecond, batchSize: 500)
        for root in roots { telemetry.catchUp(root, running: true, files: 0, now: clock.now) }
        defer { for root in roots { telemetry.catchUp(root, running: false, files: scanner.progress.filesSeen, now: clock.now) } }
        // Two stages on the two cores: this thread walks and reads files (`examine`) while a
        // recorder commits what was examined before (`record`, SQLite). The recorder takes every
        // batch waiting at once, in one transaction: a commit whose flush stalls (on the test
        // machine, now and then for hundreds of milliseconds) lets batches pile up, and the next
        // commit clears them all for one flush, while this thread reads on. At most
        // `recordQueueBatches` wait and as many are being recorded, so memory stays at a few
        // thousand files' facts however large the archive.
        let handOff = BatchHandOff<(examined: Ingest.Examined, files: [(String, Double)], seen: Int)>(limit: Self.recordQueueBatches)
        let recorded = DispatchSemaphore(value: 0)
        // Files left for a later event or scan (counted for the log: they are taken again, as
        // history still if unchanged since the line, so leaving some is safe).
        let left = LockedValue(0)
        let recorder = Thread { [self] in
            defer { recorded.signal() }
            while let waiting = handOff.takeAll() {
                // Batches that fail together are tried one by one: one bad batch (a row the
                // database refuses) then leaves out its own files only, until the next event or
                // scan, not the up to 2,000 files waiting with it.
                let whole = ingest.record(Ingest.Examined.merged(waiting.map(\.examined)))
                if !whole && waiting.count > 1 {
                    for batch in waiting where !ingest.record(batch.examined) { left.value += batch.examined.files }
                } else if !whole {
                    left.value += waiting[0].examined.files
                }
                let now = clock.now
                telemetry.taken(waiting.flatMap(\.files), now: now, live: false)
                for root in roots { telemetry.catchUp(root, running: true, files: waiting.last!.seen, now: now) }
                queue.nudge()
            }
        }
        recorder.name = "consort-catch-up-record"
        recorder.start()
        var outcome = CatchUpOutcome()
        while !stopping.isSet, let batch = scanner.nextBatch() {
            for problem in scanner.takeProblems() { watchLog.warning(problem) }
            let candidates = batch.map { Ingest.Candidate(path: $0.path, size: Int($0.size), mtime: $0.mtimeSeconds, changed: $0.changedSeconds) }
            guard let examined = ingest.examine(candidates, historyBefore: ingest.historyBefore.value) else {
                outcome.left += candidates.count
                continue
            }
            outcome.history += examined.history
            outcome.nearBegin += examined.nearBegin
            handOff.put((examined, batch.map { ($0.path, $0.mtimeSeconds) }, scanner.progress.filesSeen))
        }
        // Done means recorded: the batches still with the recorder first. (A stop does not wait
        // for this thread: a batch cut off by the exit is not recorded, and is read again at the
        // next start.)
        handOff.close()
        recorded.wait()
        for problem in scanner.takeProblems() { watchLog.warning(problem) }
        let seconds = scanner.progress.startedAt.map { MonotonicClock.now - $0 } ?? 0
        outcome.left += left.value
        outcome.unreadable = scanner.progress.problems
        outcome.stopped = stopping.isSet
        // Recorded before "done" is said: once it is, a restart is not a first start.
        finishCatchUp(outcome, first: first, log: watchLog)
        watchLog.info("catch-up scan done", ["roots": roots.joined(separator: ","), "files": scanner.progress.filesSeen, "seconds": String(format: "%.3f", seconds)])
        // What left while nobody watched: the inventory's files under the roots not on disk.
        if !stopping.isSet { for root in roots { sweep(root, log: watchLog) } }
    }

    /// One rescan of a root at a time: a rescan asked for while one runs is run once more after
    /// it (not once per request: out of inotify watches asks again every minute).
    func rescan(_ root: String, log watchLog: Logger) {
        let start: Bool = rescans.withLock {
            if rescansRunning.contains(root) {
                rescansAgain.insert(root)
                return false
            }
            rescansRunning.insert(root)
            return true
        }
        guard start else { return }
        let thread = Thread { [self] in
            while true {
                catchUp(roots: [root], log: watchLog)
                let again: Bool = rescans.withLock {
                    if rescansAgain.remove(root) != nil { return true }
                    rescansRunning.remove(root)
                    return false
                }
                if !again || stopping.isSet { break }
            }
        }
        thread.name = "consort-rescan"
        thread.start()
    }

    /// Urgent before bulk rests on thread priorities (`ThreadPriority`); a sandbox may forbid
    /// them. Said once at start, so that an operator whose urgent instances wait behind bulk
    /// transfers learns why from the log rather than from a radiologist.
    func reportPriorities() {
        let can = priorities
        if !can.lower || !can.idleIO {
            log.warning(
                "cannot put bulk work below urgent work: urgent instances will share the CPU and the disk with bulk transfers; the service's system call filter must allow setpriority and ioprio_set (Deploy/systemd/consort-agent.service does)",
                ["lower_cpu": can.lower ? "yes" : "refused", "idle_io": can.idleIO ? "yes" : "refused", "error": can.refusal ?? ""])
        } else if !can.comeBack {
            log.info("bulk work holds the database lock at its lowered CPU priority: without RLIMIT_NICE headroom a lowered thread cannot come back up (LimitNICE=+0 in the unit gives it)", ["error": can.refusal ?? ""])
        }
    }
}
