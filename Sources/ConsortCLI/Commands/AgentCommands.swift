import CommandSupport
import Agent
import DICOM
import Foundation
import Platform
import Routing

/// `consort agent --config FILE`: the daemon, in the foreground (systemd supervises).
enum AgentCommand {
    static let help = """
        Usage: consort agent --config FILE
               consort agent resync --config FILE

        Runs this trust's agent in the foreground: watches the archive folders, keeps the
        inventory, routes by the rules, delivers through the spool, and serves DICOMweb to the
        other trusts over mutual TLS (see Deploy/ for example configurations, and
        consort config check to validate one). Logs one line per event on standard error
        (level component: message key=value ...). SIGTERM or SIGINT: stops taking work, lets
        transfers in flight finish their batch (up to 10 s), exits 0. SIGHUP: reloads the rules
        (a set with errors is refused and the old one kept), re-reads the peers, and reloads
        the certificate, key, CA and CRL for the receiver and every client (files that do not
        load are refused and the material in force stays; connections made under the old
        material close once their request is done).

        Under systemd (Type=notify) it speaks the notify protocol on $NOTIFY_SOCKET: READY=1
        once listening and watching, STATUS= a summary kept current, RELOADING=1 and READY=1
        around a reload, STOPPING=1, and WATCHDOG=1 at half of $WATCHDOG_USEC only while its
        loops run (a stuck agent gets restarted).

        resync: the running agent announces every study it holds to the coordinator again (a
        coordinator whose registry was lost is rebuilt; the agent also does it by itself when
        the coordinator knows fewer of its studies than it announced).

        Options:
          --config FILE   the agent's configuration (default /etc/consort/agent.conf)
        """

    static func resync(_ args: [String]) throws -> ExitCode {
        let arguments = try Arguments(args, command: "agent resync", flags: [], options: ["--config"])
        guard let context = OperatorContext.open(arguments, command: "agent resync") else { return .someFailed }
        let answer: [String: Any]
        do {
            answer = try AdminClient.ask(context.socket, .object([("action", .string("resync"))]), timeout: 30)
        } catch {
            standardError.line("consort agent resync: \(error); nothing changed")
            return .someFailed
        }
        guard answer["ok"] as? Bool == true else {
            standardError.line("consort agent resync: \(answer["error"] as? String ?? "refused")")
            return .someFailed
        }
        standardOutput.line("consort agent resync: \((answer["studies"] as? NSNumber)?.intValue ?? 0) studies will be announced to the coordinator again")
        return .success
    }

    static func run(_ args: [String]) throws -> ExitCode {
        if args.first == "resync" { return try resync(Array(args.dropFirst())) }
        // Before anything else: a stop that arrives while starting waits here.
        let signals = try SignalWatcher.arm()
        let arguments = try Arguments(args, command: "agent", flags: [], options: ["--config"])
        let file = arguments.option("--config") ?? "/etc/consort/agent.conf"
        return DaemonCommand.run(
            "agent", file: file, signals: signals, parsed: ConfigurationParser.parse(file: file), listenHost: \.listenHost,
            ready: { "consort agent: \($0.trust) ready" }
        ) { configuration, log in
            let daemon = try AgentDaemon(configuration: configuration, log: log)
            try daemon.start()
            return DaemonCommand.Running(
                port: daemon.port, summary: { daemon.summary() }, hungLoops: { daemon.hungLoops(longerThan: $0) },
                reload: {
                    log.info("SIGHUP: reloading the rules, the peers and the TLS material")
                    daemon.reload()
                },
                stop: { daemon.stop(deadline: 10) })
        }
    }
}

