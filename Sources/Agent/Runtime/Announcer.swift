import Audit
import DICOM
import Exchange
import Foundation
import Platform
import Routing

/// Tells the coordinator what this trust holds: every study the inventory has (from the archive,
/// received, or fetched) whose holding the coordinator has not heard as it is now, in batches,
/// once the instances are durable here (they are recorded only after they are). The registry is
/// soft state: when the coordinator answers that it knows fewer of our studies than we have
/// announced (it lost its registry), everything is announced again. Studies no longer held here
/// (their files left the disk: `AgentStore.forget`) are withdrawn (`POST /v1/holdings/withdraw`)
/// before anything is announced, from the store's durable queue. The coordinator being down
/// delays announcements and withdrawals (retried with backoff), and stops nothing else.
final class Announcer: Service, @unchecked Sendable {
    let store: AgentStore
    let client: CoordinatorClient
    let trust: String
    let log: Logger
    /// Each withdrawal sent is audited here (nil: not audited, in tests that make no log).
    let audit: AuditLog?
    static let batch = 500
    private let lock = NSLock()
    /// One announcement at a time (the announcer's loop and a prefetch's `announceNow`): two
    /// interleaved could each read the other's count as a registry that lost studies.
    private let once = NSLock()
    /// Consecutive failed announcements: the loop's pause grows with them (only the loop's
    /// thread touches it).
    private var failures = 0
    private var loop: WakeableLoop?
    private(set) var lastSuccess: Double?
    private(set) var lastError: String?
    /// When the coordinator last answered us (monotonic), for the heartbeat.
    private var lastAnswered = -Double.infinity
    /// An idle agent announces an empty batch this often: the coordinator then knows it has
    /// nothing pending (a prefetch elsewhere need not wait for it), and the answer's count
    /// shows a lost registry without waiting for a new study here.
    static let heartbeat = 15.0
    /// What the last full batch left to announce (nil when unknown); only `announceBatch`,
    /// under `once`, reads or writes it.
    private var pendingAfterLastBatch: Int?

    let clock: any Clock
    /// When the copies this trust holds were last checked against their origins (monotonic).
    private var lastAttention = -Double.infinity
    /// How often: a correction at an origin reaches the copies within this.
    /// (A process test shortens it with CONSORT_TEST_ATTENTION_EVERY, as others shorten theirs.)
    static let attentionEvery = ProcessInfo.processInfo.environment["CONSORT_TEST_ATTENTION_EVERY"].flatMap(Double.init) ?? 60.0

    /// Called after a turn that announced studies (the identity releaser looks again: this trust
    /// may now have a number for a patient whose studies wait).
    var afterAnnouncing: (@Sendable () -> Void)?

    init(store: AgentStore, client: CoordinatorClient, trust: String, audit: AuditLog? = nil, clock: any Clock = SystemClock(), log: Logger) {
        self.audit = audit
        self.clock = clock
        self.store = store
        self.client = client
        self.trust = trust
        self.log = log
    }

    let name = "announcer"

    func start() {
        let loop = WakeableLoop(name: "consort-announce", interval: Self.pause(afterFailures: 0)) { [self] in turn() }
        lock.withLock { self.loop = loop }
        loop.start()
    }

    func stop(within seconds: Double) -> Bool {
        lock.withLock { loop }?.stop(within: seconds) ?? true
    }

    /// New holdings: announce soon rather than at the next tick.
    func nudge() { lock.withLock { loop }?.nudge() }

    /// Everything again (`consort agent resync`).
    func resync() throws -> Int {
        let count = try store.forgetAnnouncements()
        nudge()
        return count
    }

    /// One turn of the loop: everything not announced, batch by batch; the pause before the next.
    private func turn() -> Double {
        do {
            while try withdrawOnce() > 0 {}
            var announced = 0
            while case let count = try announceOnce(), count > 0 { announced += count }
            if announced > 0 { afterAnnouncing?() }
            if MonotonicClock.now - lastAttention >= Self.attentionEvery {
                try checkCopies()
                lastAttention = MonotonicClock.now
            }
            if failures > 0 { log.info("the coordinator answers again; holdings announced") }
            failures = 0
        } catch {
            if failures == 0 { log.warning("cannot announce holdings to the coordinator; retrying with backoff (pushes go on)", ["coordinator": client.base, "error": error]) }
            lock.withLock { lastError = "\(error)" }
            failures += 1
        }
        return Self.pause(afterFailures: failures)
    }

