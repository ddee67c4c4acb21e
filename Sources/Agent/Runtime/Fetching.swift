import Audit
import DICOM
import DICOMweb
import Exchange
import Foundation
import Platform
import Routing
import Spool
import Transport

/// Prefetch and gather, end to end, in the spool like pushes (the same durability, retries,
/// windows and operator commands):
///
/// - a `prefetch` job (a `prefetch priors` rule fired here) asks the coordinator who this study's
///   patient is and where the patient's studies are, picks the priors the rule asks for (same
///   modality / body part, within the period, at most K, newest first), skips what this site
///   holds or has queued, and queues one `fetch` job per prior, from a trust holding it;
/// - a `gather` job (an MDT list's patient) does the same for every study of the patient within
///   the period: the host fetches (see README: one place sees the whole list's progress);
/// - a `fetch` job retrieves a study by WADO-RS from the trust holding it, each instance checked
///   whole and stored in `inbound` as `<Study>/<SOP>.dcm`, recorded in the inventory with its
///   origin, audited; the announcer then tells the coordinator this site holds it too.
///
/// The coordinator being down defers prefetches and gathers (retried with backoff) and never
/// stops pushes; an identity conflict at the coordinator holds the job for a person.
final class Fetching: @unchecked Sendable {
    struct Context {
        let store: AgentStore
        let coordinator: CoordinatorClient?
        let trust: String
        let inbound: String
        let policy: RetryPolicy
        let audit: AuditLog
        let log: Logger
        /// Peers by name: their DICOMweb base URL and TLS settings.
        let peers: @Sendable () -> [String: Delivery.Target]
        /// The peer's circuit (shared with pushes to it): may a fetch from it start now, and
        /// what the fetch learnt.
        let mayFetch: @Sendable (String, Double) -> Bool
        let fetchEnded: @Sendable (String, Delivery.FetchEvidence, Double) -> Void
        /// Records instances placed in `inbound` in the inventory, with their origin.
        let record: @Sendable ([StowIngest.PlacedInstance], String) throws -> Void
        let announced: @Sendable () -> Void
        /// Announces what is not announced yet, now, before a prefetch asks about its study.
        let announceNow: @Sendable () -> Void
    }

    let context: Context
    static let concurrency = 3
    private let lock = NSCondition()
    private var running = Set<Int64>()
    /// When each plan first found a trust still announcing (see `plan`).
    private var waitingSince: [Int64: Double] = [:]
    private var stopping = false
    private var nudged = false
    private var generator = SystemRandomNumberGenerator()

    init(_ context: Context) { self.context = context }

    func start() {
        let thread = Thread { [self] in loop() }
        thread.name = "consort-fetch"
        thread.start()
    }

    func nudge() { lock.withLock { nudged = true; lock.broadcast() } }

    /// Stops taking jobs and waits (bounded) for those running; they resume at the next start.
    func stop(deadline: Double) {
        lock.withLock { stopping = true; lock.broadcast() }
        let end = MonotonicClock.now + deadline
        lock.lock()
        while !running.isEmpty && MonotonicClock.now < end { _ = lock.wait(until: Date().addingTimeInterval(0.05)) }
        lock.unlock()
    }

    private func loop() {
        while true {
            lock.lock()
            if !nudged && !stopping { _ = lock.wait(until: Date().addingTimeInterval(1)) }
            nudged = false
            let done = stopping
            lock.unlock()
            if done { return }
            let now = Date().timeIntervalSince1970
            let minute = Delivery.minuteOfDay(now)
            guard let jobs = try? context.store.runnableFetchJobs(now: now) else { continue }
            for job in jobs {
                // A window closed now: the job waits for it.
                if let text = job.window, let window = Spool.TimeWindow(text), !window.contains(minuteOfDay: minute) { continue }
                let start: Bool = lock.withLock {
                    guard !stopping, running.count < Self.concurrency, !running.contains(job.id) else { return false }
                    // A fetch waits while its source's circuit is open (asked last: a yes may
                    // make this fetch the probe, which must then run).
                    if job.kind == "fetch", !context.mayFetch(job.destination, Date().timeIntervalSince1970) { return false }
                    running.insert(job.id)
                    return true
                }
                guard start else { continue }
                let thread = Thread { [self] in
                    run(job)
                    lock.withLock {
                        running.remove(job.id)
                        nudged = true
                        lock.broadcast()
                    }
                }
                thread.name = "consort-\(job.kind)"
                thread.start()
            }
        }
    }

