import Foundation
import HTTP
import TestSupport
import Testing

@testable import Transport

/// The HTTPS server with real TLS (a throwaway CA), real sockets and curl as the client.
@Suite("HTTPS server", .serialized, .timeLimit(.minutes(3)))
struct HTTPServerTests {
    /// Echoes who called and what it received: peer CN, method, target, body size and checksum.
    static let echo: RequestHandler = { request, body in
        var count = 0
        var sum: UInt64 = 0
        while let piece = try body.next() {
            count += piece.count
            for b in piece { sum = sum &* 31 &+ UInt64(b) }
        }
        let text = "peer=\(request.peer?.commonName ?? "none") \(request.head.method) \(request.head.target) bytes=\(count) sum=\(sum)"
        return .text(200, text)
    }

    static func checksum(_ data: [UInt8]) -> UInt64 { data.reduce(0) { $0 &* 31 &+ UInt64($1) } }

    func server(_ pki: TestPKI?, log: LogLines, configure: (inout ServerConfiguration) -> Void = { _ in }, handler: @escaping RequestHandler = HTTPServerTests.echo) throws -> HTTPServer {
        var configuration = ServerConfiguration()
        if let pki {
            configuration.tls = try TLSContext(
                TLSConfiguration(certificateChain: pki.serverCertificate, privateKey: pki.serverKey, trustedCA: pki.ca), role: .server)
        }
        configure(&configuration)
        let server = HTTPServer(configuration, log: { log.append($0) }, handler: handler)
        try server.start()
        return server
    }

    @Test func mutualTLSIdentifiesThePeerByItsCertificate() throws {
        let pki = try TestPKI()
        let log = LogLines()
        let server = try server(pki, log: log)
        defer { server.stop() }
        let body = (0..<3_000_000).map { UInt8(truncatingIfNeeded: $0 &* 7) }
        let file = pki.folder + "/body.bin"
        try Data(body).write(to: URL(fileURLWithPath: file))
        let outcome = try curl(["--cacert", pki.ca, "--cert", pki.clientCertificate, "--key", pki.clientKey,
            "-H", "X-Consort-Site: UHSX",  // a header claiming an identity changes nothing
            "--data-binary", "@\(file)", "https://localhost:\(server.port)/studies"])
        #expect(outcome.status == 0, "\(outcome.stderr)")
        #expect(outcome.stdout == "peer=RSCH POST /studies bytes=3000000 sum=\(Self.checksum(body))\n")
    }

    @Test func noClientCertificateIsRefusedAtTheHandshake() throws {
        let pki = try TestPKI()
        let log = LogLines()
        let server = try server(pki, log: log)
        defer { server.stop() }
        let outcome = try curl(["--cacert", pki.ca, "https://localhost:\(server.port)/"])
        #expect(outcome.status != 0)
        #expect(outcome.stdout.isEmpty)
        #expect(log.eventuallyContains("TLS handshake with 127.0.0.1"), "\(log.all)")
        #expect(log.contains("refused"))
    }

    @Test func aCertificateFromAnotherCAIsRefused() throws {
        let pki = try TestPKI()
        let log = LogLines()
        let server = try server(pki, log: log)
        defer { server.stop() }
        let outcome = try curl(["--cacert", pki.ca, "--cert", pki.strangerCertificate, "--key", pki.strangerKey, "https://localhost:\(server.port)/"])
        #expect(outcome.status != 0)
        #expect(log.eventually { $0.contains("refused") && $0.contains("certificate") }, "\(log.all)")
    }

    @Test func anExpiredCertificateIsRefusedAndSaidSo() throws {
        let pki = try TestPKI()
        Thread.sleep(forTimeInterval: 1.1)  // issued with 0 days: expired a second later
        let log = LogLines()
        let server = try server(pki, log: log)
        defer { server.stop() }
        let outcome = try curl(["--cacert", pki.ca, "--cert", pki.expiredCertificate, "--key", pki.expiredKey, "https://localhost:\(server.port)/"])
        #expect(outcome.status != 0)
        #expect(log.eventuallyContains("certificate has expired"), "\(log.all)")
    }

    @Test func aCertificateNotYetValidIsRefusedAndSaidSo() throws {
        let pki = try TestPKI()
        let future = try pki.notYetValidClient()
        let log = LogLines()
        let server = try server(pki, log: log)
        defer { server.stop() }
        let outcome = try curl(["--cacert", pki.ca, "--cert", future.certificate, "--key", future.key, "https://localhost:\(server.port)/"])
        #expect(outcome.status != 0)
        #expect(log.eventuallyContains("certificate is not yet valid"), "\(log.all)")
        #expect(log.eventuallyContains("127.0.0.1"), "the log names the peer's address: \(log.all)")
    }