    /// Seconds until the next announcement: 2 while the coordinator answers; after failures
    /// 2, 4, 8, then 15 at most. Not longer: while one trust's announcements wait, a prefetch
    /// at another trust plans from a registry that lacks them (a CI run saw a 900-day prior
    /// fetched instead of a 730-day one announced late, with the cap at 60 s), and five agents
    /// asking every 15 s are nothing to a coordinator.
    static func pause(afterFailures failures: Int) -> Double {
        failures == 0 ? 2 : min(15, pow(2, Double(min(failures, 16))))
    }

    /// The copies this trust holds whose origin has since announced them under another patient
    /// or withdrawn them: recorded for `consort status` and `consort identity`, and each new one
    /// said at error level (a person must look at the copy and what the PACS filed of it).
    func checkCopies() throws {
        let answer: [String: Any]
        do {
            answer = try client.call("GET", "/v1/holdings/attention")
        } catch let failure as CoordinatorClient.Failure where failure.status == 404 {
            return  // a coordinator of an earlier version: it cannot say
        }
        let flags = (answer["studies"] as? [[String: Any]] ?? []).compactMap { item -> AgentStore.CopyFlag? in
            guard let study = item["study"] as? String else { return nil }
            return AgentStore.CopyFlag(
                study: study, origin: item["origin"] as? String ?? "?", kind: item["kind"] as? String ?? "?", detail: item["detail"] as? String ?? "",
                since: (item["since"] as? NSNumber)?.doubleValue ?? clock.now)
        }
        // Said and audited before they are recorded: a flag whose audit line failed is news
        // again at the next turn, never recorded unsaid.
        for flag in try store.newCopyFlags(flags) {
            log.error("A COPY HERE NEEDS A PERSON: its origin has \(flag.kind == "withdrawn at origin" ? "withdrawn" : "corrected") the study", [
                "study": flag.study, "origin": flag.origin, "what": flag.kind, "detail": flag.detail,
            ])
            try audit?.record(AuditEntry(who: trust, action: "copy-flagged", study: flag.study, why: "corrections follow", detail: "\(flag.kind): \(flag.detail)"))
        }
        try store.replaceCopyFlags(flags)
    }

    /// One batch; how many studies it announced.
    func announceOnce() throws -> Int {
        try once.withLock { try announceBatch() }
    }

    /// One batch of withdrawals; how many studies it withdrew (0: none pending).
    func withdrawOnce() throws -> Int {
        try once.withLock {
            let studies = try store.pendingWithdrawals(limit: Self.batch)
            guard !studies.isEmpty else { return 0 }
            let answer = try client.call("POST", "/v1/holdings/withdraw", body: .object([
                ("trust", .string(trust)), ("studies", .array(studies.map(JSON.string))),
            ]))
            // Audited before the queue is cleared: an audit that fails sends them again (the
            // coordinator takes a withdrawal twice), never leaves one sent and unaudited.
            for study in studies {
                try audit?.record(AuditEntry(
                    who: trust, action: "withdraw", study: study, why: "no longer held here: its files left the disk", detail: "withdrawal sent to the coordinator"))
            }
            try store.markWithdrawn(studies)
            lock.withLock {
                lastSuccess = clock.now
                lastAnswered = MonotonicClock.now
                lastError = nil
            }
            log.info("withdrawn from the registry: no longer held here", ["studies": studies.count, "withdrawn": (answer["withdrawn"] as? NSNumber)?.intValue ?? 0])
            return studies.count
        }
    }

