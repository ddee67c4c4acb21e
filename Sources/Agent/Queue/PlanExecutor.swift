import Audit
import DICOM
import Exchange
import Foundation
import Platform
import Spool

/// Plans a prefetch or a gather: asks the coordinator who the study's patient is (a prefetch)
/// and where the patient's studies are, picks what the rule asks for (same modality / body part,
/// within the period, at most K, newest first), skips what this site holds or has queued, and
/// queues one `fetch` per study, from a trust that holds it.
///
/// The coordinator being down defers the plan (retried with backoff) and never stops pushes; an
/// identity conflict at the coordinator holds the job for a person.
final class PlanExecutor: JobExecutor, @unchecked Sendable {
    let store: AgentStore
    let coordinator: CoordinatorClient?
    let trust: String
    let audit: AuditLog
    let clock: any Clock
    let log: Logger
    /// Announces what is not announced yet, now, before a prefetch asks about its study.
    let announceNow: @Sendable () -> Void
    private let lock = NSLock()
    /// When each plan first found a trust still announcing (see `execute`).
    private var waitingSince: [Int64: Double] = [:]

    init(store: AgentStore, coordinator: CoordinatorClient?, trust: String, audit: AuditLog, clock: any Clock, log: Logger, announceNow: @escaping @Sendable () -> Void) {
        self.store = store
        self.coordinator = coordinator
        self.trust = trust
        self.audit = audit
        self.clock = clock
        self.log = log
        self.announceNow = announceNow
    }

    /// How long a plan waits for trusts still announcing, and how often it asks again meanwhile
    /// (each ask is a lookup, audited at both ends).
    static let patience = 300.0
    static let recheck = 5.0

    func execute(_ job: AgentStore.Job, _ worker: Worker) -> JobOutcome {
        guard let coordinator else {
            return .failed(.configuration, reason: "no coordinator in the configuration (add: coordinator https://HOST:8444): \(job.kind) cannot find the patient's studies")
        }
        let search = (try? store.search(ofJob: job.id)) ?? PriorSearch()
        var nhs = search.nhs
        var trigger: AgentStore.Announcement?
        do {
            if job.kind == .prefetch {
                // Who the patient is: the coordinator's word (it applies each trust's rule for
                // where the NHS number is, and validates it).
                trigger = try store.study(job.study)
                // The trigger may not be announced yet (the rule fired on its first instance):
                // announce it first, rather than ask, hear "unknown" and wait a retry.
                announceNow()
                let study = try coordinator.call("GET", "/v1/studies/\(job.study)", purpose: job.purpose)
                if study["conflict"] as? Bool == true {
                    return .heldForAPerson(reason: "an IDENTITY CONFLICT about this study is held at the coordinator for a person")
                }
                nhs = study["nhs"] as? String
                guard nhs != nil else {
                    try store.finishPlanning(job: job.id, note: "no valid NHS number for the study's patient at the coordinator: nothing prefetched", now: clock.now)
                    log.warning("prefetch: the study's patient has no valid NHS number at the coordinator; nothing to prefetch", ["job": job.id, "study": job.study])
                    return .finished
                }
            }
            guard let nhs else {
                try store.finishPlanning(job: job.id, note: "no NHS number to gather for", now: clock.now)
                return .finished
            }
            try audit.record(AuditEntry(who: trust, action: "lookup", nhs: nhs, study: job.kind == .prefetch ? job.study : nil, why: "\(job.purpose) (rule \(job.rule))"), durable: false)
            let answer = try coordinator.call("GET", "/v1/patients/\(nhs)/studies", purpose: job.purpose)
            // A trust still announcing may hold priors the answer lacks: wait for it a while
            // rather than choose from part of the history (and fetch an older study instead of
            // the one the rule wants); then plan with what is known, and say so.
            let lagging = Self.lagging(answer["announcing"], sources: Set(search.sources), own: trust)
            // Counted from the first answer that named a trust still announcing, not from the
            // job's creation: a job that waited for its window, or for the coordinator to come
            // back, must still wait for the trusts catching up after it. (In memory: after a
            // restart the wait starts again, still bounded.)
            let now = clock.now
            let since = lagging.isEmpty ? now : lock.withLock { waitingSince[job.id, default: now] }
            let waited = now - since
            if !lagging.isEmpty && waited < Self.patience {
                lock.withLock {
                    waitingSince[job.id] = since
                    waitingSince = Self.pruned(waitingSince, now: now)
                }
                return .waits(
                    seconds: Self.recheck, reason: "waiting for announcements before choosing: \(lagging.joined(separator: "; ")) (plans with what is known in \(Int(Self.patience - waited)) s at the latest)",
                    countsAsTry: false)
            }
            lock.withLock { waitingSince[job.id] = nil }
            let studies = answer["studies"] as? [[String: Any]] ?? []
            let chosen = choose(studies, search: search, trigger: trigger, excluding: job.kind == .prefetch ? job.study : nil)
            var queued: [String] = []
            var here = 0
            for (study, source) in chosen {
                // The fetch carries the patient it is for: what arrives is checked against it.
                let fetch = AgentStore.NewJob(
                    kind: .fetch, destination: source, rule: job.rule, purpose: job.purpose, priority: job.priority, window: job.window, deadline: job.deadline,
                    search: .patient(nhs))
                if try store.queueFetch(fetch, study: study, now: clock.now) {
                    queued.append("\(study) from \(source)")
                } else {
                    here += 1
                }
            }
            var note = "\(queued.count) stud\(queued.count == 1 ? "y" : "ies") queued to fetch (\(here) already here or queued) of \(studies.count) known for the patient"
            if !lagging.isEmpty {
                note += "; planned while announcements were still coming (\(lagging.joined(separator: "; "))): studies held there may be missing"
                log.warning("\(job.kind) planned without waiting longer for every trust's announcements: priors may be missing", ["job": job.id, "lagging": lagging.joined(separator: "; ")])
            }
            try store.finishPlanning(job: job.id, note: note, now: clock.now)
            log.info("\(job.kind) planned", ["job": job.id, "rule": job.rule, "fetches": queued.joined(separator: "; "), "already": here])
            return .finished
        } catch let failure as CoordinatorClient.Failure {
            // A conflict is a patient held for a person, not a failure; the rest by its class.
            if failure.status == 409 {
                return .heldForAPerson(reason: "an IDENTITY CONFLICT about this patient is held at the coordinator for a person: \(failure.message)")
            }
            if failure.status == 404 {
                let reason = "the coordinator does not know the study yet (its announcement is on its way)"
                return job.attempts < 30 ? .waits(seconds: 1, reason: reason, countsAsTry: true) : .failed(.transient, reason: reason)
            }
            switch FailureClassifier.failure(coordinatorStatus: failure.status) {
            case .configuration: return .failed(.configuration, reason: "the coordinator refused: \(failure.message)")
            case .transient, .local: return .failed(.transient, reason: "\(failure)")
            case .refused: return .failed(.refused, reason: "\(failure) (the coordinator will not answer this; a person should look)")
            }
        } catch {
            return .failed(.transient, reason: "\(error)")
        }
    }

