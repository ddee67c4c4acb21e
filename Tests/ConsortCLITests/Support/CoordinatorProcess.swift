import Foundation
import TestSupport
import Testing

/// The coordinator of a test consortium: its configuration (a throwaway certificate from the
/// consortium's CA, a SQLite registry in the scratch folder) and, once started, its process.
final class CoordinatorSite {
    let base: String
    let config: String
    let registry: String
    let audit: String
    let port: Int
    private(set) var program: RunningProgram?

    /// `registryLine`: the registry setting (default: a SQLite file in its folder).
    init(_ consortium: TestConsortium, name: String = "coordinator", registryLine: String? = nil, extra: String = "") throws {
        base = consortium.root.path + "/" + name
        try FileManager.default.createDirectory(atPath: base, withIntermediateDirectories: true)
        port = try OrthancInteropTests.freePort()
        registry = base + "/registry.sqlite"
        audit = base + "/coordinator-audit.log"
        config = base + "/coordinator.conf"
        let cert = try consortium.pki.site("COORDINATOR")
        try """
            listen 127.0.0.1:\(port)
            certificate \(cert.certificate)
            key \(cert.key)
            ca \(consortium.pki.ca)
            \(registryLine ?? "registry \(registry)")
            rules \(consortium.rules)
            audit \(audit)
            \(extra)
            """.write(toFile: config, atomically: true, encoding: .utf8)
    }

    var url: String { "https://localhost:\(port)" }
    /// The line an agent's configuration needs to find it.
    var agentLine: String { "coordinator \(url)\n" }

    @discardableResult
    func start() throws -> RunningProgram {
        let program = try Daemon.start([Run.consort, "coordinator", "--config", config])
        self.program = program
        return program
    }

    func stop() {
        Daemon.stop(program, name: "the coordinator")
        program = nil
    }

    /// SIGKILL: the coordinator lost, not stopped.
    func kill() {
        program?.kill()
        program = nil
    }

    var log: String { program?.standardError ?? "" }

    /// A request to the API as `cert`'s trust (curl, mutual TLS): its status and body. A JSON
    /// `body` makes it a POST. `purpose`: sent as X-Consort-Purpose (nil: none).
    func call(_ path: String, as cert: (certificate: String, key: String), ca: String, body: String? = nil, purpose: String? = "direct-care") throws -> (status: Int, body: String) {
        var arguments = ["-s", "--max-time", "20", "--cert", cert.certificate, "--key", cert.key, "--cacert", ca, "-w", "\n%{http_code}"]
        if let purpose { arguments += ["-H", "X-Consort-Purpose: \(purpose)"] }
        if let body { arguments += ["-H", "Content-Type: application/json", "-d", body] }
        let outcome = try Run.program("/usr/bin/curl", arguments + [url + path])
        let lines = outcome.stdout.split(separator: "\n", omittingEmptySubsequences: false)
        return (Int(lines.last ?? "") ?? 0, lines.dropLast().joined(separator: "\n"))
    }
}

extension AgentSite {
    /// What the coordinator says of a patient (`consort locate --json`), with this site's certificate.
    func locate(_ nhs: String) throws -> (status: Int32, answer: [String: Any], stdout: String) {
        let outcome = try Run.consort("locate", "--nhs", nhs, "--config", config, "--json")
        let answer = (try? JSONSerialization.jsonObject(with: Data(outcome.stdout.utf8)) as? [String: Any]) ?? [:]
        return (outcome.status, answer, outcome.stdout + outcome.stderr)
    }

    /// The studies under the inbound folder (their UIDs).
    var receivedStudies: Set<String> { Set(received.map { String($0.split(separator: "/")[0]) }) }
}
