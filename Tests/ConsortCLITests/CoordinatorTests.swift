import Foundation
import TestSupport
import Testing

/// The coordinator, prefetch of priors and MDT gathering, end to end (issue 12): agents and a
/// coordinator as processes on loopback, real TLS, real SQLite; every check on the receivers'
/// files, not on the agents' own claims.
@Suite("coordinator, prefetch and gather", .serialized, .timeLimit(.minutes(10)))
struct CoordinatorTests {
    static let patient = "9990000018"  // NHSNumber.testNumber(seed: 1): the 999 range is never issued

    /// YYYYMMDD, `days` before today (UTC).
    static func daysAgo(_ days: Int) -> String {
        var calendar = Calendar(identifier: .gregorian)
        calendar.timeZone = TimeZone(identifier: "UTC")!
        let parts = calendar.dateComponents([.year, .month, .day], from: Date().addingTimeInterval(-Double(days) * 86_400))
        return String(format: "%04d%02d%02d", parts.year!, parts.month!, parts.day!)
    }

    /// A study in a folder with `consort synth`; its UID.
    @discardableResult
    static func study(_ folder: String, seed: Int, nhs: String = patient, modality: String = "CT", date: String, description: String = "CT CHEST",
                      trust: String, instances: Int = 3, extra: [String] = []) throws -> String {
        let outcome = try Run.program(Run.consort, [
            "synth", "--out", folder, "--seed", String(seed), "--instances", String(instances), "--modality", modality, "--date", date,
            "--description", description, "--trust", trust, "--nhs", nhs, "--body-part", "CHEST",
        ] + extra)
        #expect(outcome.status == 0, "\(outcome.stderr)")
        return outcome.stdout.trimmingCharacters(in: .whitespacesAndNewlines)
    }

    static let prefetchRules = """
        rule "Oncology priors" {
          purpose direct-care
          at ASPH
          on instance-arrival
          when origin is local and StudyDescription ~ "ONC"
          prefetch priors from any member same modality within 3 years at most 3 priority normal
        }
        """

