import DICOM
import Foundation
import Platform
import SQLite
import Spool

/// The agent's inventory and spool, in one SQLite database under `state` (WAL, synchronous=FULL).
///
/// Why one database rather than Postfix-style job files: "the file was taken" and "the jobs it
/// caused" must become durable together, or a crash between the two loses a trigger or repeats
/// one. One SQLite transaction does exactly that, and a job's instances and which of them the peer
/// acknowledged are rows changed in the same kind of transaction as each answer. (A folder of job
/// files would need the inventory to live in files too, or two commits with a crash window
/// between them.)
///
/// The only SQL of the inventory and spool tables is here. One connection, used under a lock:
/// the watcher's ingest, the scheduler, the senders and the receiver's threads each call in for
/// short transactions.
public final class AgentStore: @unchecked Sendable {
    let db: Database
    private let lock = NSLock()
    public let path: String
    /// A second connection, read only, for one question: which of these files were taken
    /// unchanged (`unchanged`). WAL lets it read while the writer commits, so a catch-up scan
    /// reading the next batch does not wait for the transaction of the batch before.
    private let lookup: Database?
    private let lookupLock = NSLock()

    public init(path: String) throws {
        self.path = path
        db = try Database(path: path)
        lookup = try Database(path: path, readOnly: true)
        try db.execute(Self.schema + Self.milestonesSchema + Self.withdrawalSchema + Self.identityHoldSchema + Self.announceRefusalSchema)
        try migrate()
        // What the announcer looks for every few seconds: only the studies it has still to
        // announce, not a scan of the whole inventory.
        try db.execute("CREATE INDEX IF NOT EXISTS studies_unannounced ON studies(uid) WHERE announced != instances")
        try db.execute(Self.resultsSchema)
    }

    /// Opens an existing database for reading only (the operator commands while the agent is down).
    public init(readingOnly path: String) throws {
        self.path = path
        db = try Database(path: path, readOnly: true)
        lookup = nil
    }

