import DICOM
import Testing

@testable import Routing

@Suite("Rule engine: evaluation")
struct EngineTests {
    static let rules = """
        rule "ED head CT" {
          purpose emergency
          at emergency-departments
          on instance-arrival
          when Modality = CT
           and BodyPartExamined in (HEAD, BRAIN)
           and InstitutionalDepartmentName ~ "emergency|A&E"
           and origin is local
          push to UHSX priority urgent deadline 120 s
        }
        rule "Recent chest to AI" {
          purpose ai-triage
          at emergency-departments
          on study-stable
          when Modality in (CR, DX) and BodyPartExamined = chest and StudyDate within last 7 days
          push to AI-CXR
        }
        rule "Received studies to the local PACS" {
          purpose direct-care
          on study-stable
          when origin is received
          deliver to local PACS
        }
        rule "Big images" {
          purpose direct-care
          at RSCH
          on study-stable
          when Rows >= 2048 and not (Modality = MG)
          push to UHSX
        }
        rule "Neuro everywhere" {
          purpose direct-care
          on study-stable
          when StudyDescription ~ "neuro"
          push to UHSX, RSCH
        }
        """

    /// (event, rules expected to act, in order).
    static let table: [(String, RoutingEvent, [String])] = [
        ("ED head CT at ESHT", event(["Modality": "CT", "BodyPartExamined": "HEAD", "InstitutionalDepartmentName": "Emergency Department"]), ["ED head CT"]),
        ("lower-case and padding do not matter", event(["Modality": "ct ", "BodyPartExamined": "brain", "InstitutionalDepartmentName": "A&E"]), ["ED head CT"]),
        ("not an emergency department", event(["Modality": "CT", "BodyPartExamined": "HEAD", "InstitutionalDepartmentName": "Outpatients"]), []),
        ("same study at QVH: rule runs at EDs only", event(["Modality": "CT", "BodyPartExamined": "HEAD", "InstitutionalDepartmentName": "Emergency"], site: "QVH"), []),
        ("received from UHSX: not local", event(["Modality": "CT", "BodyPartExamined": "HEAD", "InstitutionalDepartmentName": "Emergency"], origin: .received(from: "UHSX")), []),
        ("department absent", event(["Modality": "CT", "BodyPartExamined": "HEAD"]), []),
        ("recent chest X-ray", event(.studyStable, ["Modality": "DX", "BodyPartExamined": "CHEST", "StudyDate": "20261128"]), ["Recent chest to AI"]),
        ("old chest X-ray", event(.studyStable, ["Modality": "DX", "BodyPartExamined": "CHEST", "StudyDate": "20261001"]), []),
        ("received study is delivered locally", event(.studyStable, ["Modality": "MR"], site: "RSCH", origin: .received(from: "ASPH")), ["Received studies to the local PACS"]),
        ("numbers compare as numbers", event(.studyStable, ["Modality": "CR", "Rows": "2500"], site: "RSCH"), ["Big images"]),
        ("not() works", event(.studyStable, ["Modality": "MG", "Rows": "3000"], site: "RSCH"), []),
        ("too small", event(.studyStable, ["Modality": "CR", "Rows": "1024"], site: "RSCH"), []),
    ]

    @Test("which rules act", arguments: 0..<12)
    func evaluationTable(_ index: Int) throws {
        let (label, event, expected) = Self.table[index]
        let planned = try engine(Self.rules).evaluate(event)
        #expect(planned.map(\.rule) == expected, "\(label)")
    }

    @Test func urgentPushCarriesItsDeadline() throws {
        let planned = try engine(Self.rules).evaluate(event(["Modality": "CT", "BodyPartExamined": "HEAD", "InstitutionalDepartmentName": "Emergency"]))
        let push = try #require(planned.first)
        #expect(push.kind == .push)
        #expect(push.destinations == ["UHSX"])
        #expect(push.scheduling.priority == .urgent)
        #expect(push.scheduling.deadlineSeconds == 120)
    }

    @Test func studiesAreNeverSentBackWhereTheyCameFrom() throws {
        let e = event(.studyStable, ["StudyDescription": "NEURO MRI"], site: "ASPH", origin: .received(from: "UHSX"))
        let planned = try engine(Self.rules).evaluate(e).filter { $0.rule == "Neuro everywhere" }
        #expect(planned.first?.destinations == ["RSCH"])
        // And a site never sends to itself.
        let atRSCH = try engine(Self.rules).evaluate(event(.studyStable, ["StudyDescription": "NEURO"], site: "RSCH"))
        #expect(atRSCH.first { $0.rule == "Neuro everywhere" }?.destinations == ["UHSX"])
    }