    /// A failure worth retrying: deferred with backoff (the job's tries count it); `soon`: a
    /// second, for a state that passes by itself (an announcement on its way).
    private func postpone(_ job: AgentStore.Job, _ reason: String, long: Bool = false, soon: Bool = false, after seconds: Double? = nil, notATry: Bool = false) {
        let delay = seconds ?? (soon ? 1 : long ? context.policy.maximumDelay : context.policy.delay(afterFailures: max(1, job.attempts + 1), using: &generator))
        try? context.store.postpone(job: job.id, until: Date().timeIntervalSince1970 + delay, reason: reason, notATry: notATry)
        context.log.warning("\(job.kind) deferred", ["job": job.id, "study": job.study, "retry_in": String(format: "%.0f s", delay), "reason": reason])
    }

    private func run(_ job: AgentStore.Job) {
        let now = Date().timeIntervalSince1970
        do {
            // Held or dropped since it was picked: not started.
            guard try context.store.start(job: job.id, now: now) else {
                if job.kind == "fetch" { context.fetchEnded(job.destination, .noContact, Date().timeIntervalSince1970) }
                return
            }
        } catch {
            context.log.error("cannot mark a job active", ["job": job.id, "error": error])
            if job.kind == "fetch" { context.fetchEnded(job.destination, .noContact, Date().timeIntervalSince1970) }
            return
        }
        switch job.kind {
        case "fetch": fetch(job)
        default: plan(job)
        }
    }

    struct Query {
        var sources: Set<String>
        var sameModality = false, sameBodyPart = false
        var withinDays: Int?
        var atMost: Int?
        var nhs: String?

        init(_ detail: String?) {
            let object = detail.flatMap { try? JSONSerialization.jsonObject(with: Data($0.utf8)) as? [String: Any] } ?? [:]
            sources = Set(object["sources"] as? [String] ?? [])
            sameModality = object["sameModality"] as? Bool ?? false
            sameBodyPart = object["sameBodyPart"] as? Bool ?? false
            withinDays = (object["withinDays"] as? NSNumber)?.intValue
            atMost = (object["atMost"] as? NSNumber)?.intValue
            nhs = object["nhs"] as? String
        }
    }

    // MARK: - Planning (prefetch, gather)

