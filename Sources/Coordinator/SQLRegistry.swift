import Foundation
import Platform
import Routing
import SQLite

/// The registry's SQL, written once for both its stores (SQLite embedded, PostgreSQL for a
/// coordinator that must survive its machine): statements use `?N` parameters and portable SQL
/// (`ON CONFLICT`, `CASE`, `coalesce`); each connection runs them its own way. One connection
/// under a lock: the coordinator's requests are short transactions.
public final class SQLRegistry: Registry, @unchecked Sendable {
    let db: RegistryConnection
    private let lock = NSLock()

    /// The registry in a SQLite file (created with its schema if new).
    /// `opening` hears, every few seconds, what a long start is doing (moving an earlier
    /// registry to this layout): the service tells systemd, so that it waits rather than
    /// killing a start that is working.
    public static func sqlite(path: String, log: Logger = Logger("registry"), opening: @escaping (String) -> Void = { _ in }) throws -> SQLRegistry {
        try FileManager.default.createDirectory(atPath: (path as NSString).deletingLastPathComponent, withIntermediateDirectories: true)
        // Pages of 16 KB for a new registry (SQLite's default is 4 KB): at 10 million studies
        // an announcement dirties about one page of the tree by patient for every two studies,
        // and every dirtied page is a write to the log and another at its checkpoint; larger
        // pages hold more of the batch's patients, so fewer writes carry the same rows, and a
        // patient's studies still sit in one page.
        let connection = SQLiteConnection(try Database(path: path, pageSize: 16_384))
        // A page cache of 128 MB (SQLite's default is 2 MB): at millions of studies the
        // indexes by patient and by local identifier take random inserts, and a small cache
        // sends each to the disk (announcing 10 million studies slowed from 28,000 to under
        // 10,000 a second). The coordinator's RSS target is 300 MB.
        try connection.execute("PRAGMA cache_size = -131072")
        try connection.execute(Schema.sqlite)
        // Lookups on the writer's connection: in-process SQLite answers one in microseconds, and
        // reader connections (tried: two, with their own caches) made locate slower on two
        // cores (p50 0.8 → 1.4 ms, p99 2.2 → 3.3 ms at a million studies) and RSS larger.
        let registry = SQLRegistry(connection)
        try registry.moveToPatientRows(log: log, progress: opening)
        try registry.countIfUncounted()
        return registry
    }

    /// An existing SQLite registry, for reading (`consort coordinator conflicts`).
    public static func sqlite(readingOnly path: String) throws -> SQLRegistry {
        SQLRegistry(SQLiteConnection(try Database(path: path, readOnly: true)))
    }

    /// The registry in a PostgreSQL database (its tables created if missing).
    public static func postgresql(_ conninfo: String, log: Logger = Logger("registry"), opening: @escaping (String) -> Void = { _ in }) throws -> SQLRegistry {
        let connection = try PostgreSQLConnection(conninfo)
        try connection.execute(Schema.postgresql)
        let registry = SQLRegistry(connection, readers: try (0..<2).map { _ in try PostgreSQLConnection(conninfo) })
        try registry.moveToPatientRows(log: log, progress: opening)
        try registry.countIfUncounted()
        // Statistics from the start (if the tables never had any), then whenever the studies
        // have doubled (`keepStatistics`).
        let analysed = try connection.prepare("""
            SELECT count(*) FROM pg_stat_user_tables
            WHERE relname IN ('patient_studies', 'study_keys') AND (last_analyze IS NOT NULL OR last_autoanalyze IS NOT NULL)
            """).first([]) { $0.int(0) } ?? 0
        registry.log = log
        registry.statistics = (refresh: true, studiesAtLast: analysed == 2 ? try registry.totals().studies : 0)
        if analysed < 2 { registry.analyse() }
        return registry
    }

