import Foundation

/// A throwaway consortium CA, made at test time with the openssl command (never checked in):
/// a server certificate for UHSX (localhost), client certificates for RSCH, and a client from
/// another CA that must be refused.
public final class TestPKI {
    public let folder: String
    public var ca: String { folder + "/ca.pem" }
    public var serverCertificate: String { folder + "/uhsx.pem" }
    public var serverKey: String { folder + "/uhsx.key" }
    public var clientCertificate: String { folder + "/rsch.pem" }
    public var clientKey: String { folder + "/rsch.key" }
    public var strangerCertificate: String { folder + "/stranger.pem" }
    public var strangerKey: String { folder + "/stranger.key" }
    /// A client certificate from our CA that expired the second it was issued.
    public var expiredCertificate: String { folder + "/expired.pem" }
    public var expiredKey: String { folder + "/expired.key" }

    public init() throws {
        folder = NSTemporaryDirectory() + "consort-pki-\(UUID().uuidString)"
        try FileManager.default.createDirectory(atPath: folder, withIntermediateDirectories: true)
        try makeCA("ca", subject: "/CN=Consort Test CA")
        try makeCA("otherca", subject: "/CN=Someone Else's CA")
        try issue("uhsx", cn: "UHSX", by: "ca", san: "DNS:localhost,IP:127.0.0.1,DNS:uhsx.consort.test")
        try issue("rsch", cn: "RSCH", by: "ca", san: "DNS:rsch.consort.test")
        try issue("stranger", cn: "RSCH", by: "otherca", san: "DNS:rsch.consort.test")
        try issue("expired", cn: "RSCH", by: "ca", san: "DNS:rsch.consort.test", days: 0)
    }

    /// A CRL from our CA revoking the client certificate (RSCH's); returns its path.
    public func revokeClient() throws -> String { try revoke(clientCertificate) }

    /// A client certificate (CN=RSCH) from our CA whose validity starts in 2030; returns its
    /// certificate and key paths.
    public func notYetValidClient() throws -> (certificate: String, key: String) {
        try issueDated("future", cn: "RSCH", san: "DNS:rsch.consort.test", start: "20300101000000Z", end: "20310101000000Z")
    }

    /// A server certificate for UHSX (localhost, 127.0.0.1) from our CA that expired in 2020.
    public func expiredServer() throws -> (certificate: String, key: String) {
        try issueDated("expired-server", cn: "UHSX", san: "DNS:localhost,IP:127.0.0.1", start: "20200101000000Z", end: "20200102000000Z")
    }

    /// A server certificate for UHSX (localhost, 127.0.0.1), valid, but from someone else's CA.
    public func serverFromAnotherCA() throws -> (certificate: String, key: String) {
        try issue("stranger-server", cn: "UHSX", by: "otherca", san: "DNS:localhost,IP:127.0.0.1")
        return (folder + "/stranger-server.pem", folder + "/stranger-server.key")
    }

    /// Another valid server certificate for UHSX (localhost, 127.0.0.1) from our CA, e.g. to revoke.
    public func anotherServer(_ name: String) throws -> (certificate: String, key: String) {
        try issue(name, cn: "UHSX", by: "ca", san: "DNS:localhost,IP:127.0.0.1")
        return (folder + "/\(name).pem", folder + "/\(name).key")
    }

    /// A server certificate for UHSX (localhost, 127.0.0.1) from our CA with an RSA key (the
    /// others are ECDSA): only an RSA key can serve the ciphers of RSA key exchange, which a
    /// server must refuse to be seen refusing them.
    public func rsaServer() throws -> (certificate: String, key: String) {
        try issue("rsa-server", cn: "UHSX", by: "ca", san: "DNS:localhost,IP:127.0.0.1", key: ["rsa:2048"])
        return (folder + "/rsa-server.pem", folder + "/rsa-server.key")
    }

    /// Another certificate for a site (CN `cn`, localhost and 127.0.0.1) from our CA: a
    /// rotation's new pair.
    public func anotherClient(_ name: String, cn: String) throws -> (certificate: String, key: String) {
        try issue(name, cn: cn, by: "ca", san: "DNS:localhost,IP:127.0.0.1")
        return (folder + "/\(name).pem", folder + "/\(name).key")
    }

    /// A site's certificate (CN = its trust code) that serves as well as connects: the agents'
    /// own (localhost, 127.0.0.1), made once per code.
    public func site(_ code: String) throws -> (certificate: String, key: String) {
        let name = "site-\(code.lowercased())"
        if !FileManager.default.fileExists(atPath: folder + "/\(name).pem") {
            try issue(name, cn: code, by: "ca", san: "DNS:localhost,IP:127.0.0.1")
        }
        return (folder + "/\(name).pem", folder + "/\(name).key")
    }

    /// A CRL from our CA revoking `certificate`; returns its path.
    public func revoke(_ certificate: String) throws -> String {
        let path = folder + "/revoked-\(UUID().uuidString).pem"
        try writeCRL(to: path, revoking: [certificate])
        return path
    }

