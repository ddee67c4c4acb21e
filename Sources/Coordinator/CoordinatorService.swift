import Audit
import DICOM
import DICOMweb
import Exchange
import Foundation
import HTTP
import Platform
import Routing
import Transport

/// The coordinator's API (HTTPS, mutual TLS, JSON; versioned paths are a contract):
///
///     POST /v1/holdings            a batch of studies the calling trust now holds (idempotent)
///     POST /v1/holdings/withdraw   studies it no longer holds
///     GET  /v1/patients/{nhs}/studies   the patient's studies, newest first, with where each is held
///     GET  /v1/studies/{uid}       one study and its locations
///     GET  /v1/patients/{nhs}/identity   the calling trust's own local identifiers for the patient
///     GET  /v1/holdings/attention  the caller's copies whose origin has since corrected or withdrawn the study
///     GET  /healthz, GET /metrics
///
/// The caller's trust comes from its certificate only; only consortium trusts (the rules'
/// `member`s, never a `peer`) may use it; a lookup names its purpose (`X-Consort-Purpose`), one
/// an agreement gives the caller imaging for (`PartyAccess`); a trust may announce or withdraw
/// only its own holdings. Every refusal is a 403 with its reason, counted and audited; every
/// lookup of a patient is audited with its purpose. A patient involved in an identity conflict
/// is answered 409 with the conflict: held for a person, never used for prefetch.
public final class CoordinatorService: @unchecked Sendable {
    let registry: Registry
    let rules: RuleBook
    let configuration: CoordinatorConfiguration
    let audit: AuditLog
    let log: Logger
    /// An agent sends 500 studies (~250 KB) a batch: 8 MB and 5,000 studies are generous bounds.
    public static let maximumBody = 8 << 20
    public static let maximumBatch = 5_000
    private let lock = NSLock()
    /// What each trust was last told by `GET /v1/holdings/attention` (study and kind), under `lock`.
    private var attentionTold: [String: Set<String>] = [:]
    private var counters: [String: Int] = [:]
    /// Refusals by `PartyAccess.Refusal.label` (and "not_own_holdings").
    private var refusals: [String: Int] = [:]
    /// The TLS material of the listener, for its expiry in /metrics (set by the daemon).
    public var tls: TLSMaterial?
    let started = Date()
    /// How far each member's announcements have come (see `AnnouncementProgress`).
    private var progress = AnnouncementProgress(started: MonotonicClock.now)

    public init(registry: Registry, rules: RuleBook, configuration: CoordinatorConfiguration, audit: AuditLog, log: Logger) {
        self.registry = registry
        self.rules = rules
        self.configuration = configuration
        self.audit = audit
        self.log = log
    }

    func count(_ name: String, _ n: Int = 1) { lock.withLock { counters[name, default: 0] += n } }

    func tlsReloaded(ok: Bool) { count(ok ? "tls_reload_ok" : "tls_reload_refused") }

    /// A refusal counted: in the total, and by its reason.
    func refused(_ reason: String) {
        lock.withLock {
            counters["refused", default: 0] += 1
            refusals[reason, default: 0] += 1
        }
    }

    /// The members whose studies may not all be in the registry yet (the caller left out: a
    /// trust does not fetch from itself).
    func lagging(besides caller: String?) -> [AnnouncementProgress.Lagging] {
        let members = rules.current.members.filter(\.isTrust).map(\.code).filter { $0 != caller }
        return lock.withLock { progress.lagging(members, at: MonotonicClock.now) }
    }
    var counts: [String: Int] { lock.withLock { counters } }

    static func json(_ status: Int, _ value: JSON) -> ServerResponse {
        ServerResponse(status: status, headers: [("Content-Type", "application/json")], body: value.bytes() + [UInt8(ascii: "\n")])
    }

    static func failure(_ status: Int, _ message: String) -> ServerResponse {
        json(status, .object([("error", .string(message))]))
    }

