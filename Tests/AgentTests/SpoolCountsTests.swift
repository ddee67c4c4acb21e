import Foundation
import SQLite
import Spool
import Testing

@testable import Agent

/// The counts each job row keeps (instances and bytes sent, refused, left) and the inventory's
/// totals: what `consort queue` and `consort status` read instead of counting a million rows.
/// They must always equal a count of the rows themselves, through every change, and a database
/// written before they existed is upgraded with them filled in.
@Suite("Spool counts")
struct SpoolCountsTests {
    static func scratch() -> String { NSTemporaryDirectory() + "consort-counts-\(UUID().uuidString).sqlite" }

    static func remove(_ path: String) { for suffix in ["", "-wal", "-shm"] { try? FileManager.default.removeItem(atPath: path + suffix) } }

    static func taken(_ sop: String, study: String, size: Int, origin: String = "local", to destination: String = "UHSX") -> AgentStore.Taken {
        AgentStore.Taken(
            sop: sop, study: AgentStore.StudyFacts(uid: study), series: "1.2.3", path: "/archive/\(study)/\(sop).dcm", size: size, mtime: 1, origin: origin,
            jobs: [AgentStore.NewJob(kind: .push, destination: destination, rule: "r", purpose: "direct-care", priority: .normal)])
    }

    /// The kept counts against a count of the rows.
    static func expectConsistent(_ path: String, sourceLocation: SourceLocation = #_sourceLocation) throws {
        let db = try Database(path: path, readOnly: true)
        let rows = try db.prepare("""
            SELECT j.id, j.instances_total, j.instances_acked, j.instances_refused, j.bytes_total, j.bytes_sent, j.bytes_refused,
              (SELECT count(*) FROM job_instances i WHERE i.job = j.id), (SELECT count(*) FROM job_instances i WHERE i.job = j.id AND i.state = 'acknowledged'),
              (SELECT count(*) FROM job_instances i WHERE i.job = j.id AND i.state = 'refused'), (SELECT coalesce(sum(size), 0) FROM job_instances i WHERE i.job = j.id),
              (SELECT coalesce(sum(size), 0) FROM job_instances i WHERE i.job = j.id AND i.state = 'acknowledged'),
              (SELECT coalesce(sum(size), 0) FROM job_instances i WHERE i.job = j.id AND i.state = 'refused')
            FROM jobs j
            """).rows { row in (0..<13).map { row.int(Int32($0)) } }
        #expect(!rows.isEmpty, sourceLocation: sourceLocation)
        for row in rows {
            #expect(Array(row[1...6]) == Array(row[7...12]), "job \(row[0]): kept \(Array(row[1...6])), counted \(Array(row[7...12]))", sourceLocation: sourceLocation)
        }
    }

    @Test func theCountsKeptOnAJobAlwaysEqualItsInstances() throws {
        let path = Self.scratch()
        defer { Self.remove(path) }
        let store = try AgentStore(path: path)
        let sops = (1...6).map { "1.2.826.0.1.\($0)" }
        try store.record(taken: sops.map { Self.taken($0, study: "9.9", size: 1000 + Int($0.suffix(1))!) }, problems: [], now: 10)
        // The same instances again (a re-export) change nothing.
        try store.record(taken: sops.prefix(2).map { Self.taken($0, study: "9.9", size: 1000 + Int($0.suffix(1))!) }, problems: [], now: 11)
        try Self.expectConsistent(path)
        let id = try #require(try store.jobs().first?.id)
        try store.start(job: id, now: 12)
        try store.recordAnswers(job: id, acknowledged: [sops[0], sops[1]], refused: [(sops[2], "conflict")], attempt: (12, 13, 2002, "2 stored, 1 refused"))
        // An answer repeated (a retry after a lost reply) is counted once.
        try store.recordAnswers(job: id, acknowledged: [sops[0], sops[1]], refused: [(sops[2], "conflict")], attempt: (13, 14, 0, "again"))
        try Self.expectConsistent(path)
        var job = try #require(try store.job(id))
        #expect((job.total, job.acknowledged, job.refused, job.instancesLeft) == (6, 2, 1, 3))
        #expect(job.bytesSent == 1001 + 1002 && job.bytesLeft == 1004 + 1005 + 1006 && job.progressAt == 14)
        try store.recordAnswers(job: id, acknowledged: Array(sops[3...]), refused: [], attempt: (14, 15, 3015, "3 stored"))
        #expect(try store.finish(job: id, now: 15, deliveredLate: nil) == "failed")
        // An operator's retry of the failed job offers the refused instance again.
        #expect(try store.retry([id], now: 16) == [id])
        job = try #require(try store.job(id))
        #expect((job.state, job.refused, job.instancesLeft, job.created) == (.queued, 0, 1, 16))
        try Self.expectConsistent(path)
        // New instances reopen and join it.
        try store.record(taken: [Self.taken("1.2.826.0.1.7", study: "9.9", size: 7)], problems: [], now: 17)
        try Self.expectConsistent(path)
        #expect(try store.job(id)?.total == 7)
        // The inventory's totals: local and received, each instance once.
        try store.record(taken: [Self.taken("1.2.826.0.2.1", study: "8.8", size: 500, origin: "ESHT")], problems: [], now: 18)
        let counts = try store.counts()
        #expect((counts.studies, counts.instances, counts.receivedInstances) == (2, 8, 1))
        let archived: Int64 = 6 * 1000 + 21 + 7
        #expect(counts.bytes == archived + 500)
        #expect(counts.receivedBytes == 500)
    }

