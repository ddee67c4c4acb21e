import Testing

@testable import Routing

@Suite("Rules language: syntax and checks")
struct ParserTests {
    /// (rule text, expected "line:column", a fragment of the message).
    static let errors: [(String, String, String)] = [
        ("rule \"x\" {\n  purpose emergency\n  on instance-arrival\n  when Modalty = CT\n  push to UHSX\n}", "4:8", "unknown attribute \"Modalty\""),
        ("rule \"x\" {\n  purpose emergency\n  on instance-arrivl\n  push to UHSX\n}", "3:6", "unknown trigger"),
        ("rule \"x\" {\n  purpose emergency\n  on instance-arrival\n  push to UHSZ\n}", "4:11", "unknown member or group \"UHSZ\""),
        ("rule \"x\" {\n  purpose emergancy\n  on instance-arrival\n  push to UHSX\n}", "1:6", "no data-sharing agreement covers"),
        ("rule \"x\" {\n  purpose emergency\n  on instance-arrival\n  when Modality = CT and (BodyPartExamined = HEAD\n  push to UHSX\n}", "5:3", "expected \")\""),
        ("rule \"x\" {\n  purpose emergency\n  on instance-arrival\n  when StudyDescription ~ \"[a-\"\n  push to UHSX\n}", "4:27", "does not compile"),
        ("rule \"x\" {\n  on instance-arrival\n  push to UHSX\n}", "4:1", "has no purpose"),
        ("rule \"x\" {\n  purpose emergency\n  push to UHSX\n}", "4:1", "has no trigger"),
        ("rule \"x\" {\n  purpose emergency\n  on instance-arrival\n}", "4:1", "does nothing"),
        ("rule \"x\" {\n  purpose ai-triage\n  at QVH\n  on study-stable\n  push to AI-CXR\n}", "5:3", "no data-sharing agreement lets QVH send to AI-CXR"),
        ("rule \"x\" {\n  purpose emergency\n  on instance-arrival\n  push to UHSX priority asap\n}", "4:25", "unknown priority"),
        ("rule \"x\" {\n  purpose mdt\n  on list-arrival\n  push to UHSX\n}", "4:3", "push has nothing to send in a list rule"),
        ("rule \"x\" {\n  purpose emergency\n  on study-stable after 5 fortnights\n  push to UHSX\n}", "3:27", "unknown unit"),
        ("rulez \"x\" {}", "1:1", "expected a declaration"),
        ("rule \"x\" {\n  purpose emergency\n  on study-stable after 48333333333333333333333333 h\n  push to UHSX\n}", "3:25", "a duration of at most 100 years"),
        ("rule \"x\" {\n  purpose emergency\n  on instance-arrival\n  push to UHSX window 25:00-07:00\n}", "4:23", "time window"),
        ("rule \"a\" {\n  purpose emergency\n  on instance-arrival\n  push to UHSX\n}\nrule \"a\" {\n  purpose emergency\n  on instance-arrival\n  push to UHSX\n}", "6:6", "a second rule is named"),
    ]

    @Test("errors name the place and the fault", arguments: 0..<17)
    func errorsAreLocated(_ index: Int) {
        let (text, place, message) = Self.errors[index]
        let outcome = load(text)
        #expect(outcome.ruleSet == nil, "\(text)")
        let errors = outcome.errors.filter { $0.location.file == "test.rules" }
        let match = errors.first { "\($0.location.line):\($0.location.column)" == place && $0.message.contains(message) }
        #expect(match != nil, "wanted \(place) \(message); got \(errors.map { "\($0.location.line):\($0.location.column) \($0.message)" })")
    }

    @Test func reportsShowTheLineACaretAndAHint() {
        let outcome = load("rule \"x\" {\n  purpose emergency\n  on instance-arrival\n  when BodyPartExamine in (HEAD)\n  push to UHSX\n}")
        let report = outcome.report()
        #expect(report.contains("test.rules:4:8: error: unknown attribute \"BodyPartExamine\""))
        #expect(report.contains("\n      when BodyPartExamine in (HEAD)\n           ^~~~~~~~~~~~~~~\n"))
        #expect(report.contains("hint: did you mean BodyPartExamined?"))
    }

    @Test func severalErrorsAreReportedInOneRun() {
        let outcome = load("rule \"a\" {\n  purpose emergency\n  on bogus\n  push to UHSX\n}\nrule \"b\" {\n  purpose emergency\n  on instance-arrival\n  push to NOWHERE\n}")
        #expect(outcome.errors.count == 2)
    }

