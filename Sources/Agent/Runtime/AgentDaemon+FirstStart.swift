import Foundation
import Platform

#if canImport(Glibc)
    import Glibc
#endif

/// The first start over an existing archive (issue 23). A trust that installs Consort over ten
/// years of archive must not push ten years to whoever its rules name: what was in its watched
/// folders before the agent first began its catch-up is history — indexed and announced without
/// firing rules, and its studies never fire their study-stable rules by the timer. Applying
/// rules to history is `consort backfill`.
///
/// The line between history and new is when the first catch-up began, recorded durably before
/// it reads a file and kept for good: in every catch-up (the first, one resuming it after a
/// kill, every later one) a file the inventory does not hold that has not changed since that
/// moment is history, and anything written, renamed or moved in since is new, whether the agent
/// was running or down when it came. So a first scan cut off by a kill or refused a batch by the
/// database, or a folder it could not read, leaves nothing to be pushed by mistake later; and
/// what appears while the agent is down is never taken for history, however many starts the
/// first scan takes. Whether the first catch-up finished is recorded too, for the log and for
/// the operator: safety does not rest on it.
extension AgentDaemon {
    /// At start, before any catch-up scan: sets `Ingest.historyBefore` to when the first
    /// catch-up began (recording now, if it never has), and says whether this start's catch-up
    /// is (still) the first. A store that cannot say is taken as a first start from now: at
    /// worst files are indexed without firing, never an archive pushed by mistake.
    func beginFirstStart(log watchLog: Logger) -> Bool {
        do {
            if try store.firstCatchUpFinished() != nil {
                // nil for a database an agent of an earlier version made: nothing is history.
                ingest.historyBefore.value = try store.firstCatchUpBegan()
                return false
            }
        } catch {
            watchLog.error("cannot read whether the first catch-up finished; this catch-up fires no rules for files unchanged since now", ["error": error])
        }
        let now = Self.fileSystemNow()
        var began = now
        do { began = try store.beginFirstCatchUp(now: now) } catch {
            watchLog.error(
                "first start: cannot record when the first catch-up began; if this one is cut off, files written before the next start are taken as history",
                ["error": error])
        }
        ingest.historyBefore.value = began
        watchLog.info(
            began < now
                ? "first start: resuming the first catch-up; files unchanged since it began are history, indexed without firing rules; later ones fire; use `consort backfill` to apply rules to history"
                : "first start: indexing the files of history without firing rules; use `consort backfill` to apply rules to history",
            ["roots": configuration.watches.map(\.path).joined(separator: ","), "history_before": Self.timestamp(began)])
        return true
    }

    /// What one catch-up scan did, for its closing lines.
    struct CatchUpOutcome {
        /// Files taken as history (`Ingest.isHistory`), and of those changed within
        /// `Ingest.nearBeginSeconds` before the line (a file server's clock behind this one's
        /// could make a new file look like history).
        var history = 0, nearBegin = 0
        /// Files read but not recorded (the database refused their batch, or could not be asked):
        /// taken again by the next scan.
        var left = 0
        /// Folders or files the scanner could not read (each logged as a warning as it met it).
        var unreadable = 0
        var stopped = false
    }

    /// After a catch-up scan. The first one is recorded as finished once it has walked everything
    /// it could: what it could not take (files refused, folders unreadable) is taken by a later
    /// scan, and as history still when unchanged since the line, so waiting for it would only
    /// keep every later start a first start — and then nothing written during a stop would fire.
    func finishCatchUp(_ outcome: CatchUpOutcome, first: Bool, log watchLog: Logger) {
        let line = ingest.historyBefore.value.map(Self.timestamp) ?? ""
        let fields: KeyValuePairs<String, Any> = [
            "history_files": outcome.history, "files_left": outcome.left, "unreadable": outcome.unreadable, "history_before": line,
        ]
        if outcome.nearBegin > 0 {
            watchLog.warning(
                "\(outcome.nearBegin) files taken as history had changed within \(Int(Ingest.nearBeginSeconds)) s before the first catch-up began: if the file server's clock runs behind this host's, some may be new; compare the clocks, and use `consort backfill` for any that should have been sent",
                ["near_line": outcome.nearBegin, "history_before": line])
        }
        if outcome.left > 0 || outcome.unreadable > 0 {
            watchLog.warning(
                "catch-up: \(outcome.left) files could not be recorded and \(outcome.unreadable) folders or files could not be read (see the warnings above); a later scan takes them, as history, without firing rules, if they have not changed since the first catch-up began",
                fields)
        }
        guard first else {
            if outcome.history > 0 {
                watchLog.info(
                    "catch-up: \(outcome.history) files unchanged since the first catch-up began were found now and indexed as history without firing rules; use `consort backfill` to apply rules to them",
                    fields)
            }
            return
        }
        guard !outcome.stopped else {
            watchLog.warning("first start: stopped before the catch-up finished; the next start goes on, and files unchanged since it began are still history", fields)
            return
        }
        do {
            try store.recordFirstCatchUp(files: outcome.history, now: clock.now)
        } catch {
            watchLog.error("first start: cannot record that the first catch-up finished; the next start scans as a first start again (with the same line)", ["error": error])
            return
        }
        watchLog.info("first start: indexed \(outcome.history) files of history without firing rules; use `consort backfill` to apply rules to history", fields)
    }

    static func timestamp(_ seconds: Double) -> String {
        ISO8601DateFormatter.string(from: Date(timeIntervalSince1970: seconds), timeZone: TimeZone(identifier: "UTC")!, formatOptions: [.withInternetDateTime, .withFractionalSeconds])
    }

    /// The clock the kernel stamps file times with (CLOCK_REALTIME_COARSE, up to a tick behind
    /// the precise clock): a file written after this reads as changed at or after it.
    static func fileSystemNow() -> Double {
        var now = timespec()
        clock_gettime(CLOCK_REALTIME_COARSE, &now)
        return Double(now.tv_sec) + Double(now.tv_nsec) / 1e9
    }
}