    static let schema = """
        CREATE TABLE IF NOT EXISTS files (
            path TEXT PRIMARY KEY, size INTEGER NOT NULL, mtime REAL NOT NULL,
            sop TEXT, problem TEXT, taken REAL NOT NULL);
        CREATE TABLE IF NOT EXISTS studies (
            uid TEXT PRIMARY KEY, patient_id TEXT, patient_issuer TEXT, study_date TEXT, modality TEXT,
            description TEXT, accession TEXT, body_part TEXT, origin TEXT NOT NULL,
            first_seen REAL NOT NULL, last_instance REAL NOT NULL, stable_fired INTEGER NOT NULL DEFAULT 0,
            sample_path TEXT NOT NULL, expected INTEGER, other_ids TEXT, sex TEXT, birth_date TEXT,
            instances INTEGER NOT NULL DEFAULT 0, bytes INTEGER NOT NULL DEFAULT 0, announced INTEGER NOT NULL DEFAULT -1);
        CREATE INDEX IF NOT EXISTS studies_unstable ON studies(last_instance) WHERE stable_fired >= 0;
        CREATE TABLE IF NOT EXISTS instances (
            sop TEXT PRIMARY KEY, study TEXT NOT NULL, series TEXT, path TEXT NOT NULL, size INTEGER NOT NULL,
            origin TEXT NOT NULL, rule TEXT, arrived REAL NOT NULL, sha256 TEXT, sent_sha256 TEXT);
        CREATE INDEX IF NOT EXISTS instances_by_study ON instances(study);
        CREATE INDEX IF NOT EXISTS studies_by_patient ON studies(patient_id);
        CREATE TABLE IF NOT EXISTS manifests (
            study TEXT NOT NULL, sender TEXT NOT NULL, final INTEGER NOT NULL, instances INTEGER NOT NULL, bytes INTEGER NOT NULL,
            received REAL NOT NULL, checked INTEGER NOT NULL DEFAULT -1, held INTEGER NOT NULL DEFAULT 0, completed REAL, PRIMARY KEY (study, sender)) WITHOUT ROWID;
        CREATE TABLE IF NOT EXISTS manifest_instances (
            study TEXT NOT NULL, sender TEXT NOT NULL, sop TEXT NOT NULL, size INTEGER NOT NULL, sha256 TEXT NOT NULL,
            PRIMARY KEY (study, sender, sop)) WITHOUT ROWID;
        CREATE TABLE IF NOT EXISTS jobs (
            id INTEGER PRIMARY KEY, kind TEXT NOT NULL, destination TEXT NOT NULL, study TEXT NOT NULL,
            rule TEXT NOT NULL, purpose TEXT NOT NULL, priority INTEGER NOT NULL, window TEXT,
            deadline REAL, created REAL NOT NULL, state TEXT NOT NULL, attempts INTEGER NOT NULL DEFAULT 0,
            next_attempt REAL NOT NULL, last_error TEXT, deadline_missed REAL, finished REAL,
            instances_total INTEGER NOT NULL DEFAULT 0, instances_acked INTEGER NOT NULL DEFAULT 0,
            instances_refused INTEGER NOT NULL DEFAULT 0, bytes_total INTEGER NOT NULL DEFAULT 0,
            bytes_sent INTEGER NOT NULL DEFAULT 0, bytes_refused INTEGER NOT NULL DEFAULT 0, progress_at REAL, detail TEXT,
            expect_result REAL, result_at REAL, result_alarm REAL, deidentify INTEGER NOT NULL DEFAULT 0,
            deidentify_options TEXT NOT NULL DEFAULT '', deidentified_study TEXT,
            UNIQUE (rule, destination, study));
        CREATE INDEX IF NOT EXISTS jobs_by_state ON jobs(state, destination);
        CREATE TABLE IF NOT EXISTS job_instances (
            job INTEGER NOT NULL REFERENCES jobs(id) ON DELETE CASCADE, sop TEXT NOT NULL, path TEXT NOT NULL,
            size INTEGER NOT NULL, state TEXT NOT NULL DEFAULT 'pending', reason TEXT, PRIMARY KEY (job, sop));
        CREATE TABLE IF NOT EXISTS attempts (
            job INTEGER NOT NULL REFERENCES jobs(id) ON DELETE CASCADE, started REAL NOT NULL, ended REAL NOT NULL,
            sent INTEGER NOT NULL, bytes INTEGER NOT NULL, outcome TEXT NOT NULL);
        CREATE INDEX IF NOT EXISTS attempts_by_job ON attempts(job);
        CREATE INDEX IF NOT EXISTS attempts_by_end ON attempts(ended);
        CREATE INDEX IF NOT EXISTS files_with_problem ON files(taken) WHERE problem IS NOT NULL;
        CREATE TABLE IF NOT EXISTS totals (name TEXT PRIMARY KEY, value INTEGER NOT NULL) WITHOUT ROWID;
        """

    /// The schema's version (`PRAGMA user_version`). 2: a job carries its own instance and byte
    /// counts, and the inventory its totals, so that `consort queue` and `consort status` read a
    /// few rows rather than counting a million (they must answer in well under 100 ms).
    /// 3: a study carries its instance count and bytes, the patient's other identifiers, sex
    /// and birth date, and how much of it was announced to the coordinator; a job its details
    /// (a prefetch's query).
    /// 4: a received instance keeps the SHA-256 of its bytes (checked against the sender's
    /// manifest), and the manifests themselves.
    /// 5: milestones, the first start's among them (`AgentStore+FirstStart.swift`).
    /// 7: a push job's expected result (issue 29: `expect_result`, `result_at`, `result_alarm`)
    /// and the results that came back (`AgentStore+Results.swift`); whether it goes
    /// de-identified (`deidentify`).
    /// 8: the de-identification options a job was queued with, and the study UID its peer knows
    /// it by (`deidentify_options`, `deidentified_study`: results from it are re-identified).
    static let schemaVersion = 8

