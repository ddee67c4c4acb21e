import Foundation
import TestSupport
import Testing

/// A consortium on loopback for tests: a throwaway CA, a rules folder, and `consort agent`
/// processes, each with its own folders and configuration, each listening on a port the kernel
/// chose. Every wait has a deadline.
final class TestConsortium {
    let pki: TestPKI
    let root: ScratchFolder
    let rules: String

    /// `rules`: the routing rules' text (a consortium.rules of members and agreements is added).
    init(members: [String], rules ruleText: String) throws {
        pki = try TestPKI()
        root = try ScratchFolder()
        rules = root.path + "/rules"
        try FileManager.default.createDirectory(atPath: rules, withIntermediateDirectories: true)
        var consortium = members.map { "member \($0) \"\($0) test trust\"" }.joined(separator: "\n")
        consortium += "\ngroup trusts = \(members.joined(separator: ", "))\n"
        consortium += "agreement \"test\" {\n  purposes direct-care, emergency\n  between trusts\n}\n"
        try consortium.write(toFile: rules + "/consortium.rules", atomically: true, encoding: .utf8)
        try ruleText.write(toFile: rules + "/routing.rules", atomically: true, encoding: .utf8)
    }

    /// The folders and configuration of one trust's agent (not started).
    /// `port`: the port to listen on (one chosen before, when peers must know it first).
    func site(_ code: String, port: Int? = nil, peers: [String: Int] = [:], extra: String = "", inboundInsideWatch: Bool = false) throws -> AgentSite {
        let base = root.path + "/" + code.lowercased()
        let site = AgentSite(code: code, base: base, port: try port ?? OrthancInteropTests.freePort(), inboundInsideWatch: inboundInsideWatch)
        for folder in [site.watch, site.inbound, site.state] { try FileManager.default.createDirectory(atPath: folder, withIntermediateDirectories: true) }
        let cert = try pki.site(code)
        var text = """
            trust \(code)
            state \(site.state)
            watch \(site.watch)
            inbound \(site.inbound)
            listen 127.0.0.1:\(site.port)
            certificate \(cert.certificate)
            key \(cert.key)
            ca \(pki.ca)
            rules \(rules)
            retry-min 1 s
            retry-max 2 s

            """
        for (peer, port) in peers.sorted(by: { $0.key < $1.key }) { text += "peer \(peer) https://localhost:\(port)\n" }
        text += extra
        try text.write(toFile: site.config, atomically: true, encoding: .utf8)
        return site
    }
}

/// One trust's agent: its folders, configuration and (once started) process.
final class AgentSite {
    let code: String
    let base: String
    let watch: String
    let inbound: String
    let state: String
    let config: String
    let port: Int
    private(set) var program: RunningProgram?

    init(code: String, base: String, port: Int, inboundInsideWatch: Bool) {
        self.code = code
        self.base = base
        watch = base + "/export"
        inbound = inboundInsideWatch ? base + "/export/import" : base + "/import"
        state = base + "/state"
        config = base + "/agent.conf"
        self.port = port
    }

    var url: String { "https://localhost:\(port)" }

    /// Starts the agent and waits for it to say it is ready.
    @discardableResult
    func start() throws -> RunningProgram {
        let program = try Daemon.start([Run.consort, "agent", "--config", config])
        self.program = program
        return program
    }

    /// Starts the agent by another command that ends by exec'ing it (inside a mount
    /// namespace, for one), and waits for it to say it is ready.
    func start(through command: [String]) throws {
        program = try Daemon.start(command)
    }

    /// SIGTERM and a clean exit within 30 s.
    func stop() {
        Daemon.stop(program, name: "\(code)'s agent")
        program = nil
    }

    func kill() {
        program?.kill()
        program = nil
    }

    var log: String { program?.standardError ?? "" }

    /// The instances in the inbound folder, as `<Study>/<SOP>.dcm` (hidden folders left out).
    var received: [String] { TransferTests.files(under: inbound) }

    /// The agent's jobs, done ones too, as JSON objects (`consort queue list --all --json`).
    func queue() throws -> [[String: Any]] {
        let outcome = try Run.consort("queue", "list", "--all", "--config", config, "--json")
        return outcome.stdout.split(separator: "\n").compactMap { try? JSONSerialization.jsonObject(with: Data($0.utf8)) as? [String: Any] }
    }

    /// Polls until `condition` holds, up to `timeout` seconds; false (and the agents' logs in the
    /// failure) if it never does.
    static func eventually(within timeout: TimeInterval, _ what: String, logs: [AgentSite] = [], _ condition: () throws -> Bool) rethrows -> Bool {
        let deadline = Date().addingTimeInterval(timeout)
        while Date() < deadline {
            if try condition() { return true }
            Thread.sleep(forTimeInterval: 0.05)
        }
        let logText: String = logs.map { site in "--- \(site.code) ---\n\(site.log)" }.joined(separator: "\n")
        Issue.record("not within \(Int(timeout)) s: \(what)\n\(logText)")
        return false
    }
}

/// Starting and stopping a daemon (`consort agent`, `consort coordinator`) in a test.
enum Daemon {
    /// Starts it and waits (60 s at most) for its ready line.
    static func start(_ command: [String]) throws -> RunningProgram {
        let program = try RunningProgram(command)
        _ = try program.waitForOutput(matching: "ready, listening on", within: 60)
        return program
    }

    /// SIGTERM, and a clean exit within 30 s.
    static func stop(_ program: RunningProgram?, name: String) {
        guard let program else { return }
        do {
            let (status, signalled) = try program.stop(within: 30)
            #expect(status == 0 && !signalled, "\(name) ended with \(status)\n\(program.log)")
        } catch {
            Issue.record("\(name) did not stop: \(error)")
        }
    }
}