    public func handle(_ request: ServerRequest, _ body: RequestBody) throws -> ServerResponse {
        let path = request.head.target.split(separator: "?", maxSplits: 1).first.map(String.init) ?? ""
        let method = request.head.method
        if method == "GET" && path == "/healthz" { return health() }
        if method == "GET" && path == "/metrics" { return metrics() }
        // Everything else: consortium trusts only, named by their certificates; a lookup for a
        // purpose an agreement gives the caller imaging for.
        let purpose = request.head.value(ConsortField.purpose)
        // A trust asking for its own identifiers for a patient learns only what it announced
        // itself: a member's right, as announcing is, whatever the agreements say of imaging.
        let ownIdentity = method == "GET" && path.hasPrefix("/v1/patients/") && path.hasSuffix("/identity")
        // So does a trust asking which of its own copies need a person.
        let ownCopies = method == "GET" && path == "/v1/holdings/attention"
        let act: PartyAccess.Act = method == "POST" || ownIdentity || ownCopies ? .announce : .lookup
        if let refusal = PartyAccess.decide(act, caller: request.peer?.commonName, purpose: purpose, site: nil, rules: rules.current) {
            let who = request.peer?.commonName ?? "a client without a certificate"
            refused(refusal.label)
            try? audit.record(AuditEntry(who: who, action: "refused", why: purpose, detail: "\(method) \(path.prefix(200)): \(refusal)"))
            log.warning("refused", ["who": who, "request": "\(method) \(path.prefix(200))", "reason": refusal.label, "purpose": purpose ?? "(none)"])
            return Self.failure(403, "Refused: \(refusal)")
        }
        let caller = request.peer?.commonName ?? ""
        do {
            return try route(method, path, caller: caller, purpose: purpose, body: body)
        } catch let error as HTTPError {
            throw error
        } catch {
            // The registry (or the audit log) cannot be read or written now: 503, so that an
            // agent with another coordinator over the same database asks that one instead.
            log.error("cannot answer: the registry or the audit log fails", ["request": "\(method) \(path.prefix(200))", "error": "\(error)"])
            return Self.failure(503, "The coordinator cannot use its registry now: \(error)")
        }
    }

    private func route(_ method: String, _ path: String, caller: String, purpose: String?, body: RequestBody) throws -> ServerResponse {
        let parts = path.split(separator: "/").map(String.init)
        switch (method, parts.count) {
        case ("POST", 2) where parts == ["v1", "holdings"]:
            return try announce(caller: caller, body: body)
        case ("POST", 3) where parts == ["v1", "holdings", "withdraw"]:
            return try withdraw(caller: caller, body: body)
        case ("GET", 3) where parts == ["v1", "holdings", "attention"]:
            return try attention(caller: caller)
        case ("GET", 4) where parts[0] == "v1" && parts[1] == "patients" && parts[3] == "studies":
            // Foundation's percent decoding only where there is something to decode: it cost a
            // fortieth of a lookup's time.
            return try patientStudies(caller: caller, nhs: parts[2].contains("%") ? parts[2].removingPercentEncoding ?? parts[2] : parts[2], purpose: purpose ?? "")
        case ("GET", 4) where parts[0] == "v1" && parts[1] == "patients" && parts[3] == "identity":
            return try identity(caller: caller, nhs: parts[2].contains("%") ? parts[2].removingPercentEncoding ?? parts[2] : parts[2], purpose: purpose ?? "")
        case ("GET", 3) where parts[0] == "v1" && parts[1] == "studies":
            return try study(caller: caller, uid: parts[2], purpose: purpose ?? "")
        default:
            return Self.failure(404, "No such resource: \(method) \(path) (see the coordinator's API in README.md)")
        }
    }