    /// Brings a database written by an earlier version up to this one, in one transaction.
    private func migrate() throws {
        let version = try db.prepare("PRAGMA user_version").first { $0.int(0) } ?? 0
        guard version < Self.schemaVersion else { return }
        try db.transaction {
            if version < 5 { try migrateToFirstStart(from: version) }
            let instanceColumns = Set(try db.prepare("PRAGMA table_info(instances)").rows { $0.text(1) ?? "" })
            if !instanceColumns.contains("sha256") { try db.execute("ALTER TABLE instances ADD COLUMN sha256 TEXT") }
            if !instanceColumns.contains("sent_sha256") { try db.execute("ALTER TABLE instances ADD COLUMN sent_sha256 TEXT") }
            if version < 3 { try migrateToCounts() }
            let jobColumns = Set(try db.prepare("PRAGMA table_info(jobs)").rows { $0.text(1) ?? "" })
            for column in ["expect_result", "result_at", "result_alarm"] where !jobColumns.contains(column) {
                try db.execute("ALTER TABLE jobs ADD COLUMN \(column) REAL")
            }
            if !jobColumns.contains("deidentify") { try db.execute("ALTER TABLE jobs ADD COLUMN deidentify INTEGER NOT NULL DEFAULT 0") }
            if !jobColumns.contains("deidentify_options") { try db.execute("ALTER TABLE jobs ADD COLUMN deidentify_options TEXT NOT NULL DEFAULT ''") }
            if !jobColumns.contains("deidentified_study") { try db.execute("ALTER TABLE jobs ADD COLUMN deidentified_study TEXT") }
            try db.execute("PRAGMA user_version = \(Self.schemaVersion)")
        }
    }

    /// Version 2 and 3: the counts and the study's details (see `schemaVersion`).
    private func migrateToCounts() throws {
        do {
            let columns = Set(try db.prepare("PRAGMA table_info(jobs)").rows { $0.text(1) ?? "" })
            for (column, type) in [
                ("instances_total", "INTEGER NOT NULL DEFAULT 0"), ("instances_acked", "INTEGER NOT NULL DEFAULT 0"),
                ("instances_refused", "INTEGER NOT NULL DEFAULT 0"), ("bytes_total", "INTEGER NOT NULL DEFAULT 0"),
                ("bytes_sent", "INTEGER NOT NULL DEFAULT 0"), ("bytes_refused", "INTEGER NOT NULL DEFAULT 0"), ("progress_at", "REAL"), ("detail", "TEXT"),
            ] where !columns.contains(column) {
                try db.execute("ALTER TABLE jobs ADD COLUMN \(column) \(type)")
            }
            let studyColumns = Set(try db.prepare("PRAGMA table_info(studies)").rows { $0.text(1) ?? "" })
            for (column, type) in [
                ("other_ids", "TEXT"), ("sex", "TEXT"), ("birth_date", "TEXT"), ("instances", "INTEGER NOT NULL DEFAULT 0"),
                ("bytes", "INTEGER NOT NULL DEFAULT 0"), ("announced", "INTEGER NOT NULL DEFAULT -1"),
            ] where !studyColumns.contains(column) {
                try db.execute("ALTER TABLE studies ADD COLUMN \(column) \(type)")
            }
            try db.execute("""
                UPDATE studies SET instances = (SELECT count(*) FROM instances i WHERE i.study = studies.uid),
                  bytes = (SELECT coalesce(sum(size), 0) FROM instances i WHERE i.study = studies.uid)
                """)
            try db.execute("""
                UPDATE jobs SET
                  instances_total = (SELECT count(*) FROM job_instances i WHERE i.job = jobs.id),
                  instances_acked = (SELECT count(*) FROM job_instances i WHERE i.job = jobs.id AND i.state = 'acknowledged'),
                  instances_refused = (SELECT count(*) FROM job_instances i WHERE i.job = jobs.id AND i.state = 'refused'),
                  bytes_total = (SELECT coalesce(sum(size), 0) FROM job_instances i WHERE i.job = jobs.id),
                  bytes_sent = (SELECT coalesce(sum(size), 0) FROM job_instances i WHERE i.job = jobs.id AND i.state = 'acknowledged'),
                  bytes_refused = (SELECT coalesce(sum(size), 0) FROM job_instances i WHERE i.job = jobs.id AND i.state = 'refused');
                DELETE FROM totals;
                INSERT INTO totals (name, value) SELECT 'instances_' || CASE WHEN origin = 'local' THEN 'local' ELSE 'received' END, count(*) FROM instances GROUP BY 1;
                INSERT INTO totals (name, value) SELECT 'bytes_' || CASE WHEN origin = 'local' THEN 'local' ELSE 'received' END, sum(size) FROM instances GROUP BY 1;
                """)
        }
    }

