import DICOM
import Foundation
import SQLite

/// What the agent tells the coordinator (its holdings) and what planning and fetching need of
/// the spool: queueing fetches, finishing plans and fetches, holding a job for a person.
extension AgentStore {
    /// A study as announced to the coordinator (`POST /v1/holdings`).
    public struct Announcement: Sendable {
        public var facts: StudyFacts
        public var instances: Int
        public var bytes: Int64
        public var origin: String
    }

    static let announcementColumns = """
        uid, patient_id, patient_issuer, study_date, modality, description, accession, body_part, other_ids, sex, birth_date, instances, bytes, origin
        """

    static func announcement(_ row: Row) -> Announcement {
        var facts = StudyFacts(uid: row.text(0) ?? "")
        facts.patientID = row.text(1)
        facts.patientIssuer = row.text(2)
        facts.date = row.text(3)
        facts.modality = row.text(4)
        facts.description = row.text(5)
        facts.accession = row.text(6)
        facts.bodyPart = row.text(7)
        if let text = row.text(8), let items = try? JSONSerialization.jsonObject(with: Data(text.utf8)) as? [[String: Any]] {
            facts.otherIDs = items.filter { $0["attribute"] == nil }.compactMap { item in (item["id"] as? String).map { ($0, item["issuer"] as? String) } }
            facts.otherPatientIDValues = items.filter { $0["attribute"] as? String == "OtherPatientIDs" }.compactMap { $0["id"] as? String }
        }
        facts.sex = row.text(9)
        facts.birthDate = row.text(10)
        return Announcement(facts: facts, instances: Int(row.int(11)), bytes: row.int(12), origin: row.text(13) ?? "local")
    }

    /// Studies whose holding the coordinator has not heard as it is now (new, or grown since),
    /// but those it refused as they are now (set aside until they change).
    public func unannounced(limit: Int) throws -> [Announcement] {
        try read {
            try db.prepare("SELECT \(Self.announcementColumns) FROM studies WHERE announced != instances AND instances > 0 AND \(Self.notRefused) LIMIT ?1")
                .rows([.integer(Int64(limit))], Self.announcement)
        }
    }

    /// A study the coordinator refused at its present instance count is not offered again.
    static let notRefused = "NOT EXISTS (SELECT 1 FROM announce_refusals r WHERE r.uid = studies.uid AND r.instances = studies.instances)"

    static let announceRefusalSchema = """
        CREATE TABLE IF NOT EXISTS announce_refusals (uid TEXT PRIMARY KEY, instances INTEGER NOT NULL, reason TEXT NOT NULL, refused REAL NOT NULL) WITHOUT ROWID;
        """

    /// The coordinator refused this study's announcement (a field of its header out of kind or
    /// range): set aside at this instance count; a study that changes is offered again.
    public func recordAnnounceRefusal(uid: String, instances: Int, reason: String, now: Double) throws {
        try write {
            try db.prepare("INSERT INTO announce_refusals (uid, instances, reason, refused) VALUES (?1, ?2, ?3, ?4) ON CONFLICT (uid) DO UPDATE SET instances = ?2, reason = ?3, refused = ?4")
                .run([.text(uid), .integer(Int64(instances)), .text(reason), .real(now)])
        }
    }

    /// The studies the coordinator refused as they are now, for `consort status`.
    public func announceRefusals() throws -> [(uid: String, reason: String, refused: Double)] {
        try read {
            try db.prepare("SELECT r.uid, r.reason, r.refused FROM announce_refusals r JOIN studies s ON s.uid = r.uid AND s.instances = r.instances ORDER BY r.refused LIMIT 100")
                .rows([]) { ($0.text(0) ?? "", $0.text(1) ?? "", $0.double(2)) }
        }
    }

    /// The coordinator acknowledged these studies at these instance counts.
    public func markAnnounced(_ studies: [(uid: String, instances: Int)]) throws {
        try write {
            let statement = try db.prepare("UPDATE studies SET announced = ?2 WHERE uid = ?1")
            for study in studies { try statement.run([.text(study.uid), .integer(Int64(study.instances))]) }
        }
    }

    /// Everything is announced again (`consort agent resync`, or a coordinator that lost it).
    @discardableResult
    public func forgetAnnouncements() throws -> Int {
        try write {
            try db.prepare("UPDATE studies SET announced = -1 WHERE announced != -1").run()
            return db.changes
        }
    }

    /// Studies the coordinator has not heard of as they are now.
    public func unannouncedCount() throws -> Int {
        try read { Int(try db.prepare("SELECT count(*) FROM studies WHERE announced != instances AND instances > 0 AND \(Self.notRefused)").first { $0.int(0) } ?? 0) }
    }

    public func announcedStudyCount() throws -> Int {
        try read { Int(try db.prepare("SELECT count(*) FROM studies WHERE announced > 0").first { $0.int(0) } ?? 0) }
    }