    /// The waits worth remembering. A job dropped, held or failed while it waited for
    /// announcements never plans again to clear its entry; one older than twice the patience says
    /// nothing the job would not find anyway (it has waited long enough, or, back after a hold,
    /// waits once more, still bounded), so it goes: the map holds only jobs waiting now.
    static func pruned(_ waiting: [Int64: Double], now: Double) -> [Int64: Double] {
        waiting.filter { now - $0.value < 2 * patience }
    }

    /// The coordinator's `announcing` list, as reasons: the trusts this job could fetch from
    /// (its rule's sources, never this trust) whose studies may be missing from the answer.
    static func lagging(_ value: Any?, sources: Set<String>, own: String) -> [String] {
        (value as? [[String: Any]] ?? []).compactMap { item in
            guard let trust = item["trust"] as? String, trust != own, sources.isEmpty || sources.contains(trust) else { return nil }
            return item["reason"] as? String ?? "\(trust) is still announcing"
        }
    }

    /// The studies a search picks, newest first, each with the trust to fetch it from.
    func choose(_ studies: [[String: Any]], search: PriorSearch, trigger: AgentStore.Announcement?, excluding: String?) -> [(String, String)] {
        let modality = trigger?.facts.modality?.uppercased()
        let bodyPart = trigger?.facts.bodyPart?.uppercased()
        var oldest: String?
        if let days = search.withinDays {
            let reference = trigger?.facts.date.flatMap(CalendarDay.date) ?? Date(timeIntervalSince1970: clock.now)
            oldest = CalendarDay.text(reference.addingTimeInterval(-Double(days) * 86_400))
        }
        let sources = Set(search.sources)
        var out: [(String, String)] = []
        let sorted = studies.sorted { ($0["date"] as? String ?? "") > ($1["date"] as? String ?? "") }
        for study in sorted {
            guard let uid = study["study"] as? String, uid != excluding else { continue }
            if search.sameModality, let modality, !(study["modalities"] as? [String] ?? []).contains(where: { $0.uppercased() == modality }) { continue }
            if search.sameBodyPart, let bodyPart, (study["bodyPart"] as? String)?.uppercased() != bodyPart { continue }
            if let oldest, (study["date"] as? String ?? "") < oldest { continue }
            // A pull's filters (consort pull).
            if let wanted = search.study, uid != wanted { continue }
            if let asked = search.modality?.uppercased(), !(study["modalities"] as? [String] ?? []).contains(where: { $0.uppercased() == asked }) { continue }
            if let since = search.since, (study["date"] as? String ?? "") < since { continue }
            let locations = (study["locations"] as? [[String: Any]] ?? []).filter { location in
                guard let holder = location["trust"] as? String, holder != trust else { return false }
                return sources.isEmpty || sources.contains(holder)
            }
            guard !locations.isEmpty else { continue }
            let source = (locations.first { $0["complete"] as? Bool == true } ?? locations[0])["trust"] as? String ?? ""
            out.append((uid, source))
            if let most = search.atMost, out.count >= most { break }
        }
        return out
    }
}
