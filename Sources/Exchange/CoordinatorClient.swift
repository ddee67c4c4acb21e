import DICOM
import Foundation
import Platform
import Spool
import Transport

/// An agent's (and `consort locate`'s) side of the coordinator's API: HTTPS with the site's
/// own certificate, JSON in and out, every call bounded by the client's timeouts.
///
/// Several coordinators (one `coordinator URL` line each, all over one registry database) are
/// tried in turn: a call goes to the one that answered last; one that cannot be reached, or
/// answers 502/503/504, is passed over for the next, and its circuit (the peers' `PeerCircuit`,
/// opened by that one failure) keeps calls off it until its probe finds it back — so one
/// coordinator down costs a call one connection attempt, not every call.
public final class CoordinatorClient: @unchecked Sendable {
    /// The coordinators, in the configuration's order.
    public let bases: [String]
    /// Replaced whole when the TLS material is (`replaceTLS`); used under `lock`.
    private var clients: [HTTPClient]
    private var circuits: [PeerCircuit]
    private var lastErrors: [String?]
    private var lastSuccesses: [Double?]
    /// The coordinator that answered last: asked first.
    private var preferred = 0
    private let policy = RetryPolicy(minimumDelay: 5, maximumDelay: 120)
    /// Guards the state above, briefly: `consort status` reads it while a call is in flight.
    private let lock = NSLock()
    /// One call at a time (an HTTP client is not shared between threads).
    private let calling = NSLock()

    public struct Failure: Error, CustomStringConvertible {
        /// The HTTP status, or nil when the coordinator could not be reached.
        public let status: Int?
        public let message: String
        public let answer: [String: Any]
        public var description: String { status.map { "the coordinator answered \($0): \(message)" } ?? "cannot reach the coordinator: \(message)" }
    }

    /// One coordinator as the client sees it, for `consort status`.
    public struct Endpoint: Sendable {
        public var url: String
        /// Asked first now.
        public var inUse: Bool
        /// Passed over until its circuit's probe finds it back.
        public var down: Bool
        public var lastError: String?
        public var lastSuccess: Double?
    }

    /// `totalTimeout`: the most any one call takes, seconds (a caller whose own client waits on
    /// the answer asks for less).
    public convenience init(base: String, tls: TLSConfiguration?, totalTimeout: Int = 30) throws {
        try self.init(bases: [base], tls: tls, totalTimeout: totalTimeout)
    }

    public init(bases: [String], tls: TLSConfiguration?, totalTimeout: Int = 30) throws {
        precondition(!bases.isEmpty, "a coordinator client needs a coordinator")
        self.bases = bases.map { $0.hasSuffix("/") ? String($0.dropLast()) : $0 }
        var options = HTTPClient.Options(tls: tls)
        options.totalTimeout = totalTimeout
        clients = try self.bases.map { _ in try HTTPClient(options) }
        circuits = Array(repeating: PeerCircuit(threshold: 1), count: bases.count)
        lastErrors = Array(repeating: nil, count: bases.count)
        lastSuccesses = Array(repeating: nil, count: bases.count)
    }

    /// The coordinator asked first now.
    public var base: String { lock.withLock { bases[preferred] } }

    /// Each coordinator: in use, down, its last error and success (wall clock).
    public var endpoints: [Endpoint] {
        lock.withLock {
            bases.indices.map { index in
                var down = false
                if case .open = circuits[index].state { down = true }
                if case .halfOpen = circuits[index].state { down = true }
                return Endpoint(url: bases[index], inUse: index == preferred, down: down, lastError: lastErrors[index], lastSuccess: lastSuccesses[index])
            }
        }
    }

    /// New certificate, key, CA or CRL (SIGHUP): the next request connects afresh with them.
    public func replaceTLS(_ tls: TLSConfiguration) throws {
        var options = lock.withLock { clients[0].options }
        options.tls = tls
        let fresh = try bases.map { _ in try HTTPClient(options) }
        lock.withLock { clients = fresh }
    }