    @Test func warningsLoadButAreReported() throws {
        let outcome = load("""
            rule "never" {
              purpose direct-care
              on study-stable
              when Modality = CT and Modality = MR
              push to UHSX
            }
            rule "back" {
              purpose direct-care
              on study-stable
              when origin is received from UHSX
              push to UHSX, QVH priority normal deadline 30 s
            }
            """)
        #expect(outcome.ruleSet != nil)
        let messages = outcome.warnings.map(\.message)
        #expect(messages.contains { $0.contains("can never match") })
        #expect(messages.contains { $0.contains("would send studies back to UHSX") })
        #expect(messages.contains { $0.contains("deadline on a normal action") })
    }

    /// Found by the rules fuzzer: expanding a group that contains itself recursed until the
    /// stack overflowed. Now the loader refuses it with the chain, and expansion terminates.
    @Test func aGroupThatIncludesItselfIsRefusedNotRecursedForever() {
        let outcome = load("group ring-a = UHSX, ring-b\ngroup ring-b = QVH, ring-a\ngroup selfish = selfish\nrule \"x\" {\n  purpose emergency\n  on instance-arrival\n  push to ring-a\n}")
        #expect(outcome.ruleSet == nil)
        let messages = outcome.errors.map(\.message)
        #expect(messages.contains("group ring-a includes itself (ring-a → ring-b → ring-a)"), "\(messages)")
        #expect(messages.contains("group ring-b includes itself (ring-b → ring-a → ring-b)"), "\(messages)")
        #expect(messages.contains("group selfish includes itself (selfish → selfish)"), "\(messages)")
        var set = RuleSet()
        set.members = [Member(code: "UHSX", name: "", roles: [], isTrust: true, location: .init(file: "t", line: 1, column: 1)),
                       Member(code: "QVH", name: "", roles: [], isTrust: true, location: .init(file: "t", line: 1, column: 1))]
        set.groups = [Group(name: "a", members: ["UHSX", "b"], location: .init(file: "t", line: 1, column: 1)),
                      Group(name: "b", members: ["QVH", "a", "UHSX"], location: .init(file: "t", line: 2, column: 1))]
        #expect(set.expand("a") == ["UHSX", "QVH"])
        #expect(set.groupCycle(from: "a") == ["a", "b", "a"])
    }

    @Test func theConsortiumsOwnRulesCheckClean() {
        let outcome = RuleSetLoader.load(repositoryRoot + "/routing-rules")
        #expect(outcome.errors.isEmpty, "\(outcome.report())")
        #expect(outcome.warnings.isEmpty, "\(outcome.report())")
        let set = outcome.ruleSet
        #expect(set?.rules.count ?? 0 >= 7)
        #expect(set?.expand("cancer-centres") == ["RSCH", "UHSX"])
        #expect(set?.member("AI-CXR")?.isTrust == false)
    }

    @Test func durationsWindowsAndPathsParse() throws {
        let outcome = load("""
            rule "x" {
              purpose direct-care
              at cancer-centres
              on study-stable after 2 h
              when RequestAttributesSequence/RequestedProcedureID = RP1 and (0008,0060) = CT
              prefetch priors from RSCH, ASPH same modality same body-part within 2 years at most 4 newest first priority bulk window 19:00-07:00
            }
            """)
        let rule = try #require(outcome.ruleSet?.rules.first, "\(outcome.report())")
        #expect(rule.trigger == .studyStable(quietSeconds: 7200))
        guard case .prefetchPriors(let query, let scheduling) = rule.actions[0] else {
            Issue.record("expected a prefetch")
            return
        }
        #expect(query.from == ["RSCH", "ASPH"])
        #expect(query.sameModality && query.sameBodyPart)
        #expect(query.withinDays == 730)
        #expect(query.atMost == 4)
        #expect(scheduling.priority == .bulk)
        #expect(scheduling.window == TimeWindow(startMinute: 19 * 60, endMinute: 7 * 60))
        #expect(scheduling.window?.contains(minuteOfDay: 23 * 60) == true)
        #expect(scheduling.window?.contains(minuteOfDay: 12 * 60) == false)
    }
}

@Suite("Time windows")
struct TimeWindowParsingTests {
    /// 24:00 ends the day: "00:00-24:00" is always open, "19:00-24:00" the evening only.
    @Test func anEndOfMidnightIsTheEndOfTheDay() throws {
        let always = try #require(Parser.window("00:00-24:00"))
        #expect((0..<1440).allSatisfy { always.contains(minuteOfDay: $0) })
        #expect(always.description == "00:00-24:00")
        let evening = try #require(Parser.window("19:00-24:00"))
        #expect(evening.contains(minuteOfDay: 23 * 60 + 59) && evening.contains(minuteOfDay: 19 * 60))
        #expect(!evening.contains(minuteOfDay: 0) && !evening.contains(minuteOfDay: 18 * 60 + 59))
        let night = try #require(Parser.window("19:00-07:00"))
        #expect(night.contains(minuteOfDay: 0) && night.contains(minuteOfDay: 6 * 60 + 59) && !night.contains(minuteOfDay: 7 * 60))
    }
}