    private func object(_ body: RequestBody) throws -> [String: Any] {
        let bytes: [UInt8]
        do { bytes = try body.collect(limit: Self.maximumBody) } catch { throw HTTPError(413, "The body is larger than \(Self.maximumBody) bytes: send smaller batches") }
        guard let object = try? JSONSerialization.jsonObject(with: Data(bytes)) as? [String: Any] else { throw HTTPError(400, "The body is not a JSON object") }
        return object
    }

    /// A trust may speak only for itself: refused (403) and audited otherwise.
    private func ownTrust(_ object: [String: Any], caller: String, action: String) -> ServerResponse? {
        let claimed = object["trust"] as? String
        guard claimed == caller else {
            refused("not_own_holdings")
            try? audit.record(AuditEntry(who: caller, action: "refused", why: action, detail: "announced for trust \(claimed ?? "(none)"), not its own"))
            log.error("REFUSED: a trust announced holdings for another trust", ["caller": caller, "claimed": claimed ?? "(none)", "action": action])
            return Self.failure(403, "\(caller) may \(action) only its own holdings, not \(claimed ?? "(no trust named)")'s")
        }
        return nil
    }

    static func identifier(_ value: Any?) -> NHSIdentity.Identifier? {
        guard let object = value as? [String: Any], let id = object["id"] as? String else { return nil }
        return NHSIdentity.Identifier(id: id, issuer: object["issuer"] as? String)
    }

    /// A descriptive value as the registry keeps it: at most `limit` characters (64: DICOM's
    /// longest for these, a LO). Headers break that rule in the wild; the registry keeps what a
    /// lookup shows, not pages of it, and the study date is a key of its index by patient,
    /// whose entries PostgreSQL refuses beyond a few kilobytes: an overlong date failed its
    /// whole batch there ("index row requires 10608 bytes").
    /// Free text cut to `limit` characters, without NUL characters: PostgreSQL cannot keep one
    /// in text, and libpq's C strings would end the whole statement's array at it (the batch
    /// failing at every retry); SQLite would keep it, and the two stores must answer alike.
    static func clipped(_ value: Any?, to limit: Int = 64) -> String? {
        guard var text = value as? String else { return nil }
        if text.utf8.contains(0) { text.removeAll { $0 == "\u{0}" } }
        return text.count > limit ? String(text.prefix(limit)) : text
    }

    /// An announced study's field that is not what the API says it is: the batch is refused
    /// with the field named (a wrong count or date stored as something else would mislead every
    /// trust that looks the patient up).
    struct FieldRefusal: Error, CustomStringConvertible {
        let description: String
    }

    /// Most instances one study may have (a whole-slide image is some thousands; a long cine
    /// series some hundreds of thousands), and most bytes (a petabyte).
    static let maximumInstances = 10_000_000
    static let maximumBytes: Int64 = 1_000_000_000_000_000

    /// A whole number from JSON within `range`, or nil when the field is absent or null.
    static func count<T: BinaryInteger>(_ value: Any?, _ field: String, within range: ClosedRange<T>) throws(FieldRefusal) -> T? {
        guard let value, !(value is NSNull) else { return nil }
        guard let number = value as? NSNumber, !isBoolean(value) else { throw FieldRefusal(description: "\"\(field)\" is \("\(value)".prefix(80)), not a number") }
        let double = number.doubleValue
        guard double.isFinite, double == double.rounded(), double >= Double(range.lowerBound), double <= Double(range.upperBound) else {
            throw FieldRefusal(description: "\"\(field)\" is \(number), not a whole number from \(range.lowerBound) to \(range.upperBound)")
        }
        return T(number.int64Value)
    }

    /// Whether JSON gave `true` or `false`. Foundation on Linux bridges a JSON number to Bool
    /// and a JSON boolean to NSNumber alike (`1 is Bool` holds), so the class tells them apart:
    /// a boolean is Foundation's boolean subclass of NSNumber, a number NSNumber itself (or
    /// NSDecimalNumber).
    static func isBoolean(_ value: Any) -> Bool {
        String(describing: type(of: value)).contains("Boolean")
    }

