import CommandSupport
import Agent
import Audit
import Coordinator
import DICOM
import Exchange
import Foundation
import Platform
import Routing
import Transport

/// `consort coordinator --config FILE` (the service) and `consort coordinator conflicts`.
enum CoordinatorCommand {
    static let help = """
        Usage: consort coordinator --config FILE
               consort coordinator conflicts --config FILE [--json]

        Runs the consortium's coordinator in the foreground: the registry of which trust holds
        which patient's studies (keyed by NHS number, each trust's local patient identifiers
        cross-referenced), served over HTTPS with mutual TLS to the members the routing rules
        name. See Deploy/coordinator.conf. SIGHUP reloads the rules (the members) and the
        certificate, key, CA and CRL of its listener (files that do not load are refused and the
        material in force stays); SIGTERM stops.

        conflicts   The identity conflicts held for a person — one local identifier announced
                    with two NHS numbers, one study for two patients, an NHS number whose sex or
                    birth date differs between trusts — with both sides and where each came from;
                    then the invalid NHS numbers recorded. Exit 1 when there are any.

        Options:
          --config FILE   the coordinator's configuration (default /etc/consort/coordinator.conf)
          --json          one JSON object
        """

    static func run(_ args: [String]) throws -> ExitCode {
        if args.first == "conflicts" { return try conflicts(Array(args.dropFirst())) }
        let signals = try SignalWatcher.arm()
        let arguments = try Arguments(args, command: "coordinator", flags: [], options: ["--config"])
        if let stray = arguments.positional.first { throw UsageError(message: "unknown coordinator command \"\(stray)\" (conflicts)", command: "coordinator") }
        let file = arguments.option("--config") ?? "/etc/consort/coordinator.conf"
        return DaemonCommand.run(
            "coordinator", file: file, signals: signals, parsed: CoordinatorConfigurationParser.parse(file: file), listenHost: \.listenHost,
            ready: { _ in "consort coordinator: ready" }
        ) { configuration, log in
            // A start that is working for long (an earlier registry moved to the current
            // layout: minutes at millions of studies) asks systemd for more time as it goes;
            // TimeoutStartSec would otherwise kill it, and the next start begin again.
            let notifier = ServiceNotifier(environment: ProcessInfo.processInfo.environment)
            let daemon = try CoordinatorDaemon(configuration: configuration, log: log) { doing in
                notifier.send("EXTEND_TIMEOUT_USEC=60000000", "STATUS=" + doing)
            }
            try daemon.start()
            return DaemonCommand.Running(port: daemon.port, summary: { daemon.summary() }, reload: { daemon.reload() }, stop: { daemon.stop() })
        }
    }

    static func conflicts(_ args: [String]) throws -> ExitCode {
        let arguments = try Arguments(args, command: "coordinator conflicts", flags: ["--json"], options: ["--config"])
        let file = arguments.option("--config") ?? "/etc/consort/coordinator.conf"
        let parsed = CoordinatorConfigurationParser.parse(file: file)
        guard let configuration = parsed.configuration else {
            standardError.line(parsed.report())
            return .someFailed
        }
        let registry: SQLRegistry
        switch configuration.registry {
        case .sqlite(let path):
            guard FileManager.default.fileExists(atPath: path) else {
                standardError.line("consort coordinator conflicts: no registry at \(path): the coordinator has never run with \(file)")
                return .someFailed
            }
            registry = try SQLRegistry.sqlite(readingOnly: path)
        case .postgresql(let conninfo):
            registry = try SQLRegistry.postgresql(conninfo)
        }
        let conflicts = try registry.conflicts()
        let errors = try registry.identityErrors()
        if arguments.flag("--json") {
            standardOutput.line(JSON.object([
                ("conflicts", .array(conflicts.map(CoordinatorService.conflictJSON))),
                ("invalid_nhs_numbers", .array(errors.map { .object([("trust", .string($0.trust)), ("study", .string($0.study)), ("value", .string($0.value)), ("created", .double($0.created))]) })),
            ]).serialized())
        } else {
            standardOutput.line("\(conflicts.count) identity conflict\(conflicts.count == 1 ? "" : "s") held for a person (not merged, not used for prefetch):")
            for conflict in conflicts {
                standardOutput.line("  #\(conflict.id) \(conflict.kind) \(conflict.key) (since \(OperatorFormat.time(conflict.created)))")
                standardOutput.line("      \(conflict.first)   from \(conflict.firstFrom)")
                standardOutput.line("      \(conflict.second)   from \(conflict.secondFrom)")
            }
            standardOutput.line("\(errors.count) invalid NHS number\(errors.count == 1 ? "" : "s") recorded (not used):")
            for error in errors { standardOutput.line("  \(error.trust) study \(error.study): \"\(error.value)\"") }
        }
        return conflicts.isEmpty && errors.isEmpty ? .success : .someFailed
    }
}