    @Test func operatorActionsChangeOnlyTheStatesTheyMayChange() throws {
        let path = Self.scratch()
        defer { Self.remove(path) }
        let store = try AgentStore(path: path)
        for (index, study) in ["1.1", "2.2", "3.3"].enumerated() {
            try store.record(taken: [Self.taken("5.\(index)", study: study, size: 10)], problems: [], now: 1)
        }
        let ids = try store.jobs().map(\.id)
        #expect(ids.count == 3)
        #expect(try store.hold([ids[0], ids[1]]) == [ids[0], ids[1]])
        #expect(try store.hold([ids[0]]) == [], "holding a held job changes nothing")
        #expect(try store.retry([ids[0]], now: 2) == [], "a held job is released, not retried")
        #expect(try store.release([ids[0]], now: 3) == [ids[0]])
        #expect(try store.drop([ids[1], ids[2]], reason: "dropped by alice", now: 4) == [ids[1], ids[2]])
        #expect(try store.drop([ids[1]], reason: "again", now: 5) == [], "dropped once")
        #expect(try store.jobs().map(\.id) == [ids[0]], "dropped jobs are out of the queue")
        #expect(try store.job(ids[1])?.lastError == "dropped by alice")
        var filter = AgentStore.JobFilter()
        filter.state = "dropped"
        #expect(try store.jobLines(filter, now: 6, minuteOfDay: 0).map(\.job.id) == [ids[1], ids[2]])
        #expect(try store.runnableJobs(now: 6).map(\.id) == [ids[0]], "only the released job may run")
    }

    /// A job with a window closed now is shown as waiting, in the list and in the depth.
    @Test func aJobOutsideItsWindowIsWaiting() throws {
        let path = Self.scratch()
        defer { Self.remove(path) }
        let store = try AgentStore(path: path)
        var item = Self.taken("7.1", study: "7.7", size: 10)
        item.jobs[0].window = TimeWindow("19:00-07:00")
        try store.record(taken: [item], problems: [], now: 1)
        let noon = 12 * 60, night = 23 * 60
        #expect(try store.jobLines(AgentStore.JobFilter(), now: 2, minuteOfDay: noon).first?.shownState == "waiting")
        #expect(try store.jobLines(AgentStore.JobFilter(), now: 2, minuteOfDay: night).first?.shownState == "queued")
        #expect(try store.depthWithWaiting(minuteOfDay: noon)["UHSX"]?["waiting"]?.jobs == 1)
        #expect(try store.depthWithWaiting(minuteOfDay: noon)["UHSX"]?["queued"]?.jobs ?? 0 == 0)
    }