    /// Text from JSON, at most `limit` characters, or nil when absent or null.
    static func text(_ value: Any?, _ field: String, limit: Int = 64) throws(FieldRefusal) -> String? {
        guard let value, !(value is NSNull) else { return nil }
        guard let text = value as? String else { throw FieldRefusal(description: "\"\(field)\" is not text") }
        guard text.count <= limit else { throw FieldRefusal(description: "\"\(field)\" is \(text.count) characters, more than \(limit)") }
        // An identifier is not cut or cleaned: one with a NUL in it is a malformed header's.
        guard !text.utf8.contains(0) else { throw FieldRefusal(description: "\"\(field)\" contains a NUL character") }
        return text
    }

    /// A DICOM date from JSON: a real day as YYYYMMDD (empty: none).
    static func day(_ value: Any?, _ field: String) throws(FieldRefusal) -> String? {
        guard let text = try text(value, field, limit: 8), !text.isEmpty else { return nil }
        guard CalendarDay.isReal(text) else { throw FieldRefusal(description: "\"\(field)\" is \"\(text)\", not a date as YYYYMMDD") }
        return text
    }

    /// One announced study, every field checked: the UID a valid UID of at most 64 characters,
    /// counts whole numbers within their limits, dates real dates, identifiers and text within
    /// their lengths, `complete` true or false. Longer free text (a description) is cut to 64
    /// characters as before; anything of the wrong kind or out of range is refused.
    static func holding(_ item: [String: Any]) throws(FieldRefusal) -> Holding {
        guard let uid = item["study"] as? String, UID.isValid(uid) else {
            throw FieldRefusal(description: "\"study\" is \(item["study"].map { "\($0)".prefix(80) } ?? "missing"), not a valid UID")
        }
        var holding = Holding(study: uid)
        if let patient = item["patient"], !(patient is NSNull) {
            guard let patient = patient as? [String: Any] else { throw FieldRefusal(description: "\"patient\" is not an object") }
            _ = try text(patient["id"], "patient.id")
            _ = try text(patient["issuer"], "patient.issuer")
            _ = try day(patient["birthDate"], "patient.birthDate")
            _ = try text(patient["sex"], "patient.sex", limit: 16)
        }
        _ = try text(item["nhs"], "nhs", limit: 32)
        _ = try day(item["date"], "date")
        _ = try day(item["birthDate"], "birthDate")
        holding.instances = try count(item["instances"], "instances", within: 0...maximumInstances) ?? 0
        holding.bytes = try count(item["bytes"], "bytes", within: 0...maximumBytes) ?? 0
        if let complete = item["complete"], !(complete is NSNull) {
            guard isBoolean(complete), let flag = complete as? Bool else { throw FieldRefusal(description: "\"complete\" is \("\(complete)".prefix(80)), not true or false") }
            holding.complete = flag
        }
        let patient = item["patient"] as? [String: Any]
        holding.patient = identifier(patient)
        holding.otherIDs = (item["otherPatientIDs"] as? [Any] ?? patient?["otherIDs"] as? [Any] ?? []).compactMap(identifier)
        holding.otherPatientIDValues = item["otherPatientIDValues"] as? [String] ?? []
        holding.nhs = item["nhs"] as? String
        holding.sex = clipped(patient?["sex"] as? String ?? item["sex"] as? String)
        holding.birthDate = clipped(patient?["birthDate"] as? String ?? item["birthDate"] as? String)
        holding.date = clipped(item["date"])
        holding.modalities = (item["modalities"] as? [Any] ?? []).prefix(16).compactMap { clipped($0, to: 16) }
        holding.bodyPart = clipped(item["bodyPart"])
        holding.description = clipped(item["description"])
        holding.accession = clipped(item["accession"])
        holding.origin = clipped(item["origin"])
        return holding
    }