/// `consort audit verify|show`: the hash-chained audit logs of the agents and the coordinator.
enum AuditCommand {
    static let help = """
        Usage: consort audit verify [FILE] [--config FILE]
               consort audit show [FILE] [--config FILE] [--nhs NUMBER] [--study UID] [--json]

        Without FILE, the log of the configuration given by --config (default
        /etc/consort/agent.conf): an agent's STATE/audit.log, or a coordinator's audit file.

        verify   Checks every record of an audit log (an agent's STATE/audit.log, the
                 coordinator's coordinator-audit.log): its own hash, the chain to the record
                 before it, the numbering, and the head file. Names the first bad record: one
                 edited, removed or moved. Exit 0 intact, 1 not.
        show     The records about one patient (--nhs, spaces allowed) or study: every movement
                 of and lookup about them, who, why and when.
        """

    static func run(_ args: [String]) throws -> ExitCode {
        let arguments = try Arguments(args, command: "audit", flags: ["--json"], options: ["--nhs", "--study", "--config"])
        guard (1...2).contains(arguments.positional.count), ["verify", "show"].contains(arguments.positional[0]) else {
            throw UsageError(message: "say: consort audit verify [FILE], or consort audit show [FILE] --nhs NUMBER", command: "audit")
        }
        let file: String
        if arguments.positional.count == 2 {
            file = arguments.positional[1]
        } else {
            // The log of an agent's configuration, or of a coordinator's.
            let config = arguments.option("--config") ?? OperatorContext.defaultConfig
            if let agent = ConfigurationParser.parse(file: config).configuration {
                file = agent.state + "/audit.log"
            } else if let coordinator = CoordinatorConfigurationParser.parse(file: config).configuration {
                file = coordinator.auditPath
            } else {
                standardError.line("consort audit: \(config) is neither an agent's nor a coordinator's configuration (give the log's path, or --config FILE)")
                return .someFailed
            }
        }
        guard FileManager.default.fileExists(atPath: file) else {
            standardError.line("consort audit: no audit log at \(file)")
            return .someFailed
        }
        if arguments.positional[0] == "verify" {
            let result = AuditLog.verify(path: file)
            if let bad = result.firstBad {
                standardOutput.line("consort audit: \(file): NOT INTACT at line \(bad.line): \(bad.reason) (\(result.records) records before it are intact)")
                return .someFailed
            }
            standardOutput.line("consort audit: \(file): intact, \(result.records) records")
            return .success
        }
        var nhs: String?
        if let text = arguments.option("--nhs") {
            guard let number = NHSNumber(text) else { throw UsageError(message: "\"\(text)\" is not a valid NHS number", command: "audit") }
            nhs = number.digits
        }
        let study = arguments.option("--study")
        guard nhs != nil || study != nil else { throw UsageError(message: "give --nhs NUMBER or --study UID", command: "audit") }
        let records = AuditLog.records(path: file).filter { record in
            (nhs == nil || record["nhs"] as? String == nhs) && (study == nil || record["study"] as? String == study)
        }
        for record in records {
            if arguments.flag("--json") {
                let data = (try? JSONSerialization.data(withJSONObject: record, options: [.sortedKeys])) ?? Data()
                standardOutput.line(String(decoding: data, as: UTF8.self))
            } else {
                let fields = ["study", "why", "detail"].compactMap { key in (record[key] as? String).map { "\(key) \($0)" } }
                standardOutput.line("\(record["time"] as? String ?? "")  \(record["who"] as? String ?? "")  \(record["action"] as? String ?? "")  " + fields.joined(separator: "; "))
            }
        }
        if !arguments.flag("--json") { standardOutput.line("\(records.count) record\(records.count == 1 ? "" : "s")") }
        return .success
    }
}