    /// A study's facts, if the inventory holds it.
    public func study(_ uid: String) throws -> Announcement? {
        try read { try db.prepare("SELECT \(Self.announcementColumns) FROM studies WHERE uid = ?1").first([.text(uid)], Self.announcement) }
    }

    /// A planning job's query, or the patient a fetch is for.
    public func search(ofJob id: Int64) throws -> PriorSearch? {
        try read { try db.prepare("SELECT detail FROM jobs WHERE id = ?1").first([.integer(id)]) { $0.text(0) }?.flatMap(PriorSearch.init(stored:)) }
    }

    /// Queues jobs about a study that has no instances here yet (a gather's plan).
    @discardableResult
    public func queue(_ jobs: [NewJob], study: String, now: Double) throws -> Int {
        try write { try addJobs(jobs, study: study, instances: [], now: now) }
    }

    /// Queues a fetch of a study unless it is held here or a fetch of it is pending — checked
    /// and queued in one transaction, so two plans running at once never queue it twice.
    public func queueFetch(_ job: NewJob, study: String, now: Double) throws -> Bool {
        try write {
            let held = try db.prepare("SELECT 1 FROM studies WHERE uid = ?1").first([.text(study)]) { _ in true } ?? false
            let pending = try db.prepare("SELECT 1 FROM jobs WHERE kind = 'fetch' AND study = ?1 AND state NOT IN ('done', 'failed', 'dropped') LIMIT 1")
                .first([.text(study)]) { _ in true } ?? false
            guard !held, !pending else { return false }
            _ = try addJobs([job], study: study, instances: [], now: now)
            return true
        }
    }

    /// A planning job (prefetch, gather) that did its work: done, with what it decided.
    public func finishPlanning(job id: Int64, note: String, now: Double) throws {
        try write {
            try db.prepare("UPDATE jobs SET state = 'done', finished = ?2, last_error = ?3, progress_at = ?2 WHERE id = ?1 AND state IN ('active', 'queued', 'deferred')")
                .run([.integer(id), .real(now), .text(note)])
        }
    }

    /// A fetch that stored its study: its instances recorded as acknowledged, the job done.
    public func finishFetch(job id: Int64, instances: [(sop: String, path: String, size: Int)], now: Double) throws {
        try write {
            let insert = try db.prepare("INSERT INTO job_instances (job, sop, path, size, state) VALUES (?1, ?2, ?3, ?4, 'acknowledged') ON CONFLICT DO NOTHING")
            var count = 0
            var bytes: Int64 = 0
            for instance in instances {
                try insert.run([.integer(id), .text(instance.sop), .text(instance.path), .integer(Int64(instance.size))])
                if db.changes > 0 {
                    count += 1
                    bytes += Int64(instance.size)
                }
            }
            try db.prepare("""
                UPDATE jobs SET instances_total = instances_total + ?2, instances_acked = instances_acked + ?2, bytes_total = bytes_total + ?3,
                  bytes_sent = bytes_sent + ?3, progress_at = ?4 WHERE id = ?1
                """).run([.integer(id), .integer(Int64(count)), .integer(bytes), .real(now)])
            // Done, unless an operator held or dropped it meanwhile (its files are kept either way).
            try db.prepare("UPDATE jobs SET state = 'done', finished = ?2 WHERE id = ?1 AND state = 'active'").run([.integer(id), .real(now)])
        }
    }

    /// A job held for a person (an identity conflict at the coordinator), with the reason.
    public func holdForAPerson(job id: Int64, reason: String) throws {
        try write {
            // Never over an operator's drop, nor a job finished.
            try db.prepare("UPDATE jobs SET state = 'held', last_error = ?2 WHERE id = ?1 AND state IN ('queued', 'active', 'deferred', 'held')").run([.integer(id), .text(reason)])
        }
    }

    /// The paths of a study's instances, any origin (what WADO-RS serves of it).
    public func paths(ofStudy uid: String) throws -> [String] {
        try read { try db.prepare("SELECT path FROM instances WHERE study = ?1 ORDER BY sop").rows([.text(uid)]) { $0.text(0) ?? "" } }
    }

    /// A file taken that is not an instance (an MDT list): not taken again unless it changes.
    public func recordFile(path: String, size: Int, mtime: Double, problem: String?, now: Double) throws {
        try write {
            try db.prepare("INSERT INTO files (path, size, mtime, sop, problem, taken) VALUES (?1, ?2, ?3, NULL, ?4, ?5) ON CONFLICT(path) DO UPDATE SET size = ?2, mtime = ?3, problem = ?4, taken = ?5")
                .run([.text(path), .integer(Int64(size)), .real(mtime), problem.map(SQLValue.text) ?? .null, .real(now)])
        }
    }
}