    /// The NHS number of a holding: from the identifiers, where this trust puts it; else the
    /// number the agent read, validated here too.
    func resolve(_ holding: Holding, trust: String) -> NHSIdentity.Resolution {
        Self.resolve(holding, exception: configuration.nhsNumberSources[trust])
    }

    /// A holding's NHS number, for a trust with or without an exception to the default place.
    public static func resolve(_ holding: Holding, exception: NHSIdentity.Source?) -> NHSIdentity.Resolution {
        let resolved = NHSIdentity.resolve(patient: holding.patient, others: holding.otherIDs, otherPatientIDs: holding.otherPatientIDValues, source: exception)
        // The agent's own reading follows the default place: never used for a trust whose
        // NHS number is configured elsewhere (it could take a local number for an NHS one).
        if case .absent = resolved, exception == nil, let sent = holding.nhs?.trimmingCharacters(in: .whitespaces), !sent.isEmpty {
            return NHSNumber(sent).map { .valid($0) } ?? .invalid(sent)
        }
        return resolved
    }

    private func announce(caller: String, body: RequestBody) throws -> ServerResponse {
        let object = try object(body)
        if let refusal = ownTrust(object, caller: caller, action: "announce") { return refusal }
        let items = object["studies"] as? [[String: Any]] ?? []
        guard items.count <= Self.maximumBatch else { return Self.failure(413, "At most \(Self.maximumBatch) studies a batch, not \(items.count)") }
        var holdings: [(Holding, NHSIdentity.Resolution)] = []
        for (index, item) in items.enumerated() {
            let holding: Holding
            do { holding = try Self.holding(item) } catch {
                refused("bad_field")
                log.warning("announcement refused: a field is not what the API says", ["trust": caller, "study": index, "why": error.description])
                return Self.failure(400, "Study \(index) of the batch\((item["study"] as? String).map { " (\($0.prefix(64)))" } ?? ""): \(error.description); nothing of the batch was recorded")
            }
            holdings.append((holding, resolve(holding, trust: caller)))
        }
        let outcome = try registry.announce(trust: caller, holdings: holdings, now: Date().timeIntervalSince1970)
        // What the agent has left to announce after this batch (0 from an agent that does not
        // say: it is heard, and nothing is known to be missing).
        let pending = (object["pending"] as? NSNumber)?.intValue ?? 0
        lock.withLock { progress.heard(from: caller, pending: pending, at: MonotonicClock.now) }
        count("announced", holdings.count)
        // An empty batch is an idle agent's heartbeat: it names no patient, and is not audited
        // (every 15 s from every trust would bury the records that matter).
        if !holdings.isEmpty {
            try audit.record(AuditEntry(who: caller, action: "announce", detail: "\(holdings.count) studies; \(outcome.conflicts.count) conflicts; \(outcome.invalid.count) invalid NHS numbers"))
        }
        for conflict in outcome.conflicts {
            log.error("IDENTITY CONFLICT held for a person (not merged, not used for prefetch)", ["trust": caller, "conflict": conflict])
            try audit.record(AuditEntry(who: caller, action: "conflict", detail: conflict))
        }
        for study in outcome.invalid {
            log.error("invalid NHS number recorded, not used", ["trust": caller, "study": study])
        }
        return Self.json(200, .object([
            ("recorded", .int(Int64(outcome.recorded))), ("conflicts", .array(outcome.conflicts.map(JSON.string))),
            ("invalid", .array(outcome.invalid.map(JSON.string))), ("trust_studies", .int(Int64(outcome.trustStudies))),
        ]))
    }

    private func withdraw(caller: String, body: RequestBody) throws -> ServerResponse {
        let object = try object(body)
        if let refusal = ownTrust(object, caller: caller, action: "withdraw") { return refusal }
        let studies = (object["studies"] as? [Any] ?? []).compactMap { ($0 as? String) ?? (($0 as? [String: Any])?["study"] as? String) }
        let removed = try registry.withdraw(trust: caller, studies: studies)
        try audit.record(AuditEntry(who: caller, action: "withdraw", detail: "\(removed) of \(studies.count) studies"))
        return Self.json(200, .object([("withdrawn", .int(Int64(removed))), ("trust_studies", .int(Int64(try registry.studyCount(trust: caller))))]))
    }

