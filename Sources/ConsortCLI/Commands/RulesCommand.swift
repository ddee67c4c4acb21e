import CommandSupport
import DICOM
import Foundation
import Routing
import Agent
import Platform
import Transport

/// `consort rules check|explain|replay`: the PACS manager's tools around the routing rules.
enum RulesCommand {
    static let help = """
        Usage: consort rules check [DIR]
               consort rules explain FILE|STUDY-DIR|LIST.csv [--rules DIR] [--site CODE] [--origin local|CODE] [--config FILE]
               consort rules replay ARCHIVE-DIR [--rules DIR] [--against DIR] [--site CODE]

        check    Parses and checks every .rules file in DIR (default: ./routing-rules, else
                 /etc/consort/routing-rules). Errors and warnings name file:line:column, show the
                 line with a caret under the fault, and give a hint. Exit 0 when there is no
                 error (warnings allowed), 1 otherwise.
        explain  For one DICOM file, or each study in a folder: every rule, whether it fires and
                 why (each test, the value it saw), and what it would do. Instance-arrival rules
                 see the first instance; study-stable rules the study. An MDT list (.csv with
                 nhs_number,meeting_date,host) is explained line by line against the list rules;
                 lines with an invalid NHS number, date or host are reported and not routed.
                 With --origin CODE (a study received from another trust), also the identity it
                 would be placed under here: with --config (the agent's configuration: its
                 trust, settings, certificate and coordinator) the coordinator is asked, as the
                 agent asks it; without, what the agent would ask and why it would hold.
        replay   Runs the rules over every study under ARCHIVE-DIR (headers only) and reports what
                 would have been sent where. With --against DIR, also runs the rule set in DIR
                 (the one in force) and lists the studies whose actions differ: see a change
                 before it is deployed.

        Options:
          --rules DIR     the rule set to use (default as for check)
          --site CODE     the trust whose agent is deciding (default: the study's IssuerOfPatientID
                          when it names a member)
          --origin X      local (default), or the code of the trust the study was received from
          --config FILE   explain: the agent's configuration, to ask its coordinator for the
                          identity a received study would be placed under
          --against DIR   replay: the rule set to compare with

        """

    static func run(_ args: [String]) throws -> ExitCode {
        guard let sub = args.first else { throw UsageError(message: "say check, explain or replay", command: "rules") }
        let rest = Array(args.dropFirst())
        switch sub {
        case "check": return try check(rest)
        case "explain": return try explain(rest)
        case "replay": return try replay(rest)
        default:
            throw UsageError(message: "unknown rules command \"\(sub)\" (check, explain, replay)", command: "rules")
        }
    }

    static func defaultRulesFolder() -> String {
        FileManager.default.fileExists(atPath: "routing-rules") ? "routing-rules" : "/etc/consort/routing-rules"
    }

    /// Loads a rule set, printing its diagnostics; nil (after printing) when it has errors.
    static func load(_ path: String, quietWarnings: Bool = false) -> RuleSet? {
        let outcome = RuleSetLoader.load(path)
        for diagnostic in outcome.diagnostics where !(quietWarnings && diagnostic.severity == .warning) {
            standardError.line(diagnostic.rendered(source: outcome.sources[diagnostic.location.file]))
        }
        if outcome.ruleSet == nil {
            standardError.line("consort rules: \(path): \(outcome.errors.count) error\(outcome.errors.count == 1 ? "" : "s"); the rule set cannot be used")
        }
        return outcome.ruleSet
    }

    static func check(_ args: [String]) throws -> ExitCode {
        let arguments = try Arguments(args, command: "rules check", flags: [], options: [])
        guard arguments.positional.count <= 1 else { throw UsageError(message: "give one folder or file", command: "rules check") }
        let path = arguments.positional.first ?? defaultRulesFolder()
        let outcome = RuleSetLoader.load(path)
        for diagnostic in outcome.diagnostics {
            standardOutput.line(diagnostic.rendered(source: outcome.sources[diagnostic.location.file]))
        }
        let e = outcome.errors.count, w = outcome.warnings.count
        let counts = "\(e) error\(e == 1 ? "" : "s"), \(w) warning\(w == 1 ? "" : "s")"
        if let set = outcome.ruleSet {
            standardOutput.line(
                "\(path): \(outcome.files.count) files, \(set.rules.count) rules, \(set.members.count) members, \(set.groups.count) groups, \(set.agreements.count) agreements: OK (\(counts))")
            return .success
        }
        standardOutput.line("\(path): \(counts); not loadable")
        return .someFailed
    }

    // MARK: - explain

    struct Study {
        var uid: String
        var first: DICOMFile
        var files: Int
    }

    /// The headers under `paths`, grouped by study (the first instance's header stands for it).
    static func studies(_ paths: [String]) -> (studies: [Study], failures: Int) {
        let (files, problems) = FileWalker.expand(paths)
        for problem in problems { standardError.line("consort rules: \(problem)") }
        var order: [String] = []
        var byUID: [String: Study] = [:]
        var failures = problems.count
        for input in files {
            do {
                let file = try DICOMFile.read(path: input.path)
                let uid = file.dataSet.string(.studyInstanceUID) ?? input.name
                if byUID[uid] == nil {
                    order.append(uid)
                    byUID[uid] = Study(uid: uid, first: file, files: 1)
                } else {
                    byUID[uid]!.files += 1
                }
            } catch {
                failures += 1
                standardError.line("consort rules: \(input.name): \(error)")
            }
        }
        return (order.map { byUID[$0]! }, failures)
    }