    /// PostgreSQL plans a lookup from its tables' statistics, and a registry that grew from
    /// nothing (a first start, a resync of millions of studies) has none until autovacuum gets
    /// to it: it then scanned every location for each patient looked up (locate p50 45 ms at
    /// 100,000 studies, against 1 ms with statistics). The coordinator analyses the tables
    /// itself each time the studies have doubled (a sample of 30,000 rows a table: tens of
    /// milliseconds), so plans keep up with growth whatever autovacuum's schedule. SQLite plans
    /// without statistics and is left alone.
    private var statistics: (refresh: Bool, studiesAtLast: Int) = (false, 0)
    private var studiesSinceStatistics = 0

    /// Called with the writer's lock held, after a transaction that added `studies` (committed:
    /// nothing here may fail the announcement).
    func keepStatistics(added studies: Int) {
        guard statistics.refresh, studies > 0 else { return }
        studiesSinceStatistics += studies
        guard studiesSinceStatistics >= max(1_000, statistics.studiesAtLast) else { return }
        // Tried once per doubling, whether or not it succeeds: a failure is not retried at every
        // batch.
        statistics.studiesAtLast += studiesSinceStatistics
        studiesSinceStatistics = 0
        analyse()
    }

    /// ANALYZE, best effort and bounded: a vacuum holding the tables (an anti-wraparound one is
    /// not cancelled for us) or a slow disk makes it give up after a few seconds rather than
    /// hold every announcement behind it; autovacuum's own analysis remains.
    private(set) var lastStatisticsProblem: String?
    private var log = Logger("registry")
    func analyse() {
        do {
            try db.transaction {
                try db.execute("SET LOCAL lock_timeout = '1s'; SET LOCAL statement_timeout = '10s'")
                try db.execute("ANALYZE patients, local_ids, patient_studies, study_keys")
            }
            lastStatisticsProblem = nil
        } catch {
            lastStatisticsProblem = "\(error)"
            log.warning("the tables' statistics were not refreshed; autovacuum's analysis remains", ["error": error])
        }
    }

    /// Connections that answer lookups beside the one that writes (PostgreSQL: each statement
    /// is a round trip, and with one connection a lookup waited behind every announcement's).
    private let readers: ReaderPool?

    /// Announcements waiting for the writer, oldest first (the group commit:
    /// SQLRegistry+GroupCommit.swift).
    let waitingLock = NSLock()
    var waiting: [WaitingAnnouncement] = []

    init(_ connection: RegistryConnection, readers: [RegistryConnection] = []) {
        db = connection
        self.readers = readers.isEmpty ? nil : ReaderPool(readers)
    }

    func locked<T>(_ body: () throws -> T) throws -> T { try lock.withLock { try body() } }

    /// A lookup on a reader (the writer's connection when there are none).
    private func reading<T>(_ body: (RegistryConnection) throws -> T) throws -> T {
        guard let readers else { return try locked { try body(db) } }
        return try readers.with(body)
    }

    /// Changes to the totals made by one transaction, written at its end (one row update each,
    /// so two coordinators on one PostgreSQL hold a count's row lock only briefly).
    private struct CountChanges {
        var patients = 0, studies = 0, locations = 0
        var trusts: [String: Int] = [:]
    }

    private func apply(_ changes: CountChanges) throws {
        var named = [("patients", changes.patients), ("studies", changes.studies), ("locations", changes.locations)]
        named += changes.trusts.sorted { $0.key < $1.key }.map { ("trust \($0.key)", $0.value) }
        let statement = try db.prepare("INSERT INTO registry_counts (name, n) VALUES (?1, ?2) ON CONFLICT (name) DO UPDATE SET n = registry_counts.n + excluded.n")
        for (name, delta) in named where delta != 0 { try statement.run([.text(name), .integer(Int64(delta))]) }
    }

    static func count(_ name: String, on c: RegistryConnection) throws -> Int {
        Int(try c.prepare("SELECT n FROM registry_counts WHERE name = ?1").first([.text(name)]) { $0.int(0) } ?? 0)
    }