    private func plan(_ job: AgentStore.Job) {
        guard let coordinator = context.coordinator else {
            postpone(job, "no coordinator in the configuration (add: coordinator https://HOST:8444): \(job.kind) cannot find the patient's studies", long: true)
            return
        }
        let query = Query(try? context.store.detail(ofJob: job.id))
        var nhs = query.nhs
        var trigger: AgentStore.Announcement?
        do {
            if job.kind == "prefetch" {
                // Who the patient is: the coordinator's word (it applies each trust's rule for
                // where the NHS number is, and validates it).
                trigger = try context.store.study(job.study)
                // The trigger may not be announced yet (the rule fired on its first instance):
                // announce it first, rather than ask, hear "unknown" and wait a retry.
                context.announceNow()
                let study = try coordinator.call("GET", "/v1/studies/\(job.study)", purpose: job.purpose)
                if study["conflict"] as? Bool == true {
                    return held(job, "an IDENTITY CONFLICT about this study is held at the coordinator for a person")
                }
                nhs = study["nhs"] as? String
                guard nhs != nil else {
                    try context.store.finishPlanning(job: job.id, note: "no valid NHS number for the study's patient at the coordinator: nothing prefetched", now: Date().timeIntervalSince1970)
                    context.log.warning("prefetch: the study's patient has no valid NHS number at the coordinator; nothing to prefetch", ["job": job.id, "study": job.study])
                    return
                }
            }
            guard let nhs else {
                try context.store.finishPlanning(job: job.id, note: "no NHS number to gather for", now: Date().timeIntervalSince1970)
                return
            }
            try context.audit.record(AuditEntry(who: context.trust, action: "lookup", nhs: nhs, study: job.kind == "prefetch" ? job.study : nil, why: "\(job.purpose) (rule \(job.rule))"), durable: false)
            let answer = try coordinator.call("GET", "/v1/patients/\(nhs)/studies", purpose: job.purpose)
            // A trust still announcing may hold priors the answer lacks: wait for it a while
            // rather than choose from part of the history (and fetch an older study instead of
            // the one the rule wants); then plan with what is known, and say so.
            let lagging = Self.lagging(answer["announcing"], sources: query.sources, own: context.trust)
            // Counted from the first answer that named a trust still announcing, not from the
            // job's creation: a job that waited for its window, or for the coordinator to come
            // back, must still wait for the trusts catching up after it. (In memory: after a
            // restart the wait starts again, still bounded.)
            let now = Date().timeIntervalSince1970
            let since = lagging.isEmpty ? now : lock.withLock { waitingSince[job.id, default: now] }
            let waited = now - since
            if !lagging.isEmpty && waited < Self.patience {
                lock.withLock {
                    waitingSince[job.id] = since
                    waitingSince = Self.pruned(waitingSince, now: now)
                }
                postpone(job, "waiting for announcements before choosing: \(lagging.joined(separator: "; ")) (plans with what is known in \(Int(Self.patience - waited)) s at the latest)", after: Self.recheck, notATry: true)
                return
            }
            lock.withLock { waitingSince[job.id] = nil }
            let studies = answer["studies"] as? [[String: Any]] ?? []
            let chosen = choose(studies, query: query, trigger: trigger, excluding: job.kind == "prefetch" ? job.study : nil)
            var queued: [String] = []
            var here = 0
            for (study, source) in chosen {
                // The fetch carries the patient it is for: what arrives is checked against it.
                let fetch = AgentStore.NewJob(
                    kind: "fetch", destination: source, rule: job.rule, purpose: job.purpose, priority: job.priority, window: job.window, deadline: job.deadline,
                    detail: JSON.object([("nhs", .string(nhs))]).serialized())
                if try context.store.queueFetch(fetch, study: study, now: Date().timeIntervalSince1970) {
                    queued.append("\(study) from \(source)")
                } else {
                    here += 1
                }
            }
            var note = "\(queued.count) stud\(queued.count == 1 ? "y" : "ies") queued to fetch (\(here) already here or queued) of \(studies.count) known for the patient"
            if !lagging.isEmpty {
                note += "; planned while announcements were still coming (\(lagging.joined(separator: "; "))): studies held there may be missing"
                context.log.warning("\(job.kind) planned without waiting longer for every trust's announcements: priors may be missing", ["job": job.id, "lagging": lagging.joined(separator: "; ")])
            }
            try context.store.finishPlanning(job: job.id, note: note, now: Date().timeIntervalSince1970)
            context.log.info("\(job.kind) planned", ["job": job.id, "rule": job.rule, "fetches": queued.joined(separator: "; "), "already": here])
            nudge()
        } catch let failure as CoordinatorClient.Failure {
            // A conflict is a patient held for a person, not a failure; the rest by its class.
            if failure.status == 409 {
                held(job, "an IDENTITY CONFLICT about this patient is held at the coordinator for a person: \(failure.message)")
            } else if failure.status == 404 {
                postpone(job, "the coordinator does not know the study yet (its announcement is on its way)", soon: job.attempts < 30)
            } else {
                switch FailureClassifier.failure(coordinatorStatus: failure.status) {
                case .configuration: postpone(job, "the coordinator refused: \(failure.message) (a configuration fault)", long: true)
                case .transient, .local: postpone(job, "\(failure)")
                case .refused: postpone(job, "\(failure) (the coordinator will not answer this; a person should look)", long: true)
                }
            }
        } catch {
            postpone(job, "\(error)")
        }
    }

