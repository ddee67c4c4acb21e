import Foundation
import Testing

@testable import Agent

/// The pure decisions of the first start and `consort backfill` (issue 23).
@Suite("First start and backfill")
struct FirstStartTests {
    /// Only the first catch-up takes history, and only files unchanged since it began.
    @Test(arguments: [
        (changed: 100.0, historyBefore: 200.0 as Double?, history: true),
        (changed: 200.0, historyBefore: 200.0, history: false),  // changed the moment it began: new
        (changed: 250.0, historyBefore: 200.0, history: false),
        (changed: 100.0, historyBefore: nil, history: false),  // not a first start
    ])
    func aFileIsHistoryOnlyInTheFirstCatchUpAndOnlyIfUnchangedSinceItBegan(_ row: (changed: Double, historyBefore: Double?, history: Bool)) {
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
        let job = AgentStore.NewJob(kind: "push", destination: "UHSX", rule: "r", purpose: "direct-care", priority: 0, window: "22:00-06:00", deadline: 123, notBefore: 99)
        let bulk = Backfill.asBulk(job)
        #expect(bulk.priority == 2 && bulk.deadline == nil && bulk.notBefore == nil)
        #expect(bulk.window == "22:00-06:00" && bulk.destination == "UHSX" && bulk.kind == "push")
    }

    /// A job already there for the same study, rule and destination, in any state, stands.
    @Test func aJobAlreadyThereInAnyStateIsNotQueuedAgain() {
        func planned(_ study: String, _ rule: String, _ destination: String) -> Backfill.Planned {
            Backfill.Planned(
                key: Backfill.Key(study: study, rule: rule, destination: destination),
                job: AgentStore.NewJob(kind: "push", destination: destination, rule: rule, purpose: "direct-care", priority: 2), instances: [])
        }
        let all = [planned("1.1", "a", "UHSX"), planned("1.1", "a", "ASPH"), planned("1.2", "a", "UHSX"), planned("1.3", "b", "UHSX")]
        let existing: [Backfill.Key: String] = [
            Backfill.Key(study: "1.1", rule: "a", destination: "UHSX"): "done", Backfill.Key(study: "1.3", rule: "b", destination: "UHSX"): "dropped",
            Backfill.Key(study: "1.2", rule: "other", destination: "UHSX"): "queued",
        ]
        let split = Backfill.split(all, existing: existing)
        #expect(split.fresh.map(\.key) == [all[1].key, all[2].key])
        #expect(split.standing.map(\.state) == ["done", "dropped"])
    }

    @Test func closeRuleNamesAreFoundDespiteCaseAndTypos() {
        let names = ["Everything to UHSX", "Oncology priors", "nightly to UHSX"]
        #expect(Backfill.closeNames("everything to uhsx", among: names) == ["Everything to UHSX"])
        #expect(Backfill.closeNames("Everything to UHS", among: names) == ["Everything to UHSX"])
        #expect(Backfill.closeNames("Oncology", among: names) == ["Oncology priors"])
        #expect(Backfill.closeNames("Mammography", among: names).isEmpty)
    }
}
