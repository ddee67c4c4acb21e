import Foundation
import SQLite
import Spool

/// The spool's jobs: read typed for the queue manager and the operator, and every transition
/// of a job's life (start, answers, finish, postpone, fail), each one transaction.
extension AgentStore {
    // MARK: - The spool

    public struct Job: Sendable {
        public var id: Int64
        public var kind: JobKind
        public var destination: String
        public var study: String
        public var rule: String
        public var purpose: String
        public var priority: JobPriority
        public var window: TimeWindow?
        public var deadline: Double?
        public var created: Double
        public var state: JobState
        public var attempts: Int
        public var nextAttempt: Double
        public var lastError: String?
        public var deadlineMissed: Double?
        public var total: Int
        public var acknowledged: Int
        public var refused: Int
        public var bytesLeft: Int64
        public var bytesTotal: Int64 = 0
        public var bytesSent: Int64 = 0
        /// When an answer last came for it (or it last started): what "stuck" is measured by.
        public var progressAt: Double?
        public var finished: Double?
        /// A push whose rule says `deidentified`: each instance goes de-identified (issue 29).
        public var deidentify = false
        /// What the rule chose beyond the Basic Profile (`DeidentificationChoice.text`): fixed
        /// when the job first goes de-identified, so one study never reaches a peer two ways.
        public var deidentifyOptions = ""
        /// The Study Instance UID the peer knows the study by, once its first de-identified
        /// instance went: what a result from it refers to (re-identified back to `study`).
        public var deidentifiedStudy: String? = nil
        /// Instances not yet acknowledged nor refused.
        public var instancesLeft: Int { total - acknowledged - refused }
    }

    /// A job's columns: its counts are kept on its row (changed in the same transactions as its
    /// instances), never counted from `job_instances` on a read.
    static let jobColumns = """
        j.id, j.kind, j.destination, j.study, j.rule, j.purpose, j.priority, j.window, j.deadline, j.created, j.state, j.attempts,
        j.next_attempt, j.last_error, j.deadline_missed, j.instances_total, j.instances_acked, j.instances_refused,
        j.bytes_total - j.bytes_sent - j.bytes_refused, j.bytes_total, j.bytes_sent, j.progress_at, j.finished, j.deidentify,
        j.deidentify_options, j.deidentified_study
        """

    static let headColumns = jobColumns
    /// How many columns `jobColumns` names: a query that selects more after them reads its own
    /// from here (a column added to a job shifts them; the operator's listing once read the
    /// study's date from the de-identify flag's place).
    static let jobColumnCount = Int32(jobColumns.split(separator: ",").count)

    /// Jobs not finished, without their counts (the deadline and age watch).
    public func unfinishedJobHeads() throws -> [Job] {
        try read {
            try db.prepare("SELECT \(Self.headColumns) FROM jobs j WHERE j.state NOT IN ('done', 'failed') AND \(Self.knownKinds)").rows([], Self.job)
        }
    }

    /// Only the kinds this version knows: a job of another (a spool written by a newer version,
    /// then downgraded) is left alone — never run, not listed — rather than stopping the queue.
    static let knownKinds = "j.kind IN (" + JobKind.allCases.map { "'\($0.rawValue)'" }.joined(separator: ", ") + ")"

    /// A row of the spool this version cannot read.
    public struct UnknownJob: Error, CustomStringConvertible {
        public var id: Int64, kind: String, state: String
        public var description: String {
            "job \(id) is of kind \"\(kind)\" in state \"\(state)\", which this version of Consort does not know (a spool written by a newer version?)"
        }
    }

    /// A job's row, typed. A kind or state this version does not know (a spool written by a
    /// newer Consort, then downgraded) is an error that says so, not a job run as something else.
    static func job(_ row: Row) throws -> Job {
        let kindWord = row.text(1) ?? "", stateWord = row.text(10) ?? ""
        guard let kind = JobKind(stored: kindWord), let state = JobState(rawValue: stateWord) else {
            throw UnknownJob(id: row.int(0), kind: kindWord, state: stateWord)
        }
        return Job(
            id: row.int(0), kind: kind, destination: row.text(2) ?? "", study: row.text(3) ?? "", rule: row.text(4) ?? "",
            purpose: row.text(5) ?? "", priority: JobPriority(rawValue: Int(row.int(6))) ?? .normal, window: row.text(7).flatMap(TimeWindow.init),
            deadline: row.isNull(8) ? nil : row.double(8), created: row.double(9), state: state, attempts: Int(row.int(11)), nextAttempt: row.double(12),
            lastError: row.text(13), deadlineMissed: row.isNull(14) ? nil : row.double(14), total: Int(row.int(15)), acknowledged: Int(row.int(16)),
            refused: Int(row.int(17)), bytesLeft: row.int(18), bytesTotal: row.int(19), bytesSent: row.int(20),
            progressAt: row.isNull(21) ? nil : row.double(21), finished: row.isNull(22) ? nil : row.double(22), deidentify: row.int(23) != 0,
            deidentifyOptions: row.text(24) ?? "", deidentifiedStudy: row.text(25))
    }

