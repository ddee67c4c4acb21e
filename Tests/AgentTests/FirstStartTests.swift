import Foundation
import SQLite
import Spool
import Testing

@testable import Agent

/// The pure decisions of the first start and `consort backfill` (issue 23).
@Suite("First start and backfill")
struct FirstStartTests {
    /// History is what had not changed when the first catch-up began (the line is kept for
    /// every later catch-up); without a line (a database an earlier version had run) nothing is.
    @Test(arguments: [
        (changed: 100.0, historyBefore: 200.0 as Double?, history: true),
        (changed: 200.0, historyBefore: 200.0, history: false),  // changed the moment it began: new
        (changed: 250.0, historyBefore: 200.0, history: false),
        (changed: 100.0, historyBefore: nil, history: false),  // an upgraded agent: no line
    ])
    func aFileIsHistoryOnlyIfUnchangedSinceTheFirstCatchUpBegan(_ row: (changed: Double, historyBefore: Double?, history: Bool)) {
        #expect(Ingest.isHistory(changed: row.changed, historyBefore: row.historyBefore) == row.history)
    }

    @Test(arguments: [
        ("20220131", true), ("20240229", true), ("20230229", false), ("20221301", false), ("20220100", false), ("2022013", false),
        ("2022-01-31", false), ("２０２２０１３１", false), ("", false),
    ])
    func sinceTakesARealDateAsYYYYMMDD(_ text: String, _ valid: Bool) {
        #expect(Backfill.isDate(text) == valid, "\(text)")
    }

    @Test(arguments: [
        ("20220101", true), ("20211231", false), ("20230615", true), ("2022.03.04", true), ("2021.03.04", false),
        (nil, false), ("", false), ("garbage", false), ("20220101 ", true),
    ] as [(String?, Bool)])
    func aStudyIsTakenWhenItsDateIsOnOrAfterSince(_ date: String?, _ taken: Bool) {
        #expect(Backfill.isOnOrAfter(date, since: "20220101") == taken, "\(date ?? "nil")")
    }

    @Test func aBackfilledJobIsBulkWithoutDeadlineOrDelayAndKeepsItsWindow() {
        let job = AgentStore.NewJob(kind: .push, destination: "UHSX", rule: "r", purpose: "direct-care", priority: .urgent, window: TimeWindow("22:00-06:00"), deadline: 123, notBefore: 99)
        let bulk = Backfill.asBulk(job)
        #expect(bulk.priority == .bulk && bulk.deadline == nil && bulk.notBefore == nil)
        #expect(bulk.window == TimeWindow("22:00-06:00") && bulk.destination == "UHSX" && bulk.kind == .push)
    }

    /// A job already there for the same study, rule and destination stands, except a done one
    /// that lacks instances: it is given those (and only those).
    @Test func aJobAlreadyThereStandsUnlessItIsDoneAndLacksInstances() {
        let instances: [(sop: String, path: String, size: Int)] = [("9.1", "/a/1", 1), ("9.2", "/a/2", 2)]
        func planned(_ study: String, _ rule: String, _ destination: String) -> Backfill.Planned {
            Backfill.Planned(
                key: Backfill.Key(study: study, rule: rule, destination: destination),
                job: AgentStore.NewJob(kind: .push, destination: destination, rule: rule, purpose: "direct-care", priority: .bulk), instances: instances)
        }
        let all = [planned("1.1", "a", "UHSX"), planned("1.1", "a", "ASPH"), planned("1.2", "a", "UHSX"), planned("1.3", "b", "UHSX"), planned("1.4", "a", "UHSX"), planned("1.5", "a", "UHSX")]
        let existing: [Backfill.Key: Backfill.Existing] = [
            all[0].key: Backfill.Existing(id: 1, state: "done", sops: ["9.1", "9.2"]),
            all[3].key: Backfill.Existing(id: 3, state: "dropped", sops: ["9.1"]),
            Backfill.Key(study: "1.2", rule: "other", destination: "UHSX"): Backfill.Existing(id: 2, state: "queued", sops: []),
            all[4].key: Backfill.Existing(id: 4, state: "done", sops: ["9.1"]),
            all[5].key: Backfill.Existing(id: 5, state: "queued", sops: ["9.1"]),
        ]
        let split = Backfill.split(all, existing: existing)
        #expect(split.fresh.map(\.key) == [all[1].key, all[2].key, all[4].key])
        #expect(split.fresh.map(\.extending) == [nil, nil, 4])
        #expect(split.fresh[2].instances.map(\.sop) == ["9.2"])
        #expect(split.standing.map(\.state) == ["done", "dropped", "queued"])
    }

    static func scratch() -> String { NSTemporaryDirectory() + "consort-first-\(UUID().uuidString).sqlite" }
    static func remove(_ path: String) { for suffix in ["", "-wal", "-shm"] { try? FileManager.default.removeItem(atPath: path + suffix) } }

    /// The line is recorded once, before the first scan, and kept by every later start until
    /// (and after) the first catch-up finishes: a start after a kill resumes with it.
    @Test func theFirstCatchUpsBeginningIsRecordedOnceAndKept() throws {
        let path = Self.scratch()
        defer { Self.remove(path) }
        do {
            let store = try AgentStore(path: path)
            #expect(try store.firstCatchUpFinished() == nil && store.firstCatchUpBegan() == nil)
            #expect(try store.beginFirstCatchUp(now: 100) == 100)
        }
        let store = try AgentStore(path: path)
        #expect(try store.beginFirstCatchUp(now: 200) == 100)
        #expect(try store.firstCatchUpBegan() == 100 && store.firstCatchUpFinished() == nil)
        try store.recordFirstCatchUp(files: 3, now: 300)
        #expect(try store.firstCatchUpBegan() == 100 && store.firstCatchUpFinished() == 300)
    }

