import Foundation
import SQLite

/// Results back (issue 29), the store's side: what this trust sent to a peer (the spool's push
/// jobs remember it), the results each peer sent back and those refused, and the results a rule
/// expects (`expect result within`) that have not come.
///
/// A push job that expects a result carries the time allowed (`expect_result`, seconds after the
/// job is done), when the first result for its study came from its destination (`result_at`),
/// and when it was found overdue (`result_alarm`): the alarm is raised once, and cleared by a
/// late result.
extension AgentStore {
    /// Created after the migration (the indexes name columns an older spool gains there).
    static let resultsSchema = """
        CREATE TABLE IF NOT EXISTS results (
            sop TEXT PRIMARY KEY, study TEXT NOT NULL, peer TEXT NOT NULL, original TEXT NOT NULL, received REAL NOT NULL) WITHOUT ROWID;
        CREATE INDEX IF NOT EXISTS jobs_by_study ON jobs(study);
        CREATE INDEX IF NOT EXISTS jobs_awaiting_result ON jobs(finished) WHERE expect_result IS NOT NULL AND result_at IS NULL AND result_alarm IS NULL;
        CREATE INDEX IF NOT EXISTS jobs_result_overdue ON jobs(destination) WHERE result_alarm IS NOT NULL AND result_at IS NULL;
        CREATE INDEX IF NOT EXISTS jobs_by_deidentified_study ON jobs(deidentified_study) WHERE deidentified_study IS NOT NULL;
        """

    /// What this trust sent `peer` of a study (each push with some of it acknowledged, oldest
    /// first), with the patient as this trust holds the study: what a result from that peer may
    /// refer to. Empty: never sent there, or the study is no longer held here (its row gone
    /// with its files: there is no study to put a result in, nor a patient to check it by).
    /// `study` may be the study's own UID or the one a de-identified push gave it at the peer.
    public func sentStudies(_ study: String, to peer: String) throws -> [ResultCheck.SentStudy] {
        try read {
            try db.prepare("""
                SELECT * FROM (
                    SELECT j.id, j.rule, j.purpose, s.patient_id, s.patient_issuer, j.study, j.deidentified_study, j.deidentify_options
                    FROM jobs j JOIN studies s ON s.uid = j.study
                    WHERE j.study = ?1 AND j.destination = ?2 AND j.kind = 'push' AND j.instances_acked > 0
                    UNION
                    SELECT j.id, j.rule, j.purpose, s.patient_id, s.patient_issuer, j.study, j.deidentified_study, j.deidentify_options
                    FROM jobs j JOIN studies s ON s.uid = j.study
                    WHERE j.deidentified_study = ?1 AND j.destination = ?2 AND j.kind = 'push' AND j.instances_acked > 0
                ) ORDER BY id
                """).rows([.text(study), .text(peer)]) { row in
                ResultCheck.SentStudy(
                    study: row.text(5) ?? study, patientID: row.text(3), issuer: row.text(4), rule: row.text(1) ?? "", purpose: row.text(2) ?? "",
                    atPeer: row.text(6), deidentifyOptions: row.text(7) ?? "")
            }
        }
    }

    /// The UID the peer knows a de-identified push's study by, recorded before its first copy
    /// goes (results that come back name it).
    public func setDeidentifiedStudy(job: Int64, _ uid: String) throws {
        try write { try db.prepare("UPDATE jobs SET deidentified_study = ?2 WHERE id = ?1").run([.integer(job), .text(uid)]) }
    }

    /// The study's series and instance UIDs, and a file of each series (the first by SOP
    /// Instance UID): what re-identifying a result needs of the original.
    public func seriesOfStudy(_ study: String) throws -> (uids: [String], firstFiles: [String]) {
        try read {
            var uids: [String] = []
            var seen: Set<String> = []
            var files: [String] = []
            let rows = try db.prepare("SELECT sop, series, path FROM instances WHERE study = ?1 ORDER BY series, sop").rows([.text(study)]) {
                (sop: $0.text(0) ?? "", series: $0.text(1) ?? "", path: $0.text(2) ?? "")
            }
            for row in rows {
                uids.append(row.sop)
                if seen.insert(row.series).inserted {
                    uids.append(row.series)
                    files.append(row.path)
                }
            }
            return (uids, files)
        }
    }

    /// Whether the inventory holds a study by this UID.
    public func holdsStudy(_ study: String) throws -> Bool {
        try read { try db.prepare("SELECT 1 FROM studies WHERE uid = ?1").first([.text(study)]) { _ in true } ?? false }
    }

    /// Whether the inventory holds an instance of this study that is not a result `peer` sent:
    /// a result's own new study, made of that peer's results (sent over several requests), is
    /// not "another study held here".
    public func holdsStudy(_ study: String, apartFromResultsOf peer: String) throws -> Bool {
        try read {
            try db.prepare("""
                SELECT 1 FROM instances i WHERE i.study = ?1
                AND NOT EXISTS (SELECT 1 FROM results r WHERE r.sop = i.sop AND r.peer = ?2) LIMIT 1
                """).first([.text(study), .text(peer)]) { _ in true } ?? false
        }
    }