    /// One announcement's decisions and writes, inside the caller's transaction.
    func decide(trust: String, holdings: [(Holding, NHSIdentity.Resolution)], now: Double) throws -> AnnounceOutcome {
        var outcome = AnnounceOutcome()
        var counted = CountChanges()
        func text(_ v: String?) -> SQLValue { v.map(SQLValue.text) ?? .null }
        func nhsOf(_ resolution: NHSIdentity.Resolution) -> String? {
            if case .valid(let number) = resolution { return number.digits }
            return nil
        }
        let uids = Array(Set(holdings.map(\.0.study)))
        let numbers = Array(Set(holdings.compactMap { nhsOf($0.1) }))
        let localIDs = Array(Set(holdings.compactMap { holding, resolution in
            nhsOf(resolution) != nil && !(holding.patient?.id ?? "").isEmpty ? holding.patient?.id : nil
        }))
        // The view: what the registry holds of what the batch names.
        var locals: [String: String] = [:]  // patient id \u{1} issuer → NHS number
        try db.inLists(localIDs, from: 2) { list, values in
            for (id, issuer, nhs) in try db.prepare("SELECT patient_id, issuer, nhs FROM local_ids WHERE trust = ?1 AND patient_id IN (\(list))")
                .rows([.text(trust)] + values, { ($0.text(0) ?? "", $0.text(1) ?? "", $0.text(2) ?? "") }) { locals[id + "\u{1}" + issuer] = nhs }
        }
        var patients: [String: (sex: String?, birth: String?, from: String)] = [:]
        try db.inLists(numbers) { list, values in
            for (nhs, known) in try db.prepare("SELECT nhs, sex, birth_date, demographics_from FROM patients WHERE nhs IN (\(list))")
                .rows(values, { ($0.text(0) ?? "", (sex: $0.text(1), birth: $0.text(2), from: $0.text(3) ?? "")) }) { patients[nhs] = known }
        }
        var studies: [String: (nhs: String?, by: String)] = [:]
        var stored: [String: (key: String, held: [Location])] = [:]  // each known study's row: its key's NHS number ('' for none)
        try db.inLists(uids) { list, values in
            for row in try db.prepare("""
                SELECT k.uid, s.nhs, s.announced_by, s.held FROM study_keys k JOIN patient_studies s ON s.nhs = k.nhs AND s.uid = k.uid
                WHERE k.uid IN (\(list))
                """).rows(values, { $0 }) {
                let uid = row.text(0) ?? "", key = row.text(1) ?? ""
                studies[uid] = (nhs: key.isEmpty ? nil : key, by: row.text(2) ?? "")
                stored[uid] = (key, RegistryHoldings.decode(row.text(3)))
            }
        }
        let located = Set(stored.filter { $0.value.held.contains { $0.trust == trust } }.keys)
        var held = stored.mapValues(\.held)
        // What was there before the batch decides what the counts gain (writers are one at a
        // time, also across coordinators on one PostgreSQL: its writers' lock).
        let existed = Set(studies.keys)
        // The rows to write, decided holding by holding.
        var newLocals: [[SQLValue]] = []
        var newPatients: [[SQLValue]] = []
        var newPatient: [String: Int] = [:]  // NHS number → its row in newPatients
        // A study's columns as its first holding in the batch gives them (a known study
        // keeps its own: only its counts and holdings change), and the batch's largest counts.
        var studyColumns: [String: (columns: [SQLValue], instances: Int64, bytes: Int64)] = [:]
        var studyOrder: [String] = []
        func differs(_ a: String?, _ b: String?) -> Bool {
            guard let a = a?.trimmingCharacters(in: .whitespaces), let b = b?.trimmingCharacters(in: .whitespaces), !a.isEmpty, !b.isEmpty else { return false }
            return a.uppercased() != b.uppercased()
        }
        for (holding, resolution) in holdings {
            if case .invalid(let value) = resolution {
                try db.prepare("INSERT INTO identity_errors (trust, study, value, created) VALUES (?1, ?2, ?3, ?4) ON CONFLICT DO NOTHING")
                    .run([.text(trust), .text(holding.study), .text(value), .real(now)])
                if db.changes > 0 { outcome.invalid.append(holding.study) }
            }
            let nhs = nhsOf(resolution)
            if let nhs {
                // The local identifier cross-referenced to the NHS number.
                if let patient = holding.patient, !patient.id.isEmpty {
                    let issuer = patient.issuer ?? ""
                    let key = patient.id + "\u{1}" + issuer
                    if let existing = locals[key], existing != nhs {
                        try conflict("local-id", key: "\(trust) \(patient.id)\(issuer.isEmpty ? "" : " (\(issuer))")", existing, nhs,
                            from: (trust, "\(trust), study \(holding.study)"), now: now, outcome: &outcome)
                    } else if locals[key] == nil {
                        locals[key] = nhs
                        newLocals.append([.text(trust), .text(patient.id), .text(issuer), .text(nhs), .real(now)])
                    }
                }
                // The demographics compared; never a match made of them.
                if let known = patients[nhs] {
                    if differs(known.sex, holding.sex) || differs(known.birth, holding.birthDate) {
                        try conflict("demographics", key: nhs, "sex \(known.sex ?? "?") born \(known.birth ?? "?")", "sex \(holding.sex ?? "?") born \(holding.birthDate ?? "?")",
                            from: (known.from, "\(trust), study \(holding.study)"), now: now, outcome: &outcome)
                    } else if ((known.sex ?? "").isEmpty && !(holding.sex ?? "").isEmpty) || ((known.birth ?? "").isEmpty && !(holding.birthDate ?? "").isEmpty) {
                        // Only when the holding has something to fill in: a patient known
                        // without a sex was otherwise written again at each of its studies (a
                        // statement a study; at 200,000 studies, 100,000 updates that changed
                        // nothing).
                        let filled = ((known.sex ?? "").isEmpty ? holding.sex : known.sex, (known.birth ?? "").isEmpty ? holding.birthDate : known.birth, known.from)
                        patients[nhs] = filled
                        if let pending = newPatient[nhs] {
                            // New in this batch, not written yet: its row is filled in.
                            newPatients[pending][1] = text(filled.0)
                            newPatients[pending][2] = text(filled.1)
                        } else {
                            try db.prepare("UPDATE patients SET sex = coalesce(nullif(sex, ''), ?2), birth_date = coalesce(nullif(birth_date, ''), ?3) WHERE nhs = ?1")
                                .run([.text(nhs), text(holding.sex), text(holding.birthDate)])
                        }
                    }
                } else {
                    patients[nhs] = (holding.sex, holding.birthDate, trust)
                    newPatient[nhs] = newPatients.count
                    newPatients.append([.text(nhs), text(holding.sex), text(holding.birthDate), .text(trust), .real(now)])
                }
            }
            // The study: one patient only; the largest instance count seen (a partial
            // holder does not shrink it).
            if let known = studies[holding.study] {
                if let was = known.nhs, let nhs, was != nhs {
                    try conflict("study", key: holding.study, was, nhs, from: (known.by, trust), now: now, outcome: &outcome)
                } else if known.nhs == nil, let nhs {
                    studies[holding.study]?.nhs = nhs
                }
            } else {
                studies[holding.study] = (nhs, trust)
            }
            if let earlier = studyColumns[holding.study] {
                // Named twice in the batch: one row (a statement may not touch a row twice).
                studyColumns[holding.study] = (earlier.columns, max(earlier.instances, Int64(holding.instances)), max(earlier.bytes, holding.bytes))
            } else {
                studyColumns[holding.study] = ([
                    .text(studies[holding.study]?.by ?? trust), text(holding.date), .text(holding.modalities.joined(separator: "\\")),
                    text(holding.bodyPart), text(holding.description), text(holding.accession),
                ], Int64(holding.instances), holding.bytes)
                studyOrder.append(holding.study)
            }
            RegistryHoldings.hold(&held[holding.study, default: []], trust: trust, complete: holding.complete, instances: holding.instances, now: now)
            outcome.recorded += 1
        }
        // The writes (DO NOTHING: rows the view already found are not written again).
        try db.insertRows(newLocals, into: "local_ids (trust, patient_id, issuer, nhs, first_seen)", then: "ON CONFLICT DO NOTHING")
        counted.patients += try db.insertRows(newPatients, into: "patients (nhs, sex, birth_date, demographics_from, first_seen)", then: "ON CONFLICT DO NOTHING")
        // A known study whose patient became known moves under its NHS number, keeping its
        // own columns (rare: one trust announced it without a number, another with one).
        for uid in studyOrder {
            guard let was = stored[uid]?.key, let nhs = studies[uid]?.nhs, was != nhs else { continue }
            try db.prepare("""
                INSERT INTO patient_studies (\(Self.rowColumns))
                SELECT ?1, uid, announced_by, study_date, modalities, body_part, description, accession, instances, bytes, updated, held
                FROM patient_studies WHERE nhs = ?2 AND uid = ?3
                """).run([.text(nhs), .text(was), .text(uid)])
            try db.prepare("DELETE FROM patient_studies WHERE nhs = ?1 AND uid = ?2").run([.text(was), .text(uid)])
            try db.prepare("UPDATE study_keys SET nhs = ?1 WHERE uid = ?2").run([.text(nhs), .text(uid)])
        }
        try db.insertRows(studyOrder.filter { stored[$0] == nil }.map { [.text($0), .text(studies[$0]?.nhs ?? "")] }, into: "study_keys (uid, nhs)", then: "ON CONFLICT DO NOTHING")
        // Where copies came from (the first holder to say so names it): the origin's corrections
        // and withdrawals are what their holders hear of (`attention`).
        var origins: [String: String] = [:]
        for (holding, _) in holdings {
            if let origin = holding.origin, !origin.isEmpty, origin != trust, origins[holding.study] == nil { origins[holding.study] = origin }
        }
        // A study its origin announces again (restored to its archive) is no longer withdrawn.
        try db.inLists(uids, from: 2) { list, values in
            try db.prepare("DELETE FROM origin_withdrawals WHERE origin = ?1 AND uid IN (\(list))").run([.text(trust)] + values)
        }
        try db.insertRows(origins.sorted { $0.key < $1.key }.map { [.text($0.key), .text($0.value)] }, into: "study_origins (uid, origin)", then: "ON CONFLICT DO NOTHING")
        // A trust announcing a study as its own is its origin, whatever a copy's holder claimed
        // first (C, given a copy by B, may announce before A, whose study it is). Only studies
        // a copy was claimed of have a row: the update touches nothing for the rest.
        let own = Array(Set(holdings.compactMap { $0.0.origin == nil || $0.0.origin == trust ? $0.0.study : nil }))
        try db.inLists(own, from: 2) { list, values in
            try db.prepare("UPDATE study_origins SET origin = ?1 WHERE uid IN (\(list)) AND origin <> ?1").run([.text(trust)] + values)
        }
        // In key order, so a batch's rows go into the tree page by page.
        let keyed = studyOrder.map { (key: studies[$0]?.nhs ?? "", uid: $0) }.sorted { ($0.key, $0.uid) < ($1.key, $1.uid) }
        try db.insertRows(keyed.compactMap { study -> [SQLValue]? in
            guard let columns = studyColumns[study.uid] else { return nil }
            return [.text(study.key), .text(study.uid)] + columns.columns
                + [.integer(columns.instances), .integer(columns.bytes), .real(now), .text(RegistryHoldings.encode(held[study.uid] ?? []))]
        }, into: "patient_studies (\(Self.rowColumns))", then: """
            ON CONFLICT (nhs, uid) DO UPDATE SET
              instances = CASE WHEN patient_studies.instances > excluded.instances THEN patient_studies.instances ELSE excluded.instances END,
              bytes = CASE WHEN patient_studies.bytes > excluded.bytes THEN patient_studies.bytes ELSE excluded.bytes END,
              updated = excluded.updated, held = excluded.held
            """)
        let newLocations = studyOrder.filter { !located.contains($0) }.count
        counted.studies += studyOrder.filter { !existed.contains($0) }.count
        counted.locations += newLocations
        counted.trusts[trust, default: 0] += newLocations
        try apply(counted)
        outcome.trustStudies = try Self.count("trust \(trust)", on: db)
        outcome.newStudies = counted.studies
        return outcome
    }