    /// How long a prefetch or gather waits for trusts still announcing, from its creation;
    /// and how often it asks again meanwhile (each ask is a lookup, audited at both ends).
    static let patience = 300.0
    static let recheck = 5.0

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

    private func held(_ job: AgentStore.Job, _ reason: String) {
        try? context.store.holdForAPerson(job: job.id, reason: reason)
        context.log.error("\(job.kind) HELD for a person: identity conflict", ["job": job.id, "study": job.study, "reason": reason])
    }

    /// The studies a query picks, newest first, each with the trust to fetch it from.
    func choose(_ studies: [[String: Any]], query: Query, trigger: AgentStore.Announcement?, excluding: String?) -> [(String, String)] {
        let modality = trigger?.facts.modality?.uppercased()
        let bodyPart = trigger?.facts.bodyPart?.uppercased()
        var oldest: String?
        if let days = query.withinDays {
            let reference = trigger?.facts.date.flatMap(CalendarDay.date) ?? Date()
            oldest = CalendarDay.text(reference.addingTimeInterval(-Double(days) * 86_400))
        }
        var out: [(String, String)] = []
        let sorted = studies.sorted { ($0["date"] as? String ?? "") > ($1["date"] as? String ?? "") }
        for study in sorted {
            guard let uid = study["study"] as? String, uid != excluding else { continue }
            if query.sameModality, let modality, !(study["modalities"] as? [String] ?? []).contains(where: { $0.uppercased() == modality }) { continue }
            if query.sameBodyPart, let bodyPart, (study["bodyPart"] as? String)?.uppercased() != bodyPart { continue }
            if let oldest, (study["date"] as? String ?? "") < oldest { continue }
            let locations = (study["locations"] as? [[String: Any]] ?? []).filter { location in
                guard let trust = location["trust"] as? String, trust != context.trust else { return false }
                return query.sources.isEmpty || query.sources.contains(trust)
            }
            guard !locations.isEmpty else { continue }
            let source = (locations.first { $0["complete"] as? Bool == true } ?? locations[0])["trust"] as? String ?? ""
            out.append((uid, source))
            if let most = query.atMost, out.count >= most { break }
        }
        return out
    }

    // MARK: - Fetching a study

    /// Fetches the study, then tells the source's circuit what the fetch learnt of the peer.
    private func fetch(_ job: AgentStore.Job) {
        let evidence = retrieve(job)
        context.fetchEnded(job.destination, evidence, Date().timeIntervalSince1970)
    }

