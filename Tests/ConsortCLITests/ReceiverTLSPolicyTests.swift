import Foundation
import TestSupport
import Testing

/// The receiver's TLS policy, tested from the outside (issue 23): clients that offer only what it
/// must refuse are refused at the handshake, for that reason — TLS 1.0 and 1.1 for their version,
/// TLS 1.2 with only CBC or only non-forward-secret (RSA key exchange) ciphers for their ciphers, no
/// client certificate, a certificate from another CA — while good TLS 1.2 (ECDHE with AES-GCM or
/// ChaCha20) and TLS 1.3 clients are served, so the refusals cannot come from refusing everything.
///
/// Real `consort receive` processes, under an OpenSSL configuration that allows everything (TLS
/// 1.0, security level 0): what refuses is the receiver's own settings, not the host's policy,
/// which would otherwise hide a weakened setting (as ClientTLSVersionTests explains). Two
/// receivers: one with the usual ECDSA certificate, one with an RSA certificate, as only an RSA
/// key can serve RSA key exchange at all. The client is Tests/Support/tls-probe.py (why Python's
/// ssl module and not `openssl s_client`: its header says).
@Suite("The receiver's TLS policy", .serialized, .timeLimit(.minutes(3)))
struct ReceiverTLSPolicyTests {
    enum Certificate { case ours, none, anotherCA }

    /// One client: what it offers, and what must become of it.
    struct Client: CustomStringConvertible {
        var name: String
        var rsaServer = false
        var certificate = Certificate.ours
        var version: String
        var ciphers: String?
        /// nil: served, over `version`; else refused, with this alert at the client and these
        /// words in the receiver's log.
        var refusal: (alert: String, log: String)?
        var description: String { name }
    }

    /// Old versions need their ciphers allowed on the client's side to be offered at all.
    static let anyOldCipher = "DEFAULT:@SECLEVEL=0"

    /// Every client tried, against one pair of receivers.
    static let clients: [Client] = [
        // The protocol floor: refused for the version (protocol_version), not for want of a
        // cipher (the AEAD-only list would refuse them too, with handshake_failure).
        Client(name: "TLS 1.0 only", version: "1.0", ciphers: anyOldCipher, refusal: ("TLSV1_ALERT_PROTOCOL_VERSION", "unsupported protocol")),
        Client(name: "TLS 1.1 only", version: "1.1", ciphers: anyOldCipher, refusal: ("TLSV1_ALERT_PROTOCOL_VERSION", "unsupported protocol")),
        // The TLS 1.2 cipher list: forward-secret AEAD only.
        Client(
            name: "TLS 1.2, CBC ciphers only (ECDSA)", version: "1.2",
            ciphers: "ECDHE-ECDSA-AES128-SHA256:ECDHE-ECDSA-AES256-SHA384:ECDHE-ECDSA-AES128-SHA:ECDHE-ECDSA-AES256-SHA",
            refusal: ("SSLV3_ALERT_HANDSHAKE_FAILURE", "no shared cipher")),
        Client(
            name: "TLS 1.2, CBC ciphers only (RSA)", rsaServer: true, version: "1.2",
            ciphers: "ECDHE-RSA-AES128-SHA256:ECDHE-RSA-AES256-SHA384:ECDHE-RSA-AES128-SHA:ECDHE-RSA-AES256-SHA:AES128-SHA256:AES128-SHA",
            refusal: ("SSLV3_ALERT_HANDSHAKE_FAILURE", "no shared cipher")),
        Client(
            name: "TLS 1.2, RSA key exchange only (not forward-secret)", rsaServer: true, version: "1.2",
            ciphers: "AES128-GCM-SHA256:AES256-GCM-SHA384", refusal: ("SSLV3_ALERT_HANDSHAKE_FAILURE", "no shared cipher")),
        // Mutual TLS with the consortium CA only.
        Client(
            name: "TLS 1.2, no client certificate", certificate: .none, version: "1.2",
            refusal: ("SSLV3_ALERT_HANDSHAKE_FAILURE", "peer did not return a certificate")),
        Client(
            name: "TLS 1.3, no client certificate", certificate: .none, version: "1.3",
            refusal: ("TLSV13_ALERT_CERTIFICATE_REQUIRED", "peer did not return a certificate")),
        Client(
            name: "TLS 1.2, a certificate from another CA", certificate: .anotherCA, version: "1.2",
            refusal: ("TLSV1_ALERT_UNKNOWN_CA", "certificate verify failed")),
        Client(
            name: "TLS 1.3, a certificate from another CA", certificate: .anotherCA, version: "1.3",
            refusal: ("TLSV1_ALERT_UNKNOWN_CA", "certificate verify failed")),
        // The controls: what must be served is.
        Client(name: "TLS 1.2, ECDHE-ECDSA-AES128-GCM-SHA256", version: "1.2", ciphers: "ECDHE-ECDSA-AES128-GCM-SHA256"),
        Client(name: "TLS 1.2, ECDHE-ECDSA-CHACHA20-POLY1305", version: "1.2", ciphers: "ECDHE-ECDSA-CHACHA20-POLY1305"),
        Client(name: "TLS 1.2, ECDHE-RSA-AES256-GCM-SHA384", rsaServer: true, version: "1.2", ciphers: "ECDHE-RSA-AES256-GCM-SHA384"),
        Client(name: "TLS 1.3", version: "1.3"),
        Client(name: "TLS 1.3 (RSA)", rsaServer: true, version: "1.3"),
    ]