    /// One request; the answer's JSON object when the status is 2xx, else a `Failure`.
    /// `purpose`: why patient data is asked for (a lookup must say).
    public func call(_ method: String, _ path: String, body: JSON? = nil, purpose: String? = nil) throws -> [String: Any] {
        let (status, answer) = try exchange(method, path, body: body, purpose: purpose)
        let object = (try? JSONSerialization.jsonObject(with: Data(answer)) as? [String: Any]) ?? [:]
        guard (200..<300).contains(status) else {
            throw Failure(status: status, message: object["error"] as? String ?? String(decoding: answer.prefix(300), as: UTF8.self), answer: object)
        }
        return object
    }

    /// One request; the status and the answer's bytes, not parsed (`consort bench registry`
    /// times the coordinator's answer, not the client's JSON parser sharing its CPUs). Tried on
    /// each coordinator in turn, the one that answered last first, those whose circuit is open
    /// passed over (unless every one's is: then each is tried, the circuits only counting).
    public func exchange(_ method: String, _ path: String, body: JSON? = nil, purpose: String? = nil) throws -> (status: Int, answer: [UInt8]) {
        let bytes = body.map { $0.bytes() } ?? []
        return try calling.withLock {
            let order = lock.withLock { [preferred] + bases.indices.filter { $0 != preferred } }
            var last: Failure?
            /// One try at coordinator `index`: its answer, or nil (the failure kept in `last`).
            func attempt(_ index: Int) -> (status: Int, answer: [UInt8])? {
                let collector = ByteCollector(limit: 256 << 20)
                var offset = 0
                let client = lock.withLock { clients[index] }
                do {
                    let response = try client.send(
                        method: method, url: bases[index] + path,
                        headers: [("Content-Type", "application/json"), ("Accept", "application/json")] + (purpose.map { [(ConsortField.purpose, $0)] } ?? []),
                        body: body == nil ? nil : { buffer in
                            let n = min(buffer.count, bytes.count - offset)
                            buffer.copyBytes(from: bytes[offset..<(offset + n)])
                            offset += n
                            return n
                        }, bodyLength: body == nil ? nil : bytes.count, sink: collector.append)
                    // A coordinator that answers it cannot serve now (its database gone): the next.
                    if [502, 503, 504].contains(response.status) && bases.count > 1 {
                        failed(index, "answered \(response.status)")
                        last = Failure(status: response.status, message: String(decoding: collector.bytes.prefix(300), as: UTF8.self), answer: [:])
                        return nil
                    }
                    lock.withLock {
                        circuits[index].recordSuccess()
                        lastSuccesses[index] = Date().timeIntervalSince1970
                        preferred = index
                    }
                    return (response.status, collector.bytes)
                } catch {
                    failed(index, "\(error)")
                    last = Failure(status: nil, message: bases.count > 1 ? "\(bases[index]): \(error)" : "\(error)", answer: [:])
                    return nil
                }
            }
            // Each circuit is asked only just before its coordinator would be tried: asking moves
            // an open circuit past its time to its probe, which must then be made (a probe
            // granted and never made would leave it half-open, never tried again).
            var tried = false
            for index in order where lock.withLock({ circuits[index].mayStart(now: MonotonicClock.now) }) {
                tried = true
                if let answer = attempt(index) { return answer }
            }
            // Every circuit open: each is tried anyway (the caller has its own retries; the
            // circuits only count), rather than refusing the call outright.
            if !tried {
                for index in order {
                    if let answer = attempt(index) { return answer }
                }
            }
            throw last ?? Failure(status: nil, message: "no coordinator to ask", answer: [:])
        }
    }

    private func failed(_ index: Int, _ why: String) {
        var rng = SystemRandomNumberGenerator()
        lock.withLock {
            circuits[index].recordFailure(now: MonotonicClock.now, policy: policy, using: &rng)
            lastErrors[index] = why
        }
    }
}
