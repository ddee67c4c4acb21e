import DICOM
import Deidentification
import Testing

@testable import Routing

/// Results back in the rules language (issue 29): the agreement clause `results back`, the push
/// modifier `expect result within`, what `check` refuses, and the one gate (`PartyAccess`) that
/// lets a peer store into a trust only where such an agreement covers it.
@Suite("Rules language: results back")
struct ResultsBackRulesTests {
    @Test func theClauseAndTheModifierAreRead() throws {
        let set = try #require(load("""
            rule "x" {
              purpose ai-triage
              at RSCH
              on study-stable
              push to AI-CXR priority normal expect result within 30 min, window 07:00-19:00
            }
            """).ruleSet)
        let agreement = try #require(set.agreements.first { $0.name == "Chest X-ray AI triage" })
        #expect(agreement.resultsBack)
        #expect(set.agreements.filter(\.resultsBack).count == 1, "only the AI agreement says results back")
        guard case .push(let to, let scheduling) = try #require(set.rules.first?.actions.first) else { Issue.record("not a push"); return }
        #expect(to == ["AI-CXR"])
        #expect(scheduling.expectResultSeconds == 1800)
        #expect(scheduling.window != nil, "the modifiers read in any order, commas allowed")
        let planned = try engine("""
            rule "x" {
              purpose ai-triage
              at RSCH
              on study-stable
              push to AI-CXR expect result within 2 h
            }
            """).evaluate(event(.studyStable, ["Modality": "DX"], site: "RSCH"))
        #expect(planned.first?.scheduling.expectResultSeconds == 7200)
        #expect(planned.first?.description.contains("expect result within 2 h") == true)
    }

    /// The agreement declarations of the consortium, with the AI agreement's results back removed.
    static let withoutResultsBack = consortium.replacingOccurrences(of: "  results back\n", with: "")

    @Test func aResultExpectedFromAPeerWhoseAgreementSendsNothingBackIsRefused() throws {
        #expect(Self.withoutResultsBack != consortium)
        let outcome = RuleSetLoader.load(sources: [
            (key: "consortium.rules", value: Self.withoutResultsBack),
            (key: "test.rules", value: "rule \"x\" {\n  purpose ai-triage\n  at RSCH\n  on study-stable\n  push to AI-CXR expect result within 30 min\n}"),
        ])
        #expect(outcome.ruleSet == nil)
        let error = outcome.errors.first { $0.location.file == "test.rules" }
        #expect(error.map { "\($0.location.line):\($0.location.column)" } == "5:3")
        #expect(error?.message.contains("AI-CXR may not send results back to RSCH for ai-triage") == true, "\(outcome.report())")
        #expect(error?.hint?.contains("add results back") == true)
    }

    @Test func expectResultOnADeliveryOrForNoTimeIsRefused() {
        let onDeliver = load("rule \"x\" {\n  purpose direct-care\n  at RSCH\n  on study-stable\n  deliver to local PACS expect result within 5 min\n}")
        #expect(onDeliver.errors.contains { $0.message.contains("expect result belongs to a push") && $0.location.line == 5 }, "\(onDeliver.report())")
        let zero = load("rule \"x\" {\n  purpose ai-triage\n  at RSCH\n  on study-stable\n  push to AI-CXR expect result within 0 s\n}")
        #expect(zero.errors.contains { $0.message.contains("can never be met") }, "\(zero.report())")
        let typo = load("rule \"x\" {\n  purpose ai-triage\n  at RSCH\n  on study-stable\n  push to AI-CXR expect results within 5 min\n}")
        #expect(typo.errors.contains { $0.message.contains("expected \"result\"") && "\($0.location.line):\($0.location.column)" == "5:25" }, "\(typo.report())")
        // Results come back from peers: not from a trust, nor from a study's origin.
        for destination in ["UHSX", "origin"] {
            let toTrust = load("rule \"x\" {\n  purpose direct-care\n  at ASPH\n  on study-stable\n  push to \(destination) expect result within 5 min\n}")
            #expect(toTrust.errors.contains { $0.message.contains("expect result names \(destination), a trust") }, "\(toTrust.report())")
        }
        let clause = RuleSetLoader.load(sources: [(key: "c.rules", value: "member A \"A\"\npeer P \"P\"\nagreement \"x\" {\n  purposes p\n  from A\n  to P\n  results backwards\n}")])
        #expect(clause.errors.contains { $0.message.contains("expected \"back\"") && $0.location.line == 7 }, "\(clause.report())")
    }

    @Test func aPeerStoresOnlyWhereAnAgreementSaysResultsBack() throws {
        let set = try #require(load("").ruleSet)
        // RSCH sends AI-CXR chest X-rays, and results come back: with or without a purpose named
        // (a third-party service does not know Consort's header), but not under another purpose.
        #expect(PartyAccess.decide(.store, caller: "AI-CXR", purpose: nil, site: "RSCH", rules: set) == nil)
        #expect(PartyAccess.decide(.store, caller: "AI-CXR", purpose: "ai-triage", site: "RSCH", rules: set) == nil)
        #expect(PartyAccess.decide(.store, caller: "AI-CXR", purpose: "direct-care", site: "RSCH", rules: set) == .peer("AI-CXR"))
        // QVH sends AI-CXR nothing: nothing may come back to it.
        #expect(PartyAccess.decide(.store, caller: "AI-CXR", purpose: nil, site: "QVH", rules: set) == .peer("AI-CXR"))
        // Results back opens storing only: never retrieving, searching or looking up.
        for act in [PartyAccess.Act.retrieve, .search, .listInstances] {
            #expect(PartyAccess.decide(act, caller: "AI-CXR", purpose: "ai-triage", site: "RSCH", rules: set) == .peer("AI-CXR"))
        }
        #expect(PartyAccess.decide(.lookup, caller: "AI-CXR", purpose: "ai-triage", site: nil, rules: set) == .peer("AI-CXR"))
        // Without the clause, a peer stores nothing anywhere.
        let closed = try #require(RuleSetLoader.load(sources: [(key: "consortium.rules", value: Self.withoutResultsBack)]).ruleSet)
        #expect(PartyAccess.decide(.store, caller: "AI-CXR", purpose: nil, site: "RSCH", rules: closed) == .peer("AI-CXR"))
    }

    /// ASPH sent a study it received from RSCH to the AI service; the service's report on it
    /// goes back to RSCH, which holds the original, when a rule says `push to origin`.
    @Test func aResultGoesBackToTheTrustThatHoldsTheOriginalWhenARuleSaysSo() throws {
        let rules = try engine("""
            rule "AI reports to the trust that holds the study" {
              purpose direct-care
              at ASPH
              on instance-arrival
              when origin is received from AI-CXR
              push to origin priority urgent
            }
            """)
        func planned(_ studyOrigin: Origin?) -> [PlannedAction] {
            rules.evaluate(RoutingEvent(
                kind: .instanceArrived, header: header(["Modality": "SR"]), origin: .received(from: "AI-CXR"), site: "ASPH", now: testNow, studyOrigin: studyOrigin))
        }
        #expect(planned(.received(from: "RSCH")).map(\.destinations) == [["RSCH"]])
        #expect(planned(.received(from: "RSCH")).first?.scheduling.priority == .urgent)
        // ASPH's own study, or one whose origin is not a trust: nowhere to send it.
        #expect(planned(.local).isEmpty)
        #expect(planned(nil).isEmpty)
        // At study-stable the event's origin is the study's: the original's trust, named on
        // purpose, is not refused as a send-back (the store sends it only what it lacks).
        let stable = try engine("""
            rule "AI reports back, when the study is quiet" {
              purpose direct-care
              at ASPH
              on study-stable
              when origin is received
              push to origin
            }
            """)
        #expect(stable.evaluate(event(.studyStable, ["Modality": "DX"], site: "ASPH", origin: .received(from: "UHSX"))).map(\.destinations) == [["UHSX"]])
        // No agreement for the purpose from ASPH to the original's trust: refused when it fires.
        let research = try engine("""
            rule "x" {
              purpose ai-triage
              at ASPH
              on instance-arrival
              when origin is received from AI-CXR
              push to origin
            }
            """)
        #expect(research.evaluate(RoutingEvent(
            kind: .instanceArrived, header: header(["Modality": "SR"]), origin: .received(from: "AI-CXR"), site: "ASPH", now: testNow,
            studyOrigin: .received(from: "RSCH"))).isEmpty)
        // `origin` is a word of the language: no member or group may take it.
        let declared = load("group origin = RSCH, UHSX\n")
        #expect(declared.errors.contains { $0.message.contains("origin is a word of the rules language") }, "\(declared.report())")
    }

    /// The consortium, and a research AI whose agreement requires de-identification.
    static let research = consortium + """

        peer RESEARCH-AI "A research AI" roles ai
        agreement "Research" {
          purposes research
          from RSCH
          to RESEARCH-AI
          requires deidentification
          results back
        }
        """

    /// A research AI whose agreement requires de-identification: a push that would send
    /// identity is refused by check, at its place; `deidentified` passes; the engine drops such
    /// a push too (a rule set loaded some other way).
    @Test func aPushThatWouldSendIdentityWhereAnAgreementRequiresDeidentificationIsRefused() throws {
        func loaded(_ rule: String) -> RuleSetLoader.Outcome {
            RuleSetLoader.load(sources: [(key: "consortium.rules", value: Self.research), (key: "test.rules", value: rule)])
        }
        let plain = loaded("rule \"x\" {\n  purpose research\n  at RSCH\n  on study-stable\n  push to RESEARCH-AI priority bulk\n}")
        let error = plain.errors.first { $0.location.file == "test.rules" }
        #expect(error.map { "\($0.location.line):\($0.location.column)" } == "5:3", "\(plain.report())")
        #expect(error?.message.contains("requires de-identification; this push would send identity") == true && error?.hint == "write: push to RESEARCH-AI deidentified")
        let deidentified = loaded("rule \"x\" {\n  purpose research\n  at RSCH\n  on study-stable\n  push to RESEARCH-AI priority bulk deidentified\n}")
        let set = try #require(deidentified.ruleSet, "\(deidentified.report())")
        guard case .push(_, let scheduling)? = set.rules.first?.actions.first else { Issue.record("no push"); return }
        #expect(scheduling.deidentified && scheduling.priority == .bulk)
        // Results from it come back under the study's new UIDs and are re-identified: expected
        // like any other.
        let expecting = loaded("rule \"x\" {\n  purpose research\n  at RSCH\n  on study-stable\n  push to RESEARCH-AI deidentified expect result within 1 h\n}")
        #expect(expecting.errors.isEmpty, "\(expecting.report())")
        let planned = RuleEngine(set).evaluate(event(.studyStable, ["Modality": "CT"], site: "RSCH"))
        #expect(planned.first?.scheduling.deidentified == true && planned.first?.description.contains("de-identified") == true)
        // The engine: a plain push to the same peer, in a set that skipped check, sends nothing.
        var unchecked = set
        unchecked.rules[0].actions = [.push(to: ["RESEARCH-AI"], Scheduling())]
        #expect(RuleEngine(unchecked).evaluate(event(.studyStable, ["Modality": "CT"], site: "RSCH")).isEmpty)
        let onDeliver = loaded("rule \"x\" {\n  purpose research\n  at RSCH\n  on study-stable\n  deliver to local PACS deidentified\n}")
        #expect(onDeliver.errors.contains { $0.message.contains("deidentified belongs to a push") })
    }

    /// The profile's options, chosen in the rule after `deidentified with`: read in any order
    /// beside the other modifiers, carried to the plan, and what check refuses (an unknown
    /// option, with did-you-mean, at its place; the two ways of keeping dates together).
    @Test func theProfilesOptionsAreChosenInTheRule() throws {
        func loaded(_ push: String) -> RuleSetLoader.Outcome {
            RuleSetLoader.load(sources: [(key: "consortium.rules", value: Self.research), (key: "test.rules", value: "rule \"x\" {\n  purpose research\n  at RSCH\n  on study-stable\n  \(push)\n}")])
        }
        let chosen = loaded("push to RESEARCH-AI deidentified with retain-modified-dates, clean-descriptors, allow-burned-in, priority bulk")
        let set = try #require(chosen.ruleSet, "\(chosen.report())")
        guard case .push(_, let scheduling)? = set.rules.first?.actions.first else { Issue.record("no push"); return }
        #expect(scheduling.deidentification.options == [.retainLongitudinalModifiedDates, .cleanDescriptors])
        #expect(scheduling.deidentification.allowsBurnedIn && scheduling.priority == .bulk, "the option list ends where another modifier starts")
        #expect(scheduling.deidentification.text == "retain-modified-dates, clean-descriptors, allow-burned-in")
        #expect(DeidentificationChoice(text: scheduling.deidentification.text) == scheduling.deidentification, "the spool's text reads back as the rule said")
        let planned = RuleEngine(set).evaluate(event(.studyStable, ["Modality": "CT"], site: "RSCH"))
        #expect(planned.first?.description.contains("de-identified (the Basic Profile with retain-modified-dates, clean-descriptors, allow-burned-in)") == true, "\(planned)")
        let plain = try #require(loaded("push to RESEARCH-AI deidentified").ruleSet)
        guard case .push(_, let basic)? = plain.rules.first?.actions.first else { Issue.record("no push"); return }
        #expect(basic.deidentification == DeidentificationChoice() && basic.deidentification.text.isEmpty)

        let typo = loaded("push to RESEARCH-AI deidentified with retain-uid")
        let error = typo.errors.first { $0.location.file == "test.rules" }
        #expect(error.map { "\($0.location.line):\($0.location.column)" } == "5:41", "\(typo.report())")
        #expect(error?.message == "unknown de-identification option \"retain-uid\"" && error?.hint == "did you mean \"retain-uids\"?", "\(typo.report())")
        let nothing = loaded("push to RESEARCH-AI deidentified with")
        #expect(nothing.errors.contains { $0.message.contains("expected a de-identification option") }, "\(nothing.report())")
        let both = loaded("push to RESEARCH-AI deidentified with retain-full-dates, retain-modified-dates")
        #expect(both.errors.contains { $0.message.contains("exclude each other") && $0.location.line == 5 }, "\(both.report())")
    }

    /// Between trusts too, an agreement that requires de-identification lets imaging go only by
    /// a de-identified push: retrieving, searching, listing and looking up under it are refused
    /// with that reason (not "no agreement"), a prefetch from such a source is refused by check
    /// at its place, and the engine leaves the source out of an any-member prefetch.
    @Test func underADeidentifiedAgreementNothingGoesWithIdentity() throws {
        let research = consortium + """

            agreement "Research between trusts" {
              purposes research
              from RSCH
              to UHSX
              requires deidentification
            }
            agreement "Audit between trusts" {
              purposes audit
              from RSCH, ASPH
              to UHSX
            }
            agreement "Audit, de-identified" {
              purposes audit
              from ESHT
              to UHSX
              requires deidentification
            }
            """
        let set = try #require(RuleSetLoader.load(sources: [(key: "consortium.rules", value: research)]).ruleSet)
        for act in [PartyAccess.Act.retrieve, .search, .listInstances] {
            #expect(PartyAccess.decide(act, caller: "UHSX", purpose: "research", site: "RSCH", rules: set) == .identityNotAllowed(purpose: "research", from: "RSCH", to: "UHSX"), "\(act)")
            #expect(PartyAccess.decide(act, caller: "UHSX", purpose: "direct-care", site: "RSCH", rules: set) == nil, "\(act) for direct care")
        }
        // Sending under it is the sender's business (it pushes de-identified): the store is let in.
        #expect(PartyAccess.decide(.store, caller: "RSCH", purpose: "research", site: "UHSX", rules: set) == nil)
        #expect(PartyAccess.decide(.lookup, caller: "UHSX", purpose: "research", site: nil, rules: set) == .identityNotAllowed(purpose: "research", from: "any trust", to: "UHSX"))
        #expect(PartyAccess.decide(.lookup, caller: "UHSX", purpose: "audit", site: nil, rules: set) == nil, "some trust may give UHSX imaging for audit with identity")
        #expect(PartyAccess.Refusal.identityNotAllowed(purpose: "research", from: "RSCH", to: "UHSX").label == "deidentification_required")

        func checked(_ action: String) -> RuleSetLoader.Outcome {
            RuleSetLoader.load(sources: [(key: "consortium.rules", value: research), (key: "test.rules", value: "rule \"x\" {\n  purpose research\n  at UHSX\n  on study-stable\n  \(action)\n}")])
        }
        let named = checked("prefetch priors from RSCH")
        let error = named.errors.first { $0.location.file == "test.rules" }
        #expect(error.map { "\($0.location.line):\($0.location.column)" } == "5:3" && error?.message.contains("requires de-identification; fetching would bring identity") == true, "\(named.report())")
        let auditRules = RuleSetLoader.load(sources: [(key: "consortium.rules", value: research), (key: "test.rules", value: "rule \"x\" {\n  purpose audit\n  at UHSX\n  on study-stable\n  prefetch priors from any member\n}")])
        let auditSet = try #require(auditRules.ruleSet, "\(auditRules.report())")
        let planned = RuleEngine(auditSet).evaluate(event(.studyStable, ["Modality": "CT"], site: "UHSX"))
        #expect(planned.first?.sources.sorted() == ["ASPH", "RSCH"], "ESHT's imaging goes to UHSX for audit only de-identified: \(planned)")
    }
}