    private func conflict(_ kind: String, key: String, _ first: String, _ second: String, from: (String, String), now: Double, outcome: inout AnnounceOutcome) throws {
        try db.prepare("INSERT INTO conflicts (kind, key, first, second, first_from, second_from, created) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7) ON CONFLICT DO NOTHING")
            .run([.text(kind), .text(key), .text(first), .text(second), .text(from.0), .text(from.1), .real(now)])
        if db.changes > 0 { outcome.conflicts.append("\(kind) \(key): \(first) (\(from.0)) vs \(second) (\(from.1))") }
    }

    public func withdraw(trust: String, studies: [String]) throws -> Int {
        try locked {
            try db.transaction {
                var removed = 0
                try db.inLists(Array(Set(studies))) { list, values in
                    for row in try db.prepare("""
                        SELECT k.uid, s.nhs, s.held, coalesce(o.origin, s.announced_by) FROM study_keys k
                        JOIN patient_studies s ON s.nhs = k.nhs AND s.uid = k.uid LEFT JOIN study_origins o ON o.uid = k.uid WHERE k.uid IN (\(list))
                        """).rows(values, { $0 }) {
                        var held = RegistryHoldings.decode(row.text(2))
                        guard let index = held.firstIndex(where: { $0.trust == trust }) else { continue }
                        held.remove(at: index)
                        // The origin no longer holds it, others still do: their copies are of a
                        // study its origin has deleted, which may have been a mistake (the wrong
                        // patient) — they hear of it (`attention`).
                        if row.text(3) == trust && !held.isEmpty {
                            try db.prepare("INSERT INTO origin_withdrawals (uid, origin, withdrawn) VALUES (?1, ?2, ?3) ON CONFLICT (uid) DO NOTHING")
                                .run([.text(row.text(0) ?? ""), .text(trust), .real(Date().timeIntervalSince1970)])
                        }
                        try db.prepare("UPDATE patient_studies SET held = ?1 WHERE nhs = ?2 AND uid = ?3")
                            .run([.text(RegistryHoldings.encode(held)), .text(row.text(1) ?? ""), .text(row.text(0) ?? "")])
                        if held.isEmpty {
                            // Nobody holds it any more: no copy to tell of its withdrawal.
                            try db.prepare("DELETE FROM origin_withdrawals WHERE uid = ?1").run([.text(row.text(0) ?? "")])
                        }
                        removed += 1
                    }
                }
                try apply(CountChanges(locations: -removed, trusts: [trust: -removed]))
                return removed
            }
        }
    }