    /// Runs `body` under the lock, in one transaction.
    ///
    /// At the process's own CPU priority (`ThreadPriority.atFullPriority`), from the wait for
    /// the lock to its release: the lock is shared with urgent work, and a bulk worker or a
    /// bulk request's thread (lowered) holding it while pre-empted would make that work wait.
    func write<T>(_ body: () throws -> T) throws -> T {
        try ThreadPriority.atFullPriority { try lock.withLock { try db.transaction(body) } }
    }

    func read<T>(_ body: () throws -> T) throws -> T {
        try ThreadPriority.atFullPriority { try lock.withLock { try body() } }
    }

    // MARK: - Files and instances

    /// Runs `body` under the lock in one read transaction: many lookups for the price of one
    /// lock of the database (a statement outside a transaction takes and drops it each time).
    func readBatch<T>(_ body: () throws -> T) throws -> T {
        try ThreadPriority.atFullPriority { try lock.withLock { try Self.inReadTransaction(db, body) } }
    }

    private static func inReadTransaction<T>(_ connection: Database, _ body: () throws -> T) throws -> T {
        try connection.execute("BEGIN")
        defer { try? connection.execute("COMMIT") }
        return try body()
    }

    /// Of these files, those taken before with the same size and mtime (to skip).
    /// Asked on the lookup connection: it sees what was committed when it starts, so a file whose
    /// batch is still being recorded reads as not taken. Taking it again is harmless (its
    /// instance is then known, and causes nothing); skipping a file never taken would not be.
    public func unchanged(_ files: [(path: String, size: Int, mtime: Double)]) throws -> Set<String> {
        func ask(_ connection: Database) throws -> Set<String> {
            try Self.inReadTransaction(connection) {
                let query = try connection.prepare("SELECT 1 FROM files WHERE path = ?1 AND size = ?2 AND mtime = ?3")
                var out = Set<String>()
                for file in files where try query.first([.text(file.path), .integer(Int64(file.size)), .real(file.mtime)], { _ in true }) == true {
                    out.insert(file.path)
                }
                return out
            }
        }
        if let lookup { return try lookupLock.withLock { try ask(lookup) } }
        return try ThreadPriority.atFullPriority { try lock.withLock { try ask(db) } }
    }

    /// The origin of each study the inventory knows among `uids` ("local", or the trust it was
    /// received from first).
    public func studyOrigins(_ uids: [String]) throws -> [String: String] {
        try readBatch {
            let query = try db.prepare("SELECT origin FROM studies WHERE uid = ?1")
            var out: [String: String] = [:]
            for uid in uids {
                if let origin = try query.first([.text(uid)], { $0.text(0) }) ?? nil { out[uid] = origin }
            }
            return out
        }
    }

    /// The origins of the instances already held among these SOP Instance UIDs.
    public func origins(of sops: [String]) throws -> [String: String] {
        try readBatch {
            let query = try db.prepare("SELECT origin FROM instances WHERE sop = ?1")
            var out: [String: String] = [:]
            for sop in sops {
                if let origin = try query.first([.text(sop)], { $0.text(0) }) ?? nil { out[sop] = origin }
            }
            return out
        }
    }

