import CommandSupport
import Foundation
import PKI

/// `consort pki`: the consortium's certificate authority and its sites' certificates, without
/// memorising openssl flags.
enum PKICommand {
    static let help = """
        Usage: consort pki init-ca DIR [--name NAME] [--days N]
               consort pki issue NAME --ca DIR [--host HOST]... [--out DIR] [--days N]
               consort pki revoke NAME --ca DIR
               consort pki crl --ca DIR

        init-ca   Creates the consortium's CA in DIR (mode 0700): ca.pem, ca.key (0600), an empty
                  crl.pem. Refuses to overwrite one. Default name "Consort consortium CA", 10 years.
        issue     A certificate for a trust (NAME is its code: the agents take a site's identity
                  from its certificate's Common Name) or the coordinator, valid for TLS server
                  and client use, with a Subject Alternative Name for each --host (a DNS name, or
                  an IP address); NAME.pem and NAME.key (0600, lower-case name) in --out
                  (default: the CA's folder). Default 825 days. EC P-256 keys.
        revoke    Revokes every certificate issued to NAME and writes crl.pem again: give it to
                  each agent and the coordinator (crl FILE in their configurations) and reload
                  them (systemctl reload, or SIGHUP): from then on every new handshake refuses
                  the revoked certificate, and connections kept alive are closed; no restart.
        crl       Writes crl.pem again. It is valid for 30 days, and past its next update every
                  handshake is refused: publish it daily (Deploy/systemd/consort-crl.timer).
                  `consort status` exits 1 from 14 days before it runs out.

        Made with OpenSSL's library; every file written under a temporary name and renamed.
        """

    static func run(_ args: [String]) throws -> ExitCode {
        let arguments = try Arguments(args, command: "pki", flags: [], options: ["--name", "--days", "--ca", "--host", "--out"])
        guard let sub = arguments.positional.first else { throw UsageError(message: "say init-ca, issue, revoke or crl", command: "pki") }
        do {
            switch sub {
            case "init-ca":
                guard arguments.positional.count == 2 else { throw UsageError(message: "give the CA's folder: consort pki init-ca DIR", command: "pki") }
                let days = try arguments.integer("--days", default: 3650, range: 1...36_500)
                let ca = try CertificateAuthority.create(in: arguments.positional[1], name: arguments.option("--name") ?? "Consort consortium CA", days: days)
                standardOutput.line("consort pki: CA created in \(ca.folder): \(ca.certificatePath) (give it to every site as ca), \(ca.keyPath) (keep it offline), \(ca.crlPath)")
            case "issue":
                guard arguments.positional.count == 2, let folder = arguments.option("--ca") else {
                    throw UsageError(message: "consort pki issue NAME --ca DIR [--host HOST]...", command: "pki")
                }
                let name = arguments.positional[1]
                guard !name.isEmpty, name.allSatisfy({ $0.isLetter || $0.isNumber || $0 == "-" || $0 == "_" }) else {
                    throw UsageError(message: "\"\(name)\" is not a site name (letters, digits, - and _)", command: "pki")
                }
                let days = try arguments.integer("--days", default: 825, range: 1...3650)
                let issued = try CertificateAuthority(folder: folder).issue(name, hosts: arguments.values("--host"), days: days, into: arguments.option("--out") ?? folder)
                standardOutput.line("consort pki: \(name): \(issued.certificate) and \(issued.key) (mode 0600)")
            case "revoke":
                guard arguments.positional.count == 2, let folder = arguments.option("--ca") else { throw UsageError(message: "consort pki revoke NAME --ca DIR", command: "pki") }
                let ca = CertificateAuthority(folder: folder)
                let serials = try ca.revoke(arguments.positional[1])
                standardOutput.line("consort pki: revoked \(arguments.positional[1]) (serial \(serials.joined(separator: ", "))); \(ca.crlPath) written: give it to every agent and reload them")
            case "crl":
                guard let folder = arguments.option("--ca") else { throw UsageError(message: "consort pki crl --ca DIR", command: "pki") }
                let ca = CertificateAuthority(folder: folder)
                try ca.writeCRL()
                standardOutput.line("consort pki: \(ca.crlPath) written (valid 30 days)")
            default:
                throw UsageError(message: "unknown pki command \"\(sub)\" (init-ca, issue, revoke, crl)", command: "pki")
            }
        } catch let error as PKIError {
            standardError.line("consort pki: \(error)")
            return .someFailed
        }
        return .success
    }
}
