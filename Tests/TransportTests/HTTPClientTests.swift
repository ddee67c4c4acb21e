import Foundation
import HTTP
import TestSupport
import Testing

@testable import Transport

/// Our client against our server, both with real TLS: the two halves of a consortium link.
@Suite("HTTPS client", .serialized, .timeLimit(.minutes(3)))
struct HTTPClientTests {
    static func tls(_ pki: TestPKI, stranger: Bool = false) -> TLSConfiguration {
        stranger
            ? TLSConfiguration(certificateChain: pki.strangerCertificate, privateKey: pki.strangerKey, trustedCA: pki.ca)
            : TLSConfiguration(certificateChain: pki.clientCertificate, privateKey: pki.clientKey, trustedCA: pki.ca)
    }

    func server(_ pki: TestPKI, handler: @escaping RequestHandler = HTTPServerTests.echo) throws -> HTTPServer {
        var configuration = ServerConfiguration()
        configuration.tls = try TLSContext(
            TLSConfiguration(certificateChain: pki.serverCertificate, privateKey: pki.serverKey, trustedCA: pki.ca), role: .server)
        let server = HTTPServer(configuration, handler: handler)
        try server.start()
        return server
    }

    @Test("bodies stream up, with and without a length", arguments: [true, false])
    func uploadStreams(_ withLength: Bool) throws {
        let pki = try TestPKI()
        let server = try server(pki)
        defer { server.stop() }
        let client = try HTTPClient(.init(tls: Self.tls(pki)))
        let total = 5_000_000
        var sent = 0
        var calls = 0
        let expected = HTTPServerTests.checksum((0..<total).map { UInt8(truncatingIfNeeded: $0 % 251) })
        var response = [UInt8]()
        let result = try client.send(
            method: "POST", url: "https://localhost:\(server.port)/studies", headers: [("Content-Type", "application/octet-stream")],
            body: { buffer in
                calls += 1
                let n = min(buffer.count, total - sent)
                for i in 0..<n { buffer[i] = UInt8(truncatingIfNeeded: (sent + i) % 251) }
                sent += n
                return n
            }, bodyLength: withLength ? total : nil,
            sink: { response += $0 })
        #expect(result.status == 200)
        #expect(result.value("content-type") == "text/plain; charset=utf-8")
        #expect(String(decoding: response, as: UTF8.self) == "peer=RSCH POST /studies bytes=\(total) sum=\(expected)\n")
        #expect(calls > 10)  // streamed in pieces, never whole
    }