    /// Where an instance is held, by SOP Instance UID.
    public func path(ofInstance sop: String) throws -> String? {
        try read { try db.prepare("SELECT path FROM instances WHERE sop = ?1").first([.text(sop)]) { $0.text(0) } ?? nil }
    }

    /// The fields of a study the inventory keeps (for the rules' study-stable header and the
    /// coordinator later).
    public struct StudyFacts: Sendable {
        public var uid: String
        public var patientID: String?
        public var patientIssuer: String?
        public var date: String?
        public var modality: String?
        public var description: String?
        public var accession: String?
        public var bodyPart: String?
        /// OtherPatientIDsSequence's identifiers, as (id, issuer).
        public var otherIDs: [(id: String, issuer: String?)] = []
        /// OtherPatientIDs (0010,1000), its values in order: a trust's exception at the
        /// coordinator may name it as where its NHS numbers are.
        public var otherPatientIDValues: [String] = []
        public var sex: String?
        public var birthDate: String?
        public init(uid: String) { self.uid = uid }
    }

    /// One instance taken (from the archive or received), with the jobs its rules planned.
    public struct Taken: Sendable {
        public var sop: String
        public var study: StudyFacts
        public var series: String?
        public var path: String
        public var size: Int
        public var mtime: Double
        public var origin: String
        public var jobs: [NewJob]
        /// The bytes' SHA-256 when it is known without reading the file again (a received
        /// instance, hashed as it was written).
        public var sha256: String? = nil
        /// The SHA-256 of the bytes as the sender sent them, when they were placed rewritten in
        /// this trust's identity: a manifest from the sender is matched by it.
        public var sentSHA256: String? = nil
        /// Archive history indexed by the first start: its study is marked as if its stable
        /// rules had all fired (`historyStable`), so the timer never fires them.
        public var history = false
    }

    /// A job a rule planned: created if new, joined by the instance if the same (rule,
    /// destination, study) is already queued.
    public struct NewJob: Sendable {
        public var kind: JobKind
        public var destination: String
        public var rule: String
        public var purpose: String
        public var priority: JobPriority
        public var window: TimeWindow?
        /// Seconds since 1970 by which it must be delivered.
        public var deadline: Double?
        /// A prefetch's or gather's query, or the patient a fetch is for: what the job's executor
        /// plans or checks with (kept in the `detail` column as JSON).
        public var search: PriorSearch? = nil
        /// Not to start before this time (a gather's lead time before the meeting).
        public var notBefore: Double? = nil
        /// A push whose rule says `expect result within`: the seconds allowed after delivery.
        public var expectResult: Double? = nil
        /// A push whose rule says `deidentified`, and what it chose beyond the Basic Profile
        /// (`DeidentificationChoice.text`).
        public var deidentify = false
        public var deidentifyOptions = ""

        public init(
            kind: JobKind, destination: String, rule: String, purpose: String, priority: JobPriority, window: TimeWindow? = nil, deadline: Double? = nil,
            search: PriorSearch? = nil, notBefore: Double? = nil, expectResult: Double? = nil, deidentify: Bool = false, deidentifyOptions: String = ""
        ) {
            self.expectResult = expectResult
            self.deidentify = deidentify
            self.deidentifyOptions = deidentifyOptions
            self.kind = kind
            self.destination = destination
            self.rule = rule
            self.purpose = purpose
            self.priority = priority
            self.window = window
            self.deadline = deadline
            self.search = search
            self.notBefore = notBefore
        }
    }

