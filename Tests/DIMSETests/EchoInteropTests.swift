import Foundation
import TestSupport
import Testing
import Transport

#if canImport(Glibc)
    import Glibc
#endif

/// `DIMSEAssociation.echo` over real sockets: against DCMTK's `storescp` (which answers C-ECHO),
/// against a port nobody listens on, and against a listener that never answers (the deadline).
@Suite("DIMSE C-ECHO on loopback", .serialized, .timeLimit(.minutes(2)))
struct EchoInteropTests {
    /// A TCP socket bound to a free port of 127.0.0.1, and the port.
    static func boundSocket() -> (fd: Int32, port: UInt16) {
        let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
        var address = sockaddr_in()
        address.sin_family = sa_family_t(AF_INET)
        address.sin_addr.s_addr = inet_addr("127.0.0.1")
        var size = socklen_t(MemoryLayout<sockaddr_in>.size)
        _ = withUnsafePointer(to: &address) { $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { bind(fd, $0, size) } }
        _ = withUnsafeMutablePointer(to: &address) { $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { getsockname(fd, $0, &size) } }
        return (fd, UInt16(bigEndian: address.sin_port))
    }

    /// A port free now on 127.0.0.1.
    static func freePort() throws -> UInt16 {
        let (fd, port) = boundSocket()
        close(fd)
        return port
    }

    @Test func dcmtksStorescpAnswersOurEcho() throws {
        try Skip.unless(FileManager.default.isExecutableFile(atPath: "/usr/bin/storescp"), "DCMTK's storescp is not installed (Debian package dcmtk)")
        let port = try Self.freePort()
        let folder = NSTemporaryDirectory() + "consort-storescp-\(UUID().uuidString)"
        try FileManager.default.createDirectory(atPath: folder, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(atPath: folder) }
        let storescp = try RunningProgram(["/usr/bin/storescp", "--aetitle", "STORESCP", "--output-directory", folder, String(port)])
        defer { storescp.kill() }
        // Listening: poll with echoes until one is answered (or the deadline).
        var status: UInt16?
        var lastError = ""
        let end = Date().addingTimeInterval(20)
        while status == nil && Date() < end {
            do { status = try DIMSEAssociation.echo(host: "127.0.0.1", port: port, called: "STORESCP", calling: "CONSORT", timeout: 5) } catch {
                lastError = "\(error)"
                Thread.sleep(forTimeInterval: 0.05)
            }
        }
        #expect(status == 0, "storescp: \(lastError) \(storescp.log)")
    }

    @Test func nobodyListeningIsACleanRefusal() throws {
        let port = try Self.freePort()
        #expect {
            _ = try DIMSEAssociation.echo(host: "127.0.0.1", port: port, called: "X", calling: "CONSORT", timeout: 2)
        } throws: { "\($0)".contains("cannot connect") }
    }

    /// A peer that sends a byte now and then, never a whole PDU: the deadline is for the PDU.
    @Test func aPeerThatTricklesBytesEndsAtTheDeadlineForTheWholePDU() throws {
        let (fd, port) = Self.boundSocket()
        defer { close(fd) }
        listen(fd, 4)
        let trickler = Thread {
            let peer = accept(fd, nil, nil)
            guard peer >= 0 else { return }
            defer { close(peer) }
            // An A-ASSOCIATE-AC header announcing 200 bytes, then a byte every 0.2 s.
            var header: [UInt8] = [0x02, 0x00, 0x00, 0x00, 0x00, 0xC8]
            _ = send(peer, &header, header.count, Int32(MSG_NOSIGNAL))
            for _ in 0..<20 {
                Thread.sleep(forTimeInterval: 0.2)
                var byte: UInt8 = 0
                guard send(peer, &byte, 1, Int32(MSG_NOSIGNAL)) == 1 else { return }
            }
        }
        trickler.start()
        #expect {
            _ = try DIMSEAssociation.echo(host: "127.0.0.1", port: port, called: "X", calling: "CONSORT", timeout: 1)
        } throws: {
            // Bytes came every 0.2 s: a deadline per read would never have ended it (it would
            // have ended at the peer's close, 4 s on, "in the middle of a PDU").
            "\($0)".contains("no answer within 1.0 s while waiting for the peer")
        }
    }

    @Test func aPeerThatNeverAnswersEndsAtTheDeadline() throws {
        // A listening socket that accepts into its backlog and never speaks.
        let (fd, port) = Self.boundSocket()
        defer { close(fd) }
        listen(fd, 4)
        #expect {
            _ = try DIMSEAssociation.echo(host: "127.0.0.1", port: port, called: "X", calling: "CONSORT", timeout: 0.5)
        } throws: { "\($0)".contains("no answer within 0.5 s while waiting for the peer") }
    }
}
