import Foundation
import Testing

/// `consort rules ...` and `consort bench rules`, on the built binary.
@Suite("consort rules", .timeLimit(.minutes(5)))
struct RulesCommandTests {
    static let rules = Run.packageRoot + "/routing-rules"

    @Test func theConsortiumRulesCheckClean() throws {
        let outcome = try Run.consort("rules", "check", Self.rules)
        #expect(outcome.status == 0, "\(outcome.stdout)")
        #expect(outcome.stdout.contains(": OK (0 errors, 0 warnings)"))
    }

    @Test func aBrokenRuleSetIsReportedLikeACompilerWould() throws {
        let folder = try ScratchFolder()
        try FileManager.default.copyItem(atPath: Self.rules + "/consortium.rules", toPath: folder.path + "/consortium.rules")
        try """
            rule "Head CT" {
              purpose emergency
              on instance-arrival
              when Modality = CT and BodyPartExamned = HEAD
              push to UHSX priority urgent
            }
            """.write(toFile: folder.path + "/typo.rules", atomically: true, encoding: .utf8)
        let outcome = try Run.consort("rules", "check", folder.path)
        #expect(outcome.status == 1)
        #expect(outcome.stdout.contains("typo.rules:4:26: error: unknown attribute \"BodyPartExamned\""))
        #expect(outcome.stdout.contains("                             ^~~~~~~~~~~~~~~"))
        #expect(outcome.stdout.contains("hint: did you mean BodyPartExamined?"))
        #expect(outcome.stdout.contains("not loadable"))
    }

    @Test func explainSaysWhichRulesFireAndWhy() throws {
        let folder = try ScratchFolder()
        #expect(try Run.consort("demo", "study", "--out", folder.path, "--instances", "3").status == 0)
        let atRSCH = try Run.consort("rules", "explain", folder.path, "--rules", Self.rules)
        #expect(atRSCH.status == 0, "\(atRSCH.stderr)")
        #expect(atRSCH.stdout.contains("(3 files) at RSCH, local"))
        #expect(atRSCH.stdout.contains("rule \"Priors for new cross-sectional studies at the cancer centres\""))
        #expect(atRSCH.stdout.contains("): FIRES"))
        #expect(atRSCH.stdout.contains("→ prefetch priors from ASPH, ESHT, QVH, UHSX to RSCH"))
        #expect(atRSCH.stdout.contains("✗ Modality in (CR, DX)  (Modality is \"CT\")"))
        let atQVH = try Run.consort("rules", "explain", folder.path, "--rules", Self.rules, "--site", "QVH")
        #expect(atQVH.stdout.contains("✗ runs at cancer-centres, not at QVH"))
        #expect(!atQVH.stdout.contains("FIRES"))
        let unknownSite = try Run.consort("rules", "explain", folder.path, "--rules", Self.rules, "--site", "XYZ")
        #expect(unknownSite.status == 2)
    }

    @Test func replayShowsWhatAChangeWouldDo() throws {
        let folder = try ScratchFolder()
        #expect(try Run.consort("demo", "study", "--out", folder.path + "/archive", "--instances", "2").status == 0)
        let candidate = folder.path + "/candidate"
        try FileManager.default.copyItem(atPath: Self.rules, toPath: candidate)
        try """
            rule "Every head CT to QVH too" {
              purpose direct-care
              on study-stable
              when Modality = CT and BodyPartExamined = HEAD
              push to QVH priority bulk
            }
            """.write(toFile: candidate + "/extra.rules", atomically: true, encoding: .utf8)
        let outcome = try Run.consort("rules", "replay", folder.path + "/archive", "--rules", candidate, "--against", Self.rules)
        #expect(outcome.status == 0, "\(outcome.stderr)")
        #expect(outcome.stdout.contains("+ Every head CT to QVH too: push to QVH, priority bulk"))
        #expect(outcome.stdout.contains("1 of 1 studies would be routed differently"))
        #expect(outcome.stdout.contains("RSCH → push QVH [bulk]"))
        let same = try Run.consort("rules", "replay", folder.path + "/archive", "--rules", Self.rules, "--against", Self.rules)
        #expect(same.stdout.contains("0 of 1 studies would be routed differently"))
    }

    @Test func benchRulesMeasuresEvaluations() throws {
        let outcome = try Run.consort("bench", "rules", "--rules", Self.rules, "--seconds", "1", "--headers", "200", "--json")
        #expect(outcome.status == 0, "\(outcome.stderr)")
        let object = try JSONSerialization.jsonObject(with: Data(outcome.stdout.utf8)) as? [String: Any]
        #expect((object?["evaluations_per_second"] as? Double ?? 0) > 0)
        #expect((object?["actions"] as? Int ?? 0) > 0)
    }

    @Test("rules usage errors exit 2", arguments: [["rules"], ["rules", "frobnicate"], ["rules", "explain"], ["rules", "replay"], ["rules", "check", "a", "b"]])
    func usageErrors(_ arguments: [String]) throws {
        let outcome = try Run.program(Run.consort, arguments)
        #expect(outcome.status == 2)
        #expect(outcome.stderr.contains("consort rules"))
    }
}

@Suite("consort rules explain, MDT lists", .timeLimit(.minutes(5)))
struct RulesListTests {
    @Test func listsAreExplainedLineByLineAndBadLinesNamed() throws {
        let folder = try ScratchFolder()
        let list = folder.path + "/mdt.csv"
        try "nhs_number,meeting_date,host\n943 476 5919,2026-12-03,RSCH\n9434765918,2026-12-03,RSCH\n".write(toFile: list, atomically: true, encoding: .utf8)
        let outcome = try Run.consort("rules", "explain", list, "--rules", RulesCommandTests.rules)
        #expect(outcome.status == 1)
        #expect(outcome.stdout.contains("NHS number 943 476 5919, MDT on 20261203 at RSCH"))
        #expect(outcome.stdout.contains("rule \"Gather imaging for the MDT list\""))
        #expect(outcome.stdout.contains("→ gather from ASPH, ESHT, QVH, UHSX to RSCH"))
        #expect(outcome.stderr.contains("line 3: \"9434765918\" is not a valid NHS number"))
    }
}