    /// The answer of tls-probe.py.
    struct Probe: Decodable {
        let accepted: Bool
        let version: String?
        let cipher: String?
        let status: String?
        let reason: String?
        let error: String?
    }

    /// Whether the receiver logs a refused handshake saying `words`, after the `seen` it had
    /// logged before, within 10 s: it does so on its own thread once the client has the alert.
    static func logs(_ receiver: ReceiverProcess, _ words: String, after seen: Int) -> Bool {
        let deadline = Date().addingTimeInterval(10)
        while true {
            let handshakes = receiver.program.standardError.components(separatedBy: "TLS handshake with")
            if handshakes.count > seen && handshakes[seen...].contains(where: { $0.contains(words) }) { return true }
            if Date() > deadline { return false }
            Thread.sleep(forTimeInterval: 0.02)
        }
    }

    @Test func eachClientIsRefusedForWhatItOffersOrServed() throws {
        let python = try Run.require("python3", package: "python3")
        let probe = Run.packageRoot + "/Tests/Support/tls-probe.py"
        let pki = try TestPKI()
        let folder = try ScratchFolder()
        let conf = folder.path + "/openssl.cnf"
        try ClientTLSVersionTests.permissiveOpenSSL.write(toFile: conf, atomically: true, encoding: .utf8)
        let environment = ["OPENSSL_CONF": conf]
        let ecdsa = try ReceiverProcess(store: folder.path + "/ecdsa", pki: pki, environment: environment)
        defer { _ = ecdsa.stop() }
        let rsa = try ReceiverProcess(store: folder.path + "/rsa", pki: pki, identity: try pki.rsaServer(), environment: environment)
        defer { _ = rsa.stop() }
        for client in Self.clients {
            let receiver = client.rsaServer ? rsa : ecdsa
            var arguments = [probe, "--port", String(receiver.port), "--ca", pki.ca, "--version", client.version]
            switch client.certificate {
            case .ours: arguments += ["--cert", pki.clientCertificate, "--key", pki.clientKey]
            case .anotherCA: arguments += ["--cert", pki.strangerCertificate, "--key", pki.strangerKey]
            case .none: break
            }
            if let ciphers = client.ciphers { arguments += ["--ciphers", ciphers] }
            let logged = receiver.program.standardError.components(separatedBy: "TLS handshake with").count
            let run = try RunningProgram([python] + arguments, environment: environment)
            try run.waitForExit(within: 60)
            let answer = try JSONDecoder().decode(Probe.self, from: Data(run.standardOutput.utf8))
            if let refusal = client.refusal {
                #expect(!answer.accepted, "\(client): served over \(answer.version ?? "?") with \(answer.cipher ?? "?")")
                guard !answer.accepted else { continue }
                #expect(answer.reason == refusal.alert, "\(client): refused for another reason: \(answer.error ?? run.log)")
                #expect(Self.logs(receiver, refusal.log, after: logged), "\(client): the receiver did not say \"\(refusal.log)\": \(receiver.program.standardError)")
            } else {
                #expect(answer.accepted, "\(client) was refused: \(answer.error ?? run.log)")
                #expect(answer.status == "HTTP/1.1 200 OK", "\(client): \(answer.status ?? "no answer")")
                #expect(answer.version == (client.version == "1.3" ? "TLSv1.3" : "TLSv1.2"), "\(client): \(answer.version ?? "?")")
            }
        }
    }
}
