import Foundation
import HTTP

#if canImport(Glibc)
    import Glibc
#endif

/// How a server listens and what it tolerates. Every limit explicit; defaults for a DICOMweb
/// receiver on a hospital network.
public struct ServerConfiguration: Sendable {
    /// Address to bind (the agent binds its site address; tests bind 127.0.0.1).
    public var host = "127.0.0.1"
    /// 0: any free port (read it back from `HTTPServer.port`).
    public var port: UInt16 = 0
    /// nil serves plain HTTP: only for a local PACS on the same host.
    public var tls: TLSContext?
    public var limits = HTTPLimits()
    /// Connections served at once; more are answered 503 and closed.
    public var maximumConnections = 64
    /// The whole request head must arrive within this (slow-loris).
    public var headerTimeout = 10.0
    /// A kept-alive connection may wait this long for its next request.
    public var idleTimeout = 60.0
    /// A body that stalls this long is abandoned (408).
    public var bodyReadTimeout = 30.0
    public var handshakeTimeout = 10.0
    public var writeTimeout = 30.0

    public init() {}
}

/// What a handler is given: the head, and who sent it (from the TLS certificate).
public struct ServerRequest: Sendable {
    public var head: HTTPRequestHead
    public var peer: PeerIdentity?
    public var remoteAddress: String
    /// Short id for this request, in every log line about it and in 500 responses.
    public var id: String
}

/// What a handler answers: a body in memory, or one streamed (from files) by a source that fills
/// buffers until it returns 0, with its length known in advance.
public struct ServerResponse: @unchecked Sendable {
    public var status: Int
    public var headers: [(String, String)]
    public var body: [UInt8]
    /// A streamed body: `stream` fills the buffer and returns how much it wrote (0 at the end);
    /// `streamLength` is sent as Content-Length and must be exact.
    public var stream: ((UnsafeMutableRawBufferPointer) throws -> Int)?
    public var streamLength = 0

    public init(status: Int, headers: [(String, String)] = [], body: [UInt8] = []) {
        self.status = status
        self.headers = headers
        self.body = body
    }

    public init(status: Int, headers: [(String, String)], length: Int, stream: @escaping (UnsafeMutableRawBufferPointer) throws -> Int) {
        self.status = status
        self.headers = headers
        body = []
        self.stream = stream
        streamLength = length
    }

    public static func text(_ status: Int, _ text: String) -> ServerResponse {
        ServerResponse(status: status, headers: [("Content-Type", "text/plain; charset=utf-8")], body: Array((text + "\n").utf8))
    }
}

/// The request body as it arrives, read by the handler in pieces: a multi-GB STOW-RS body is
/// never held in memory. Reads past the end return nil.
public final class RequestBody {
    fileprivate let pull: () throws -> ArraySlice<UInt8>?
    fileprivate var finished = false

    fileprivate init(pull: @escaping () throws -> ArraySlice<UInt8>?) { self.pull = pull }

    /// The next piece of the body, or nil at its end.
    public func next() throws -> ArraySlice<UInt8>? {
        if finished { return nil }
        let piece = try pull()
        if piece == nil { finished = true }
        return piece
    }

    /// The whole body (for small bodies: queries, tests), refusing more than `limit` bytes.
    public func collect(limit: Int) throws -> [UInt8] {
        var out: [UInt8] = []
        while let piece = try next() {
            out += piece
            if out.count > limit { throw HTTPError(413, "The body exceeds \(limit) bytes") }
        }
        return out
    }
}

public typealias RequestHandler = @Sendable (ServerRequest, RequestBody) throws -> ServerResponse

/// An HTTP/1.1 server over TCP, with TLS (mutual by default) when configured.
///
/// Threading: one listener thread accepting, one thread per connection doing blocking reads with
/// timeouts (a thread, not a Swift task: blocking socket I/O on the cooperative pool can freeze
/// it; `Dispatch` grows its pool too slowly). Connections beyond the limit get a 503. `stop()`
/// closes the listener and waits, up to a deadline, for requests in flight.
public final class HTTPServer: @unchecked Sendable {
    public let configuration: ServerConfiguration
    private let handler: RequestHandler
    private let log: @Sendable (String) -> Void
    private var listener: Int32 = -1
    public private(set) var port: UInt16 = 0
    private let lock = NSCondition()
    private var active = 0
    private var stopping = false
    /// Sockets of connections waiting for their next request: closed at once on stop (nothing is
    /// in flight on them), so a graceful stop does not wait out idle keep-alive connections.
    private var idle = Set<Int32>()
    private var requestCounter = 0
    /// The TLS context new handshakes use, and how many times it was replaced (SIGHUP): a
    /// connection made under an earlier one finishes the request it is serving and is then
    /// closed, so that a certificate revoked or rotated since is checked again at once, by a
    /// new handshake, not whenever the client stops reusing its connection.
    private var tlsContext: TLSContext?
    private var tlsGeneration = 0

