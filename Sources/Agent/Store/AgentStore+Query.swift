import Foundation
import SQLite

/// What the query/retrieve SCP reads of the inventory: a patient's studies by this trust's own
/// patient number, and a held study's series.
extension AgentStore {
    /// A study held here with a file of it (for the patient's name and the like, which the
    /// inventory does not keep: read from that file's header when asked).
    public struct HeldStudy: Sendable {
        public var announcement: Announcement
        public var samplePath: String
    }

    /// The studies here filed under patient number `id` (and `issuer`, when given).
    public func studies(ofPatient id: String, issuer: String?) throws -> [HeldStudy] {
        try read {
            let sql = "SELECT \(Self.announcementColumns), sample_path FROM studies WHERE patient_id = ?1" + (issuer == nil ? "" : " AND patient_issuer = ?2") + " LIMIT 10000"
            return try db.prepare(sql).rows([.text(id)] + (issuer.map { [.text($0)] } ?? [])) { row in
                HeldStudy(announcement: Self.announcement(row), samplePath: row.text(14) ?? "")
            }
        }
    }

    /// A study held here, with a file of it.
    public func heldStudy(_ uid: String) throws -> HeldStudy? {
        try read {
            try db.prepare("SELECT \(Self.announcementColumns), sample_path FROM studies WHERE uid = ?1 AND instances > 0").first([.text(uid)]) { row in
                HeldStudy(announcement: Self.announcement(row), samplePath: row.text(14) ?? "")
            }
        }
    }

    /// A held study's series: each one's UID, its instances, and a file of it.
    public func series(ofStudy uid: String) throws -> [(uid: String, instances: Int, path: String)] {
        try read {
            try db.prepare("SELECT coalesce(series, ''), count(*), min(path) FROM instances WHERE study = ?1 GROUP BY series ORDER BY series").rows([.text(uid)]) {
                ($0.text(0) ?? "", Int($0.int(1)), $0.text(2) ?? "")
            }
        }
    }

    /// A fetch for a C-MOVE: queued unless the study is held here (nil) or a fetch of it is
    /// pending (that one's id); one that failed under the same rule and holder is queued again
    /// (a person's move is a new request). In one transaction.
    public func queueFetchForMove(_ job: NewJob, study: String, now: Double) throws -> Int64? {
        try write {
            if try db.prepare("SELECT 1 FROM studies WHERE uid = ?1 AND instances > 0").first([.text(study)], { _ in true }) ?? false { return nil }
            if let pending = try db.prepare("SELECT id FROM jobs WHERE kind = 'fetch' AND study = ?1 AND state NOT IN ('done', 'failed', 'dropped') ORDER BY id DESC LIMIT 1")
                .first([.text(study)], { $0.int(0) })
            {
                return pending
            }
            // Queued again with this move's patient (the study's NHS number now, as the
            // coordinator says it), not the one an earlier fetch was for.
            try db.prepare("""
                UPDATE jobs SET state = 'queued', next_attempt = ?4, attempts = 0, last_error = NULL, finished = NULL, detail = ?5
                WHERE rule = ?1 AND destination = ?2 AND study = ?3 AND state IN ('failed', 'done', 'dropped')
                """).run([.text(job.rule), .text(job.destination), .text(study), .real(now), job.search.map { .text($0.stored) } ?? .null])
            _ = try addJobs([job], study: study, instances: [], now: now)
            return try db.prepare("SELECT id FROM jobs WHERE rule = ?1 AND destination = ?2 AND study = ?3").first([.text(job.rule), .text(job.destination), .text(study)]) { $0.int(0) }
        }
    }

    /// A job's state and last error.
    public func jobState(_ id: Int64) throws -> (state: String, lastError: String?)? {
        try read { try db.prepare("SELECT state, last_error FROM jobs WHERE id = ?1").first([.integer(id)]) { ($0.text(0) ?? "", $0.text(1)) } }
    }
}