    /// A result recorded: the instance (placed and in the inventory already), the study it
    /// answers, and the push jobs of that study to that peer marked answered. The push jobs
    /// whose alarm this result clears (it came late) are returned, for the log.
    @discardableResult
    public func recordResults(_ results: [(sop: String, study: String, original: String)], from peer: String, now: Double) throws -> [Job] {
        try write {
            let insert = try db.prepare("INSERT INTO results (sop, study, peer, original, received) VALUES (?1, ?2, ?3, ?4, ?5) ON CONFLICT(sop) DO NOTHING")
            var added = 0
            var originals: Set<String> = []
            for result in results {
                try insert.run([.text(result.sop), .text(result.study), .text(peer), .text(result.original), .real(now)])
                added += db.changes
                originals.insert(result.original)
            }
            if added > 0 { try bump("results_received:" + peer, by: added) }
            var late: [Job] = []
            for original in originals.sorted() {
                late += try db.prepare("SELECT \(Self.jobColumns) FROM jobs j WHERE j.study = ?1 AND j.destination = ?2 AND j.kind = 'push' AND j.result_alarm IS NOT NULL AND j.result_at IS NULL")
                    .rows([.text(original), .text(peer)], Self.job)
                try db.prepare("UPDATE jobs SET result_at = ?3 WHERE study = ?1 AND destination = ?2 AND kind = 'push' AND result_at IS NULL")
                    .run([.text(original), .text(peer), .real(now)])
            }
            return late
        }
    }

    /// Results a peer sent that were refused (they referred to nothing this trust sent it, or
    /// were not results): counted, for `consort status` and the metrics.
    public func recordRefusedResults(_ count: Int, from peer: String) throws {
        guard count > 0 else { return }
        try write { try bump("results_refused:" + peer, by: count) }
    }

    private func bump(_ name: String, by value: Int) throws {
        try db.prepare("INSERT INTO totals (name, value) VALUES (?1, ?2) ON CONFLICT(name) DO UPDATE SET value = value + ?2").run([.text(name), .integer(Int64(value))])
    }

    /// A push whose expected result has not come in time.
    public struct OverdueResult: Sendable, Equatable {
        public var job: Int64
        public var study: String
        public var peer: String
        public var rule: String
        /// When the result was due: the job's delivery plus the time the rule allows.
        public var due: Double
    }

    /// A push finished having delivered something: done, or failed with an instance refused
    /// for good (the peer has the rest, and may answer on it).
    static let delivered = "state IN ('done', 'failed') AND instances_acked > 0"

    /// Pushes delivered whose result is due by `now` and has not come, not yet alarmed.
    public func resultsNewlyOverdue(now: Double) throws -> [OverdueResult] {
        try read {
            try db.prepare("""
                SELECT id, study, destination, rule, finished + expect_result FROM jobs
                WHERE expect_result IS NOT NULL AND result_at IS NULL AND result_alarm IS NULL AND finished IS NOT NULL
                  AND \(Self.delivered) AND finished + expect_result <= ?1 ORDER BY finished LIMIT 1000
                """).rows([.real(now)]) { OverdueResult(job: $0.int(0), study: $0.text(1) ?? "", peer: $0.text(2) ?? "", rule: $0.text(3) ?? "", due: $0.double(4)) }
        }
    }

    /// The alarm raised for a job, once: true when this call raised it.
    public func markResultOverdue(job id: Int64, now: Double) throws -> Bool {
        try write {
            try db.prepare("UPDATE jobs SET result_alarm = ?2 WHERE id = ?1 AND result_alarm IS NULL AND result_at IS NULL").run([.integer(id), .real(now)])
            return db.changes > 0
        }
    }

    /// Results back, per peer: received and refused (since the spool began), awaited (a push
    /// delivered and its result not due yet) and overdue (alarmed, still not come).
    public struct ResultCounts: Sendable, Equatable {
        public var received = 0
        public var refused = 0
        public var awaited = 0
        public var overdue = 0
    }

    public func resultCounts() throws -> [String: ResultCounts] {
        try read {
            var counts: [String: ResultCounts] = [:]
            for (name, value) in try db.prepare("SELECT name, value FROM totals WHERE name LIKE 'results\\_%' ESCAPE '\\'").rows([], { ($0.text(0) ?? "", Int($0.int(1))) }) {
                let parts = name.split(separator: ":", maxSplits: 1).map(String.init)
                guard parts.count == 2 else { continue }
                if parts[0] == "results_received" { counts[parts[1], default: ResultCounts()].received = value }
                if parts[0] == "results_refused" { counts[parts[1], default: ResultCounts()].refused = value }
            }
            for (peer, value) in try db.prepare("SELECT destination, count(*) FROM jobs WHERE result_alarm IS NOT NULL AND result_at IS NULL GROUP BY destination").rows([], { ($0.text(0) ?? "", Int($0.int(1))) }) {
                counts[peer, default: ResultCounts()].overdue = value
            }
            for (peer, value) in try db.prepare("""
                SELECT destination, count(*) FROM jobs WHERE expect_result IS NOT NULL AND result_at IS NULL AND result_alarm IS NULL AND finished IS NOT NULL
                  AND \(Self.delivered) GROUP BY destination
                """).rows([], { ($0.text(0) ?? "", Int($0.int(1))) }) {
                counts[peer, default: ResultCounts()].awaited = value
            }
            return counts
        }
    }

    /// The overdue results, oldest first (for `consort status`).
    public func overdueResults(limit: Int = 50) throws -> [OverdueResult] {
        try read {
            try db.prepare("""
                SELECT id, study, destination, rule, finished + expect_result FROM jobs WHERE result_alarm IS NOT NULL AND result_at IS NULL
                ORDER BY finished LIMIT ?1
                """).rows([.integer(Int64(limit))]) { OverdueResult(job: $0.int(0), study: $0.text(1) ?? "", peer: $0.text(2) ?? "", rule: $0.text(3) ?? "", due: $0.double(4)) }
        }
    }
}