    /// A database an earlier version (schema 4) made belongs to an agent that has run — even one
    /// that never took a file (a receive-only site): its first start is behind it, with no line.
    /// One from before `user_version` was kept (0) says so by holding rows.
    @Test(arguments: [(version: 4, rows: false, ran: true), (version: 1, rows: false, ran: true), (version: 0, rows: true, ran: true), (version: 0, rows: false, ran: false)])
    func aDatabaseAnEarlierVersionMadeHasRun(_ row: (version: Int, rows: Bool, ran: Bool)) throws {
        let path = Self.scratch()
        defer { Self.remove(path) }
        do {
            // The tables as version 4 wrote them: the schema without milestones.
            let db = try Database(path: path)
            try db.execute(AgentStore.schema)
            if row.rows { try db.execute("INSERT INTO files (path, size, mtime, sop, problem, taken) VALUES ('/archive/a.dcm', 1, 1, NULL, 'not DICOM', 1)") }
            try db.execute("PRAGMA user_version = \(row.version)")
        }
        let store = try AgentStore(path: path)
        #expect(try (store.firstCatchUpFinished() != nil) == row.ran)
        #expect(try store.firstCatchUpBegan() == nil)
        let version = try store.db.prepare("PRAGMA user_version").first([], { $0.int(0) })
        #expect(version == Int64(AgentStore.schemaVersion))
    }

    /// A history study that later got one live instance under an instance-arrival rule has a
    /// done job holding that instance only: a backfill gives it the rest, at bulk priority.
    @Test func aBackfillAddsTheRestToADoneJobOfOneLiveInstance() throws {
        let path = Self.scratch()
        defer { Self.remove(path) }
        let store = try AgentStore(path: path)
        let push = AgentStore.NewJob(kind: .push, destination: "UHSX", rule: "r", purpose: "direct-care", priority: .urgent, window: nil, deadline: 999)
        func taken(_ sop: String, history: Bool) -> AgentStore.Taken {
            var item = AgentStore.Taken(
                sop: sop, study: AgentStore.StudyFacts(uid: "1.9"), series: "1.9.1", path: "/archive/\(sop).dcm", size: 10, mtime: 1, origin: "local",
                jobs: history ? [] : [push])
            item.history = history
            return item
        }
        try store.record(taken: [taken("1.9.1.1", history: true), taken("1.9.1.2", history: true)], problems: [], now: 1)
        try store.record(taken: [taken("1.9.1.3", history: false)], problems: [], now: 2)
        try store.db.execute("UPDATE jobs SET state = 'done'")
        let key = Backfill.Key(study: "1.9", rule: "r", destination: "UHSX")
        let planned = Backfill.Planned(key: key, job: Backfill.asBulk(push), instances: try store.localInstances(ofStudy: "1.9"))
        let split = Backfill.split([planned], existing: try store.jobStates(ofStudy: "1.9"))
        #expect(split.standing.isEmpty && split.fresh.count == 1)
        #expect(Set(split.fresh.first?.instances.map(\.sop) ?? []) == ["1.9.1.1", "1.9.1.2"])
        let ids = try store.queueBackfill(split.fresh, now: 3)
        #expect(ids[key] != nil)
        let job = try store.db.prepare("SELECT state, priority, deadline IS NULL, instances_total FROM jobs").rows([]) { "\($0.text(0) ?? "") \($0.int(1)) \($0.int(2)) \($0.int(3))" }
        #expect(job == ["queued 2 1 3"])
        // Asked again, there is nothing left to add.
        let again = Backfill.split([planned], existing: try store.jobStates(ofStudy: "1.9"))
        #expect(again.fresh.isEmpty && again.standing.map(\.state) == ["queued"])
    }

    /// The dry run's counts by rule, action and peer: what is read before a list that may be cut.
    @Test func aBackfillIsSummarisedByRuleActionAndPeer() {
        func planned(_ study: String, _ rule: String, _ destination: String, _ instances: Int, extending: Int64? = nil) -> Backfill.Planned {
            Backfill.Planned(
                key: Backfill.Key(study: study, rule: rule, destination: destination),
                job: AgentStore.NewJob(kind: .push, destination: destination, rule: rule, purpose: "direct-care", priority: .bulk),
                instances: (0..<instances).map { ("\(study).\($0)", "/a/\(study)/\($0)", 1) }, extending: extending)
        }
        let summary = AgentDaemon.backfillSummary([planned("1.1", "a", "UHSX", 3), planned("1.2", "b", "UHSX", 1), planned("1.3", "a", "UHSX", 2, extending: 7)])
        #expect(summary.map { $0.serialized() } == [
            #"{"rule":"a","kind":"push","peer":"UHSX","jobs":2,"adding":1,"instances":5}"#, #"{"rule":"b","kind":"push","peer":"UHSX","jobs":1,"adding":0,"instances":1}"#,
        ])
    }

    @Test func closeRuleNamesAreFoundDespiteCaseAndTypos() {
        let names = ["Everything to UHSX", "Oncology priors", "nightly to UHSX"]
        #expect(Backfill.closeNames("everything to uhsx", among: names) == ["Everything to UHSX"])
        #expect(Backfill.closeNames("Everything to UHS", among: names) == ["Everything to UHSX"])
        #expect(Backfill.closeNames("Oncology", among: names) == ["Oncology priors"])
        #expect(Backfill.closeNames("Mammography", among: names).isEmpty)
    }
}