    /// Records a batch of taken files and the jobs they caused, in one transaction: a crash at any
    /// instant neither loses nor repeats a trigger. Returns how many jobs were created or reopened.
    @discardableResult
    public func record(taken: [Taken], problems: [(path: String, size: Int, mtime: Double, problem: String)], now: Double) throws -> Int {
        try write {
            var touched = 0
            let file = try db.prepare("INSERT INTO files (path, size, mtime, sop, problem, taken) VALUES (?1, ?2, ?3, ?4, ?5, ?6) ON CONFLICT(path) DO UPDATE SET size = ?2, mtime = ?3, sop = ?4, problem = ?5, taken = ?6")
            for item in problems {
                try file.run([.text(item.path), .integer(Int64(item.size)), .real(item.mtime), .null, .text(item.problem), .real(now)])
            }
            var jobIDs: [String: Int64] = [:]
            var studiesSeen = Set<String>()
            var tally: [String: Int64] = [:]
            // Counted through the batch and written once a study and once a job: a catch-up's
            // batch is mostly one study, and a row updated per file was a third of its time.
            var studyTally: [String: (instances: Int64, bytes: Int64)] = [:]
            var jobInstances: [String: (job: NewJob, study: String, instances: [(sop: String, path: String, size: Int)])] = [:]
            var jobOrder: [String] = []
            for item in taken {
                try file.run([.text(item.path), .integer(Int64(item.size)), .real(item.mtime), .text(item.sop), .null, .real(now)])
                // A study's row once a batch: its instances share the batch's time.
                if try recordInstance(item, now: now, study: studiesSeen.insert(item.study.uid).inserted) {
                    let side = item.origin == "local" ? "local" : "received"
                    tally["instances_" + side, default: 0] += 1
                    tally["bytes_" + side, default: 0] += Int64(item.size)
                    studyTally[item.study.uid, default: (0, 0)].instances += 1
                    studyTally[item.study.uid, default: (0, 0)].bytes += Int64(item.size)
                }
                for job in item.jobs {
                    let key = job.rule + "\u{1}" + job.destination + "\u{1}" + item.study.uid
                    if jobInstances[key] == nil {
                        jobInstances[key] = (job, item.study.uid, [])
                        jobOrder.append(key)
                    }
                    jobInstances[key]!.instances.append((item.sop, item.path, item.size))
                }
            }
            let grow = try db.prepare("UPDATE studies SET instances = instances + ?2, bytes = bytes + ?3 WHERE uid = ?1")
            // A study held again (received again, put back) is no longer to be withdrawn.
            let unwithdraw = try db.prepare("DELETE FROM withdrawals WHERE study = ?1")
            for (uid, count) in studyTally {
                try grow.run([.text(uid), .integer(count.instances), .integer(count.bytes)])
                try unwithdraw.run([.text(uid)])
            }
            for key in jobOrder {
                let entry = jobInstances[key]!
                touched += try addJobs([entry.job], study: entry.study, instances: entry.instances, now: now, known: &jobIDs)
            }
            let add = try db.prepare("INSERT INTO totals (name, value) VALUES (?1, ?2) ON CONFLICT(name) DO UPDATE SET value = value + ?2")
            for (name, value) in tally { try add.run([.text(name), .integer(value)]) }
            return touched
        }
    }

    /// True when the instance is new to the inventory (the caller adds it to its study's counts).
    private func recordInstance(_ item: Taken, now: Double, study: Bool = true) throws -> Bool {
        let s = item.study
        func text(_ v: String?) -> SQLValue { v.map(SQLValue.text) ?? .null }
        if study {
            // The sequence's items, then OtherPatientIDs' values marked with the attribute.
            let items: [JSON] = s.otherIDs.map { .object([("id", .string($0.id)), ("issuer", $0.issuer.map(JSON.string) ?? .null)]) }
                + s.otherPatientIDValues.map { .object([("id", .string($0)), ("attribute", .string("OtherPatientIDs"))]) }
            let others = items.isEmpty ? nil : JSON.array(items).serialized()
            try db.prepare("""
            INSERT INTO studies (uid, patient_id, patient_issuer, study_date, modality, description, accession, body_part, origin, first_seen, last_instance, sample_path,
              other_ids, sex, birth_date, stable_fired)
            VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?10, ?11, ?12, ?13, ?14, ?15)
            ON CONFLICT(uid) DO UPDATE SET last_instance = ?10, stable_fired = CASE WHEN ?16 THEN stable_fired ELSE 0 END
            """).run([.text(s.uid), text(s.patientID), text(s.patientIssuer), text(s.date), text(s.modality), text(s.description), text(s.accession), text(s.bodyPart), .text(item.origin), .real(now), .text(item.path),
                text(others), text(s.sex), text(s.birthDate), .integer(item.history ? Int64(Self.historyStable) : 0), .integer(item.history ? 1 : 0)])
        }
        try db.prepare("INSERT INTO instances (sop, study, series, path, size, origin, arrived, sha256, sent_sha256) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9) ON CONFLICT(sop) DO NOTHING")
            .run([.text(item.sop), .text(s.uid), text(item.series), .text(item.path), .integer(Int64(item.size)), .text(item.origin), .real(now), text(item.sha256), text(item.sentSHA256)])
        guard db.changes > 0 else {
            // Known already: a file of the archive taken again (rewritten, re-exported) may hold
            // other bytes now, so a hash kept for a manifest is forgotten.
            if item.origin == "local" { try db.prepare("UPDATE instances SET sha256 = NULL WHERE sop = ?1 AND origin = 'local'").run([.text(item.sop)]) }
            return false
        }
        return true
    }