    /// The columns of a `patient_studies` row, in the order rows are written.
    static let rowColumns = "nhs, uid, announced_by, study_date, modalities, body_part, description, accession, instances, bytes, updated, held"

    /// What lookups answer of a study, and where it is held (column 9).
    static let studyColumns = "s.uid, s.nhs, s.study_date, s.modalities, s.body_part, s.description, s.accession, s.instances, s.bytes, s.held"

    static func record(_ row: RegistryRow) -> StudyRecord {
        let nhs = row.text(1) ?? ""
        return StudyRecord(
            uid: row.text(0) ?? "", nhs: nhs.isEmpty ? nil : nhs, date: row.text(2), modalities: (row.text(3) ?? "").split(separator: "\\").map(String.init),
            bodyPart: row.text(4), description: row.text(5), accession: row.text(6), instances: Int(row.int(7)), bytes: row.int(8),
            locations: RegistryHoldings.decode(row.text(9)), conflicted: false)
    }

    public func patientStudies(nhs: String) throws -> (studies: [StudyRecord], conflicts: [IdentityConflict]) {
        try reading { c in
            try c.readTransaction {
                // Two statements, sent together (one round trip on PostgreSQL): the patient's
                // studies, one range of one tree with where each is held (those nobody holds
                // any more are not shown), then every conflict that names the patient or one of
                // its studies — read second, so none that existed when the studies were read is
                // missed. A branch per index (an OR across columns and a subquery can make
                // PostgreSQL scan the whole table); UNION drops a row two branches found.
                let answers = try c.together([
                    ("SELECT \(Self.studyColumns) FROM patient_studies s WHERE s.nhs = ?1 ORDER BY s.study_date DESC, s.uid", [.text(nhs)]),
                    ("""
                    SELECT \(Self.conflictColumns) FROM conflicts WHERE first = ?1
                    UNION SELECT \(Self.conflictColumns) FROM conflicts WHERE second = ?1
                    UNION SELECT \(Self.conflictColumns) FROM conflicts WHERE key = ?1
                    UNION SELECT \(Self.conflictColumns) FROM conflicts WHERE kind = 'study' AND key IN (SELECT uid FROM patient_studies WHERE nhs = ?1)
                    ORDER BY id
                    """, [.text(nhs)]),
                ])
                var studies = answers[0].map(Self.record).filter { !$0.locations.isEmpty }
                let named = answers[1].map(Self.conflict)
                let conflictedStudies = Set(named.filter { $0.kind == "study" }.map(\.key))
                for index in studies.indices { studies[index].conflicted = conflictedStudies.contains(studies[index].uid) }
                return (studies, named.filter { $0.first == nhs || $0.second == nhs || $0.key == nhs })
            }
        }
    }

