import CommandSupport
import Agent
import DICOM
import Foundation

/// What every operator command starts from: the agent's configuration (`--config`, default
/// /etc/consort/agent.conf), its database opened for reading (whether the agent runs or not),
/// and whether the agent answers on its admin socket.
struct OperatorContext {
    static let defaultConfig = "/etc/consort/agent.conf"

    let configuration: AgentConfiguration
    let store: AgentStore
    let command: String

    enum AgentState {
        case running(pid: Int)
        case down
        /// The socket exists but this user may not use it (not in the agent's group).
        case noPermission(String)
    }

    /// Reads the configuration and opens the store; nil (with the reason on stderr) if it cannot.
    static func open(_ arguments: Arguments, command: String) -> OperatorContext? {
        let file = arguments.option("--config") ?? defaultConfig
        let parsed = ConfigurationParser.parse(file: file)
        guard let configuration = parsed.configuration else {
            standardError.line(parsed.report())
            standardError.line("consort \(command): \(file) has errors (give the agent's configuration with --config FILE)")
            return nil
        }
        guard FileManager.default.fileExists(atPath: configuration.databasePath) else {
            standardError.line("consort \(command): no spool at \(configuration.databasePath): the agent has never run with \(file)")
            return nil
        }
        do {
            return OperatorContext(configuration: configuration, store: try AgentStore(readingOnly: configuration.databasePath), command: command)
        } catch {
            standardError.line("consort \(command): cannot read \(configuration.databasePath): \(error)")
            return nil
        }
    }

    var socket: String { configuration.adminSocketPath }

    /// Asks the agent whether it runs (a ping on the admin socket).
    func agentState() -> AgentState {
        do {
            let answer = try AdminClient.ask(socket, .object([("action", .string("ping"))]), timeout: 3)
            return .running(pid: (answer["pid"] as? NSNumber)?.intValue ?? 0)
        } catch .permissionDenied(let path) {
            return .noPermission(AdminClient.Failure.permissionDenied(path).description)
        } catch {
            return .down
        }
    }

    /// The live status the running agent gives (nil when it is down or refuses this user).
    func liveStatus() -> [String: Any]? {
        guard let answer = try? AdminClient.ask(socket, .object([("action", .string("status"))]), timeout: 5), answer["ok"] as? Bool == true else { return nil }
        return answer
    }

    /// Sends a changing request to the running agent, with the name of the person asking; its
    /// answer when it accepted it, else nil with the reason on stderr ("nothing changed").
    func ask(_ request: [(String, JSON)], timeout: Double) -> [String: Any]? {
        var request = request
        if let user = Self.claimedUser { request.append(("user", .string(user))) }
        let answer: [String: Any]
        do {
            answer = try AdminClient.ask(socket, .object(request), timeout: timeout)
        } catch {
            standardError.line("consort \(command): \(error); nothing changed")
            return nil
        }
        guard answer["ok"] as? Bool == true else {
            standardError.line("consort \(command): the agent refused: \(answer["error"] as? String ?? "no reason given"); nothing changed")
            return nil
        }
        return answer
    }

    /// Sends an action for these jobs to the running agent; prints its outcome. The changing
    /// commands change nothing when the agent is down: they say so and exit 1.
    func act(_ action: String, jobs: [Int64], peers: [String] = [], verb: String) -> ExitCode {
        var request: [(String, JSON)] = [("action", .string(action)), ("jobs", .array(jobs.map { .int($0) }))]
        if !peers.isEmpty { request.append(("peers", .array(peers.map { .string($0) }))) }
        guard let answer = ask(request, timeout: 30) else { return .someFailed }
        let changed = (answer["changed"] as? [Any] ?? []).compactMap { ($0 as? NSNumber)?.int64Value }
        let unchanged = jobs.filter { !changed.contains($0) }
        if !peers.isEmpty { standardOutput.line("\(peers.joined(separator: ", ")): circuit opened for one probe now") }
        standardOutput.line("\(verb) \(changed.count) of \(jobs.count) job\(jobs.count == 1 ? "" : "s")\(changed.isEmpty ? "" : ": " + Self.list(changed))")
        if !unchanged.isEmpty {
            standardOutput.line("not changed (their state does not allow it now): \(Self.list(unchanged))")
        }
        return .success
    }

    /// The name the person logged in with (sudo keeps it), sent beside the kernel's uid the
    /// agent sees on its socket.
    static var claimedUser: String? {
        let environment = ProcessInfo.processInfo.environment
        return environment["SUDO_USER"] ?? environment["USER"] ?? environment["LOGNAME"]
    }

    static func list(_ ids: [Int64]) -> String {
        ids.count <= 20 ? ids.map(String.init).joined(separator: ", ") : ids.prefix(20).map(String.init).joined(separator: ", ") + " and \(ids.count - 20) more"
    }
}