    @Test func connectionsAreReusedBetweenRequests() throws {
        let pki = try TestPKI()
        let remotes = LogLines()
        let server = try server(pki) { request, _ in
            remotes.append(request.remoteAddress)
            return .text(200, "ok")
        }
        defer { server.stop() }
        let client = try HTTPClient(.init(tls: Self.tls(pki)))
        for _ in 0..<3 { #expect(try client.send(method: "GET", url: "https://localhost:\(server.port)/").status == 200) }
        #expect(Set(remotes.all).count == 1, "\(remotes.all)")
    }

    @Test func aClientFromAnotherCAIsRefused() throws {
        let pki = try TestPKI()
        let server = try server(pki)
        defer { server.stop() }
        let client = try HTTPClient(.init(tls: Self.tls(pki, stranger: true)))
        let error = try #require(throws: HTTPClientError.self) { try client.send(method: "GET", url: "https://localhost:\(server.port)/") }
        // TLS 1.3 reports the rejected certificate after the handshake: a receive error, not 35.
        #expect([35, 55, 56].contains(error.code), "\(error)")
        #expect(error.description.contains("localhost:\(server.port)"))
    }

    /// A server the client must not trust, for each reason it must not: each case fails the
    /// handshake, and the same client reaches the consortium's real server (so a refusal is the
    /// certificate's doing, not a broken setup). A client that trusted any server would send
    /// patient data to whoever answers; with peer or host verification turned off, or the CRL
    /// ignored, one of these cases passes and the test fails.
    enum Untrusted: String, CaseIterable, Sendable {
        case anotherCA = "a certificate from another CA"
        case expired = "an expired certificate"
        case revoked = "a revoked certificate (CRL given to the client)"
        case wrongName = "a certificate for another name (rsch.consort.test, reached as localhost)"
    }

    @Test("the client refuses a server with", arguments: Untrusted.allCases)
    func theClientRefusesAnUntrustedServer(_ flaw: Untrusted) throws {
        let pki = try TestPKI()
        var clientTLS = Self.tls(pki)
        let served: (certificate: String, key: String)
        switch flaw {
        case .anotherCA: served = try pki.serverFromAnotherCA()
        case .expired: served = try pki.expiredServer()
        case .revoked:
            served = try pki.anotherServer("revoked-server")
            clientTLS.revocationList = try pki.revoke(served.certificate)
        case .wrongName: served = (pki.clientCertificate, pki.clientKey)  // SAN DNS:rsch.consort.test only
        }
        var configuration = ServerConfiguration()
        configuration.tls = try TLSContext(TLSConfiguration(certificateChain: served.certificate, privateKey: served.key, trustedCA: pki.ca), role: .server)
        let untrusted = HTTPServer(configuration, handler: HTTPServerTests.echo)
        try untrusted.start()
        defer { untrusted.stop() }
        let client = try HTTPClient(.init(tls: clientTLS))
        let error = try #require(throws: HTTPClientError.self, "\(flaw.rawValue) was trusted") {
            try client.send(method: "GET", url: "https://localhost:\(untrusted.port)/")
        }
        // 60: the peer's certificate failed verification (35 for a handshake that failed otherwise).
        #expect(error.code == 60 || error.code == 35, "\(flaw.rawValue): \(error)")
        #expect(error.description.contains("localhost:\(untrusted.port)"))
        // The control: the same client, the consortium's own server, valid and by the right name.
        let good = try server(pki)
        defer { good.stop() }
        #expect(try client.send(method: "GET", url: "https://localhost:\(good.port)/").status == 200)
    }

    @Test func aPeerThatIsDownIsTransient() throws {
        let client = try HTTPClient()
        let error = try #require(throws: HTTPClientError.self) { try client.send(method: "GET", url: "http://127.0.0.1:1/") }
        #expect(error.code == 7)
    }

    @Test func aStalledPeerTimesOut() throws {
        let pki = try TestPKI()
        let server = try server(pki) { _, _ in
            Thread.sleep(forTimeInterval: 4)
            return .text(200, "late")
        }
        defer { server.stop(deadline: 5) }
        var options = HTTPClient.Options(tls: Self.tls(pki))
        options.lowSpeedSeconds = 1
        options.lowSpeedBytes = 1
        let client = try HTTPClient(options)
        let error = try #require(throws: HTTPClientError.self) { try client.send(method: "GET", url: "https://localhost:\(server.port)/") }
        #expect(error.code == 28, "\(error)")
    }

    @Test func aPeerThatHangsUpMidAnswerIsAnErrorWorthRetrying() throws {
        let pki = try TestPKI()
        // Announces 1 MB, sends 256 KB, then the connection drops.
        let server = try server(pki) { _, _ in
            var sent = 0
            return ServerResponse(status: 200, headers: [], length: 1 << 20) { buffer in
                if sent >= 256 * 1024 { struct Gone: Error {}; throw Gone() }
                let n = min(buffer.count, 256 * 1024 - sent)
                sent += n
                return n
            }
        }
        defer { server.stop() }
        let client = try HTTPClient(.init(tls: Self.tls(pki)))
        var received = 0
        let error = try #require(throws: HTTPClientError.self) {
            try client.send(method: "GET", url: "https://localhost:\(server.port)/big", sink: { received += $0.count })
        }
        #expect(error.code == 18 || error.code == 56, "\(error)")
        #expect(received <= 256 * 1024)
    }

    @Test func aFailingBodySourceStopsTheTransferWithItsError() throws {
        let pki = try TestPKI()
        let server = try server(pki)
        defer { server.stop() }
        let client = try HTTPClient(.init(tls: Self.tls(pki)))
        struct DiskGone: Error {}
        let error = try #require(throws: HTTPClientError.self) {
            try client.send(method: "POST", url: "https://localhost:\(server.port)/", body: { _ in throw DiskGone() }, bodyLength: 100)
        }
        #expect(error.callbackError is DiskGone)
    }
}