    /// Every job not done (and done ones finished in the last `doneWithin` seconds).
    public func jobs(includingDoneSince: Double? = nil) throws -> [Job] {
        try read {
            let since = includingDoneSince ?? Double.greatestFiniteMagnitude
            return try db.prepare("SELECT \(Self.jobColumns) FROM jobs j WHERE (j.state NOT IN ('done', 'dropped') OR j.finished >= ?1) AND \(Self.knownKinds) ORDER BY j.id").rows([.real(since)], Self.job)
        }
    }

    public func job(_ id: Int64) throws -> Job? {
        try read { try db.prepare("SELECT \(Self.jobColumns) FROM jobs j WHERE j.id = ?1").first([.integer(id)], Self.job) }
    }

    /// Jobs that may run, of every kind: queued, or deferred and due; the queue manager's input.
    /// A queued job whose start is later (a gather's lead time) is not due yet either.
    public func runnableJobs(now: Double) throws -> [Job] {
        try read {
            try db.prepare("""
                SELECT \(Self.headColumns) FROM jobs j WHERE j.state IN ('queued', 'deferred') AND j.next_attempt <= ?1 AND \(Self.knownKinds)
                ORDER BY j.priority, j.created
                """).rows([.real(now)], Self.job)
        }
    }

    /// After a restart, jobs that were active were interrupted: they queue again, and resume from
    /// what the peer acknowledged.
    public func requeueInterrupted() throws -> Int {
        try write {
            try db.prepare("UPDATE jobs SET state = 'queued' WHERE state = 'active'").run()
            return db.changes
        }
    }

    /// Jobs in the active state.
    public func activeJobIDs() throws -> [Int64] {
        try read { try db.prepare("SELECT id FROM jobs WHERE state = 'active'").rows { $0.int(0) } }
    }

    /// An active job back to queued (its worker is gone).
    public func requeue(job id: Int64) throws -> Bool {
        try write {
            try db.prepare("UPDATE jobs SET state = 'queued' WHERE id = ?1 AND state = 'active'").run([.integer(id)])
            return db.changes > 0
        }
    }

    /// Marks a job active (durable before anything is sent). False when it is no longer queued
    /// or deferred (an operator held or dropped it since it was picked): then it is not started.
    @discardableResult
    public func start(job id: Int64, now: Double) throws -> Bool {
        try write {
            try db.prepare("UPDATE jobs SET state = 'active', attempts = attempts + 1, progress_at = ?2 WHERE id = ?1 AND state IN ('queued', 'deferred')")
                .run([.integer(id), .real(now)])
            return db.changes > 0
        }
    }

    public struct PendingInstance: Sendable {
        public var sop: String
        public var path: String
        public var size: Int
    }

    /// The next instances of a job the peer has not acknowledged, in arrival order.
    public func pending(job id: Int64, limit: Int) throws -> [PendingInstance] {
        try read {
            try db.prepare("SELECT sop, path, size FROM job_instances WHERE job = ?1 AND state = 'pending' ORDER BY rowid LIMIT ?2")
                .rows([.integer(id), .integer(Int64(limit))]) { PendingInstance(sop: $0.text(0) ?? "", path: $0.text(1) ?? "", size: Int($0.int(2))) }
        }
    }

    /// How many of a job's instances the peer has not acknowledged yet.
    public func pendingCount(job id: Int64) throws -> Int {
        try read { Int(try db.prepare("SELECT count(*) FROM job_instances WHERE job = ?1 AND state = 'pending'").first([.integer(id)]) { $0.int(0) } ?? 0) }
    }

