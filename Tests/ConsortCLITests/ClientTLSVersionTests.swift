import Foundation
import TestSupport
import Testing

/// Our HTTPS client and server speak TLS 1.2 or later, by their own setting and not by the
/// system's policy: under an OpenSSL configuration that allows TLS 1.0 (as some hospital hosts
/// have, for old modalities), `consort find` still refuses a server that offers only TLS 1.0 or
/// 1.1, and `consort receive` a client that does, while curl and `openssl s_server` under the same
/// configuration speak them — so the refusal is ours. (In the test process itself the system's
/// default policy would refuse first, and hide a weakened setting.)
@Suite("TLS 1.2 at least, client and server", .serialized, .timeLimit(.minutes(3)))
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

    @Test func theReceiverRefusesClientsBelowTLS12() throws {
        let pki = try TestPKI()
        let folder = try ScratchFolder()
        let conf = folder.path + "/openssl.cnf"
        try Self.permissiveOpenSSL.write(toFile: conf, atomically: true, encoding: .utf8)
        let receiver = try ReceiverProcess(store: folder.path + "/inbox", pki: pki, environment: ["OPENSSL_CONF": conf])
        defer { _ = receiver.stop() }
        func curl(maximum: String) throws -> RunningProgram {
            let program = try RunningProgram(
                ["/usr/bin/curl", "-s", "--max-time", "20", "-o", "/dev/null", "-w", "%{http_code}", "--tlsv1", "--tls-max", maximum,
                 "--cacert", pki.ca, "--cert", pki.clientCertificate, "--key", pki.clientKey, receiver.url + "/studies"],
                environment: ["OPENSSL_CONF": conf])
            try program.waitForExit(within: 30)
            return program
        }
        for old in ["1.0", "1.1"] {
            let refused = try curl(maximum: old)
            #expect(refused.process.terminationStatus == 35, "TLS \(old) was served: \(refused.log)")
        }
        let served = try curl(maximum: "1.2")
        #expect(served.standardOutput == "200", "\(served.log)")
    }
}
