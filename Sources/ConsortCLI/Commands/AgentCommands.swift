import Agent
import DICOM
import Foundation
import Platform
import Routing

/// `consort agent --config FILE`: the daemon, in the foreground (systemd supervises).
enum AgentCommand {
    static let help = """
        Usage: consort agent --config FILE

        Runs this trust's agent in the foreground: watches the archive folders, keeps the
        inventory, routes by the rules, delivers through the spool, and serves DICOMweb to the
        other trusts over mutual TLS (see Deploy/ for example configurations, and
        consort config check to validate one). Logs one line per event on standard error
        (level component: message key=value ...). SIGTERM or SIGINT: stops taking work, lets
        transfers in flight finish their batch (up to 10 s), exits 0. SIGHUP: reloads the rules
        (a set with errors is refused and the old one kept) and re-reads the peers.

        Under systemd (Type=notify) it speaks the notify protocol on $NOTIFY_SOCKET: READY=1
        once listening and watching, STATUS= a summary kept current, RELOADING=1 and READY=1
        around a reload, STOPPING=1, and WATCHDOG=1 at half of $WATCHDOG_USEC only while its
        loops run (a stuck agent gets restarted).

        Options:
          --config FILE   the agent's configuration (default /etc/consort/agent.conf)
        """

    static func run(_ args: [String]) throws -> ExitCode {
        // Before anything else: a stop that arrives while starting waits here.
        let signals = try SignalWatcher.arm()
        let arguments = try Arguments(args, command: "agent", flags: [], options: ["--config"])
        let file = arguments.option("--config") ?? "/etc/consort/agent.conf"
        let parsed = ConfigurationParser.parse(file: file)
        guard let configuration = parsed.configuration else {
            standardError.line(parsed.report())
            standardError.line("consort agent: \(file) has errors; not started")
            return .someFailed
        }
        let log = Logger("agent")
        let daemon: AgentDaemon
        do {
            daemon = try AgentDaemon(configuration: configuration, log: log)
            try daemon.start()
        } catch {
            log.error("cannot start", ["config": file, "error": "\(error)"])
            return .someFailed
        }
        standardOutput.line("consort agent: \(configuration.trust) ready, listening on \(configuration.listenHost):\(daemon.port)")
        standardOutput.flush()
        // Under systemd (Type=notify): ready now, a status line kept current, the watchdog
        // pinged from this loop only while the agent's own loops are alive.
        let notifier = ServiceNotifier(environment: ProcessInfo.processInfo.environment)
        notifier.send("READY=1", "STATUS=" + daemon.summary())
        let period = notifier.watchdogPeriod ?? 5
        var lastPing = -Double.infinity, lastStatus = MonotonicClock.now
        var withheld = false
        var stop: Int32 = SIGTERM
        running: while true {
            let now = MonotonicClock.now
            if notifier.watchdogPeriod != nil, now - lastPing >= period {
                // A hung loop withholds the ping: systemd then restarts the agent (nothing is
                // lost: the spool is durable and interrupted jobs resume).
                let hung = daemon.hungLoops(longerThan: max(10, period * 3))
                if hung.isEmpty {
                    notifier.send("WATCHDOG=1")
                    if withheld { log.info("the agent's loops run again; watchdog pings resume") }
                    withheld = false
                } else if !withheld {
                    log.error("NOT pinging the systemd watchdog: a loop of the agent is stuck; systemd will restart it", ["loops": hung.joined(separator: ",")])
                    withheld = true
                }
                lastPing = now
            }
            if now - lastStatus >= 5 {
                notifier.status(daemon.summary())
                lastStatus = now
            }
            let wait = notifier.watchdogPeriod.map { max(0.05, min(5, $0 - (MonotonicClock.now - lastPing))) } ?? 5
            switch signals.next(timeout: wait) {
            case .stop(let signal)?:
                stop = signal
                break running
            case .reload?:
                notifier.send("RELOADING=1", "STATUS=reloading the rules and the peers")
                log.info("SIGHUP: reloading the rules and re-reading the peers")
                daemon.reload()
                notifier.send("READY=1", "STATUS=" + daemon.summary())
            case nil:
                continue
            }
        }
        notifier.send("STOPPING=1", "STATUS=stopping: transfers in flight finish their batch (up to 10 s)")
        log.info("\(stop == SIGINT ? "SIGINT" : "SIGTERM"): stopping")
        daemon.stop(deadline: 10)
        return .success
    }
}

/// `consort config check FILE`.
enum ConfigCommand {
    static let help = """
        Usage: consort config check FILE

        Validates an agent's configuration: its syntax (file:line:column errors, an unknown word
        is an error), the folders (watched folders readable; state and inbound writable), the
        certificate (readable, its Common Name equal to `trust`, not expired), the key and CA,
        the routing rules (they load), and that every peer or local target the rules send to
        has an address. Exit 0 when it is good, 1 with every problem otherwise.
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
        standardOutput.line("consort config: \(file) is good: trust \(configuration.trust), \(configuration.watches.count) watched folder\(configuration.watches.count == 1 ? "" : "s"), \(configuration.peers.count) peer\(configuration.peers.count == 1 ? "" : "s")")
        return .success
    }
}
