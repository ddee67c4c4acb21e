import Testing

@testable import HTTP

@Suite("HTTP/1.1 request parsing")
struct RequestParserTests {
    /// Feeds `text` in pieces of the given sizes; returns the events, or the error.
    static func parse(_ text: String, pieces: Int = 1 << 20, limits: HTTPLimits = HTTPLimits()) -> Result<[HTTPRequestParser.Event], HTTPError> {
        var parser = HTTPRequestParser(limits: limits)
        let bytes = Array(text.utf8)
        var events: [HTTPRequestParser.Event] = []
        var at = 0
        do {
            while at < bytes.count {
                let n = min(pieces, bytes.count - at)
                events += try parser.feed(bytes[at..<at + n])
                at += n
            }
        } catch {
            return .failure(error)
        }
        return .success(events)
    }

    /// The bodies of complete requests, concatenated per request, and their heads.
    static func requests(_ events: [HTTPRequestParser.Event]) -> [(HTTPRequestHead, [UInt8])] {
        var out: [(HTTPRequestHead, [UInt8])] = []
        for event in events {
            switch event {
            case .head(let h): out.append((h, []))
            case .body(let b): out[out.count - 1].1 += b
            case .end: break
            }
        }
        return out
    }

    static let stow = "POST /dicomweb/studies HTTP/1.1\r\nHost: uhsx.consort\r\nContent-Type: multipart/related; type=\"application/dicom\"; boundary=b\r\nContent-Length: 11\r\nExpect: 100-continue\r\n\r\nhello world"
    static let chunked = "POST /studies HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n5;ext=1\r\nhello\r\n6\r\n world\r\n0\r\nX-Trailer: t\r\n\r\n"

    @Test("requests parse the same however they are split", arguments: [1, 2, 7, 64, 1 << 20])
    func anySplit(_ pieces: Int) throws {
        for text in [Self.stow, Self.chunked, Self.stow + Self.chunked] {
            let events = try Self.parse(text, pieces: pieces).get()
            let requests = Self.requests(events)
            #expect(requests.allSatisfy { $0.1 == Array("hello world".utf8) })
            #expect(events.filter { $0 == .end }.count == requests.count)
        }
        let head = try #require(Self.requests(try Self.parse(Self.stow, pieces: pieces).get()).first?.0)
        #expect(head.method == "POST")
        #expect(head.target == "/dicomweb/studies")
        #expect(head.value("content-type")?.hasPrefix("multipart/related") == true)
        #expect(head.expectsContinue)
        #expect(head.keepAlive)
    }

    @Test func getWithoutBodyEndsAtOnceAndConnectionsFollowTheVersion() throws {
        let events = try Self.parse("GET /studies?PatientID=1 HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n").get()
        #expect(events.count == 2)
        guard case .head(let head) = events[0] else { return }
        #expect(!head.keepAlive)
        let old = try Self.parse("GET / HTTP/1.0\r\n\r\n").get()
        guard case .head(let h10) = old[0] else { return }
        #expect(!h10.keepAlive)
    }

    /// (request, expected status): each malformed or hostile request is refused with its status.
    static let refused: [(String, Int)] = [
        ("GET /\r\nHost: x\r\n\r\n", 400),  // no version
        ("GET / HTTP/2.0\r\nHost: x\r\n\r\n", 505),
        ("GET http://x/ HTTP/1.1\r\nHost: x\r\n\r\n", 400),  // absolute form not served
        ("GET / HTTP/1.1\r\n\r\n", 400),  // no Host
        ("GET / HTTP/1.1\r\nHost : x\r\n\r\n", 400),  // space before colon
        ("GET / HTTP/1.1\r\nHost: x\r\n folded\r\n\r\n", 400),
        ("GET / HTTP/1.1\nHost: x\n\n\r\n\r\n", 400),  // bare LF
        ("POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n", 400),  // smuggling
        ("POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\nContent-Length: 6\r\n\r\n", 400),
        ("POST / HTTP/1.1\r\nHost: x\r\nContent-Length: -1\r\n\r\n", 400),
        ("POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: gzip\r\n\r\n", 400),
        ("POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: gzip, chunked\r\n\r\n", 501),
        ("POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n", 400),
        ("POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabcX\r\n", 400),
        ("POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 99999999999\r\n\r\n", 413),
        ("G@T / HTTP/1.1\r\nHost: x\r\n\r\n", 400),
    ]

    @Test("malformed and hostile requests are refused with the right status", arguments: 0..<16)
    func refusedRequests(_ index: Int) {
        let (text, status) = Self.refused[index]
        var limits = HTTPLimits()
        limits.bodyBytes = 1 << 30
        switch Self.parse(text, pieces: 3, limits: limits) {
        case .success(let events): Issue.record("accepted \(text.debugDescription): \(events.count) events")
        case .failure(let error): #expect(error.status == status, "\(text.debugDescription): \(error)")
        }
    }

    @Test func limitsCutOffEndlessHeadsAndBodiesAsTheyArrive() {
        var limits = HTTPLimits()
        limits.requestLineBytes = 100
        limits.headerBytes = 1000
        limits.bodyBytes = 10
        // A request line that never ends: refused once past the limit, not when it ends.
        #expect(Self.parse("GET /" + String(repeating: "a", count: 500), pieces: 10, limits: limits).failureStatus == 414)
        // Header fields that never end.
        let endless = "GET / HTTP/1.1\r\nHost: x\r\n" + String(repeating: "X-A: b\r\n", count: 500)
        #expect(Self.parse(endless, pieces: 50, limits: limits).failureStatus == 431)
        // A chunked body past the limit, refused before it is all received.
        #expect(Self.parse("POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n8\r\n12345678\r\n8\r\n", limits: limits).failureStatus == 413)
        var count = HTTPLimits()
        count.headerCount = 3
        #expect(Self.parse("GET / HTTP/1.1\r\nHost: x\r\nA: 1\r\nB: 2\r\nC: 3\r\n\r\n", limits: count).failureStatus == 431)
    }

    @Test func aHeadDrippedByteByByteCostsLinearTime() throws {
        // 30 KB of header fields one byte at a time: with a rescan per byte this would take
        // seconds; the parser resumes its search where it stopped.
        let text = "GET / HTTP/1.1\r\nHost: x\r\n" + String(repeating: "X-Padding: " + String(repeating: "0123456789", count: 30) + "\r\n", count: 90) + "\r\n"
        let events = try Self.parse(text, pieces: 1).get()
        guard case .head(let head) = events.first else {
            Issue.record("no head")
            return
        }
        #expect(head.headers.count == 91)
    }
}

extension Result where Failure == HTTPError {
    var failureStatus: Int? {
        if case .failure(let e) = self { return e.status }
        return nil
    }
}