    private func announceBatch() throws -> Int {
        let studies = try store.unannounced(limit: Self.batch)
        if studies.isEmpty && MonotonicClock.now - lock.withLock({ lastAnswered }) < Self.heartbeat { return 0 }
        // What is left after this batch, for the coordinator's lookups to say (a full batch may
        // have more behind it; a short one is the last).
        // Counted once at the start of a run of full batches, then counted down (a count at
        // every batch of a million-study resync would scan the inventory thousands of times).
        let pending: Int
        if studies.count < Self.batch {
            pending = 0
            pendingAfterLastBatch = nil
        } else if let left = pendingAfterLastBatch, left >= studies.count {
            pending = left - studies.count
        } else {
            pending = max(0, try store.unannouncedCount() - studies.count)
        }
        let items: [JSON] = studies.map(Self.item)
        let answer: [String: Any]
        do {
            answer = try client.call("POST", "/v1/holdings", body: .object([
                ("trust", .string(trust)), ("studies", .array(items)), ("pending", .int(Int64(pending))),
            ]))
        } catch let failure as CoordinatorClient.Failure where failure.status == 400 {
            // The coordinator refuses the batch for one study's field ("Study N of the batch
            // (UID): ..."): that study is set aside, said loudly and audited, and the rest go on
            // — one malformed header must not stop every announcement after it.
            guard let uid = failure.message.firstMatch(of: /^Study \d+ of the batch \(([0-9.]+)\)/)?.1, let study = studies.first(where: { $0.facts.uid == uid }) else {
                throw failure
            }
            try audit?.record(AuditEntry(who: trust, action: "announce-refused", study: String(uid), why: "announcement", detail: failure.message))
            log.error("THE COORDINATOR REFUSES A STUDY'S ANNOUNCEMENT: it is set aside (not announced until it changes); a person should look at its header", [
                "study": String(uid), "reason": failure.message,
            ])
            try store.recordAnnounceRefusal(uid: study.facts.uid, instances: study.instances, reason: failure.message, now: clock.now)
            return 1
        }
        if !studies.isEmpty { try store.markAnnounced(studies.map { ($0.facts.uid, $0.instances) }) }
        if studies.count == Self.batch { pendingAfterLastBatch = pending }
        lock.withLock {
            lastSuccess = clock.now
            lastAnswered = MonotonicClock.now
            lastError = nil
        }
        for conflict in answer["conflicts"] as? [String] ?? [] {
            log.error("the coordinator holds an IDENTITY CONFLICT for a person", ["conflict": conflict])
        }
        // A coordinator that knows fewer of our studies than we have announced lost them.
        let known = (answer["trust_studies"] as? NSNumber)?.intValue ?? Int.max
        let announced = try store.announcedStudyCount()
        if known < announced {
            let count = try store.forgetAnnouncements()
            pendingAfterLastBatch = nil
            log.warning("the coordinator knows fewer of this trust's studies than were announced (its registry was lost?): announcing everything again", ["known": known, "announced": announced, "studies": count])
            // At once, not at the next tick: until the first batch says how many are pending,
            // the coordinator takes this trust (just heard, nothing pending) as complete.
            return max(studies.count, count > 0 ? 1 : 0)
        }
        return studies.count
    }

    static func item(_ study: AgentStore.Announcement) -> JSON {
        let facts = study.facts
        func text(_ v: String?) -> JSON { v.map(JSON.string) ?? .null }
        // LO holds 64 characters: a longer value is a malformed header's, left out rather than
        // cut (a cut identifier could name someone else) or sent to be refused with the batch.
        func identifier(_ v: String?) -> JSON { v.flatMap { $0.count <= 64 ? JSON.string($0) : nil } ?? .null }
        var patient: [(String, JSON)] = [("id", identifier(facts.patientID)), ("issuer", identifier(facts.patientIssuer))]
        if let sex = facts.sex, sex.count <= 16 { patient.append(("sex", .string(sex))) }
        // A date the coordinator would refuse (a malformed header's) is left out, not sent: one
        // bad header must not stop every announcement of the batch.
        if let birth = facts.birthDate, CalendarDay.isReal(birth) { patient.append(("birthDate", .string(birth))) }
        var fields: [(String, JSON)] = [("study", .string(facts.uid)), ("patient", .object(patient))]
        if !facts.otherIDs.isEmpty {
            fields.append(("otherPatientIDs", .array(facts.otherIDs.map { .object([("id", .string($0.id)), ("issuer", text($0.issuer))]) })))
        }
        if !facts.otherPatientIDValues.isEmpty { fields.append(("otherPatientIDValues", .array(facts.otherPatientIDValues.map(JSON.string)))) }
        if case .valid(let number) = Self.nhs(facts) { fields.append(("nhs", .string(number.digits))) }
        fields += [
            ("date", text(facts.date.flatMap { CalendarDay.isReal($0) ? $0 : nil })), ("modalities", .array(facts.modality.map { [.string($0)] } ?? [])), ("bodyPart", text(facts.bodyPart)),
            ("description", text(facts.description)), ("accession", text(facts.accession)), ("instances", .int(Int64(study.instances))),
            ("bytes", .int(study.bytes)), ("complete", .bool(true)),
        ]
        // A copy names where it came from: the coordinator tells its holders when that trust
        // corrects or withdraws the study.
        if study.origin != "local" { fields.append(("origin", .string(study.origin))) }
        return .object(fields)
    }

    /// The NHS number where the default places it (the coordinator decides, with its per-trust
    /// exceptions; this one is for the agent's own audit records and the announcement's `nhs`).
    static func nhs(_ facts: AgentStore.StudyFacts) -> NHSIdentity.Resolution {
        NHSIdentity.resolve(
            patient: facts.patientID.map { NHSIdentity.Identifier(id: $0, issuer: facts.patientIssuer) },
            others: facts.otherIDs.map { NHSIdentity.Identifier(id: $0.id, issuer: $0.issuer) }, source: nil)
    }
}