    /// An oncology CT at ASPH brings exactly the priors the rule asks for from RSCH and UHSX,
    /// byte for byte: the three newest CTs within three years, not an MR, not one older than
    /// the period, not a fourth. The coordinator is down at first: the prefetch waits, then
    /// completes once it is back.
    @Test func anOncologyStudyBringsExactlyThePriorsTheRuleAsksFor() throws {
        let consortium = try TestConsortium(members: ["RSCH", "UHSX", "ASPH"], rules: Self.prefetchRules)
        let coordinator = try CoordinatorSite(consortium)
        let rsch = try consortium.site("RSCH", extra: coordinator.agentLine)
        let uhsx = try consortium.site("UHSX", extra: coordinator.agentLine)
        let asph = try consortium.site("ASPH", peers: ["RSCH": rsch.port, "UHSX": uhsx.port], extra: coordinator.agentLine)
        // The patient's history: what the rule wants, and what it must leave.
        let wanted = [
            try Self.study(uhsx.watch, seed: 51, date: Self.daysAgo(180), trust: "UHSX"),
            try Self.study(uhsx.watch, seed: 52, date: Self.daysAgo(365), trust: "UHSX"),
            try Self.study(rsch.watch, seed: 53, date: Self.daysAgo(730), trust: "RSCH"),
        ]
        let unwanted = [
            try Self.study(uhsx.watch, seed: 54, date: Self.daysAgo(900), trust: "UHSX"),  // a fourth: at most 3
            try Self.study(rsch.watch, seed: 55, modality: "MR", date: Self.daysAgo(100), description: "MR CHEST", trust: "RSCH"),  // another modality
            try Self.study(rsch.watch, seed: 56, date: Self.daysAgo(1500), trust: "RSCH"),  // outside the period
            try Self.study(rsch.watch, seed: 57, nhs: "9990000026", date: Self.daysAgo(30), trust: "RSCH", extra: ["--patient-id", "RSCH0000002"]),  // another patient
        ]
        try rsch.start()
        try uhsx.start()
        try asph.start()
        defer {
            asph.stop()
            uhsx.stop()
            rsch.stop()
            coordinator.stop()
        }
        // The coordinator down: the trigger arrives, the prefetch is deferred with the reason.
        let trigger = try Self.study(asph.watch, seed: 58, date: Self.daysAgo(0), description: "ONC CT CHEST RESTAGING", trust: "ASPH")
        #expect(try AgentSite.eventually(within: 30, "the prefetch deferred: the coordinator is down", logs: [asph]) {
            try asph.queue().contains { $0["kind"] as? String == "prefetch" && $0["state"] as? String == "deferred" && ($0["last_error"] as? String ?? "").contains("coordinator") }
        })
        try coordinator.start()
        // Then: every history study announced, the priors fetched.
        #expect(AgentSite.eventually(within: 60, "the three priors in ASPH's inbound", logs: [asph, rsch, uhsx]) {
            Set(wanted).isSubset(of: asph.receivedStudies)
        })
        // Byte for byte, and nothing else.
        for (study, source) in zip(wanted, [uhsx, uhsx, rsch]) {
            let originals = try FileManager.default.contentsOfDirectory(atPath: "\(source.watch)/\(study)").map { try Data(contentsOf: URL(fileURLWithPath: "\(source.watch)/\(study)/\($0)")) }
            let copies = asph.received.filter { $0.hasPrefix(study + "/") }.map { try? Data(contentsOf: URL(fileURLWithPath: asph.inbound + "/" + $0)) }
            #expect(Set(originals) == Set(copies.compactMap { $0 }) && copies.count == 3, "study \(study)")
        }
        #expect(asph.receivedStudies.isDisjoint(with: unwanted), "\(asph.receivedStudies)")
        #expect(!asph.receivedStudies.contains(trigger))
        // The fetches are jobs like any other, done; the coordinator now knows ASPH holds them too.
        let fetches = try asph.queue().filter { $0["kind"] as? String == "fetch" }
        #expect(fetches.count == 3 && fetches.allSatisfy { $0["state"] as? String == "done" && $0["instances_sent"] as? Int == 3 }, "\(fetches)")
        #expect(AgentSite.eventually(within: 30, "the coordinator knows ASPH holds the priors", logs: [asph]) {
            let studies = (try? asph.locate(Self.patient).answer["studies"] as? [[String: Any]]) ?? []
            let atASPH = studies.filter { ($0["locations"] as? [[String: Any]] ?? []).contains { $0["trust"] as? String == "ASPH" } }.compactMap { $0["study"] as? String }
            return Set(wanted + [trigger]).isSubset(of: Set(atASPH))
        })
        // Audited at both ends: the lookup and the fetch at ASPH, the retrieves served.
        let asphAudit = try String(contentsOfFile: asph.state + "/audit.log", encoding: .utf8)
        #expect(asphAudit.contains("\"action\":\"lookup\"") && asphAudit.contains("\"action\":\"fetch\""), "\(asphAudit)")
        let uhsxAudit = try String(contentsOfFile: uhsx.state + "/audit.log", encoding: .utf8)
        #expect(uhsxAudit.components(separatedBy: "\"action\":\"retrieve\"").count - 1 == 2, "\(uhsxAudit)")
        for log in [asph.state + "/audit.log", uhsx.state + "/audit.log", coordinator.audit] {
            let verify = try Run.consort("audit", "verify", log)
            #expect(verify.status == 0 && verify.stdout.contains("intact"), "\(verify.stdout)\(verify.stderr)")
        }
        let shown = try Run.consort("audit", "show", asph.state + "/audit.log", "--nhs", "999 000 0018")
        #expect(shown.status == 0 && shown.stdout.contains("fetch"), "\(shown.stdout)")
        // consort locate, as a person would read it.
        let located = try Run.consort("locate", "--nhs", "999 000 0018", "--config", rsch.config)
        #expect(located.status == 0 && located.stdout.contains("7 studies") && located.stdout.contains("UHSX"), "\(located.stdout)\(located.stderr)")
    }
}