    static func site(for header: DataSet, in set: RuleSet, option: String?) -> String? {
        if let option { return option }
        if let issuer = header.string(Tag(0x0010, 0x0021)), set.member(issuer) != nil { return issuer }
        return nil
    }

    static func origin(_ option: String?) -> Origin {
        guard let option, option != "local" else { return .local }
        return .received(from: option)
    }

    static func now() -> Int64 { Int64(Date().timeIntervalSince1970) }

    static func explain(_ args: [String]) throws -> ExitCode {
        let arguments = try Arguments(args, command: "rules explain", flags: [], options: ["--rules", "--site", "--origin", "--config"])
        var book: IdentityBook?
        var configuration: AgentConfiguration?
        if let file = arguments.option("--config") {
            let parsed = ConfigurationParser.parse(file: file)
            guard let c = parsed.configuration else {
                standardError.line(parsed.report())
                return .someFailed
            }
            configuration = c
            if let url = c.coordinator, c.identity == .reconcile {
                let tls = TLSConfiguration(certificateChain: c.certificate, privateKey: c.key, trustedCA: c.ca, revocationList: c.crl)
                book = try IdentityBook(
                    settings: IdentityDecision.Settings(trust: c.trust, unknownPatient: c.unknownPatient), coordinators: c.coordinators, tls: tls, audit: nil,
                    clock: SystemClock(), log: Logger("identity", minimum: .error))
                book?.purpose = "identity reconciliation (consort rules explain)"
            }
        }
        guard !arguments.positional.isEmpty else { throw UsageError(message: "give a DICOM file or a study folder", command: "rules explain") }
        guard let set = load(arguments.option("--rules") ?? defaultRulesFolder(), quietWarnings: true) else { return .someFailed }
        if let site = arguments.option("--site"), set.member(site) == nil {
            throw UsageError(message: "--site \(site) is not a member of the consortium (\(set.members.map(\.code).joined(separator: ", ")))", command: "rules explain")
        }
        let engine = RuleEngine(set)
        // MDT lists (CSV) are explained entry by entry, against the list rules.
        var listFailures = 0
        for path in arguments.positional where path.hasSuffix(".csv") {
            listFailures += explainList(path, set: set, engine: engine)
        }
        let dicomPaths = arguments.positional.filter { !$0.hasSuffix(".csv") }
        if dicomPaths.isEmpty { return listFailures > 0 ? .someFailed : .success }
        let (found, studyFailures) = studies(dicomPaths)
        let failures = studyFailures + listFailures
        for study in found {
            let header = study.first.dataSet
            guard let site = site(for: header, in: set, option: arguments.option("--site")) else {
                standardError.line("consort rules explain: study \(study.uid): say which trust decides (--site CODE); the header's IssuerOfPatientID is not a member")
                continue
            }
            let origin = origin(arguments.option("--origin"))
            standardOutput.line("Study \(study.uid) (\(study.files) file\(study.files == 1 ? "" : "s")) at \(site), \(origin):")
            standardOutput.line("  \(header.string(.modality) ?? "?") \(header.string(Tag(0x0008, 0x1030)) ?? "") \(header.string(.studyDate) ?? "")")
            standardOutput.line("")
            let events = [RoutingEvent.Kind.instanceArrived, .studyStable].map {
                RoutingEvent(kind: $0, header: header, origin: origin, site: site, now: now())
            }
            let explained = events.map { engine.explain($0) }
            for (index, rule) in set.rules.enumerated() {
                // Each rule is shown for the event it runs on; list rules need a list.
                let pick: RuleExplanation
                switch rule.trigger {
                case .instanceArrival: pick = explained[0][index]
                case .studyStable: pick = explained[1][index]
                case .listArrival: pick = explained[1][index]
                }
                standardOutput.write(pick.text)
            }
            if case .received(let sender) = origin {
                standardOutput.line("")
                for line in identityLines(header, sender: sender, site: site, book: book, configuration: configuration) { standardOutput.line("  " + line) }
            }
            standardOutput.line("")
        }
        return failures > 0 ? .someFailed : .success
    }

