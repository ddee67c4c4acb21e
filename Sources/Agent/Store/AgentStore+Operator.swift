import Foundation
import SQLite
import Spool

/// What the operator commands read and change in the spool (`consort queue`, `consort status`,
/// and the admin socket's hold, release, retry and drop). Reads use the counts kept on each job
/// row: with 10,000 jobs and a million instances they stay in the milliseconds.
extension AgentStore {
    /// The states a job is shown in. `waiting` is not stored: a queued or deferred job whose
    /// time window is closed now.
    public static let shownStates = ["queued", "active", "deferred", "waiting", "held", "failed", "done", "dropped"]

    /// Which jobs an operator means: every field that is set must match.
    public struct JobFilter: Sendable {
        public var ids: [Int64] = []
        public var peer: String?
        public var state: String?
        public var rule: String?
        public var study: String?
        public var patient: String?
        /// Created at least this many seconds ago.
        public var olderThan: Double?
        /// Done and dropped jobs too (otherwise left out unless asked for by state or id).
        public var includeFinished = false
        public init() {}
        public var isEmpty: Bool { ids.isEmpty && peer == nil && state == nil && rule == nil && study == nil && patient == nil && olderThan == nil }
    }

    /// A job with what a line about it shows of its study.
    public struct JobLine: Sendable {
        public var job: Job
        /// The state shown: the stored one, or `waiting` for a closed window.
        public var shownState: String
        public var studyDate: String?
        public var modality: String?
        public var studyDescription: String?
        public var patientID: String?
    }

    /// The state an operator sees: queued or deferred with a closed window is waiting.
    public static func shownState(_ job: Job, minuteOfDay: Int) -> String {
        guard job.state == .queued || job.state == .deferred, let window = job.window, !window.contains(minuteOfDay: minuteOfDay)
        else { return job.state.rawValue }
        return "waiting"
    }

    /// The jobs a filter matches, oldest first, with their studies' date, modality and description.
    public func jobLines(_ filter: JobFilter, now: Double, minuteOfDay: Int) throws -> [JobLine] {
        var clauses: [String] = []
        var values: [SQLValue] = []
        func bind(_ value: SQLValue) -> String {
            values.append(value)
            return "?\(values.count)"
        }
        if !filter.ids.isEmpty {
            clauses.append("j.id IN (\(filter.ids.map { bind(.integer($0)) }.joined(separator: ",")))")
        } else if let state = filter.state, state == "done" || state == "dropped" {
            clauses.append("j.state = \(bind(.text(state)))")
        } else if filter.includeFinished {
            clauses.append("1")
        } else {
            clauses.append("j.state NOT IN ('done', 'dropped')")
        }
        clauses.append(Self.knownKinds)
        if let peer = filter.peer { clauses.append("j.destination = \(bind(.text(peer)))") }
        if let rule = filter.rule { clauses.append("j.rule = \(bind(.text(rule)))") }
        if let study = filter.study { clauses.append("j.study = \(bind(.text(study)))") }
        if let patient = filter.patient { clauses.append("s.patient_id = \(bind(.text(patient)))") }
        if let older = filter.olderThan { clauses.append("j.created <= \(bind(.real(now - older)))") }
        let sql = """
            SELECT \(Self.jobColumns), s.study_date, s.modality, s.description, s.patient_id
            FROM jobs j LEFT JOIN studies s ON s.uid = j.study WHERE \(clauses.joined(separator: " AND ")) ORDER BY j.id
            """
        return try read {
            // Built from fixed clauses: prepared afresh rather than cached once per filter shape.
            try db.prepare(sql).rows(values) { row in
                let job = try Self.job(row)
                return JobLine(
                    job: job, shownState: Self.shownState(job, minuteOfDay: minuteOfDay), studyDate: row.text(Self.jobColumnCount), modality: row.text(Self.jobColumnCount + 1),
                    studyDescription: row.text(Self.jobColumnCount + 2), patientID: row.text(Self.jobColumnCount + 3))
            }
        }.filter { line in
            guard let state = filter.state, filter.ids.isEmpty else { return true }
            return line.shownState == state
        }
    }

    /// One instance of a job, and what the peer answered for it.
    public struct JobInstance: Sendable {
        public var sop: String
        public var path: String
        public var size: Int64
        public var state: String
        public var reason: String?
    }

    public func instances(ofJob id: Int64, limit: Int = 100_000) throws -> [JobInstance] {
        try read {
            try db.prepare("SELECT sop, path, size, state, reason FROM job_instances WHERE job = ?1 ORDER BY rowid LIMIT ?2").rows([.integer(id), .integer(Int64(limit))]) {
                JobInstance(sop: $0.text(0) ?? "", path: $0.text(1) ?? "", size: $0.int(2), state: $0.text(3) ?? "", reason: $0.text(4))
            }
        }
    }