    /// A database from before the counts (schema 1: no count columns, no totals) is upgraded when
    /// the agent opens it, the counts filled in from the rows.
    @Test func aDatabaseFromBeforeTheCountsIsUpgraded() throws {
        let path = Self.scratch()
        defer { Self.remove(path) }
        do {
            let db = try Database(path: path)
            try db.execute("""
                CREATE TABLE files (path TEXT PRIMARY KEY, size INTEGER NOT NULL, mtime REAL NOT NULL, sop TEXT, problem TEXT, taken REAL NOT NULL);
                CREATE TABLE studies (uid TEXT PRIMARY KEY, patient_id TEXT, patient_issuer TEXT, study_date TEXT, modality TEXT, description TEXT,
                  accession TEXT, body_part TEXT, origin TEXT NOT NULL, first_seen REAL NOT NULL, last_instance REAL NOT NULL,
                  stable_fired INTEGER NOT NULL DEFAULT 0, sample_path TEXT NOT NULL, expected INTEGER);
                CREATE TABLE instances (sop TEXT PRIMARY KEY, study TEXT NOT NULL, series TEXT, path TEXT NOT NULL, size INTEGER NOT NULL,
                  origin TEXT NOT NULL, rule TEXT, arrived REAL NOT NULL);
                CREATE TABLE jobs (id INTEGER PRIMARY KEY, kind TEXT NOT NULL, destination TEXT NOT NULL, study TEXT NOT NULL, rule TEXT NOT NULL,
                  purpose TEXT NOT NULL, priority INTEGER NOT NULL, window TEXT, deadline REAL, created REAL NOT NULL, state TEXT NOT NULL,
                  attempts INTEGER NOT NULL DEFAULT 0, next_attempt REAL NOT NULL, last_error TEXT, deadline_missed REAL, finished REAL,
                  UNIQUE (rule, destination, study));
                CREATE TABLE job_instances (job INTEGER NOT NULL REFERENCES jobs(id) ON DELETE CASCADE, sop TEXT NOT NULL, path TEXT NOT NULL,
                  size INTEGER NOT NULL, state TEXT NOT NULL DEFAULT 'pending', reason TEXT, PRIMARY KEY (job, sop));
                CREATE TABLE attempts (job INTEGER NOT NULL REFERENCES jobs(id) ON DELETE CASCADE, started REAL NOT NULL, ended REAL NOT NULL,
                  sent INTEGER NOT NULL, bytes INTEGER NOT NULL, outcome TEXT NOT NULL);
                INSERT INTO studies (uid, origin, first_seen, last_instance, sample_path) VALUES ('4.4', 'local', 1, 1, '/a');
                INSERT INTO instances VALUES ('4.4.1', '4.4', NULL, '/a/1', 100, 'local', NULL, 1), ('4.4.2', '4.4', NULL, '/a/2', 200, 'UHSX', NULL, 1);
                INSERT INTO jobs (id, kind, destination, study, rule, purpose, priority, created, state, next_attempt) VALUES (1, 'push', 'ASPH', '4.4', 'r', 'direct-care', 1, 1, 'deferred', 1);
                INSERT INTO job_instances VALUES (1, '4.4.1', '/a/1', 100, 'acknowledged', NULL), (1, '4.4.2', '/a/2', 200, 'pending', NULL);
                """)
        }
        let store = try AgentStore(path: path)
        let job = try #require(try store.job(1))
        #expect((job.total, job.acknowledged, job.bytesSent, job.bytesLeft) == (2, 1, 100, 200))
        let counts = try store.counts()
        #expect((counts.instances, counts.receivedInstances, counts.bytes) == (2, 1, 300))
        try Self.expectConsistent(path)
        // Opened again: already upgraded, nothing recomputed or lost.
        let again = try AgentStore(path: path)
        #expect(try again.job(1)?.bytesLeft == 200)
    }

    /// A fetch is queued once however many plans ask for it at once, never for a study held
    /// here; a job an operator held or dropped is neither started nor failed over.
    @Test func fetchesAreQueuedOnceAndOperatorStatesStick() throws {
        let path = Self.scratch()
        defer { Self.remove(path) }
        let store = try AgentStore(path: path)
        let fetch = AgentStore.NewJob(kind: .fetch, destination: "UHSX", rule: "r", purpose: "direct-care", priority: .normal)
        var other = fetch
        other.rule = "another rule"
        #expect(try store.queueFetch(fetch, study: "6.1", now: 1))
        #expect(try !store.queueFetch(other, study: "6.1", now: 2), "a fetch of it is pending")
        try store.record(taken: [Self.taken("6.2.1", study: "6.2", size: 5)], problems: [], now: 3)
        #expect(try !store.queueFetch(fetch, study: "6.2", now: 4), "held here")
        let id = try #require(try store.runnableJobs(now: 5).first?.id)
        #expect(try store.hold([id]) == [id])
        #expect(try !store.start(job: id, now: 6), "a held job is not started")
        try store.fail(job: id, reason: "404", now: 7)
        #expect(try store.job(id)?.state == .held, "a hold is not failed over")
        #expect(try store.drop([id], reason: "dropped by alice", now: 8) == [id])
        try store.finishFetch(job: id, instances: [], now: 9)
        #expect(try store.job(id)?.state == .dropped, "a drop is not finished over")
    }
}
