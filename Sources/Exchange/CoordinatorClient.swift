import DICOM
import Foundation
import Transport

/// An agent's (and `consort locate`'s) side of the coordinator's API: HTTPS with the site's
/// own certificate, JSON in and out, every call bounded by the client's timeouts.
public final class CoordinatorClient: @unchecked Sendable {
    public let base: String
    /// Replaced whole when the TLS material is (`replaceTLS`); used under `lock`.
    private var client: HTTPClient
    private let lock = NSLock()

    public struct Failure: Error, CustomStringConvertible {
        /// The HTTP status, or nil when the coordinator could not be reached.
        public let status: Int?
        public let message: String
        public let answer: [String: Any]
        public var description: String { status.map { "the coordinator answered \($0): \(message)" } ?? "cannot reach the coordinator: \(message)" }
    }

    /// `totalTimeout`: the most any one call takes, seconds (a caller whose own client waits on
    /// the answer asks for less).
    public init(base: String, tls: TLSConfiguration?, totalTimeout: Int = 30) throws {
        self.base = base.hasSuffix("/") ? String(base.dropLast()) : base
        var options = HTTPClient.Options(tls: tls)
        options.totalTimeout = totalTimeout
        client = try HTTPClient(options)
    }

    /// New certificate, key, CA or CRL (SIGHUP): the next request connects afresh with them.
    public func replaceTLS(_ tls: TLSConfiguration) throws {
        var options = lock.withLock { client.options }
        options.tls = tls
        let fresh = try HTTPClient(options)
        lock.withLock { client = fresh }
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
    /// times the coordinator's answer, not the client's JSON parser sharing its CPUs).
    public func exchange(_ method: String, _ path: String, body: JSON? = nil, purpose: String? = nil) throws -> (status: Int, answer: [UInt8]) {
        let collector = ByteCollector(limit: 256 << 20)
        let bytes = body.map { $0.bytes() } ?? []
        var offset = 0
        do {
            let response = try lock.withLock {
                try client.send(
                    method: method, url: base + path,
                    headers: [("Content-Type", "application/json"), ("Accept", "application/json")] + (purpose.map { [(ConsortField.purpose, $0)] } ?? []),
                    body: body == nil ? nil : { buffer in
                        let n = min(buffer.count, bytes.count - offset)
                        buffer.copyBytes(from: bytes[offset..<(offset + n)])
                        offset += n
                        return n
                    }, bodyLength: body == nil ? nil : bytes.count, sink: collector.append)
            }
            return (response.status, collector.bytes)
        } catch {
            throw Failure(status: nil, message: "\(error)", answer: [:])
        }
    }
}