    @Test func aRevokedCertificateIsRefusedWhenTheCRLIsGiven() throws {
        let pki = try TestPKI()
        let crl = try pki.revokeClient()
        let log = LogLines()
        var configuration = ServerConfiguration()
        configuration.tls = try TLSContext(
            TLSConfiguration(certificateChain: pki.serverCertificate, privateKey: pki.serverKey, trustedCA: pki.ca, revocationList: crl), role: .server)
        let server = HTTPServer(configuration, log: { log.append($0) }, handler: HTTPServerTests.echo)
        try server.start()
        defer { server.stop() }
        let outcome = try curl(["--cacert", pki.ca, "--cert", pki.clientCertificate, "--key", pki.clientKey, "https://localhost:\(server.port)/"])
        #expect(outcome.status != 0)
        #expect(log.eventuallyContains("certificate revoked"), "\(log.all)")
        // A certificate the CRL does not name still gets in.
        let stranger = try curl(["--cacert", pki.ca, "--cert", pki.serverCertificate, "--key", pki.serverKey, "https://localhost:\(server.port)/x"])
        #expect(stranger.stdout.hasPrefix("peer=UHSX GET /x"), "\(stranger.stderr)")
    }

    @Test func stoppingLetsRequestsInFlightFinish() throws {
        let log = LogLines()
        let server = try server(nil, log: log, handler: { _, _ in
            Thread.sleep(forTimeInterval: 1)
            return .text(200, "finished")
        })
        let port = server.port
        nonisolated(unsafe) var answer: ProgramOutcome?
        let request = Thread { answer = try? curl(["-s", "http://127.0.0.1:\(port)/slow"]) }
        request.start()
        Thread.sleep(forTimeInterval: 0.3)
        server.stop(deadline: 5)  // returns once the request in flight has been answered
        #expect(server.activeConnections == 0)
        for _ in 0..<50 where answer == nil { Thread.sleep(forTimeInterval: 0.1) }
        #expect(answer?.stdout == "finished\n")
        // And the door is shut: a new connection is refused.
        let after = try curl(["-s", "-o", "/dev/null", "-w", "%{http_code}", "http://127.0.0.1:\(port)/"])
        #expect(after.status == 7)
    }

    @Test func stoppingDoesNotWaitForIdleConnections() throws {
        let server = try server(nil, log: LogLines())
        let idle = try RawClient(port: server.port)  // connected, between requests
        let kept = try RawClient(port: server.port)
        #expect(kept.send(Array("GET /a HTTP/1.1\r\nHost: x\r\n\r\n".utf8)))  // served, then kept alive
        Thread.sleep(forTimeInterval: 0.3)
        // Idle connections are closed, not waited for: none is left when stop returns (it would
        // otherwise wait out its 10 s deadline with both still open).
        server.stop(deadline: 10)
        #expect(server.activeConnections == 0)
        #expect(kept.receiveAll().hasPrefix("HTTP/1.1 200"))
        idle.close()
    }

    @Test func theServerIsOnlyTrustedWithTheConsortiumCA() throws {
        let pki = try TestPKI()
        let server = try server(pki, log: LogLines())
        defer { server.stop() }
        // Without our CA, curl cannot verify the server: our certificates mean nothing elsewhere.
        let outcome = try curl(["--cert", pki.clientCertificate, "--key", pki.clientKey, "https://localhost:\(server.port)/"])
        #expect(outcome.status == 60)
    }

    @Test func limitsAnswerWithTheirStatus() throws {
        let log = LogLines()
        let server = try server(nil, log: log) { configuration in
            configuration.limits.headerBytes = 2048
            configuration.limits.bodyBytes = 1000
        }
        defer { server.stop() }
        let big = try curl(["-o", "/dev/null", "-w", "%{http_code}", "-H", "X-Big: " + String(repeating: "a", count: 4000), "http://127.0.0.1:\(server.port)/"])
        #expect(big.stdout == "431")
        let body = try curl(["-o", "/dev/null", "-w", "%{http_code}", "--data-binary", String(repeating: "b", count: 5000), "http://127.0.0.1:\(server.port)/studies"])
        #expect(body.stdout == "413")
    }