    /// Creates or joins jobs for a study's instances. A job already done is reopened when it
    /// gains instances it has not sent; acknowledged instances are never sent again.
    func addJobs(_ jobs: [NewJob], study: String, instances: [(sop: String, path: String, size: Int)], now: Double) throws -> Int {
        var known: [String: Int64] = [:]
        return try addJobs(jobs, study: study, instances: instances, now: now, known: &known)
    }

    /// `known`: job ids already looked up in this transaction, by rule, destination and study (a
    /// study's instances taken together join one job: found once, not once per instance).
    func addJobs(_ jobs: [NewJob], study: String, instances: [(sop: String, path: String, size: Int)], now: Double, known: inout [String: Int64]) throws -> Int {
        var touched = 0
        for job in jobs {
            let key = job.rule + "\u{1}" + job.destination + "\u{1}" + study
            let id: Int64
            if let cached = known[key] {
                id = cached
            } else {
                try db.prepare("""
                    INSERT INTO jobs (kind, destination, study, rule, purpose, priority, window, deadline, created, state, next_attempt, detail, expect_result, deidentify, deidentify_options)
                    VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, 'queued', max(?9, coalesce(?11, ?9)), ?10, ?12, ?13, ?14)
                    ON CONFLICT(rule, destination, study) DO UPDATE SET expect_result = excluded.expect_result, deidentify = max(deidentify, excluded.deidentify),
                        deidentify_options = CASE WHEN deidentified_study IS NULL THEN excluded.deidentify_options ELSE deidentify_options END
                    WHERE expect_result IS NOT excluded.expect_result OR deidentify < excluded.deidentify
                        OR (deidentified_study IS NULL AND deidentify_options IS NOT excluded.deidentify_options)
                    """
                ).run([.text(job.kind.rawValue), .text(job.destination), .text(study), .text(job.rule), .text(job.purpose), .integer(Int64(job.priority.rawValue)),
                        job.window.map { .text($0.description) } ?? .null, job.deadline.map(SQLValue.real) ?? .null, .real(now), job.search.map { .text($0.stored) } ?? .null,
                        job.notBefore.map(SQLValue.real) ?? .null, job.expectResult.map(SQLValue.real) ?? .null, .integer(job.deidentify ? 1 : 0), .text(job.deidentifyOptions)])
                guard let found = try db.prepare("SELECT id FROM jobs WHERE rule = ?1 AND destination = ?2 AND study = ?3").first([.text(job.rule), .text(job.destination), .text(study)], { $0.int(0) }) else { continue }
                id = found
                known[key] = found
            }
            var added = 0
            var addedBytes: Int64 = 0
            let insert = try db.prepare("INSERT INTO job_instances (job, sop, path, size) VALUES (?1, ?2, ?3, ?4) ON CONFLICT DO NOTHING")
            // A prefetch or gather plans fetches of other studies: it sends none of these.
            for instance in instances where !job.kind.plans {
                try insert.run([.integer(id), .text(instance.sop), .text(instance.path), .integer(Int64(instance.size))])
                if db.changes > 0 {
                    added += 1
                    addedBytes += Int64(instance.size)
                }
            }
            if added > 0 {
                try db.prepare("UPDATE jobs SET instances_total = instances_total + ?2, bytes_total = bytes_total + ?3 WHERE id = ?1")
                    .run([.integer(id), .integer(Int64(added)), .integer(addedBytes)])
            }
            if added > 0 && known[key + "\u{2}"] == nil {
                // Done or failed earlier: the new instances bring it back (once a batch is enough).
                // Its age starts again: new work for an old study is not "past max-age".
                // A push that expects a result expects one for what it delivers now, afresh.
                try db.prepare("""
                    UPDATE jobs SET state = 'queued', finished = NULL, created = ?2, next_attempt = min(next_attempt, ?2), result_at = NULL, result_alarm = NULL
                    WHERE id = ?1 AND state IN ('done', 'failed')
                    """)
                    .run([.integer(id), .real(now)])
                known[key + "\u{2}"] = id
                touched += 1
            }
        }
        return touched
    }

