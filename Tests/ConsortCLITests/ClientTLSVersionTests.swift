import Foundation
import TestSupport
import Testing

/// Our HTTPS client speaks TLS 1.2 or later, by its own setting and not by the system's policy:
/// under an OpenSSL configuration that allows TLS 1.0 (as some hospital hosts have, for old
/// modalities), `consort find` still refuses a server that offers only TLS 1.0 or 1.1, while
/// curl under the same configuration talks to it — so the refusal is ours.
@Suite("HTTPS client: TLS 1.2 at least", .serialized, .timeLimit(.minutes(3)))
struct ClientTLSVersionTests {
    static let permissiveOpenSSL = """
        openssl_conf = openssl_init
        [openssl_init]
        ssl_conf = ssl_sect
        [ssl_sect]
        system_default = system_default_sect
        [system_default_sect]
        MinProtocol = TLSv1
        CipherString = DEFAULT:@SECLEVEL=0
        """

    @Test(arguments: [("-tls1", true), ("-tls1_1", true), ("-tls1_2", false)])
    func aServerBelowTLS12IsRefused(_ version: String, _ refused: Bool) throws {
        let pki = try TestPKI()
        let folder = try ScratchFolder()
        let conf = folder.path + "/openssl.cnf"
        try Self.permissiveOpenSSL.write(toFile: conf, atomically: true, encoding: .utf8)
        let environment = ["OPENSSL_CONF": conf]
        let port = try OrthancInteropTests.freePort()
        let server = try RunningProgram(
            [try Run.require("openssl", package: "openssl"), "s_server", "-accept", "127.0.0.1:\(port)", "-cert", pki.serverCertificate,
             "-key", pki.serverKey, version, "-cipher", "DEFAULT:@SECLEVEL=0", "-www"],
            environment: environment)
        defer { server.kill() }
        _ = try server.waitForOutput(matching: "ACCEPT", within: 30)
        // The control: under this configuration the server really speaks that version.
        let curl = try RunningProgram(
            ["/usr/bin/curl", "-s", "--max-time", "10", "-o", "/dev/null", "-w", "%{http_code}", "--tlsv1", "--cacert", pki.ca, "https://localhost:\(port)/"],
            environment: environment)
        try curl.waitForExit(within: 30)
        #expect(curl.standardOutput == "200", "curl could not reach the \(version) server: \(curl.log)")
        let find = try RunningProgram(
            [Run.consort, "find", "https://localhost:\(port)", "--cert", pki.clientCertificate, "--key", pki.clientKey, "--ca", pki.ca],
            environment: environment)
        let (status, _) = try find.waitForExit(within: 60)
        #expect(status == 1)
        if refused {
            #expect(find.standardError.contains("(curl 35)"), "consort spoke \(version): \(find.log)")
        } else {
            // TLS 1.2 is spoken; what comes back is s_server's status page, not a QIDO-RS answer.
            #expect(!find.standardError.contains("(curl 35)"), "\(find.log)")
        }
    }
}