/// `consort locate --nhs N`: where a patient's imaging is, from the coordinator.
enum LocateCommand {
    static let help = """
        Usage: consort locate --nhs "943 476 5919" [--config FILE] [--purpose P] [--json]

        Asks the coordinator (the `coordinator` line of the agent's configuration, with the
        agent's certificate) for the patient's studies: newest first, each with its date,
        modality, description and the trusts that hold it. The NHS number may have spaces; its
        check digit is verified before anything is asked. The lookup is audited at the
        coordinator. Trusts still announcing what they hold (after the coordinator was down or
        lost its registry) are named below the list: their studies may be missing from it. Exit 1 when the coordinator cannot answer, or holds an identity conflict
        about the patient for a person (shown).

        Options:
          --config FILE   the agent's configuration (default /etc/consort/agent.conf)
          --json          the coordinator's answer, one JSON object
        \(PurposeOption.help)
        """

    static func run(_ args: [String]) throws -> ExitCode {
        let arguments = try Arguments(args, command: "locate", flags: ["--json"], options: ["--nhs", "--config", PurposeOption.name])
        let purpose = try PurposeOption.headers(arguments)[0].1
        guard let text = arguments.option("--nhs") else { throw UsageError(message: "give --nhs NUMBER", command: "locate") }
        guard let nhs = NHSNumber(text) else {
            throw UsageError(message: "\"\(text)\" is not a valid NHS number (10 digits; the last is a Modulus 11 check digit)", command: "locate")
        }
        let file = arguments.option("--config") ?? OperatorContext.defaultConfig
        let parsed = ConfigurationParser.parse(file: file)
        guard let configuration = parsed.configuration else {
            standardError.line(parsed.report())
            return .someFailed
        }
        guard let coordinator = configuration.coordinator else {
            standardError.line("consort locate: \(file) has no coordinator line (coordinator https://HOST:8444)")
            return .someFailed
        }
        let tls = TLSConfiguration(certificateChain: configuration.certificate, privateKey: configuration.key, trustedCA: configuration.ca, revocationList: configuration.crl)
        let client = try CoordinatorClient(bases: configuration.coordinators, tls: coordinator.hasPrefix("https://") ? tls : nil)
        let answer: [String: Any]
        do {
            answer = try client.call("GET", "/v1/patients/\(nhs.digits)/studies", purpose: purpose)
        } catch let error as CoordinatorClient.Failure {
            if error.status == 409 {
                standardOutput.line("NHS number \(nhs): an IDENTITY CONFLICT is held for a person; nothing is shown or fetched until it is resolved:")
                for conflict in error.answer["conflicts"] as? [[String: Any]] ?? [] {
                    standardOutput.line("  \(conflict["kind"] ?? "") \(conflict["key"] ?? ""): \(conflict["first"] ?? "") (\(conflict["first_from"] ?? "")) vs \(conflict["second"] ?? "") (\(conflict["second_from"] ?? ""))")
                }
            } else {
                standardError.line("consort locate: \(error)")
            }
            return .someFailed
        }
        if arguments.flag("--json") {
            let data = (try? JSONSerialization.data(withJSONObject: answer, options: [.sortedKeys])) ?? Data()
            standardOutput.line(String(decoding: data, as: UTF8.self))
            return .success
        }
        let studies = answer["studies"] as? [[String: Any]] ?? []
        standardOutput.line("NHS number \(nhs): \(studies.count) stud\(studies.count == 1 ? "y" : "ies"), newest first")
        standardOutput.line("Date      Mod.  Description                    Held at          Study")
        for study in studies {
            let held = (study["locations"] as? [[String: Any]] ?? []).map { ($0["trust"] as? String ?? "") + (($0["complete"] as? Bool) == false ? " (partial)" : "") }
            standardOutput.line((study["date"] as? String ?? "").padding(to: 10) + ((study["modalities"] as? [String])?.joined(separator: ",") ?? "").padding(to: 6)
                + String((study["description"] as? String ?? "").prefix(30)).padding(to: 31) + held.joined(separator: ", ").padding(to: 17) + (study["study"] as? String ?? ""))
        }
        let announcing = (answer["announcing"] as? [[String: Any]] ?? []).compactMap { $0["reason"] as? String }
        if !announcing.isEmpty {
            standardOutput.line("Not complete yet: \(announcing.joined(separator: "; ")); studies held there may be missing above")
        }
        return .success
    }
}
