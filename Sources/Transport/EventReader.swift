import Foundation
import HTTP

/// Reads from a connection and hands out the parser's events one at a time, within timeouts.
final class EventReader {
    let connection: Connection
    var parser: HTTPRequestParser
    var queued: [HTTPRequestParser.Event] = []
    let buffer = UnsafeMutableRawBufferPointer.allocate(byteCount: 64 * 1024, alignment: 16)
    let headerTimeout: Double
    /// A read or parse failed: the connection is out of step and must close.
    var failed = false
    /// When the first byte of the head being awaited arrived: the whole head is due
    /// `headerTimeout` after it (slow-loris), however the bytes trickle in.
    private var headStarted: Date?

    init(connection: Connection, limits: HTTPLimits, headerTimeout: Double) {
        self.connection = connection
        parser = HTTPRequestParser(limits: limits)
        self.headerTimeout = headerTimeout
    }

    deinit { buffer.deallocate() }

    var isIdle: Bool { parser.isIdle && queued.isEmpty }

    /// One read; a timeout becomes 408 Request Timeout.
    private func readOrTimeout() throws -> Int {
        switch Result(catching: { () throws(ConnectionError) -> Int in try connection.read(into: buffer) }) {
        case .success(let n): return n
        case .failure(let error) where error.kind == .timedOut: throw HTTPError(408, error.message)
        case .failure(let error): throw error
        }
    }

    /// The next event, reading as needed; nil when the peer closed. While a head is awaited
    /// (`waitingForHead`), the first byte may take `timeout` (the idle timeout) and the rest of the
    /// head must follow within `headerTimeout`; otherwise each read may wait `timeout`.
    func next(timeout: Double, waitingForHead: Bool) throws -> HTTPRequestParser.Event? {
        while queued.isEmpty {
            var wait = timeout
            if waitingForHead, let started = headStarted {
                wait = headerTimeout - Date().timeIntervalSince(started)
                if wait <= 0 { throw HTTPError(408, "The request head did not arrive within \(Int(headerTimeout)) s") }
            }
            connection.setReadTimeout(wait)
            let n = try readOrTimeout()
            if n == 0 { return nil }
            if waitingForHead && headStarted == nil { headStarted = Date() }
            queued = try parser.feed(UnsafeRawBufferPointer(rebasing: buffer[0..<n]))
        }
        let event = queued.removeFirst()
        if case .head = event { headStarted = nil }
        return event
    }
}