    @Test func aClientThatSendsOneByteASecondIsCutOff() throws {
        let log = LogLines()
        let server = try server(nil, log: log) { $0.headerTimeout = 1 }
        defer { server.stop() }
        let socket = try RawClient(port: server.port)
        let start = Date()
        var answer = ""
        for byte in Array("GET / HTTP/1.1\r\nHost: x\r\nX-Slow: ".utf8) {
            if !socket.send([byte]) { break }
            Thread.sleep(forTimeInterval: 0.2)
            if Date().timeIntervalSince(start) > 4 { break }
        }
        answer = socket.receiveAll()
        // Without the head deadline the server would wait for the idle timeout (60 s) and the
        // client would hear nothing: the 408 is the proof it cut the client off.
        #expect(answer.hasPrefix("HTTP/1.1 408"), "\(answer)")
    }

    @Test func connectionsBeyondTheLimitGet503() throws {
        let server = try server(nil, log: LogLines()) { $0.maximumConnections = 1 }
        defer { server.stop() }
        let holder = try RawClient(port: server.port)  // occupies the only slot, says nothing
        for _ in 0..<250 where server.activeConnections < 1 { Thread.sleep(forTimeInterval: 0.02) }
        #expect(server.activeConnections == 1)
        let outcome = try curl(["-o", "/dev/null", "-w", "%{http_code}", "http://127.0.0.1:\(server.port)/"])
        #expect(outcome.stdout == "503")
        holder.close()
    }

    @Test func keepAliveServesSeveralRequestsOnOneConnection() throws {
        let pki = try TestPKI()
        let log = LogLines()
        let server = try server(pki, log: log)
        defer { server.stop() }
        let outcome = try curl(["--cacert", pki.ca, "--cert", pki.clientCertificate, "--key", pki.clientKey, "-v",
            "https://localhost:\(server.port)/a", "https://localhost:\(server.port)/b"])
        #expect(outcome.stdout.contains("GET /a") && outcome.stdout.contains("GET /b"))
        #expect(outcome.stderr.contains("Re-using existing connection") || outcome.stderr.contains("Reusing existing"), "\(outcome.stderr.suffix(800))")
    }

    @Test func aHandlerErrorBecomesItsStatusAndOthersA500WithARequestID() throws {
        let log = LogLines()
        let server = try server(nil, log: log, handler: { request, _ in
            if request.head.target == "/teapot" { throw HTTPError(415, "Only application/dicom") }
            struct Boom: Error {}
            throw Boom()
        })
        defer { server.stop() }
        let typed = try curl(["-w", "%{http_code}", "http://127.0.0.1:\(server.port)/teapot"])
        #expect(typed.stdout.hasSuffix("415"))
        let boom = try curl(["-w", "%{http_code}", "http://127.0.0.1:\(server.port)/boom"])
        #expect(boom.stdout.hasPrefix("Internal error; request "))
        #expect(boom.stdout.hasSuffix("500"))
        #expect(log.contains("500: Boom"))
    }

    @Test func expectContinueIsAnswered() throws {
        let server = try server(nil, log: LogLines())
        defer { server.stop() }
        let outcome = try curl(["-v", "-H", "Expect: 100-continue", "--data-binary", String(repeating: "x", count: 2000), "http://127.0.0.1:\(server.port)/studies"])
        #expect(outcome.stderr.contains("HTTP/1.1 100 Continue"))
        #expect(outcome.stdout.contains("bytes=2000"))
    }
}

/// A bare TCP client for what curl will not do: dribble a request, hold a connection silent.
final class RawClient {
    let fd: Int32
    init(port: UInt16) throws {
        fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
        var address = sockaddr_in()
        address.sin_family = sa_family_t(AF_INET)
        address.sin_port = port.bigEndian
        address.sin_addr.s_addr = inet_addr("127.0.0.1")
        let result = withUnsafePointer(to: &address) { $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { connect(fd, $0, socklen_t(MemoryLayout<sockaddr_in>.size)) } }
        if result != 0 { throw CocoaError(.fileReadUnknown) }
    }
    func send(_ bytes: [UInt8]) -> Bool { Glibc.send(fd, bytes, bytes.count, Int32(MSG_NOSIGNAL)) == bytes.count }
    func receiveAll() -> String {
        var tv = timeval(tv_sec: 5, tv_usec: 0)
        setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, socklen_t(MemoryLayout<timeval>.size))
        var out: [UInt8] = []
        var buffer = [UInt8](repeating: 0, count: 4096)
        while true {
            let n = recv(fd, &buffer, buffer.count, 0)
            if n <= 0 { break }
            out += buffer[0..<n]
        }
        return String(decoding: out, as: UTF8.self)
    }
    func close() { Glibc.close(fd) }
    deinit { Glibc.close(fd) }
}