    public init(_ configuration: ServerConfiguration, log: @escaping @Sendable (String) -> Void = { _ in }, handler: @escaping RequestHandler) {
        self.configuration = configuration
        self.handler = handler
        self.log = log
        tlsContext = configuration.tls
    }

    /// New certificates, key, CA or CRL for the handshakes from now on (a reload): requests in
    /// flight finish under the context they began with, and their connections then close;
    /// connections idle between requests close now (a client reconnects, and shows its
    /// certificate to the new context).
    public func replaceTLS(_ context: TLSContext) {
        lock.withLock {
            tlsContext = context
            tlsGeneration += 1
            for fd in idle { Glibc.shutdown(fd, Int32(SHUT_RDWR)) }
        }
    }

    /// The context handshakes use now, and its generation.
    private var currentTLS: (context: TLSContext?, generation: Int) { lock.withLock { (tlsContext, tlsGeneration) } }

    /// Binds and starts accepting; returns once the port is listening.
    public func start() throws {
        // A client that closes early must not kill the process (writes get EPIPE instead).
        signal(SIGPIPE, SIG_IGN)
        let (fd, bound) = try ListeningSocket.open(host: configuration.host, port: configuration.port, backlog: 128)
        port = bound
        listener = fd
        let thread = Thread { [self] in acceptLoop() }
        thread.name = "consort-accept"
        thread.start()
    }

    /// Stops accepting, lets requests in flight finish for up to `deadline` seconds.
    public func stop(deadline: Double = 10) {
        lock.lock()
        stopping = true
        lock.unlock()
        if listener >= 0 { Glibc.shutdown(listener, Int32(SHUT_RDWR)) }
        lock.lock()
        for fd in idle { Glibc.shutdown(fd, Int32(SHUT_RDWR)) }
        let until = Date().addingTimeInterval(deadline)
        while active > 0 && lock.wait(until: until) {}
        lock.unlock()
    }

    public var activeConnections: Int { lock.withLock { active } }

    private func acceptLoop() {
        ListeningSocket.acceptLoop(listener, stopping: { lock.withLock { stopping } }, log: { log($0) }) { fd, address, peerPort in
            let remote = address + ":\(peerPort)"
            let connection = Connection(descriptor: fd, remote: remote)
            let overloaded: Bool = lock.withLock {
                if active >= configuration.maximumConnections { return true }
                active += 1
                return false
            }
            let thread = Thread { [self] in
                if overloaded {
                    refuseOverload(connection)
                } else {
                    serve(connection)
                    lock.withLock {
                        active -= 1
                        lock.broadcast()
                    }
                }
            }
            thread.name = "consort-connection"
            thread.start()
        }
    }

    /// Too many connections: a short 503 (after the handshake, so a TLS client can read it).
    private func refuseOverload(_ connection: Connection) {
        connection.setReadTimeout(2)
        connection.setWriteTimeout(2)
        if let tls = currentTLS.context {
            do { try connection.acceptTLS(tls) } catch { return }
        }
        log("\(connection.remote): refused, \(configuration.maximumConnections) connections already open")
        let response = ServerResponse.text(503, "Too many connections; try again shortly")
        try? connection.write(Self.head(response, keepAlive: false, extra: [("Retry-After", "1")]) + response.body)
        connection.shutdown()
    }

    private func nextRequestID() -> String {
        lock.withLock {
            requestCounter += 1
            return String(requestCounter, radix: 36)
        }
    }