    public func identity(trust: String, nhs: String) throws -> (identifiers: [NHSIdentity.Identifier], conflicts: [IdentityConflict]) {
        try reading { c in
            try c.readTransaction {
                // By the index on (nhs, trust): one short range however many patients a trust has.
                let identifiers = try c.prepare("SELECT patient_id, issuer FROM local_ids WHERE nhs = ?1 AND trust = ?2 ORDER BY first_seen, patient_id")
                    .rows([.text(nhs), .text(trust)]) { row in
                        NHSIdentity.Identifier(id: row.text(0) ?? "", issuer: (row.text(1) ?? "").isEmpty ? nil : row.text(1))
                    }
                let conflicts = try c.prepare("""
                    SELECT \(Self.conflictColumns) FROM conflicts WHERE first = ?1
                    UNION SELECT \(Self.conflictColumns) FROM conflicts WHERE second = ?1
                    UNION SELECT \(Self.conflictColumns) FROM conflicts WHERE key = ?1
                    ORDER BY id
                    """).rows([.text(nhs)], Self.conflict)
                return (identifiers, conflicts)
            }
        }
    }

    public func study(uid: String) throws -> StudyRecord? {
        try reading { c in
            try c.readTransaction {
                guard var study = try c.prepare("""
                    SELECT \(Self.studyColumns) FROM study_keys k JOIN patient_studies s ON s.nhs = k.nhs AND s.uid = k.uid WHERE k.uid = ?1
                    """).first([.text(uid)], Self.record) else { return nil }
                study.conflicted = try c.prepare("SELECT 1 FROM conflicts WHERE kind = 'study' AND key = ?1").first([.text(uid)]) { _ in true } ?? false
                return study
            }
        }
    }

