import Foundation
import SQLite

/// What `consort backfill` reads and writes: the archive's own studies, and the jobs the rules
/// would have queued for them, created in one transaction.
extension AgentStore {
    /// A study of the archive (origin local), as a backfill lists it.
    public struct LocalStudy: Sendable {
        public var uid: String
        public var date: String?
        public var modality: String?
        public var description: String?
        public var samplePath: String
    }

    /// Every study of local origin, oldest first (the date is filtered by the caller: a DICOM
    /// date is not always in the form that sorts).
    public func localStudies() throws -> [LocalStudy] {
        try read {
            try db.prepare("SELECT uid, study_date, modality, description, sample_path FROM studies WHERE origin = 'local' ORDER BY study_date, uid").rows {
                LocalStudy(uid: $0.text(0) ?? "", date: $0.text(1), modality: $0.text(2), description: $0.text(3), samplePath: $0.text(4) ?? "")
            }
        }
    }

    /// A study's instances taken from the archive (not those received from peers).
    public func localInstances(ofStudy study: String) throws -> [(sop: String, path: String, size: Int)] {
        try read {
            try db.prepare("SELECT sop, path, size FROM instances WHERE study = ?1 AND origin = 'local' ORDER BY sop").rows([.text(study)]) {
                ($0.text(0) ?? "", $0.text(1) ?? "", Int($0.int(2)))
            }
        }
    }

    /// The job of each (rule, destination) a study already has, whatever its state, with the
    /// instances it holds.
    public func jobStates(ofStudy study: String) throws -> [Backfill.Key: Backfill.Existing] {
        try readBatch {
            let jobs = try db.prepare("SELECT rule, destination, state, id FROM jobs WHERE study = ?1").rows([.text(study)]) {
                (Backfill.Key(study: study, rule: $0.text(0) ?? "", destination: $0.text(1) ?? ""), $0.text(2) ?? "", $0.int(3))
            }
            let sops = try db.prepare("SELECT sop FROM job_instances WHERE job = ?1")
            var existing: [Backfill.Key: Backfill.Existing] = [:]
            for (key, state, id) in jobs {
                existing[key] = Backfill.Existing(id: id, state: state, sops: Set(try sops.rows([.integer(id)]) { $0.text(0) ?? "" }))
            }
            return existing
        }
    }

    /// Creates the backfill's jobs in one transaction; one that another job of the same study,
    /// rule and destination has meanwhile taken the place of is left out, and so is an addition
    /// to a done job that is done no longer (live instances reopened it: it runs at its rule's
    /// priority). An addition reopens its job at bulk priority, without a deadline. Returns the
    /// ids of the jobs created or added to, by key.
    public func queueBackfill(_ jobs: [Backfill.Planned], now: Double) throws -> [Backfill.Key: Int64] {
        try write {
            var created: [Backfill.Key: Int64] = [:]
            let exists = try db.prepare("SELECT id FROM jobs WHERE rule = ?1 AND destination = ?2 AND study = ?3")
            let state = try db.prepare("SELECT state FROM jobs WHERE id = ?1")
            for planned in jobs {
                let key = planned.key
                if let id = planned.extending {
                    guard let current = try state.first([.integer(id)], { $0.text(0) ?? "" }), Backfill.extendable.contains(current) else { continue }
                    _ = try addJobs([planned.job], study: key.study, instances: planned.instances, now: now)
                    try db.prepare("UPDATE jobs SET priority = 2, deadline = NULL WHERE id = ?1 AND state = 'queued'").run([.integer(id)])
                    if db.changes > 0 { created[key] = id }
                    continue
                }
                let values: [SQLValue] = [.text(key.rule), .text(key.destination), .text(key.study)]
                if try exists.first(values, { $0.int(0) }) != nil { continue }
                _ = try addJobs([planned.job], study: key.study, instances: planned.instances, now: now)
                if let id = try exists.first(values, { $0.int(0) }) { created[key] = id }
            }
            return created
        }
    }
}