    /// One connection, request after request, until it closes, errs or idles out.
    private func serve(_ connection: Connection) {
        connection.setWriteTimeout(configuration.writeTimeout)
        let (tls, generation) = currentTLS
        if let tls {
            connection.setReadTimeout(configuration.handshakeTimeout)
            do {
                try connection.acceptTLS(tls)
            } catch {
                log("\(error)")
                return
            }
        }
        let reader = EventReader(connection: connection, limits: configuration.limits, headerTimeout: configuration.headerTimeout)
        while true {
            // Wait for a request: idle timeout for its first byte, then the head deadline.
            var head: HTTPRequestHead?
            do {
                let waiting = reader.isIdle
                if waiting {
                    // A connection whose handshake was under material since replaced waits for
                    // no further request (the reload may have come while it was answering, when
                    // it was not idle to be closed).
                    let ended: Bool = lock.withLock {
                        let stale = tls != nil && tlsGeneration != generation
                        if !stopping && !stale { idle.insert(connection.descriptor) }
                        return stopping || stale
                    }
                    if ended { break }
                }
                defer { if waiting { _ = lock.withLock { idle.remove(connection.descriptor) } } }
                guard let event = try reader.next(timeout: configuration.idleTimeout, waitingForHead: true) else { break }
                guard case .head(let h) = event else { break }
                head = h
            } catch let error as HTTPError {
                if error.status == 408 && reader.isIdle { break }  // an idle keep-alive connection: just close
                answerError(error, on: connection)
                break
            } catch {
                log("\(connection.remote): \(error)")
                break
            }
            guard let head else { break }
            // A request whose head came in on a stale connection as the material was replaced
            // (the narrowest race): not served under the old handshake; the client reconnects.
            if tls != nil && currentTLS.generation != generation {
                answerError(HTTPError(503, "This server's TLS material was just replaced: connect again"), on: connection)
                break
            }
            let request = ServerRequest(head: head, peer: connection.peer, remoteAddress: connection.remote, id: nextRequestID())
            if head.expectsContinue {
                do { try connection.write(Array("HTTP/1.1 100 Continue\r\n\r\n".utf8)) } catch { break }
            }
            let bodyTimeout = configuration.bodyReadTimeout
            let body = RequestBody { [reader] in
                do {
                    guard let event = try reader.next(timeout: bodyTimeout, waitingForHead: false) else {
                        throw HTTPError(400, "The connection closed inside the request body")
                    }
                    switch event {
                    case .body(let bytes): return bytes
                    case .end: return nil
                    case .head: throw HTTPError(400, "A request began inside another")
                    }
                } catch {
                    reader.failed = true
                    throw error
                }
            }
            var response: ServerResponse
            do {
                response = try handler(request, body)
            } catch let error as HTTPError {
                response = .text(error.status, error.message)
                log("request \(request.id) \(head.method) \(head.target) from \(request.peer?.commonName ?? connection.remote): \(error)")
            } catch {
                response = .text(500, "Internal error; request \(request.id)")
                log("request \(request.id) \(head.method) \(head.target) from \(request.peer?.commonName ?? connection.remote): 500: \(error)")
            }
            // A body the handler did not read to its end: reading on would be reading the client's
            // next request out of sync. Answer, then close.
            // A body the handler left unread is drained, up to 64 KiB, to keep the connection in
            // step for the next request (a GET's empty body costs nothing); more than that, and
            // the connection closes after the answer.
            var drained = 0
            while !body.finished && !reader.failed && drained <= 64 * 1024 {
                guard let piece = try? body.next() else { break }
                drained += piece.count
            }
            // A connection whose handshake was under material since replaced serves no more.
            let keepAlive = head.keepAlive && !reader.failed && body.finished && (tls == nil || currentTLS.generation == generation)
            do {
                try connection.write(Self.head(response, keepAlive: keepAlive) + response.body)
                if let stream = response.stream {
                    try send(stream, length: response.streamLength, on: connection)
                }
            } catch {
                log("request \(request.id) \(head.method) \(head.target): answer not delivered: \(error)")
                break
            }
            if !keepAlive { break }
        }
        connection.shutdown()
    }

    /// Writes a streamed body of exactly `length` bytes (else the connection is out of step).
    private func send(_ stream: (UnsafeMutableRawBufferPointer) throws -> Int, length: Int, on connection: Connection) throws {
        let buffer = UnsafeMutableRawBufferPointer.allocate(byteCount: 256 * 1024, alignment: 16)
        defer { buffer.deallocate() }
        var sent = 0
        while true {
            let n = try stream(buffer)
            if n == 0 { break }
            try connection.write(UnsafeRawBufferPointer(rebasing: buffer[0..<n]))
            sent += n
        }
        if sent != length { throw HTTPError(500, "The streamed body was \(sent) bytes, not the \(length) announced") }
    }

    private func answerError(_ error: HTTPError, on connection: Connection) {
        log("\(connection.peer?.commonName ?? connection.remote): \(error)")
        let response = ServerResponse.text(error.status, error.message)
        try? connection.write(Self.head(response, keepAlive: false) + response.body)
    }

    static func head(_ response: ServerResponse, keepAlive: Bool, extra: [(String, String)] = []) -> [UInt8] {
        var text = "HTTP/1.1 \(response.status) \(HTTPError.reason(response.status))\r\n"
        for (name, value) in response.headers + extra { text += "\(name): \(value)\r\n" }
        text += "Content-Length: \(response.stream == nil ? response.body.count : response.streamLength)\r\n"
        if !keepAlive { text += "Connection: close\r\n" }
        return Array((text + "\r\n").utf8)
    }
}