    static let conflictColumns = "id, kind, key, first, second, first_from, second_from, created"
    static func conflict(_ row: RegistryRow) -> IdentityConflict {
        IdentityConflict(
            id: row.int(0), kind: row.text(1) ?? "", key: row.text(2) ?? "", first: row.text(3) ?? "", second: row.text(4) ?? "",
            firstFrom: row.text(5) ?? "", secondFrom: row.text(6) ?? "", created: row.double(7))
    }

    public func attention(trust: String) throws -> [CopyAttention] {
        try reading { c in
            try c.readTransaction {
                // Both sets are small (conflicts held for a person; studies withdrawn at their
                // origin while copied): each candidate's holders are then read by its key.
                var candidates: [(uid: String, kind: CopyAttention.Kind, detail: String, since: Double, by: String)] = []
                for row in try c.prepare("SELECT key, first, second, first_from, second_from, created FROM conflicts WHERE kind = 'study' ORDER BY id").rows([], { $0 }) {
                    let detail = "announced under NHS number \(row.text(1) ?? "?") by \(row.text(3) ?? "?"), then under \(row.text(2) ?? "?") by \(row.text(4) ?? "?")"
                    candidates.append((row.text(0) ?? "", .identityChanged, detail, row.double(5), row.text(4) ?? ""))
                }
                for row in try c.prepare("SELECT uid, origin, withdrawn FROM origin_withdrawals ORDER BY withdrawn").rows([], { $0 }) {
                    candidates.append((row.text(0) ?? "", .withdrawnAtOrigin, "withdrawn by \(row.text(1) ?? "?"), its origin", row.double(2), row.text(1) ?? ""))
                }
                var out: [CopyAttention] = []
                let holders = try c.prepare("""
                    SELECT s.held, o.origin FROM study_keys k JOIN patient_studies s ON s.nhs = k.nhs AND s.uid = k.uid
                    LEFT JOIN study_origins o ON o.uid = k.uid WHERE k.uid = ?1
                    """)
                for candidate in candidates where candidate.by != trust {
                    guard let row = try holders.first([.text(candidate.uid)], { $0 }) else { continue }
                    // A conflict another copy's holder made is not a correction at the origin
                    // (it is held for a person as a conflict all the same).
                    if let origin = row.text(1), origin != candidate.by { continue }
                    guard RegistryHoldings.decode(row.text(0)).contains(where: { $0.trust == trust }) else { continue }
                    out.append(CopyAttention(study: candidate.uid, origin: candidate.by, kind: candidate.kind, detail: candidate.detail, since: candidate.since))
                }
                return out
            }
        }
    }

    public func conflicts() throws -> [IdentityConflict] {
        try reading { c in try c.prepare("SELECT \(Self.conflictColumns) FROM conflicts ORDER BY id").rows([], Self.conflict) }
    }

    public func identityErrors() throws -> [IdentityError] {
        try reading { c in
            try c.prepare("SELECT trust, study, value, created FROM identity_errors ORDER BY created").rows([]) {
                IdentityError(trust: $0.text(0) ?? "", study: $0.text(1) ?? "", value: $0.text(2) ?? "", created: $0.double(3))
            }
        }
    }

    public func studyCount(trust: String) throws -> Int {
        try reading { c in try Self.count("trust \(trust)", on: c) }
    }

    public func totals() throws -> (patients: Int, studies: Int, locations: Int) {
        try reading { c in
            // One statement, so the three are of one moment on either store.
            var counts: [String: Int] = [:]
            for (name, n) in try c.prepare("SELECT name, n FROM registry_counts WHERE name IN ('patients', 'studies', 'locations')").rows([], { ($0.text(0) ?? "", Int($0.int(1))) }) {
                counts[name] = n
            }
            return (counts["patients"] ?? 0, counts["studies"] ?? 0, counts["locations"] ?? 0)
        }
    }
}