    public static func studyJSON(_ study: StudyRecord) -> JSON {
        func text(_ v: String?) -> JSON { v.map(JSON.string) ?? .null }
        return .object([
            ("study", .string(study.uid)), ("nhs", text(study.nhs)), ("date", text(study.date)), ("modalities", .array(study.modalities.map(JSON.string))),
            ("bodyPart", text(study.bodyPart)), ("description", text(study.description)), ("accession", text(study.accession)),
            ("instances", .int(Int64(study.instances))), ("bytes", .int(study.bytes)), ("conflict", .bool(study.conflicted)),
            ("locations", .array(study.locations.map { .object([("trust", .string($0.trust)), ("complete", .bool($0.complete)), ("instances", .int(Int64($0.instances))), ("since", .double($0.since))]) })),
        ])
    }

    public static func conflictJSON(_ conflict: IdentityConflict) -> JSON {
        .object([
            ("id", .int(conflict.id)), ("kind", .string(conflict.kind)), ("key", .string(conflict.key)), ("first", .string(conflict.first)),
            ("first_from", .string(conflict.firstFrom)), ("second", .string(conflict.second)), ("second_from", .string(conflict.secondFrom)),
            ("created", .double(conflict.created)),
        ])
    }

    /// What a lookup shows the caller: each study's holdings at the caller itself and at the
    /// trusts an agreement lets give it imaging for the purpose; a study held nowhere else is
    /// left out. (The caller could fetch from no other holder, and need not learn of it.)
    func visible(_ studies: [StudyRecord], to caller: String, purpose: String) -> [StudyRecord] {
        let set = rules.current
        let holders = Set(studies.flatMap { $0.locations.map(\.trust) })
        // Not where imaging may go to the caller only de-identified: a lookup names the patient.
        let allowed = Set(holders.filter {
            $0 == caller || (set.permits(from: $0, to: caller, purpose: purpose) && !set.requiresDeidentification(from: $0, to: caller, purpose: purpose))
        })
        return studies.compactMap { study in
            var study = study
            study.locations = study.locations.filter { allowed.contains($0.trust) }
            return study.locations.isEmpty ? nil : study
        }
    }

    private func patientStudies(caller: String, nhs text: String, purpose: String) throws -> ServerResponse {
        guard let nhs = NHSNumber(text) else {
            return Self.failure(400, "\"\(text)\" is not a valid NHS number (10 digits with a Modulus 11 check digit)")
        }
        count("lookups")
        try audit.record(AuditEntry(who: caller, action: "lookup", nhs: nhs.digits, why: purpose, detail: "GET /v1/patients/{nhs}/studies"), durable: false)
        let (held, conflicts) = try registry.patientStudies(nhs: nhs.digits)
        let studies = visible(held, to: caller, purpose: purpose)
        if !conflicts.isEmpty {
            return Self.json(409, .object([
                ("nhs", .string(nhs.digits)), ("error", .string("an identity conflict about this patient is held for a person: not used until resolved")),
                ("conflicts", .array(conflicts.map(Self.conflictJSON))),
            ]))
        }
        // The members still announcing: their studies of this patient may be missing yet (a
        // prefetch waits a while for them; `consort locate` says so).
        let announcing = lagging(besides: caller).map { lag in
            JSON.object([("trust", .string(lag.trust)), ("pending", lag.pending.map { .int(Int64($0)) } ?? .null), ("reason", .string(lag.reason))])
        }
        return Self.json(200, .object([("nhs", .string(nhs.digits)), ("studies", .array(studies.map(Self.studyJSON))), ("announcing", .array(announcing))]))
    }

