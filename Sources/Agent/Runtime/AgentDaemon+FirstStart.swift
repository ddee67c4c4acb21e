import Foundation
import Platform

#if canImport(Glibc)
    import Glibc
#endif

/// The first start over an existing archive (issue 23). A trust that installs Consort over ten
/// years of archive must not push ten years to whoever its rules name: the agent's first
/// catch-up scan indexes and announces what it finds without firing rules, and the studies it
/// indexes never fire their study-stable rules by the timer. Files that arrive while it runs
/// (the watcher's, and any the scan finds changed since it began) fire as usual, and once it has
/// finished — recorded in the state database — every later start treats what appeared while
/// the agent was stopped as new. Applying rules to history is `consort backfill`.
extension AgentDaemon {
    /// At start, before the catch-up scan: true (and `Ingest.historyBefore` set to now) when no
    /// first catch-up ever finished. A store that cannot say is taken as a first start: at
    /// worst history is indexed without firing, never an archive pushed by mistake.
    func beginFirstStart(log watchLog: Logger) -> Bool {
        do {
            if try store.firstCatchUpFinished() != nil { return false }
        } catch {
            watchLog.error("cannot read whether the first catch-up finished; this catch-up fires no rules for what it finds", ["error": error])
        }
        ingest.historyBefore.value = Self.fileSystemNow()
        watchLog.info(
            "first start: indexing the files of history without firing rules; use `consort backfill` to apply rules to history",
            ["roots": configuration.watches.map(\.path).joined(separator: ",")])
        return true
    }

    /// After the first catch-up scan: recorded as finished when it took every file it found
    /// (stopped, or with files left for a later scan, the next start is the first again).
    func finishFirstStart(history: Int, complete: Bool, log watchLog: Logger) {
        guard complete else {
            watchLog.warning("first start: the catch-up did not finish; the next start indexes the rest of history without firing rules", ["history_files": history])
            return
        }
        do {
            try store.recordFirstCatchUp(files: history, now: Date().timeIntervalSince1970)
        } catch {
            watchLog.error("first start: cannot record that the first catch-up finished; the next start is a first start again", ["error": error])
            return
        }
        ingest.historyBefore.value = nil
        watchLog.info(
            "first start: indexed \(history) files of history without firing rules; use `consort backfill` to apply rules to history",
            ["history_files": history])
    }

    /// The clock the kernel stamps file times with (CLOCK_REALTIME_COARSE, up to a tick behind
    /// the precise clock): a file written after this reads as changed at or after it.
    static func fileSystemNow() -> Double {
        var now = timespec()
        clock_gettime(CLOCK_REALTIME_COARSE, &now)
        return Double(now.tv_sec) + Double(now.tv_nsec) / 1e9
    }
}
