import Foundation
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
    public static func sqlite(path: String) throws -> SQLRegistry {
        try FileManager.default.createDirectory(atPath: (path as NSString).deletingLastPathComponent, withIntermediateDirectories: true)
        let connection = SQLiteConnection(try Database(path: path))
        // A page cache of 128 MB (SQLite's default is 2 MB): at millions of studies the
        // indexes by patient and by local identifier take random inserts, and a small cache
        // sends each to the disk (announcing 10 million studies slowed from 28,000 to under
        // 10,000 a second). The coordinator's RSS target is 300 MB.
        try connection.execute("PRAGMA cache_size = -131072")
        try connection.execute(Schema.sqlite)
        let registry = SQLRegistry(connection)
        try registry.countIfUncounted()
        return registry
    }

    /// An existing SQLite registry, for reading (`consort coordinator conflicts`).
    public static func sqlite(readingOnly path: String) throws -> SQLRegistry {
        SQLRegistry(SQLiteConnection(try Database(path: path, readOnly: true)))
    }

    /// The registry in a PostgreSQL database (its tables created if missing).
    public static func postgresql(_ conninfo: String) throws -> SQLRegistry {
        let connection = try PostgreSQLConnection(conninfo)
        try connection.execute(Schema.postgresql)
        let registry = SQLRegistry(connection)
        try registry.countIfUncounted()
        return registry
    }

    init(_ connection: RegistryConnection) { db = connection }

    private func locked<T>(_ body: () throws -> T) throws -> T { try lock.withLock { try body() } }

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

    private func count(_ name: String) throws -> Int {
        Int(try db.prepare("SELECT n FROM registry_counts WHERE name = ?1").first([.text(name)]) { $0.int(0) } ?? 0)
    }

    /// A registry made before the totals were kept is counted once, when it is opened.
    func countIfUncounted() throws {
        try locked {
            try db.transaction {
                let kept = try db.prepare("SELECT count(*) FROM registry_counts").first([]) { $0.int(0) } ?? 0
                guard kept == 0 else { return }
                // A marker row, so an empty registry is not counted again at each start.
                try db.prepare("INSERT INTO registry_counts (name, n) VALUES ('counted', 1) ON CONFLICT (name) DO NOTHING").run()
                for table in ["patients", "studies", "locations"] {
                    try db.prepare("INSERT INTO registry_counts (name, n) SELECT '\(table)', count(*) FROM \(table) WHERE true ON CONFLICT (name) DO NOTHING").run()
                }
                try db.prepare("INSERT INTO registry_counts (name, n) SELECT 'trust ' || trust, count(*) FROM locations WHERE true GROUP BY trust ON CONFLICT (name) DO NOTHING").run()
            }
        }
    }

    public func announce(trust: String, holdings: [(Holding, NHSIdentity.Resolution)], now: Double) throws -> AnnounceOutcome {
        try locked {
            try db.transaction {
                var outcome = AnnounceOutcome()
                var counted = CountChanges()
                for (holding, resolution) in holdings {
                    var nhs: String?
                    switch resolution {
                    case .valid(let number): nhs = number.digits
                    case .invalid(let value):
                        try db.prepare("INSERT INTO identity_errors (trust, study, value, created) VALUES (?1, ?2, ?3, ?4) ON CONFLICT DO NOTHING")
                            .run([.text(trust), .text(holding.study), .text(value), .real(now)])
                        if db.changes > 0 { outcome.invalid.append(holding.study) }
                    case .absent: break
                    }
                    if let nhs { try recordPatient(nhs: nhs, trust: trust, holding: holding, now: now, outcome: &outcome, counted: &counted) }
                    try recordStudy(nhs: nhs, trust: trust, holding: holding, now: now, outcome: &outcome, counted: &counted)
                    outcome.recorded += 1
                }
                try apply(counted)
                outcome.trustStudies = try count("trust \(trust)")
                return outcome
            }
        }
    }

    private func conflict(_ kind: String, key: String, _ first: String, _ second: String, from: (String, String), now: Double, outcome: inout AnnounceOutcome) throws {
        try db.prepare("INSERT INTO conflicts (kind, key, first, second, first_from, second_from, created) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7) ON CONFLICT DO NOTHING")
            .run([.text(kind), .text(key), .text(first), .text(second), .text(from.0), .text(from.1), .real(now)])
        if db.changes > 0 { outcome.conflicts.append("\(kind) \(key): \(first) (\(from.0)) vs \(second) (\(from.1))") }
    }

    /// The local identifier cross-referenced to the NHS number, and the demographics compared.
    private func recordPatient(nhs: String, trust: String, holding: Holding, now: Double, outcome: inout AnnounceOutcome, counted: inout CountChanges) throws {
        if let patient = holding.patient, !patient.id.isEmpty {
            let issuer = patient.issuer ?? ""
            let existing = try db.prepare("SELECT nhs FROM local_ids WHERE trust = ?1 AND patient_id = ?2 AND issuer = ?3")
                .first([.text(trust), .text(patient.id), .text(issuer)]) { $0.text(0) } ?? nil
            if let existing, existing != nhs {
                try conflict("local-id", key: "\(trust) \(patient.id)\(issuer.isEmpty ? "" : " (\(issuer))")", existing, nhs,
                    from: (trust, "\(trust), study \(holding.study)"), now: now, outcome: &outcome)
            } else if existing == nil {
                try db.prepare("INSERT INTO local_ids (trust, patient_id, issuer, nhs, first_seen) VALUES (?1, ?2, ?3, ?4, ?5)")
                    .run([.text(trust), .text(patient.id), .text(issuer), .text(nhs), .real(now)])
            }
        }
        let known = try db.prepare("SELECT sex, birth_date, demographics_from FROM patients WHERE nhs = ?1").first([.text(nhs)]) { ($0.text(0), $0.text(1), $0.text(2) ?? "") }
        guard let known else {
            // DO NOTHING: another coordinator on the same PostgreSQL may have just added it.
            try db.prepare("INSERT INTO patients (nhs, sex, birth_date, demographics_from, first_seen) VALUES (?1, ?2, ?3, ?4, ?5) ON CONFLICT DO NOTHING")
                .run([.text(nhs), holding.sex.map(SQLValue.text) ?? .null, holding.birthDate.map(SQLValue.text) ?? .null, .text(trust), .real(now)])
            counted.patients += db.changes
            return
        }
        func differs(_ a: String?, _ b: String?) -> Bool {
            guard let a = a?.trimmingCharacters(in: .whitespaces), let b = b?.trimmingCharacters(in: .whitespaces), !a.isEmpty, !b.isEmpty else { return false }
            return a.uppercased() != b.uppercased()
        }
        if differs(known.0, holding.sex) || differs(known.1, holding.birthDate) {
            try conflict("demographics", key: nhs, "sex \(known.0 ?? "?") born \(known.1 ?? "?")", "sex \(holding.sex ?? "?") born \(holding.birthDate ?? "?")",
                from: (known.2, "\(trust), study \(holding.study)"), now: now, outcome: &outcome)
        } else if (known.0 ?? "").isEmpty || (known.1 ?? "").isEmpty {
            try db.prepare("UPDATE patients SET sex = coalesce(nullif(sex, ''), ?2), birth_date = coalesce(nullif(birth_date, ''), ?3) WHERE nhs = ?1")
                .run([.text(nhs), holding.sex.map(SQLValue.text) ?? .null, holding.birthDate.map(SQLValue.text) ?? .null])
        }
    }

    private func recordStudy(nhs: String?, trust: String, holding: Holding, now: Double, outcome: inout AnnounceOutcome, counted: inout CountChanges) throws {
        func text(_ v: String?) -> SQLValue { v.map(SQLValue.text) ?? .null }
        let existing = try db.prepare("SELECT nhs, announced_by FROM studies WHERE uid = ?1").first([.text(holding.study)]) { ($0.text(0), $0.text(1) ?? "") }
        if let existing {
            if let known = existing.0, let nhs, known != nhs {
                try conflict("study", key: holding.study, known, nhs, from: (existing.1, trust), now: now, outcome: &outcome)
            } else if existing.0 == nil, let nhs {
                try db.prepare("UPDATE studies SET nhs = ?2 WHERE uid = ?1").run([.text(holding.study), .text(nhs)])
            }
            // The largest instance count seen: a partial holder does not shrink the study.
            try db.prepare("""
                UPDATE studies SET instances = CASE WHEN instances > ?2 THEN instances ELSE ?2 END,
                  bytes = CASE WHEN bytes > ?3 THEN bytes ELSE ?3 END, updated = ?4 WHERE uid = ?1
                """)
                .run([.text(holding.study), .integer(Int64(holding.instances)), .integer(holding.bytes), .real(now)])
        } else {
            try db.prepare("""
                INSERT INTO studies (uid, nhs, announced_by, study_date, modalities, body_part, description, accession, instances, bytes, updated)
                VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11) ON CONFLICT DO NOTHING
                """).run([.text(holding.study), text(nhs), .text(trust), text(holding.date), .text(holding.modalities.joined(separator: "\\")), text(holding.bodyPart),
                    text(holding.description), text(holding.accession), .integer(Int64(holding.instances)), .integer(holding.bytes), .real(now)])
            counted.studies += db.changes
        }
        // Inserted or updated: which one decides whether the counts change.
        let location: [SQLValue] = [.text(holding.study), .text(trust), .integer(holding.complete ? 1 : 0), .integer(Int64(holding.instances)), .real(now)]
        try db.prepare("INSERT INTO locations (study, trust, complete, instances, since) VALUES (?1, ?2, ?3, ?4, ?5) ON CONFLICT (study, trust) DO NOTHING").run(location)
        if db.changes > 0 {
            counted.locations += 1
            counted.trusts[trust, default: 0] += 1
        } else {
            try db.prepare("UPDATE locations SET complete = ?3, instances = ?4 WHERE study = ?1 AND trust = ?2").run(Array(location.prefix(4)))
        }
    }

    public func withdraw(trust: String, studies: [String]) throws -> Int {
        try locked {
            try db.transaction {
                var removed = 0
                for study in studies {
                    try db.prepare("DELETE FROM locations WHERE study = ?1 AND trust = ?2").run([.text(study), .text(trust)])
                    removed += db.changes
                }
                try apply(CountChanges(locations: -removed, trusts: [trust: -removed]))
                return removed
            }
        }
    }

    static let studyColumns = "s.uid, s.nhs, s.study_date, s.modalities, s.body_part, s.description, s.accession, s.instances, s.bytes"

    private func record(_ row: RegistryRow) -> StudyRecord {
        StudyRecord(
            uid: row.text(0) ?? "", nhs: row.text(1), date: row.text(2), modalities: (row.text(3) ?? "").split(separator: "\\").map(String.init),
            bodyPart: row.text(4), description: row.text(5), accession: row.text(6), instances: Int(row.int(7)), bytes: row.int(8), locations: [], conflicted: false)
    }

    private func withLocations(_ study: inout StudyRecord) throws {
        study.locations = try db.prepare("SELECT trust, complete, instances, since FROM locations WHERE study = ?1 ORDER BY since, trust").rows([.text(study.uid)]) {
            Location(trust: $0.text(0) ?? "", complete: $0.int(1) != 0, instances: Int($0.int(2)), since: $0.double(3))
        }
        study.conflicted = try db.prepare("SELECT 1 FROM conflicts WHERE kind = 'study' AND key = ?1 LIMIT 1").first([.text(study.uid)]) { _ in true } ?? false
    }

    public func patientStudies(nhs: String) throws -> (studies: [StudyRecord], conflicts: [IdentityConflict]) {
        try locked {
            try db.readTransaction {
                let conflicts = try db.prepare("SELECT \(Self.conflictColumns) FROM conflicts WHERE first = ?1 OR second = ?1 OR key = ?1 ORDER BY id")
                    .rows([.text(nhs)], Self.conflict)
                var studies = try db.prepare("SELECT \(Self.studyColumns) FROM studies s WHERE s.nhs = ?1 ORDER BY s.study_date DESC, s.uid").rows([.text(nhs)], record)
                for index in studies.indices { try withLocations(&studies[index]) }
                // Studies nobody holds any more are not shown.
                return (studies.filter { !$0.locations.isEmpty }, conflicts)
            }
        }
    }

    public func study(uid: String) throws -> StudyRecord? {
        try locked {
            guard var study = try db.prepare("SELECT \(Self.studyColumns) FROM studies s WHERE s.uid = ?1").first([.text(uid)], record) else { return nil }
            try withLocations(&study)
            return study
        }
    }

    static let conflictColumns = "id, kind, key, first, second, first_from, second_from, created"
    static func conflict(_ row: RegistryRow) -> IdentityConflict {
        IdentityConflict(
            id: row.int(0), kind: row.text(1) ?? "", key: row.text(2) ?? "", first: row.text(3) ?? "", second: row.text(4) ?? "",
            firstFrom: row.text(5) ?? "", secondFrom: row.text(6) ?? "", created: row.double(7))
    }

    public func conflicts() throws -> [IdentityConflict] {
        try locked { try db.prepare("SELECT \(Self.conflictColumns) FROM conflicts ORDER BY id").rows([], Self.conflict) }
    }

    public func identityErrors() throws -> [IdentityError] {
        try locked {
            try db.prepare("SELECT trust, study, value, created FROM identity_errors ORDER BY created").rows([]) {
                IdentityError(trust: $0.text(0) ?? "", study: $0.text(1) ?? "", value: $0.text(2) ?? "", created: $0.double(3))
            }
        }
    }

    public func studyCount(trust: String) throws -> Int {
        try locked { try count("trust \(trust)") }
    }

    public func totals() throws -> (patients: Int, studies: Int, locations: Int) {
        try locked {
            try db.readTransaction { (try count("patients"), try count("studies"), try count("locations")) }
        }
    }
}
