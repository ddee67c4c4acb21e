import Foundation
import TestSupport
import Testing

/// The first start over an existing archive (issue 23, point 4), with real agents on loopback:
/// history is indexed without firing rules, what comes later fires, and `consort backfill`
/// applies the rules to history on purpose.
@Suite("first start and backfill", .serialized, .timeLimit(.minutes(10)))
struct FirstStartTests {
    /// The pushed studies in a site's inbound, by study UID.
    static func studies(_ site: AgentSite) -> Set<String> { Set(site.received.compactMap { $0.split(separator: "/").first.map(String.init) }) }

    static func pushJobs(_ site: AgentSite) throws -> [[String: Any]] { try site.queue().filter { $0["kind"] as? String == "push" } }

    /// Waits for this run's catch-up to finish (the line is logged once it is recorded).
    static func caughtUp(_ site: AgentSite) -> Bool {
        AgentSite.eventually(within: 60, "\(site.code)'s catch-up scan done", logs: [site]) { site.log.contains("catch-up scan done") }
    }

    @Test func historyIsIndexedNotPushedAndWhatComesLaterIsAndBackfillSendsHistoryOnPurpose() throws {
        let consortium = try TestConsortium(members: ["RSCH", "UHSX"], rules: AgentTests.pushAll)
        let uhsx = try consortium.site("UHSX")
        let rsch = try consortium.site("RSCH", peers: ["UHSX": uhsx.port])
        // History: three studies in RSCH's archive before its agent ever ran (12 instances).
        let old = try AgentTests.synth(into: rsch.watch, seed: 301, instances: 4, description: "CT 2019", date: "20190310")
        let recent = try [
            AgentTests.synth(into: rsch.watch, seed: 302, instances: 4, description: "CT 2022", date: "20220614"),
            AgentTests.synth(into: rsch.watch, seed: 303, instances: 4, description: "CT 2023", date: "20230102"),
        ]
        try uhsx.start()
        defer { uhsx.stop() }
        try rsch.start()
        #expect(Self.caughtUp(rsch))
        #expect(rsch.log.contains("first start: indexing the files of history without firing rules; use `consort backfill`"), "\(rsch.log)")
        #expect(rsch.log.contains("first start: indexed 12 files of history"), "\(rsch.log)")
        // Indexed (the inventory holds them) and not queued: nothing was pushed, nothing will be.
        let status = try #require(try JSONSerialization.jsonObject(with: Data(Run.consort("status", "--json", "--config", rsch.config).stdout.utf8)) as? [String: Any])
        #expect((status["inventory"] as? [String: Any])?["instances"] as? Int == 12, "\(status)")
        let queue = try rsch.queue()
        #expect(!queue.contains { $0["kind"] as? String == "push" }, "\(queue)")
        #expect(uhsx.received.isEmpty, "\(uhsx.received)")

        // A study arriving live, once the agent runs: pushed.
        let live = try AgentTests.synth(into: rsch.watch, seed: 304, instances: 3, description: "CT LIVE")
        #expect(AgentSite.eventually(within: 60, "the live study at UHSX", logs: [rsch, uhsx]) { Self.studies(uhsx) == [live] && uhsx.received.count == 3 })

        // A study written while the agent was stopped, after its first run: new, so pushed.
        rsch.stop()
        let whileStopped = try AgentTests.synth(into: rsch.watch, seed: 305, instances: 2, description: "CT WHILE STOPPED")
        try rsch.start()
        #expect(AgentSite.eventually(within: 60, "the study written while RSCH was stopped at UHSX", logs: [rsch, uhsx]) { Self.studies(uhsx) == [live, whileStopped] })
        #expect(!rsch.log.contains("first start"), "\(rsch.log)")

        // backfill: a rule that does not exist is a usage error naming the close ones.
        let unknown = try Run.consort("backfill", "--config", rsch.config, "--since", "20220101", "--rule", "Everything to UHS")
        #expect(unknown.status == 2 && unknown.stderr.contains("\"Everything to UHSX\""), "\(unknown.status) \(unknown.stderr)")
        #expect(try Run.consort("backfill", "--config", rsch.config, "--since", "2022-01-01").status == 2)
        // A dry run lists what it would queue — the history dated 2022 or later — and queues nothing.
        let pushedBefore = try Self.pushJobs(rsch).count
        let dry = try Run.consort("backfill", "--config", rsch.config, "--since", "20220101")
        #expect(dry.status == 0, "\(dry.stderr)")
        for study in recent { #expect(dry.stdout.contains(study), "\(dry.stdout)") }
        #expect(!dry.stdout.contains(old) && dry.stdout.contains("Would queue 2 jobs") && dry.stdout.contains("Add --yes"), "\(dry.stdout)")
        #expect(dry.stdout.contains("rule \"Everything to UHSX\"  push → UHSX  (4 instances)"), "\(dry.stdout)")
        #expect(try Self.pushJobs(rsch).count == pushedBefore)
        // With --yes: queued at bulk priority (the rule says normal), and they arrive.
        let yes = try Run.consort("backfill", "--config", rsch.config, "--since", "20220101", "--rule", "Everything to UHSX", "--yes")
        #expect(yes.status == 0 && yes.stdout.contains("Queued 2 jobs at bulk priority"), "\(yes.stdout)\(yes.stderr)")
        let backfilled = try Self.pushJobs(rsch).filter { recent.contains($0["study"] as? String ?? "") }
        #expect(backfilled.count == 2 && backfilled.allSatisfy { $0["priority"] as? String == "bulk" }, "\(backfilled)")
        #expect(AgentSite.eventually(within: 60, "the backfilled history at UHSX", logs: [rsch, uhsx]) { Self.studies(uhsx) == Set([live, whileStopped] + recent) && uhsx.received.count == 13 })
        // Asked again: the jobs are there (done), so nothing is queued twice — the live study's
        // and the stopped-while one's (dated 2026 by synth) neither.
        let again = try Run.consort("backfill", "--config", rsch.config, "--since", "20220101", "--yes")
        #expect(again.status == 0 && again.stdout.contains("Queued 0 jobs") && again.stdout.contains("already there (4)"), "\(again.stdout)")
        // Each asked of the agent and audited, with who asked.
        let audit = try String(contentsOfFile: rsch.state + "/audit.log", encoding: .utf8)
        #expect(audit.components(separatedBy: "\"action\":\"backfill\"").count - 1 == 3, "\(audit)")
        rsch.stop()
    }

    /// The inventory's instance count, from `consort status --json` (the agent running or not).
    static func indexed(_ site: AgentSite) throws -> Int {
        let status = try JSONSerialization.jsonObject(with: Data(Run.consort("status", "--json", "--config", site.config).stdout.utf8)) as? [String: Any]
        return (status?["inventory"] as? [String: Any])?["instances"] as? Int ?? 0
    }

    /// An agent killed during its first catch-up resumes it when it comes back, with the line
    /// drawn when it first began: the rest of history is indexed without firing, and a study
    /// written while it was down — after that line — is new, and pushed.
    @Test func anAgentKilledDuringItsFirstCatchUpResumesItAndWhatCameWhileItWasDownIsNew() throws {
        let consortium = try TestConsortium(members: ["RSCH", "UHSX"], rules: AgentTests.pushAll)
        // UHSX never runs: the queue shows what was planned. The scan is held to 100 files a
        // second: 1,200 files take 12 s, its first batch of 500 is recorded at about 5 s, so
        // the kill lands in the middle (checked below from the inventory, not assumed).
        let rsch = try consortium.site("RSCH", peers: ["UHSX": try OrthancInteropTests.freePort()], extra: "scan-rate 100\n")
        for seed in 0..<3 { _ = try AgentTests.synth(into: rsch.watch, seed: 311 + seed, instances: 400) }
        try rsch.start()
        #expect(try AgentSite.eventually(within: 60, "a first batch recorded", logs: [rsch]) { try Self.indexed(rsch) > 0 })
        rsch.kill()
        let atKill = try Self.indexed(rsch)
        #expect(atKill > 0 && atKill < 1200, "the scan had indexed \(atKill) of 1,200 files at the kill: it must be cut off for the test to prove anything")

        let whileDown = try AgentTests.synth(into: rsch.watch, seed: 321, instances: 2, description: "CT WHILE DOWN")
        try rsch.start()
        defer { rsch.stop() }
        #expect(Self.caughtUp(rsch))
        #expect(rsch.log.contains("first start: resuming the first catch-up"), "\(rsch.log)")
        #expect(rsch.log.contains("first start: indexed"), "\(rsch.log)")
        #expect(try Self.indexed(rsch) == 1202)
        #expect(try AgentSite.eventually(within: 30, "a job for the study written while RSCH was down", logs: [rsch]) {
            try Self.pushJobs(rsch).compactMap { $0["study"] as? String } == [whileDown]
        })
        let live = try AgentTests.synth(into: rsch.watch, seed: 320, instances: 2, description: "CT LIVE")
        #expect(try AgentSite.eventually(within: 30, "a job for the live study", logs: [rsch]) { try Set(Self.pushJobs(rsch).compactMap { $0["study"] as? String }) == [whileDown, live] })
        // And the history never: two jobs, two studies, four instances.
        let jobs = try Self.pushJobs(rsch)
        #expect(jobs.count == 2, "\(jobs)")
    }

    /// History never fires study-stable rules from the stability tick: a study written later,
    /// under the same 1 s rule, gets its job — and by then the history, quiet for longer, would
    /// have had its own, had it been going to.
    @Test func historyNeverFiresStudyStableRulesLater() throws {
        let consortium = try TestConsortium(members: ["RSCH", "UHSX"], rules: AgentTests.wholeStudiesToUHSX)
        let rsch = try consortium.site("RSCH", peers: ["UHSX": try OrthancInteropTests.freePort()])
        let history = try AgentTests.synth(into: rsch.watch, seed: 351, instances: 3)
        try rsch.start()
        defer { rsch.stop() }
        #expect(Self.caughtUp(rsch))
        let live = try AgentTests.synth(into: rsch.watch, seed: 352, instances: 2, description: "CT LIVE")
        #expect(try AgentSite.eventually(within: 30, "the live study's stable job", logs: [rsch]) { try Self.pushJobs(rsch).contains { $0["study"] as? String == live } })
        let studies = try Self.pushJobs(rsch).compactMap { $0["study"] as? String }
        #expect(studies == [live] && !studies.contains(history), "\(studies)")
    }

    /// A study written the moment the agent first starts, while its catch-up runs, is live.
    @Test func aStudyArrivingDuringTheFirstCatchUpIsPushed() throws {
        let consortium = try TestConsortium(members: ["RSCH", "UHSX"], rules: AgentTests.pushAll)
        let uhsx = try consortium.site("UHSX")
        // 600 files at 100 a second: 6 s of catch-up for the live study to land in.
        let rsch = try consortium.site("RSCH", peers: ["UHSX": uhsx.port], extra: "scan-rate 100\n")
        for seed in 0..<2 { _ = try AgentTests.synth(into: rsch.watch, seed: 331 + seed, instances: 300) }
        try uhsx.start()
        defer { uhsx.stop() }
        try rsch.start()
        defer { rsch.stop() }
        let live = try AgentTests.synth(into: rsch.watch, seed: 340, instances: 3, description: "CT LIVE")
        // Read after the live study was written: history not all indexed yet means the scan was
        // still running when it came.
        let history = try Self.indexed(rsch)
        #expect(history < 600, "the catch-up had indexed \(history) files (the live study's included): it may have ended before the live study, and the test proved nothing")
        #expect(Self.caughtUp(rsch))
        #expect(AgentSite.eventually(within: 60, "the live study at UHSX", logs: [rsch, uhsx]) { uhsx.received.count == 3 })
        #expect(Self.studies(uhsx) == [live])
        #expect(try Self.pushJobs(rsch).map { $0["study"] as? String } == [live])
    }
}
