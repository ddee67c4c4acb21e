import CommandSupport
import Platform
import Transport
import Workbench

#if canImport(Glibc)
    import Glibc
#endif

/// The `consort` executable: dispatches to subcommands, maps usage errors to exit 2 with a hint.
public enum ConsortCommand {
    public static let version = ConsortVersion.current

    struct Subcommand: Sendable {
        let name: String
        let summary: String
        let run: @Sendable ([String]) throws -> ExitCode
        let help: String
    }

    static let subcommands: [Subcommand] = [
        Subcommand(
            name: "dump", summary: "print DICOM headers (like dcmdump), or canonical JSON lines",
            run: DumpCommand.run, help: DumpCommand.help),
        Subcommand(
            name: "send", summary: "send DICOM files to a DICOMweb server (STOW-RS)",
            run: SendCommand.run, help: SendCommand.help),
        Subcommand(
            name: "fetch", summary: "retrieve a study from a DICOMweb server (WADO-RS)",
            run: FetchCommand.run, help: FetchCommand.help),
        Subcommand(
            name: "find", summary: "search a DICOMweb server's studies (QIDO-RS)",
            run: FindCommand.run, help: FindCommand.help),
        Subcommand(
            name: "echo", summary: "ask a DICOM node for a C-ECHO over DIMSE (like echoscu)",
            run: EchoCommand.run, help: EchoCommand.help),
        Subcommand(
            name: "store", summary: "send DICOM files to a node by C-STORE over DIMSE (like storescu)",
            run: StoreCommand.run, help: StoreCommand.help),
        Subcommand(
            name: "receive", summary: "serve DICOMweb (STOW-RS, WADO-RS, QIDO-RS) over a folder",
            run: ReceiveCommand.run, help: ReceiveCommand.help),
        Subcommand(
            name: "agent", summary: "run this trust's agent (the daemon): watch, route, deliver, receive",
            run: AgentCommand.run, help: AgentCommand.help),
        Subcommand(
            name: "config", summary: "check an agent's configuration file",
            run: ConfigCommand.run, help: ConfigCommand.help),
        Subcommand(
            name: "queue", summary: "the agent's spool: its shape, each job, and retry, hold, release, drop",
            run: QueueCommand.run, help: QueueCommand.help),
        Subcommand(
            name: "identity", summary: "studies from other trusts held for their identity (no local number, a conflict); release one",
            run: IdentityCommand.run, help: IdentityCommand.help),
        Subcommand(
            name: "pull", summary: "fetch a patient's studies from across the consortium here, by the agent's spool",
            run: PullCommand.run, help: PullCommand.help),
        Subcommand(
            name: "backfill", summary: "apply the routing rules to the archive's history (a first start does not): dry run, --yes",
            run: BackfillCommand.run, help: BackfillCommand.help),
        Subcommand(
            name: "status", summary: "the agent's health: rules, watched folders, inventory, peers, what needs a person",
            run: StatusCommand.run, help: StatusCommand.help),
        Subcommand(
            name: "coordinator", summary: "run the consortium's coordinator (who holds which patient's studies); list its identity conflicts",
            run: CoordinatorCommand.run, help: CoordinatorCommand.help),
        Subcommand(
            name: "locate", summary: "where a patient's imaging is held, by NHS number (asks the coordinator)",
            run: LocateCommand.run, help: LocateCommand.help),
        Subcommand(
            name: "audit", summary: "verify an audit log's hash chain; show every record about a patient",
            run: AuditCommand.run, help: AuditCommand.help),
        Subcommand(
            name: "pki", summary: "the consortium's CA: init-ca, issue a site's certificate, revoke, write the CRL",
            run: PKICommand.run, help: PKICommand.help),
        Subcommand(
            name: "rules", summary: "check, explain and replay the routing rules",
            run: RulesCommand.run, help: RulesCommand.help),
        Subcommand(
            name: "demo", summary: "the five trusts on this machine (coordinator, agents, an AI service): four stories, each checked; demo study: one study",
            run: { try DemoCommand.run($0, dump: { HumanDump.write($0, name: $1, width: 64, warnings: true) }) }, help: DemoCommand.help),
        Subcommand(
            name: "synth", summary: "write a synthetic study with chosen attributes (to test routing rules)",
            run: SynthCommand.run, help: SynthCommand.help),
        Subcommand(
            name: "bench", summary: "measure: parse (headers), rules, push (transfers), route (agent to agent), registry (coordinator), disk",
            run: { try BenchCommand.run($0, loadRules: { RulesCommand.load($0 ?? RulesCommand.defaultRulesFolder(), quietWarnings: true) }) },
            help: BenchCommand.help),
    ]

    static var help: String {
        var text = """
            consort \(version): share medical imaging across the trusts of a consortium.

            Usage: consort <command> [options] [arguments]
                   consort <command> --help
                   consort --version

            Commands:

            """
        for command in subcommands {
            text += "  " + command.name.padding(to: 12) + command.summary + "\n"
        }
        text += """

            Exit codes: 0 success; 1 some inputs failed (each is named on stderr); 2 usage error.
            """
        return text
    }

    /// Runs the command line and exits the process with its code.
    public static func main() -> Never {
        // Before anything touches OpenSSL (curl included): no teardown at exit under threads
        // still using it.
        OpenSSLLifetime.keepUntilProcessExit()
        // A reader that goes away (`consort dump ... | head`) must not kill us with SIGPIPE.
        signal(SIGPIPE, SIG_IGN)
        let code = run(Array(CommandLine.arguments.dropFirst()))
        standardOutput.flush()
        standardError.flush()
        exit(code.rawValue)
    }

    public static func run(_ args: [String]) -> ExitCode {
        guard let first = args.first else {
            standardError.write(help + "\n")
            return .usage
        }
        switch first {
        case "--help", "-h", "help":
            if args.count > 1, let command = subcommands.first(where: { $0.name == args[1] }) {
                standardOutput.write(command.help)
            } else {
                standardOutput.write(help + "\n")
            }
            return .success
        case "--version", "-V":
            standardOutput.line("consort \(version)")
            return .success
        default:
            break
        }
        guard let command = subcommands.first(where: { $0.name == first }) else {
            standardError.line("consort: unknown command \"\(first)\"")
            standardError.line("Run 'consort --help' for the list of commands.")
            return .usage
        }
        let rest = Array(args.dropFirst())
        if rest.contains("--help") || rest.contains("-h") {
            standardOutput.write(command.help)
            return .success
        }
        do {
            return try command.run(rest)
        } catch let error as UsageError {
            standardError.line("consort \(error.command): \(error.message)")
            standardError.line("Run 'consort \(error.command) --help' for usage.")
            return .usage
        } catch {
            standardError.line("consort \(first): \(error)")
            return .someFailed
        }
    }
}