    private func retrieve(_ job: AgentStore.Job) -> Delivery.FetchEvidence {
        guard let peer = context.peers()[job.destination] else {
            postpone(job, "no address for \(job.destination): add a peer line to the configuration (a configuration fault)", long: true)
            return .noContact
        }
        let outcome: WadoRetrieval.Outcome
        let expected = Query(try? context.store.detail(ofJob: job.id)).nhs
        do {
            let client = try HTTPClient(.init(tls: peer.tls))
            let retrieval = try WadoRetrieval(out: context.inbound, study: job.study, base: peer.url)
            let store = context.store
            retrieval.heldElsewhere = { sop in try? store.path(ofInstance: sop) }
            retrieval.headers = [(ConsortField.purpose, job.purpose)]
            // Patient safety: an instance that names another patient (by a valid NHS number
            // where the default places it) than the one the study was fetched for is refused
            // before it is placed, and the job is held for a person.
            if let expected {
                retrieval.admitInstance = { header in
                    // Every place a trust may keep it (the holder's own exception is the
                    // coordinator's to know): any valid NHS number that is not the patient's.
                    let facts = Ingest.facts(of: header, study: job.study)
                    var named: [NHSNumber] = []
                    if case .valid(let number) = Announcer.nhs(facts) { named.append(number) }
                    if let first = facts.otherPatientIDValues.first, let number = NHSNumber(first) { named.append(number) }
                    guard let other = named.first(where: { $0.digits != expected }) else { return nil }
                    return "PATIENT MISMATCH: names NHS number \(other.digits), not \(expected), the patient it was fetched for"
                }
            }
            outcome = try retrieval.run(with: client)
        } catch let failure as HTTPClientError where failure.callbackError == nil {
            // By the class of the failure, as a push decides (`RetryPolicy.afterFailure`):
            // refused, reset, timed out count against the peer; our own side failing does not.
            let decision = context.policy.afterFailure(FailureClassifier.failure(failure), failures: max(1, job.attempts + 1), using: &generator)
            postpone(job, "\(failure)", after: decision.delay)
            return decision.countsAgainstPeer ? .unwell("\(failure)") : .noContact
        } catch {
            // A local fault (the inbound folder full or unwritable, a broken answer's part):
            // not evidence that the peer is down.
            postpone(job, "\(error)")
            return .noContact
        }
        do {
            // An instance the patient check did not admit (`admitInstance` above): typed, never
            // found by reading the ingest's log.
            if let ingest = outcome.ingest, let mismatch = ingest.results.lazy.compactMap({ result -> String? in
                if case .notAdmitted(_, let why) = result { return why } else { return nil }
            }).first {
                if !ingest.placed.isEmpty { try context.record(ingest.placed, job.destination) }
                held(job, "the study from \(job.destination) is not all the patient's: \(mismatch)")
                try? context.audit.record(AuditEntry(who: context.trust, action: "refused", nhs: expected, study: job.study, why: "\(job.purpose) (rule \(job.rule))", detail: mismatch))
                return .answered
            }
            switch outcome.status {
            case 200:
                guard let ingest = outcome.ingest, let response = outcome.response else {
                    postpone(job, "an empty answer")
                    return .answered
                }
                if !response.failed.isEmpty && ingest.placed.isEmpty {
                    try context.store.fail(job: job.id, reason: "every instance from \(job.destination) was refused: \(ingest.log.first ?? "")", now: Date().timeIntervalSince1970)
                    return .answered
                }
                try context.record(ingest.placed, job.destination)
                try context.store.finishFetch(job: job.id, instances: ingest.placed.map { ($0.sopInstanceUID, $0.path, $0.size) }, now: Date().timeIntervalSince1970)
                let facts = ingest.placed.first.map { Ingest.facts(of: $0.header, study: job.study) }
                var nhs: String?
                if let facts, case .valid(let number) = Announcer.nhs(facts) { nhs = number.digits }
                try context.audit.record(AuditEntry(
                    who: context.trust, action: "fetch", nhs: nhs, patient: facts?.patientID, study: job.study, why: "\(job.purpose) (rule \(job.rule))",
                    detail: "\(ingest.placed.count) instances from \(job.destination); \(response.failed.count) refused"))
                context.log.info("fetched", ["job": job.id, "study": job.study, "from": job.destination, "instances": ingest.placed.count, "refused": response.failed.count])
                context.announced()
            case 404:
                try context.store.fail(job: job.id, reason: "\(job.destination) does not hold the study (any more)", now: Date().timeIntervalSince1970)
                context.log.error("fetch failed: the source does not hold the study", ["job": job.id, "study": job.study, "from": job.destination])
            default:
                switch FailureClassifier.failure(wadoStatus: outcome.status) {
                case .configuration:
                    postpone(job, "\(job.destination) refused the retrieve: \(outcome.errorText) (an agreement, membership or certificate fault)", long: true)
                case .transient:
                    postpone(job, "\(job.destination) answered \(outcome.status): \(outcome.errorText)")
                    return .unwell("answered \(outcome.status) to a retrieve")
                case .refused, .local:
                    try context.store.fail(job: job.id, reason: "\(job.destination) answered \(outcome.status): \(outcome.errorText)", now: Date().timeIntervalSince1970)
                    context.log.error("fetch failed: the source refused the retrieve", ["job": job.id, "study": job.study, "from": job.destination, "status": outcome.status])
                }
            }
        } catch {
            postpone(job, "\(error)")
        }
        return .answered
    }
}