    /// What the peer answered for each instance of a batch: acknowledged (stored or already held)
    /// or refused for good, with the reason; instances worth retrying stay pending.
    public func recordAnswers(job id: Int64, acknowledged: [String], refused: [(sop: String, reason: String)], attempt: (started: Double, ended: Double, bytes: Int, outcome: String)) throws {
        try write {
            // Only a pending instance changes (an answer repeated changes nothing), and the job's
            // counts move by what changed.
            let ack = try db.prepare("UPDATE job_instances SET state = 'acknowledged' WHERE job = ?1 AND sop = ?2 AND state = 'pending' RETURNING size")
            var acked: (count: Int64, bytes: Int64) = (0, 0)
            for sop in acknowledged {
                if let size = try ack.first([.integer(id), .text(sop)], { $0.int(0) }) { acked = (acked.count + 1, acked.bytes + size) }
            }
            let refuse = try db.prepare("UPDATE job_instances SET state = 'refused', reason = ?3 WHERE job = ?1 AND sop = ?2 AND state = 'pending' RETURNING size")
            var refusedNow: (count: Int64, bytes: Int64) = (0, 0)
            for item in refused {
                if let size = try refuse.first([.integer(id), .text(item.sop), .text(item.reason)], { $0.int(0) }) { refusedNow = (refusedNow.count + 1, refusedNow.bytes + size) }
            }
            try db.prepare("""
                UPDATE jobs SET instances_acked = instances_acked + ?2, bytes_sent = bytes_sent + ?3, instances_refused = instances_refused + ?4,
                  bytes_refused = bytes_refused + ?5, progress_at = ?6 WHERE id = ?1
                """).run([.integer(id), .integer(acked.count), .integer(acked.bytes), .integer(refusedNow.count), .integer(refusedNow.bytes), .real(attempt.ended)])
            try db.prepare("INSERT INTO attempts (job, started, ended, sent, bytes, outcome) VALUES (?1, ?2, ?3, ?4, ?5, ?6)")
                .run([.integer(id), .real(attempt.started), .real(attempt.ended), .integer(Int64(acknowledged.count + refused.count)), .integer(Int64(attempt.bytes)), .text(attempt.outcome)])
        }
    }

    /// A job with nothing pending: done (or failed, if any instance was refused for good). Nil,
    /// and the job stays active, when instances joined it since the caller last looked — checked
    /// in the same transaction, so an instance arriving at that moment is never stranded. A job an
    /// operator held or dropped meanwhile keeps that state, which is returned.
    public func finish(job id: Int64, now: Double, deliveredLate: Double?) throws -> String? {
        try write {
            let current = try db.prepare("SELECT state FROM jobs WHERE id = ?1").first([.integer(id)]) { $0.text(0) } ?? nil
            if let current, current == "held" || current == "dropped" { return current }
            let pending = try db.prepare("SELECT count(*) FROM job_instances WHERE job = ?1 AND state = 'pending'").first([.integer(id)]) { $0.int(0) } ?? 0
            if pending > 0 { return nil }
            let refused = try db.prepare("SELECT count(*) FROM job_instances WHERE job = ?1 AND state = 'refused'").first([.integer(id)]) { $0.int(0) } ?? 0
            let state = refused > 0 ? "failed" : "done"
            try db.prepare("UPDATE jobs SET state = ?2, finished = ?3, last_error = CASE WHEN ?2 = 'failed' THEN (SELECT reason FROM job_instances WHERE job = ?1 AND state = 'refused' LIMIT 1) ELSE last_error END, deadline_missed = coalesce(deadline_missed, ?4) WHERE id = ?1")
                .run([.integer(id), .text(state), .real(now), deliveredLate.map(SQLValue.real) ?? .null])
            return state
        }
    }

    /// A job that could not go on now: deferred until `until`, with the reason.
    /// `notATry`: the job only waited (a plan waiting for announcements), and the start that
    /// counted a try is taken back, so its later backoff is not that of a job failed sixty times.
    public func postpone(job id: Int64, until: Double, reason: String, notATry: Bool = false) throws {
        try write {
            try db.prepare(
                "UPDATE jobs SET state = 'deferred', next_attempt = ?2, last_error = ?3, attempts = CASE WHEN ?4 AND attempts > 0 THEN attempts - 1 ELSE attempts END"
                    + " WHERE id = ?1 AND state IN ('active', 'queued', 'deferred')"
            ).run([.integer(id), .real(until), .text(reason), .integer(notATry ? 1 : 0)])
        }
    }

    /// A job past its maximum age, or dropped by an operator: failed with the reason, never lost.
    public func fail(job id: Int64, reason: String, now: Double) throws {
        try write {
            // Never over an operator's hold or drop, nor a job already done.
            try db.prepare("UPDATE jobs SET state = 'failed', finished = ?3, last_error = ?2 WHERE id = ?1 AND state NOT IN ('held', 'dropped', 'done')")
                .run([.integer(id), .text(reason), .real(now)])
        }
    }

    /// Records that a job's deadline passed undelivered (the alarm), once.
    public func markDeadlineMissed(job id: Int64, by seconds: Double) throws -> Bool {
        try write {
            try db.prepare("UPDATE jobs SET deadline_missed = ?2 WHERE id = ?1 AND deadline_missed IS NULL").run([.integer(id), .real(seconds)])
            return db.changes > 0
        }
    }
}