    // MARK: - Study stability

    public struct QuietStudy: Sendable {
        public var uid: String
        public var samplePath: String
        public var origin: String
        public var quietFor: Double
        public var stableFired: Int
    }

    /// Studies quiet for at least `minimum` seconds whose stable rules have not all fired.
    public func quietStudies(now: Double, minimum: Double, maximumFired: Int) throws -> [QuietStudy] {
        try read {
            // A study whose sender's manifest says it is not all here yet waits for the rest,
            // not for a timer (`completedManifests` fires it when it is whole).
            try db.prepare("""
                SELECT uid, sample_path, origin, last_instance, stable_fired FROM studies WHERE last_instance <= ?1 AND stable_fired < ?2
                  AND NOT EXISTS (SELECT 1 FROM manifests m WHERE m.study = studies.uid AND m.final = 1 AND m.completed IS NULL) LIMIT 500
                """)
                .rows([.real(now - minimum), .integer(Int64(maximumFired))]) { row in
                    QuietStudy(uid: row.text(0) ?? "", samplePath: row.text(1) ?? "", origin: row.text(2) ?? "local", quietFor: now - row.double(3), stableFired: Int(row.int(4)))
                }
        }
    }

    /// Records that the stable rules of quiet periods up to `quiet` fired for a study, with the
    /// jobs they planned for every instance of the study, in one transaction.
    public func recordStable(study: String, quiet: Int, jobs: [NewJob], now: Double) throws {
        try write {
            let instances = try db.prepare("SELECT sop, path, size, origin FROM instances WHERE study = ?1").rows([.text(study)]) {
                (sop: $0.text(0) ?? "", path: $0.text(1) ?? "", size: Int($0.int(2)), origin: $0.text(3) ?? "")
            }
            // An instance is never sent back to where it came from: a result a peer sent into
            // this trust's study (issue 29) does not go back to that peer when the study is
            // stable again and its push rule fires.
            var known: [String: Int64] = [:]
            for job in jobs {
                let mine = instances.filter { job.kind != .push || $0.origin != job.destination }.map { (sop: $0.sop, path: $0.path, size: $0.size) }
                _ = try addJobs([job], study: study, instances: mine, now: now, known: &known)
            }
            try db.prepare("UPDATE studies SET stable_fired = ?2 WHERE uid = ?1").run([.text(study), .integer(Int64(quiet))])
            // Fired because its manifests are satisfied (or, without one, by the timer): done
            // in the same transaction, so a crash between the two neither loses nor repeats it.
            // Only manifests satisfied as last counted: one that arrived since (a first, or a
            // larger one sent again) stays open.
            try db.prepare("UPDATE manifests SET completed = ?2 WHERE study = ?1 AND final = 1 AND completed IS NULL AND held >= instances").run([.text(study), .real(now)])
        }
    }
}
