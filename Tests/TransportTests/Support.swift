import Foundation
import TestSupport
import Testing

/// A throwaway consortium CA, made at test time with the openssl command (never checked in):
/// a server certificate for UHSX (localhost), client certificates for RSCH, and a client from
/// another CA that must be refused.
final class TestPKI {
    let folder: String
    var ca: String { folder + "/ca.pem" }
    var serverCertificate: String { folder + "/uhsx.pem" }
    var serverKey: String { folder + "/uhsx.key" }
    var clientCertificate: String { folder + "/rsch.pem" }
    var clientKey: String { folder + "/rsch.key" }
    var strangerCertificate: String { folder + "/stranger.pem" }
    var strangerKey: String { folder + "/stranger.key" }

    init() throws {
        folder = NSTemporaryDirectory() + "consort-pki-\(UUID().uuidString)"
        try FileManager.default.createDirectory(atPath: folder, withIntermediateDirectories: true)
        try makeCA("ca", subject: "/CN=Consort Test CA")
        try makeCA("otherca", subject: "/CN=Someone Else's CA")
        try issue("uhsx", cn: "UHSX", by: "ca", san: "DNS:localhost,IP:127.0.0.1,DNS:uhsx.consort.test")
        try issue("rsch", cn: "RSCH", by: "ca", san: "DNS:rsch.consort.test")
        try issue("stranger", cn: "RSCH", by: "otherca", san: "DNS:rsch.consort.test")
    }

    deinit { try? FileManager.default.removeItem(atPath: folder) }

    private func openssl(_ arguments: [String]) throws {
        let outcome = try run("/usr/bin/openssl", arguments)
        guard outcome.status == 0 else { throw CocoaError(.fileWriteUnknown, userInfo: [NSLocalizedDescriptionKey: outcome.stderr]) }
    }

    private func makeCA(_ name: String, subject: String) throws {
        try openssl(["req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes", "-keyout", "\(folder)/\(name).key",
            "-out", "\(folder)/\(name).pem", "-days", "2", "-subj", subject, "-addext", "basicConstraints=critical,CA:TRUE",
            "-addext", "keyUsage=critical,keyCertSign,cRLSign"])
    }

    private func issue(_ name: String, cn: String, by ca: String, san: String) throws {
        try openssl(["req", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes", "-keyout", "\(folder)/\(name).key",
            "-out", "\(folder)/\(name).csr", "-subj", "/CN=\(cn)"])
        let extensions = "\(folder)/\(name).ext"
        try "subjectAltName=\(san)\nextendedKeyUsage=serverAuth,clientAuth\n".write(toFile: extensions, atomically: true, encoding: .utf8)
        try openssl(["x509", "-req", "-in", "\(folder)/\(name).csr", "-CA", "\(folder)/\(ca).pem", "-CAkey", "\(folder)/\(ca).key",
            "-CAcreateserial", "-out", "\(folder)/\(name).pem", "-days", "1", "-extfile", extensions])
    }
}

typealias Outcome = ProgramOutcome

func run(_ path: String, _ arguments: [String]) throws -> Outcome {
    let outcome = try runProgram(path, arguments, timeout: 60)
    if outcome.timedOut { Issue.record("\(path) \(arguments) did not finish within 60 s") }
    return outcome
}

/// curl, the real third-party client, with our PKI's client certificate unless told otherwise.
func curl(_ arguments: [String]) throws -> Outcome {
    try run("/usr/bin/curl", ["--silent", "--show-error", "--max-time", "20"] + arguments)
}

/// Log lines a server wrote, collected for assertions.
final class LogLines: @unchecked Sendable {
    private let lock = NSLock()
    private var lines: [String] = []
    func append(_ line: String) { lock.withLock { lines.append(line) } }
    var all: [String] { lock.withLock { lines } }
    func contains(_ fragment: String) -> Bool { all.contains { $0.contains(fragment) } }
}