    /// One try at sending a batch of a job: when, how long, what went, the outcome.
    public struct Attempt: Sendable {
        public var started: Double
        public var ended: Double
        public var instances: Int
        public var bytes: Int64
        public var outcome: String
    }

    public func attempts(ofJob id: Int64, limit: Int = 1000) throws -> [Attempt] {
        try read {
            try db.prepare("SELECT started, ended, sent, bytes, outcome FROM attempts WHERE job = ?1 ORDER BY rowid DESC LIMIT ?2").rows([.integer(id), .integer(Int64(limit))]) {
                Attempt(started: $0.double(0), ended: $0.double(1), instances: Int($0.int(2)), bytes: $0.int(3), outcome: $0.text(4) ?? "")
            }.reversed()
        }
    }

    /// Bytes a job sent in the last `seconds` and over how long (its rate while active).
    public func recentBytes(ofJob id: Int64, since: Double) throws -> (bytes: Int64, seconds: Double) {
        try read {
            try db.prepare("SELECT coalesce(sum(bytes), 0), coalesce(max(ended) - min(started), 0) FROM attempts WHERE job = ?1 AND ended >= ?2")
                .first([.integer(id), .real(since)]) { ($0.int(0), $0.double(1)) } ?? (0, 0)
        }
    }

    /// Per destination: what it was sent since `since` (bytes, instances), its last successful
    /// batch and its last failure (from the recorded attempts, so known with the agent down).
    public struct PeerHistory: Sendable {
        public var recentBytes: Int64 = 0
        public var recentInstances = 0
        public var lastSuccess: Double?
        public var lastFailure: Double?
        public var lastError: String?
    }

    public func peerHistory(since: Double) throws -> [String: PeerHistory] {
        try read {
            var out: [String: PeerHistory] = [:]
            for (peer, bytes, count) in try db.prepare(
                "SELECT j.destination, sum(a.bytes), sum(a.sent) FROM attempts a JOIN jobs j ON j.id = a.job WHERE a.ended >= ?1 GROUP BY j.destination"
            ).rows([.real(since)], { ($0.text(0) ?? "", $0.int(1), Int($0.int(2))) }) {
                out[peer, default: PeerHistory()].recentBytes = bytes
                out[peer, default: PeerHistory()].recentInstances = count
            }
            // The last success and failure of each destination: from its most recent attempts.
            for (peer, ended) in try db.prepare(
                "SELECT j.destination, max(a.ended) FROM attempts a JOIN jobs j ON j.id = a.job WHERE a.outcome NOT LIKE 'failed:%' GROUP BY j.destination"
            ).rows([], { ($0.text(0) ?? "", $0.double(1)) }) {
                out[peer, default: PeerHistory()].lastSuccess = ended
            }
            for (peer, ended, outcome) in try db.prepare(
                "SELECT j.destination, max(a.ended), a.outcome FROM attempts a JOIN jobs j ON j.id = a.job WHERE a.outcome LIKE 'failed:%' GROUP BY j.destination"
            ).rows([], { ($0.text(0) ?? "", $0.double(1), $0.text(2) ?? "") }) {
                // (SQLite takes a bare column of a max() query from the row that has the maximum.)
                out[peer, default: PeerHistory()].lastFailure = ended
                out[peer, default: PeerHistory()].lastError = String(outcome.dropFirst("failed: ".count))
            }
            return out
        }
    }

    /// Jobs by destination and stored state (not done or dropped), with what they still have to
    /// send: the metrics' and the status's queue depth.
    public struct Depth: Sendable {
        public var jobs = 0
        public var instances = 0
        public var bytes: Int64 = 0
    }

    public func depth() throws -> [String: [String: Depth]] {
        try read {
            var out: [String: [String: Depth]] = [:]
            for (peer, state, jobs, instances, bytes) in try db.prepare("""
                SELECT destination, state, count(*), sum(instances_total - instances_acked - instances_refused), sum(bytes_total - bytes_sent - bytes_refused)
                FROM jobs WHERE state NOT IN ('done', 'dropped') GROUP BY destination, state
                """).rows([], { ($0.text(0) ?? "", $0.text(1) ?? "", Int($0.int(2)), Int($0.int(3)), $0.int(4)) }) {
                out[peer, default: [:]][state] = Depth(jobs: jobs, instances: instances, bytes: bytes)
            }
            return out
        }
    }

    /// Jobs whose deadline passed undelivered, for deadlines in the window since `since`.
    public func missedDeadlines(since: Double) throws -> [Job] {
        try read {
            try db.prepare("SELECT \(Self.jobColumns) FROM jobs j WHERE j.deadline_missed IS NOT NULL AND j.deadline >= ?1 ORDER BY j.deadline").rows([.real(since)], Self.job)
        }
    }