    /// The identity a study received from `sender` would be placed under at `site`.
    static func identityLines(_ header: DataSet, sender: String, site: String, book: IdentityBook?, configuration: AgentConfiguration?) -> [String] {
        let study = IdentityBook.study(of: header)
        var lines = ["Identity on delivery at \(site): as sent, Patient ID \(study.patientID ?? "(none)") (issuer \(study.issuer ?? "none"))"]
        if let configuration, book == nil {
            lines.append("  → as sent: \(ConfigCommand.identityLine(configuration))")
            return lines
        }
        guard let book else {
            switch IdentityDecision.nhsNumber(of: study) {
            case .failure(let failure): lines.append("  → HELD (\(failure.hold.kind.rawValue)): \(failure.hold.reason)")
            case .success(let nhs):
                lines.append("  → with a coordinator and identity reconcile (the default): placed under \(site)'s own number for NHS number \(nhs.digits), asked of the coordinator; the sender's number and the NHS number kept in Other Patient IDs Sequence (give --config to ask it)")
            }
            return lines
        }
        let (outcome, _) = book.decide(study, sender: sender, fresh: true)
        switch outcome {
        case .asSent(let why): lines.append("  → as sent: \(why)")
        case .rewrite(let rewrite):
            lines.append("  → placed as Patient ID \(rewrite.local.id) (issuer \(rewrite.local.issuer)); Other Patient IDs Sequence gains \(study.patientID ?? "?") (\(rewrite.senderIssuer))"
                + rewrite.additionalIdentifiers.map { ", \($0)" }.joined() + "; Issuer of Accession Number: \(rewrite.accessionNumberIssuer)")
        case .hold(let hold): lines.append("  → HELD (\(hold.kind.rawValue)): \(hold.reason)")
        }
        return lines
    }

    /// Explains the list rules for each line of an MDT list; returns how many lines were refused.
    static func explainList(_ path: String, set: RuleSet, engine: RuleEngine) -> Int {
        guard let data = FileManager.default.contents(atPath: path), let text = String(data: data, encoding: .utf8) else {
            standardError.line("consort rules explain: \(path): cannot read the list")
            return 1
        }
        let (entries, problems) = MDTList.parse(text, members: Set(set.members.map(\.code)))
        for problem in problems { standardError.line("consort rules explain: \(path): \(problem)") }
        for entry in entries {
            standardOutput.line("List \(path): NHS number \(NHSNumber(entry.nhsNumber).map(\.description) ?? entry.nhsNumber), MDT on \(entry.meetingDate) at \(entry.host):")
            let event = RoutingEvent(kind: .listArrived(entry), header: nil, origin: .local, site: entry.host, now: now())
            for (index, explanation) in engine.explain(event).enumerated() {
                if case .listArrival = set.rules[index].trigger { standardOutput.write(explanation.text) }
            }
            standardOutput.line("")
        }
        return problems.count
    }

    // MARK: - replay

    static func plan(_ engine: RuleEngine, _ study: Study, site: String) -> [PlannedAction] {
        [RoutingEvent.Kind.instanceArrived, .studyStable].flatMap {
            engine.evaluate(RoutingEvent(kind: $0, header: study.first.dataSet, origin: .local, site: site, now: now()))
        }
    }

    static func replay(_ args: [String]) throws -> ExitCode {
        let arguments = try Arguments(args, command: "rules replay", flags: [], options: ["--rules", "--against", "--site"])
        guard !arguments.positional.isEmpty else { throw UsageError(message: "give the archive folder to replay", command: "rules replay") }
        guard let candidate = load(arguments.option("--rules") ?? defaultRulesFolder(), quietWarnings: true) else { return .someFailed }
        var inForce: RuleSet?
        if let against = arguments.option("--against") {
            guard let set = load(against, quietWarnings: true) else { return .someFailed }
            inForce = set
        }
        let engine = RuleEngine(candidate)
        let baseline = inForce.map(RuleEngine.init)
        let (found, failures) = studies(arguments.positional)
        var totals: [String: Int] = [:]
        var changed = 0, skipped = 0
        for study in found {
            guard let site = site(for: study.first.dataSet, in: candidate, option: arguments.option("--site")) else {
                skipped += 1
                continue
            }
            let actions = plan(engine, study, site: site)
            for action in actions {
                totals["\(site) → \(action.kind.rawValue) \(action.destinations.joined(separator: ",")) [\(action.scheduling.priority.name)]", default: 0] += 1
            }
            guard let baseline else { continue }
            let before = Set(plan(baseline, study, site: site).map { "\($0.rule): \($0)" })
            let after = Set(actions.map { "\($0.rule): \($0)" })
            if before != after {
                changed += 1
                standardOutput.line("study \(study.uid) at \(site) (\(study.first.dataSet.string(.modality) ?? "?") \(study.first.dataSet.string(Tag(0x0008, 0x1030)) ?? "")):")
                for line in after.subtracting(before).sorted() { standardOutput.line("  + " + line) }
                for line in before.subtracting(after).sorted() { standardOutput.line("  - " + line) }
            }
        }
        standardOutput.line("Replayed \(found.count) studies\(skipped > 0 ? " (\(skipped) skipped: no --site and no member in IssuerOfPatientID)" : ""):")
        for (key, count) in totals.sorted(by: { $0.key < $1.key }) {
            standardOutput.line("  " + String(count).leftPadded(6) + "  " + key)
        }
        if totals.isEmpty { standardOutput.line("  nothing would be sent") }
        if baseline != nil { standardOutput.line("\(changed) of \(found.count) studies would be routed differently than by the rule set in force") }
        return failures > 0 ? .someFailed : .success
    }
}

extension String {
    func leftPadded(_ width: Int) -> String { count >= width ? self : String(repeating: " ", count: width - count) + self }
}