/// MDT lists (`lists` folder, CSV: nhs_number,meeting_date,host): each new or changed file is
/// read once it has not changed for a poll, its entries run through the list rules, and the
/// gather jobs they plan are queued, to start their lead time before the meeting.
final class ListWatcher: @unchecked Sendable {
    let folder: String
    let store: AgentStore
    let rules: RuleBook
    let trust: String
    let log: Logger
    let queued: @Sendable () -> Void
    private var seen: [String: (size: Int, mtime: Double)] = [:]
    private let stopping = LockedFlag()

    init(folder: String, store: AgentStore, rules: RuleBook, trust: String, log: Logger, queued: @escaping @Sendable () -> Void) {
        self.folder = folder
        self.store = store
        self.rules = rules
        self.trust = trust
        self.log = log
        self.queued = queued
    }

    func start() {
        let thread = Thread { [self] in
            while !stopping.isSet {
                scan()
                Thread.sleep(forTimeInterval: 1)
            }
        }
        thread.name = "consort-lists"
        thread.start()
    }

    func stop() { stopping.set() }

    func scan() {
        let names = ((try? FileManager.default.contentsOfDirectory(atPath: folder)) ?? []).filter { $0.lowercased().hasSuffix(".csv") && !$0.hasPrefix(".") }
        var candidates: [(path: String, size: Int, mtime: Double)] = []
        for name in names {
            let path = folder + "/" + name
            var info = stat()
            guard stat(path, &info) == 0 else { continue }
            let now = (size: Int(info.st_size), mtime: Double(info.st_mtim.tv_sec) + Double(info.st_mtim.tv_nsec) / 1e9)
            // Taken once unchanged since the last look (a list still being written waits).
            if let before = seen[path], before == now { candidates.append((path, now.size, now.mtime)) }
            seen[path] = now
        }
        guard !candidates.isEmpty, let done = try? store.unchanged(candidates) else { return }
        for candidate in candidates where !done.contains(candidate.path) { take(candidate) }
    }

    private func take(_ file: (path: String, size: Int, mtime: Double)) {
        let now = Date().timeIntervalSince1970
        guard let data = FileManager.default.contents(atPath: file.path), let text = String(data: data, encoding: .utf8) else {
            try? store.recordFile(path: file.path, size: file.size, mtime: file.mtime, problem: "cannot read the MDT list as UTF-8 text", now: now)
            return
        }
        let set = rules.current
        let (entries, problems) = MDTList.parse(text, members: Set(set.members.map(\.code)))
        for problem in problems { log.error("MDT list line refused", ["list": file.path, "problem": problem.description]) }
        var jobs = 0
        for entry in entries where entry.host == trust {
            let actions = rules.engine.evaluate(RoutingEvent(kind: .listArrived(entry), header: nil, origin: .local, site: trust, now: Int64(now)))
            let planned = Ingest.jobs(for: actions, now: now, log: log, nhs: entry.nhsNumber)
            guard !planned.isEmpty else { continue }
            do {
                try store.queue(planned, study: "mdt:\(entry.nhsNumber):\(entry.meetingDate)", now: now)
                jobs += planned.count
            } catch {
                log.error("cannot queue the list's gather jobs", ["list": file.path, "error": error])
                return
            }
        }
        try? store.recordFile(path: file.path, size: file.size, mtime: file.mtime, problem: nil, now: now)
        log.info("MDT list taken", ["list": file.path, "patients": entries.count, "gather_jobs": jobs, "refused_lines": problems.count])
        if jobs > 0 { queued() }
    }
}