    /// A CRL from our CA revoking `certificates` (none: an empty list, as a consortium publishes
    /// every day), written to `path` whole (a temporary name, then a rename, as an operator's
    /// copy should be); its next update in 30 days, or at `nextUpdate` (YYYYMMDDHHMMSSZ, which
    /// may be in the past: an expired CRL), with `lastUpdate` before it.
    public func writeCRL(to path: String, revoking certificates: [String] = [], lastUpdate: String? = nil, nextUpdate: String? = nil) throws {
        let crl = folder + "/crl-\(UUID().uuidString)"
        try FileManager.default.createDirectory(atPath: crl, withIntermediateDirectories: true)
        try "".write(toFile: crl + "/index.txt", atomically: true, encoding: .utf8)
        try "1000\n".write(toFile: crl + "/crlnumber", atomically: true, encoding: .utf8)
        try "[ca]\ndefault_ca=d\n[d]\ndatabase=\(crl)/index.txt\ncrlnumber=\(crl)/crlnumber\ndefault_md=sha256\ndefault_crl_days=30\nprivate_key=\(folder)/ca.key\ncertificate=\(folder)/ca.pem\n"
            .write(toFile: crl + "/ca.cnf", atomically: true, encoding: .utf8)
        for certificate in certificates { try openssl(["ca", "-config", crl + "/ca.cnf", "-revoke", certificate]) }
        var dates: [String] = []
        if let lastUpdate { dates += ["-crl_lastupdate", lastUpdate] }
        if let nextUpdate { dates += ["-crl_nextupdate", nextUpdate] }
        try openssl(["ca", "-config", crl + "/ca.cnf", "-gencrl", "-out", crl + "/crl.pem"] + dates)
        guard rename(crl + "/crl.pem", path) == 0 else { throw CocoaError(.fileWriteUnknown, userInfo: [NSLocalizedDescriptionKey: "cannot move the CRL to \(path)"]) }
    }

    /// A certificate from our CA with the validity given (`openssl x509` on OpenSSL 3.0 cannot
    /// set a start date; `openssl ca -startdate` can); returns its certificate and key paths.
    private func issueDated(_ name: String, cn: String, san: String, start: String, end: String) throws -> (certificate: String, key: String) {
        let dir = folder + "/" + name
        try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
        try openssl(["req", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes", "-keyout", dir + "/cert.key",
            "-out", dir + "/cert.csr", "-subj", "/CN=\(cn)"])
        try Data().write(to: URL(fileURLWithPath: dir + "/index.txt"))
        try Data("[ca]\ndefault_ca=d\n[d]\ndatabase=\(dir)/index.txt\nnew_certs_dir=\(dir)\nserial=\(dir)/serial\ndefault_md=sha256\npolicy=p\nx509_extensions=e\n[p]\ncommonName=supplied\n[e]\nsubjectAltName=\(san)\nextendedKeyUsage=serverAuth,clientAuth\n".utf8)
            .write(to: URL(fileURLWithPath: dir + "/ca.cnf"))
        try Data("2000\n".utf8).write(to: URL(fileURLWithPath: dir + "/serial"))
        try openssl(["ca", "-batch", "-notext", "-config", dir + "/ca.cnf", "-keyfile", folder + "/ca.key", "-cert", ca,
            "-startdate", start, "-enddate", end, "-in", dir + "/cert.csr", "-out", dir + "/cert.pem"])
        return (dir + "/cert.pem", dir + "/cert.key")
    }

    deinit { try? FileManager.default.removeItem(atPath: folder) }

    private func openssl(_ arguments: [String]) throws {
        let outcome = try runProgram("/usr/bin/openssl", arguments, timeout: 60)
        guard outcome.status == 0 else { throw CocoaError(.fileWriteUnknown, userInfo: [NSLocalizedDescriptionKey: outcome.stderr]) }
    }

    private func makeCA(_ name: String, subject: String) throws {
        try openssl(["req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes", "-keyout", "\(folder)/\(name).key",
            "-out", "\(folder)/\(name).pem", "-days", "3650", "-subj", subject, "-addext", "basicConstraints=critical,CA:TRUE",
            "-addext", "keyUsage=critical,keyCertSign,cRLSign"])
    }

    /// Valid a year by default: `consort status` flags material within 14 days of expiring.
    private func issue(_ name: String, cn: String, by ca: String, san: String, days: Int = 365, key: [String] = ["ec", "-pkeyopt", "ec_paramgen_curve:P-256"]) throws {
        try openssl(["req", "-newkey"] + key + ["-nodes", "-keyout", "\(folder)/\(name).key",
            "-out", "\(folder)/\(name).csr", "-subj", "/CN=\(cn)"])
        let extensions = "\(folder)/\(name).ext"
        try "subjectAltName=\(san)\nextendedKeyUsage=serverAuth,clientAuth\n".write(toFile: extensions, atomically: true, encoding: .utf8)
        try openssl(["x509", "-req", "-in", "\(folder)/\(name).csr", "-CA", "\(folder)/\(ca).pem", "-CAkey", "\(folder)/\(ca).key",
            "-CAcreateserial", "-out", "\(folder)/\(name).pem", "-days", String(days), "-extfile", extensions])
    }
}

