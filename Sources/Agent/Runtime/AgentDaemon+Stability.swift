import ArchiveWatch
import DICOM
import DICOMweb
import Foundation
import Platform
import Routing

/// Study stability: when a study is whole (its sender's manifest satisfied) or quiet long enough,
/// its study-stable rules fire.
extension AgentDaemon {
    // MARK: - Study stability

    /// Wakes the stability loop now (an instance or a manifest arrived: a study may be whole).
    func nudgeStability() { stability.nudge() }

    /// Once a second, or when nudged: studies whose senders' manifests are now all here fire
    /// their study-stable rules at once; studies quiet long enough (and not known to be missing
    /// instances) fire theirs, each quiet period once, until a new instance arrives.
    func stabilityTurn() {
        telemetry.beat("stability")
        let now = clock.now
        if now - stateLock.withLock({ expiryWarned }) >= 86_400 { warnOfExpiry(now: now) }
        let periods = stateLock.withLock { quietPeriods }
        do {
            for study in try store.completedManifests(now: now) {
                let due = periods.filter { $0 > study.stableFired }
                try fireStable(study, due: due, reached: periods.last ?? 0, now: now, why: "its sender's manifest is satisfied: every instance is here")
            }
            guard let shortest = periods.first, let longest = periods.last else { return }
            for study in try store.quietStudies(now: now, minimum: Double(shortest), maximumFired: longest) {
                let due = periods.filter { $0 > study.stableFired && Double($0) <= study.quietFor }
                guard let reached = due.last else { continue }
                try fireStable(study, due: due, reached: reached, now: now, why: "quiet for \(Int(study.quietFor)) s")
            }
        } catch {
            log.error("cannot check study stability", ["error": error])
        }
    }

    /// The study-stable rules of the `due` quiet periods fire for a study; recorded as fired up
    /// to `reached`, with the jobs they planned, in one transaction.
    func fireStable(_ study: AgentStore.QuietStudy, due: [Int], reached: Int, now: Double, why: String) throws {
        // The study's header from its first instance, or another if that one is gone.
        var header: DataSet?
        var failure: DICOMError?
        let candidates = [study.samplePath] + ((try? store.instances(ofStudy: study.uid).prefix(5).map(\.path)) ?? [])
        for path in candidates where header == nil {
            do { header = try DICOMFile.read(path: path).dataSet } catch { failure = error }
        }
        guard let header else {
            log.warning("cannot read a study's header for its stable rules", ["study": study.uid, "file": study.samplePath, "error": failure?.description ?? ""])
            // An I/O error may pass: tried again at the next tick. Otherwise the study's files
            // are not readable DICOM any more: nothing to route.
            if failure?.code != .io { try store.recordStable(study: study.uid, quiet: reached, jobs: [], now: now) }
            return
        }
        let origin: Origin = study.origin == "local" ? .local : .received(from: study.origin)
        let set = rules.current
        let actions = due.isEmpty ? [] : rules.engine.evaluate(RoutingEvent(kind: .studyStable, header: header, origin: origin, site: configuration.trust, now: Int64(now)))
            .filter { action in
                guard let rule = set.rules.first(where: { $0.name == action.rule }), case .studyStable(let q) = rule.trigger else { return false }
                return due.contains(q)
            }
        let jobs = Ingest.jobs(for: actions, now: now, log: log)
        try store.recordStable(study: study.uid, quiet: reached, jobs: jobs, now: now)
        if !jobs.isEmpty {
            log.named("rules").info("study stable: jobs queued", ["study": study.uid, "why": why, "jobs": jobs.map { "\($0.rule)→\($0.destination)" }.joined(separator: ",")])
            queue.nudge()
        }
    }
}