    @Test func prefetchLeavesOutTrustsWithoutAnAgreement() throws {
        // A purpose only UHSX→RSCH is agreed for: any member resolves to UHSX alone.
        let declarations = consortium + """

            agreement "Neuro second opinions" {
              purposes neuro-opinion
              from UHSX
              to RSCH
            }
            """
        let outcome = RuleSetLoader.load(sources: [(key: "c.rules", value: declarations), (key: "t.rules", value: """
            rule "Neuro priors" {
              purpose neuro-opinion
              at RSCH
              on study-stable
              prefetch priors from any member same modality at most 2
            }
            """)])
        let set = try #require(outcome.ruleSet, "\(outcome.report())")
        let planned = RuleEngine(set).evaluate(event(.studyStable, ["Modality": "MR"], site: "RSCH"))
        #expect(planned.first?.sources == ["UHSX"])
        #expect(planned.first?.destinations == ["RSCH"])
        #expect(planned.first?.query?.atMost == 2)
    }

    @Test func listRulesGatherAtTheHostAheadOfTheMeeting() throws {
        let e = try engine("""
            rule "MDT" {
              purpose mdt
              on list-arrival lead-time 48 h
              when host in (cancer-centres)
              gather imaging from any member within 2 years to host priority bulk window 19:00-07:00
            }
            """)
        let entry = ListEntry(nhsNumber: "9434765919", meetingDate: DICOMDate(year: 2026, month: 12, day: 3), host: "RSCH")
        let planned = e.evaluate(RoutingEvent(kind: .listArrived(entry), header: nil, origin: .local, site: "RSCH", now: testNow))
        let gather = try #require(planned.first)
        #expect(gather.kind == .gather)
        #expect(gather.destinations == ["RSCH"])
        #expect(gather.sources == ["ASPH", "ESHT", "QVH", "UHSX"])
        // 2026-12-03 00:00 UTC minus 48 h.
        #expect(gather.notBefore.map { Int($0) } == 1_796_256_000 - 172_800)
        let elsewhere = ListEntry(nhsNumber: "9434765919", meetingDate: DICOMDate(year: 2026, month: 12, day: 3), host: "QVH")
        #expect(e.evaluate(RoutingEvent(kind: .listArrived(elsewhere), header: nil, origin: .local, site: "QVH", now: testNow)).isEmpty)
    }

    @Test func testsReachIntoSequences() throws {
        var item = DataSet()
        item.set(DICOMWriter.textElement(Tag(keyword: "CodeValue")!, .SH, "ONC1"))
        var ds = header(["Modality": "CT"])
        ds.set(DataElement(tag: Tag(keyword: "ProcedureCodeSequence")!, vr: .SQ, length: nil, value: .sequence([DataSet(), item])))
        let e = try engine("""
            rule "Oncology code" {
              purpose direct-care
              on study-stable
              when ProcedureCodeSequence/CodeValue = onc1
              push to UHSX
            }
            """)
        #expect(e.evaluate(RoutingEvent(kind: .studyStable, header: ds, origin: .local, site: "RSCH", now: testNow)).count == 1)
        #expect(e.evaluate(RoutingEvent(kind: .studyStable, header: header(["Modality": "CT"]), origin: .local, site: "RSCH", now: testNow)).isEmpty)
    }

    @Test func nonASCIIValuesCompareAsText() throws {
        let e = try engine("""
            rule "Name" {
              purpose direct-care
              on study-stable
              when InstitutionName = "Hôpital Général"
              push to UHSX
            }
            """)
        var ds = header([:], characterSet: "ISO_IR 100")
        ds.set(DataElement(tag: Tag(keyword: "InstitutionName")!, vr: .LO, length: 14, value: .bytes(Array("Hôpital Général".unicodeScalars.map { UInt8($0.value) })[...])))
        #expect(e.evaluate(RoutingEvent(kind: .studyStable, header: ds, origin: .local, site: "RSCH", now: testNow)).count == 1)
    }

    @Test func explanationsSayWhy() throws {
        let explained = try engine(Self.rules).explain(event(["Modality": "CT", "BodyPartExamined": "CHEST", "InstitutionalDepartmentName": "Emergency"]))
        let ed = try #require(explained.first { $0.rule == "ED head CT" })
        #expect(!ed.fired)
        #expect(ed.text.contains("✓ Modality = CT  (Modality is \"CT\")"))
        #expect(ed.text.contains("✗ BodyPartExamined in (HEAD, BRAIN)  (BodyPartExamined is \"CHEST\")"))
        #expect(ed.text.contains("does not fire"))
        let chest = try #require(explained.first { $0.rule == "Recent chest to AI" })
        #expect(chest.text.contains("runs on study-stable after 5 min, not on instance-arrival"))
        let fired = try engine(Self.rules).explain(event(["Modality": "CT", "BodyPartExamined": "HEAD", "InstitutionalDepartmentName": "Emergency"]))
        let yes = try #require(fired.first)
        #expect(yes.fired)
        #expect(yes.text.contains("→ push to UHSX, priority urgent, deadline 2 min"))
    }

    @Test func evaluationAgreesWithExplanation() throws {
        // The fast path (cheapest first, short-circuit) and the explainer (every test) decide alike.
        let engine = try engine(Self.rules)
        for (_, event, _) in Self.table {
            let fast = Set(engine.evaluate(event).map(\.rule))
            let explained = Set(engine.explain(event).filter { $0.fired && !$0.actions.isEmpty }.map(\.rule))
            #expect(fast == explained)
        }
    }
}