    /// Active jobs with no answer from their peer for `seconds`: a queue that stalls silently.
    public func stuckJobs(now: Double, after seconds: Double) throws -> [Job] {
        try read {
            try db.prepare("SELECT \(Self.jobColumns) FROM jobs j WHERE j.state = 'active' AND coalesce(j.progress_at, j.created) <= ?1 ORDER BY j.id")
                .rows([.real(now - seconds)], Self.job)
        }
    }

    // MARK: - Operator actions (the admin socket's; each returns the jobs it changed)

    /// Held jobs are never sent until released (an active one stops after its batch in flight).
    public func hold(_ ids: [Int64]) throws -> [Int64] {
        try changing(ids, "UPDATE jobs SET state = 'held' WHERE id = ?1 AND state IN ('queued', 'deferred', 'active')")
    }

    public func release(_ ids: [Int64], now: Double) throws -> [Int64] {
        try changing(ids, "UPDATE jobs SET state = 'queued', next_attempt = ?2 WHERE id = ?1 AND state = 'held'", now: now)
    }

    /// Now, whatever the backoff. A failed job goes again too: its refused instances are offered
    /// once more (the operator fixed the cause) and its age starts again.
    public func retry(_ ids: [Int64], now: Double) throws -> [Int64] {
        try write {
            var changed: [Int64] = []
            for id in ids {
                try db.prepare("UPDATE jobs SET state = 'queued', next_attempt = ?2 WHERE id = ?1 AND state IN ('deferred', 'queued')").run([.integer(id), .real(now)])
                if db.changes > 0 {
                    changed.append(id)
                    continue
                }
                try db.prepare("UPDATE job_instances SET state = 'pending', reason = NULL WHERE job = ?1 AND state = 'refused' AND ?2 IN (SELECT state FROM jobs WHERE id = ?1)")
                    .run([.integer(id), .text("failed")])
                try db.prepare("""
                    UPDATE jobs SET state = 'queued', next_attempt = ?2, created = ?2, finished = NULL, instances_refused = 0, bytes_refused = 0,
                      last_error = 'retried by an operator; before: ' || coalesce(last_error, 'no error') WHERE id = ?1 AND state = 'failed'
                    """).run([.integer(id), .real(now)])
                if db.changes > 0 { changed.append(id) }
            }
            return changed
        }
    }

    /// Dropped: never sent, kept (with who dropped it and when) for the record.
    public func drop(_ ids: [Int64], reason: String, now: Double) throws -> [Int64] {
        try changing(ids, "UPDATE jobs SET state = 'dropped', finished = ?2, last_error = ?3 WHERE id = ?1 AND state NOT IN ('done', 'dropped')", now: now, text: reason)
    }

    private func changing(_ ids: [Int64], _ sql: String, now: Double? = nil, text: String? = nil) throws -> [Int64] {
        try write {
            var changed: [Int64] = []
            let statement = try db.prepare(sql)
            for id in ids {
                var values: [SQLValue] = [.integer(id)]
                if let now { values.append(.real(now)) }
                if let text { values.append(.text(text)) }
                try statement.run(values)
                if db.changes > 0 { changed.append(id) }
            }
            return changed
        }
    }
}

extension AgentStore {
    /// A read the health check makes: the database answers.
    public func ping() throws {
        try read { _ = try db.prepare("SELECT 1").first { $0.int(0) } }
    }

    /// Queued or deferred jobs with a time window (few: bulk work), by destination and stored
    /// state with their window, to tell those waiting for it.
    public func windowedJobs() throws -> [(peer: String, state: String, window: String, instances: Int, bytes: Int64)] {
        try read {
            try db.prepare("""
                SELECT destination, state, window, instances_total - instances_acked - instances_refused, bytes_total - bytes_sent - bytes_refused
                FROM jobs WHERE window IS NOT NULL AND state IN ('queued', 'deferred')
                """).rows([]) { ($0.text(0) ?? "", $0.text(1) ?? "", $0.text(2) ?? "", Int($0.int(3)), $0.int(4)) }
        }
    }

    /// `depth()` with the jobs waiting for their window moved to a `waiting` state.
    public func depthWithWaiting(minuteOfDay: Int) throws -> [String: [String: Depth]] {
        var depth = try depth()
        for job in try windowedJobs() {
            guard let window = Spool.TimeWindow(job.window), !window.contains(minuteOfDay: minuteOfDay) else { continue }
            depth[job.peer, default: [:]][job.state, default: Depth()].jobs -= 1
            depth[job.peer, default: [:]][job.state, default: Depth()].instances -= job.instances
            depth[job.peer, default: [:]][job.state, default: Depth()].bytes -= job.bytes
            depth[job.peer, default: [:]]["waiting", default: Depth()].jobs += 1
            depth[job.peer, default: [:]]["waiting", default: Depth()].instances += job.instances
            depth[job.peer, default: [:]]["waiting", default: Depth()].bytes += job.bytes
        }
        return depth
    }
}
