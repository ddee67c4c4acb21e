import Foundation
import TestSupport
import Testing

/// `consort pki` (issue 13): a CA and site certificates made with OpenSSL's library, checked by
/// the openssl command line and used for real mutual TLS; a revoked site is refused once the CRL
/// is in force.
@Suite("consort pki", .serialized, .timeLimit(.minutes(3)))
struct PKITests {
    static func mode(_ path: String) -> Int {
        var info = stat()
        return stat(path, &info) == 0 ? Int(info.st_mode & 0o777) : -1
    }

    @Test func aCAAndSiteCertificatesWorkForMutualTLSAndRevocationIsHonoured() throws {
        let scratch = try ScratchFolder()
        let ca = scratch.path + "/ca", sites = scratch.path + "/sites"
        let created = try Run.consort("pki", "init-ca", ca)
        #expect(created.status == 0, "\(created.stderr)")
        #expect(try Run.consort("pki", "init-ca", ca).status == 1, "an existing CA is never overwritten")
        #expect(Self.mode(ca) == 0o700 && Self.mode(ca + "/ca.key") == 0o600 && Self.mode(ca + "/ca.pem") == 0o644)
        for site in ["RSCH", "UHSX"] {
            let issued = try Run.consort("pki", "issue", site, "--ca", ca, "--host", "localhost", "--host", "127.0.0.1", "--out", sites)
            #expect(issued.status == 0, "\(issued.stderr)")
            #expect(Self.mode("\(sites)/\(site.lowercased()).key") == 0o600)
            let verify = try Run.program("/usr/bin/openssl", ["verify", "-CAfile", ca + "/ca.pem", "\(sites)/\(site.lowercased()).pem"])
            #expect(verify.status == 0 && verify.stdout.contains("OK"), "\(verify.stdout)\(verify.stderr)")
            let text = try Run.program("/usr/bin/openssl", ["x509", "-in", "\(sites)/\(site.lowercased()).pem", "-noout", "-subject", "-ext", "subjectAltName,extendedKeyUsage,basicConstraints"])
            #expect(text.stdout.contains("CN = \(site)") && text.stdout.contains("DNS:localhost") && text.stdout.contains("IP Address:127.0.0.1")
                && text.stdout.contains("TLS Web Client Authentication") && text.stdout.contains("CA:FALSE"), "\(text.stdout)")
        }
        #expect(try Run.consort("pki", "issue", "bad name", "--ca", ca).status == 2)
        // Published by a service with UMask=0077 (Deploy/systemd/consort-crl.service), the CRL
        // is still readable by the agents it is copied to.
        let republished = try Run.program("/bin/sh", ["-c", "umask 077 && exec \"$0\" pki crl --ca \"$1\"", Run.consort, ca])
        #expect(republished.status == 0, "\(republished.stderr)")
        #expect(Self.mode(ca + "/crl.pem") == 0o644, "crl.pem is \(String(Self.mode(ca + "/crl.pem"), radix: 8))")
        #expect(try Run.consort("pki", "issue", "QVH", "--ca", scratch.path + "/no-such-ca").status == 1)

        // Real mutual TLS with them: UHSX sends a study to a receiver that is RSCH.
        func receiver(crl: String?) throws -> RunningProgram {
            let program = try RunningProgram([Run.consort, "receive", "--listen", "127.0.0.1:0", "--store", scratch.path + "/store",
                "--cert", sites + "/rsch.pem", "--key", sites + "/rsch.key", "--ca", ca + "/ca.pem"] + (crl.map { ["--crl", $0] } ?? []))
            _ = try program.waitForOutput(matching: #"listening on https://127\.0\.0\.1:\d+"#, within: 60)
            return program
        }
        func send(to program: RunningProgram, seed: Int) throws -> Int32 {
            let port = program.standardOutput.split(separator: ":").last.flatMap { Int($0.prefix { $0.isNumber }) } ?? 0
            let folder = scratch.path + "/study-\(seed)"
            _ = try AgentTests.synth(into: folder, seed: seed, instances: 2)
            return try Run.program(Run.consort, ["send", "https://localhost:\(port)", folder, "--cert", sites + "/uhsx.pem", "--key", sites + "/uhsx.key", "--ca", ca + "/ca.pem"]).status
        }
        let open = try receiver(crl: nil)
        #expect(try send(to: open, seed: 101) == 0)
        open.kill()
        // UHSX revoked: the CRL names it; a receiver honouring the CRL refuses it.
        let revoked = try Run.consort("pki", "revoke", "UHSX", "--ca", ca)
        #expect(revoked.status == 0, "\(revoked.stderr)")
        #expect(try Run.consort("pki", "revoke", "UHSX", "--ca", ca).status == 1, "nothing left to revoke")
        let check = try Run.program("/usr/bin/openssl", ["verify", "-crl_check", "-CRLfile", ca + "/crl.pem", "-CAfile", ca + "/ca.pem", sites + "/uhsx.pem"])
        #expect(check.status != 0 && (check.stdout + check.stderr).contains("revoked"), "\(check.stdout)\(check.stderr)")
        let guarded = try receiver(crl: ca + "/crl.pem")
        defer { guarded.kill() }
        #expect(try send(to: guarded, seed: 102) != 0, "a revoked site is refused")
    }
}
