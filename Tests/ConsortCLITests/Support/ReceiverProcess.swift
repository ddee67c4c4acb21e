import Foundation
import TestSupport
import Testing

/// A running `consort receive` (the binary) on a free loopback port, with mutual TLS when given a
/// PKI. Its output is collected as it runs (`RunningProgram`); every wait on it has a deadline.
final class ReceiverProcess {
    let program: RunningProgram
    let port: Int
    let store: String
    let tls: Bool

    /// `launcher`: a command the receiver runs under (its arguments follow), with `environment`
    /// added to the inherited one; e.g. a shell that mounts a small filesystem first. `identity`:
    /// a certificate and key of the PKI's to serve with, instead of its server certificate.
    init(
        store: String, pki: TestPKI? = nil, identity: (certificate: String, key: String)? = nil, launcher: [String] = [],
        environment: [String: String] = [:]
    ) throws {
        self.store = store
        tls = pki != nil
        let command = [Run.consort, "receive", "--listen", "127.0.0.1:0", "--store", store]
            + (pki.map { ["--cert", identity?.certificate ?? $0.serverCertificate, "--key", identity?.key ?? $0.serverKey, "--ca", $0.ca] } ?? [])
        program = try RunningProgram(launcher + command, environment: environment)
        // The first line says where it listens (port 0: the kernel chose).
        let listening = try program.waitForOutput(matching: #"listening on https?://127\.0\.0\.1:\d+"#, within: 60)
        guard let port = Int(listening.split(separator: ":").last!) else {
            throw ChildWaitError(description: "receive did not say its port: \(listening)")
        }
        self.port = port
    }

    var url: String { tls ? "https://localhost:\(port)" : "http://127.0.0.1:\(port)" }
    var process: Process { program.process }

    /// SIGTERM, then the exit status and everything it logged. A receiver that does not exit
    /// within 20 s is killed and the test fails, quoting its log.
    func stop() -> (status: Int32, log: String) {
        do {
            let (status, _) = try program.stop(within: 20)
            return (status, program.standardError)
        } catch {
            Issue.record("consort receive did not stop on SIGTERM: \(error)")
            return (-1, program.standardError)
        }
    }
}