    /// The caller's own local identifiers for a patient: what an agent delivers a study from
    /// another trust under, so that its PACS files it with the patient it knows. Only the
    /// caller's own (its certificate says who it is): a trust never learns another's numbers
    /// here. A patient in an identity conflict is answered 409, as a lookup is: nothing is
    /// delivered under an identity a person has not settled. No identifier: 200 with none (the
    /// patient has not been seen at the caller; the agent's `unknown-patient` setting decides).
    private func identity(caller: String, nhs text: String, purpose: String) throws -> ServerResponse {
        guard let nhs = NHSNumber(text) else {
            return Self.failure(400, "\"\(text)\" is not a valid NHS number (10 digits with a Modulus 11 check digit)")
        }
        count("identity_lookups")
        let (identifiers, conflicts) = try registry.identity(trust: caller, nhs: nhs.digits)
        try audit.record(
            AuditEntry(who: caller, action: "lookup", nhs: nhs.digits, why: purpose, detail: "GET /v1/patients/{nhs}/identity: \(identifiers.count) of its own identifiers"),
            durable: false)
        if !conflicts.isEmpty {
            // Which conflicts and of what kind, never their sides: those name other trusts' local
            // numbers, which this endpoint never gives (the coordinator's operator sees them all
            // with `consort coordinator conflicts`).
            return Self.json(409, .object([
                ("nhs", .string(nhs.digits)), ("error", .string("an identity conflict about this patient is held for a person: no identity given until resolved")),
                ("conflicts", .array(conflicts.map { .object([("id", .int($0.id)), ("kind", .string($0.kind))]) })),
            ]))
        }
        let items: [JSON] = identifiers.map { .object([("id", .string($0.id)), ("issuer", $0.issuer.map(JSON.string) ?? .null)]) }
        return Self.json(200, .object([("trust", .string(caller)), ("nhs", .string(nhs.digits)), ("identifiers", .array(items))]))
    }

    /// The caller's copies of studies their origin has since announced under another patient
    /// or withdrawn: the copies (and what its PACS filed of them) need a person.
    private func attention(caller: String) throws -> ServerResponse {
        let copies = try registry.attention(trust: caller)
        // It names studies and, for a correction, the NHS numbers involved: each audited the
        // first time it is told to a trust (since this coordinator started), not at every
        // minute's asking while the copy is there.
        let keys = Set(copies.map { $0.study + "\u{1}" + $0.kind.rawValue })
        let told = lock.withLock { () -> Set<String> in
            let before = attentionTold[caller] ?? []
            attentionTold[caller] = keys
            return before
        }
        for copy in copies where !told.contains(copy.study + "\u{1}" + copy.kind.rawValue) {
            try audit.record(AuditEntry(who: caller, action: "lookup", study: copy.study, why: "corrections follow", detail: "GET /v1/holdings/attention: \(copy.kind.rawValue)"), durable: false)
        }
        let items: [JSON] = copies.map {
            .object([("study", .string($0.study)), ("origin", .string($0.origin)), ("kind", .string($0.kind.rawValue)), ("detail", .string($0.detail)), ("since", .double($0.since))])
        }
        return Self.json(200, .object([("trust", .string(caller)), ("studies", .array(items))]))
    }

    private func study(caller: String, uid: String, purpose: String) throws -> ServerResponse {
        guard UID.isValid(uid) else { return Self.failure(400, "\"\(uid)\" is not a UID") }
        count("lookups")
        guard let study = try registry.study(uid: uid).flatMap({ visible([$0], to: caller, purpose: purpose).first }) else {
            try audit.record(AuditEntry(who: caller, action: "lookup", study: uid, why: purpose, detail: "unknown"), durable: false)
            return Self.failure(404, "No trust that may give \(caller) imaging for \(purpose) has announced study \(uid)")
        }
        try audit.record(AuditEntry(who: caller, action: "lookup", nhs: study.nhs, study: uid, why: purpose), durable: false)
        return Self.json(200, Self.studyJSON(study))
    }