/// `consort config check FILE`.
enum ConfigCommand {
    static let help = """
        Usage: consort config check FILE

        Validates an agent's configuration: its syntax (file:line:column errors, an unknown word
        is an error), the folders (watched folders readable; state and inbound writable), the
        certificate (readable, its Common Name equal to `trust`, not expired), the key and CA,
        the CRL (the CA or the CRL's next update past: an error; within 14 days: a warning),
        the routing rules (they load; `trust` a member, not a peer), and that every peer or
        local target the rules send to has an address. Exit 0 when it is good (warnings on
        standard error), 1 with every problem otherwise.
        """

    static func run(_ args: [String]) throws -> ExitCode {
        let arguments = try Arguments(args, command: "config", flags: [], options: [])
        guard arguments.positional.count == 2, arguments.positional[0] == "check" else {
            throw UsageError(message: "say: consort config check FILE", command: "config")
        }
        let file = arguments.positional[1]
        let parsed = ConfigurationParser.parse(file: file)
        guard let configuration = parsed.configuration else {
            standardError.line(parsed.report())
            standardError.line("consort config: \(file): \(parsed.errors.count) error\(parsed.errors.count == 1 ? "" : "s")")
            return .someFailed
        }
        let problems = ConfigurationCheck.problems(configuration)
        if !problems.isEmpty { standardError.line(problems.map { $0.rendered(source: $0.location.file == file ? parsed.source : nil) }.joined(separator: "\n")) }
        let errors = problems.filter { $0.severity == .error }.count
        if errors > 0 {
            standardError.line("consort config: \(file): \(errors) error\(errors == 1 ? "" : "s")")
            return .someFailed
        }
        let keep = configuration.inboundKeepSeconds.map { "received copies removed from inbound after \(ConfigurationParser.formatSeconds($0))" } ?? "received copies kept in inbound"
        standardOutput.line("consort config: \(file) is good: trust \(configuration.trust), \(configuration.watches.count) watched folder\(configuration.watches.count == 1 ? "" : "s"), \(configuration.peers.count) peer\(configuration.peers.count == 1 ? "" : "s"), \(keep)")
        standardOutput.line("identity: " + identityLine(configuration))
        if let dimse = configuration.dimse {
            let peers = configuration.dimsePeers.map { "\($0.name) (\($0.aeTitle)@\($0.host))" }.joined(separator: ", ")
            standardOutput.line("dimse: a C-STORE SCP on \(dimse.host):\(dimse.port) as \(dimse.aeTitle), \(dimse.associations) associations at most, PDUs up to \(dimse.maximumPDU) bytes; "
                + (peers.isEmpty ? "no dimse-peer may associate" : "may associate: \(peers)"))
            if let why = configuration.queryRetrieveUnavailable {
                standardOutput.line("query/retrieve: not offered (\(why))")
            } else {
                let askers = configuration.dimsePeers.filter(\.mayQuery).map(\.name).joined(separator: ", ")
                standardOutput.line("query/retrieve: C-FIND answers \(askers) with a patient's studies across the consortium in this trust's identity; "
                    + "C-MOVE sends to a dimse-peer's own SCP, waiting up to \(ConfigurationParser.formatSeconds(dimse.moveWaitSeconds)) for a study held elsewhere to be fetched")
            }
        }
        return .success
    }

    /// What becomes of a study from another trust's identity here, in words.
    static func identityLine(_ c: AgentConfiguration) -> String {
        guard c.coordinator != nil else {
            return "no coordinator line: nothing to reconcile from, so studies from other trusts are placed as sent (their Patient ID is the sender's)"
        }
        if c.identity == .keep { return "identity keep: studies from other trusts are placed as sent (this trust's PACS reconciles them)" }
        switch c.unknownPatient {
        case .hold:
            return "studies from other trusts are placed under \(c.trust)'s own number for the patient (from the coordinator); a patient \(c.trust) has no number for is held (unknown-patient hold)"
        case .nhsNumber(let issuer):
            return "studies from other trusts are placed under \(c.trust)'s own number for the patient (from the coordinator); a patient \(c.trust) has no number for is placed under the NHS number (issuer \(issuer))"
        }
    }
}