    func health() -> ServerResponse {
        do {
            _ = try registry.totals()
            return .text(200, "ok")
        } catch {
            return .text(503, "cannot read the registry: \(error)")
        }
    }

    func metrics() -> ServerResponse {
        var text = ""
        func family(_ name: String, _ type: String, _ help: String, _ value: Double, labels: String = "") {
            text += "# HELP \(name) \(help)\n# TYPE \(name) \(type)\n\(name)\(labels) \(value == value.rounded() ? String(Int64(value)) : String(value))\n"
        }
        let totals = (try? registry.totals()) ?? (patients: 0, studies: 0, locations: 0)
        let counts = self.counts
        family("consort_coordinator_patients", "gauge", "Patients (NHS numbers) in the registry.", Double(totals.patients))
        family("consort_coordinator_studies", "gauge", "Studies in the registry.", Double(totals.studies))
        family("consort_coordinator_locations", "gauge", "Study holdings (a study at a trust).", Double(totals.locations))
        family("consort_coordinator_conflicts", "gauge", "Identity conflicts held for a person.", Double((try? registry.conflicts().count) ?? 0))
        family("consort_coordinator_announced_studies_total", "counter", "Studies announced by the trusts.", Double(counts["announced", default: 0]))
        family("consort_coordinator_lookups_total", "counter", "Lookups of patients and studies.", Double(counts["lookups", default: 0]))
        family("consort_coordinator_refused_total", "counter", "Requests refused (not a member, or for another trust).", Double(counts["refused", default: 0]))
        let reasons = lock.withLock { refusals }
        text += "# HELP consort_coordinator_refused_requests_total Requests refused, by reason: not_a_member, peer_not_member, no_purpose, no_agreement, deidentification_required, not_own_holdings (403); bad_field (400: an announced field out of its kind or range).\n"
        text += "# TYPE consort_coordinator_refused_requests_total counter\n"
        for reason in ["not_a_member", "peer_not_member", "no_purpose", "no_agreement", "deidentification_required", "not_own_holdings", "bad_field"] {
            text += "consort_coordinator_refused_requests_total{reason=\"\(reason)\"} \(reasons[reason, default: 0])\n"
        }
        text += "# HELP consort_tls_reloads_total Reloads of the TLS material (SIGHUP) by result: ok, or refused (the files did not load; the material in force stays).\n"
        text += "# TYPE consort_tls_reloads_total counter\n"
        text += "consort_tls_reloads_total{result=\"ok\"} \(counts["tls_reload_ok", default: 0])\n"
        text += "consort_tls_reloads_total{result=\"refused\"} \(counts["tls_reload_refused", default: 0])\n"
        if let expiry = tls?.expires {
            text += "# HELP consort_tls_expiry_timestamp_seconds When the TLS material in force expires (the CRL: its next update), in seconds since the epoch.\n"
            text += "# TYPE consort_tls_expiry_timestamp_seconds gauge\n"
            for item in expiry.items { text += "consort_tls_expiry_timestamp_seconds{item=\"\(item.name)\"} \(Int64(item.expires))\n" }
        }
        let pending = lock.withLock { progress.pending(at: MonotonicClock.now) }
        if !pending.isEmpty {
            text += "# HELP consort_coordinator_member_pending_studies Studies a member said it still had to announce (heard in the last 90 s).\n"
            text += "# TYPE consort_coordinator_member_pending_studies gauge\n"
            for (trust, n) in pending.sorted(by: { $0.key < $1.key }) { text += "consort_coordinator_member_pending_studies{trust=\"\(trust)\"} \(n)\n" }
        }
        family("process_start_time_seconds", "gauge", "Start time of the process since the Unix epoch, in seconds.", started.timeIntervalSince1970)
        return ServerResponse(status: 200, headers: [("Content-Type", "text/plain; version=0.0.4; charset=utf-8")], body: Array(text.utf8))
    }
}
