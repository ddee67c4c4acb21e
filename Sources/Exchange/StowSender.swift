import DICOM
import DICOMweb
import Foundation
import HTTP
import Transport

/// An instance ready to send: its file and the SOP Instance UID the answer is matched by.
public struct OutgoingInstance: Sendable, Hashable {
    public var path: String
    public var uid: String
    /// What is sent when it is not the file as it is: pieces made of it (a de-identified
    /// instance: the header made here, the pixel data a range of `path`), and the file they
    /// were made of (`stamp`: a file replaced since is not sent).
    public var pieces: [TransferSyntaxConversion.Piece]?
    public var stamp: MultipartFileBody.FileStamp?
    public init(path: String, uid: String, pieces: [TransferSyntaxConversion.Piece]? = nil, stamp: MultipartFileBody.FileStamp? = nil) {
        self.path = path
        self.uid = uid
        self.pieces = pieces
        self.stamp = stamp
    }
}

/// What became of one sent instance.
public struct InstanceOutcome: Sendable {
    public var instance: OutgoingInstance
    public var delivery: DeliveryClass
    /// Delivered, and the peer said it held the instance before this request.
    public var alreadyPresent = false
    /// Why it was not stored, as the server or the transport put it.
    public var reason: String?
    /// When the exchange itself failed: curl's code (35 TLS handshake, 60 the peer's certificate,
    /// 7 connect, 28 timeout ...), for the log; its class is already in `delivery`.
    public var transportCode: Int?
    /// The HTTP status of the answer, when there was one.
    public var status: Int?
}

/// STOW-RS from files (PS3.18 §10.5): the one sender `consort send` and the agent share.
/// Each instance is checked whole before it is sent (`DICOMFile.verify`), streamed from disk
/// (memory stays at one read buffer), and answered for one by one, classified by what the caller
/// does next (`FailureClassifier`).
public enum StowSender {
    /// Each file's SOP Instance UID, from its header; files that are not whole, readable DICOM
    /// are returned apart with the reason.
    public static func identify(_ paths: [String]) -> (instances: [OutgoingInstance], unreadable: [(path: String, reason: String)]) {
        var instances: [OutgoingInstance] = []
        var unreadable: [(String, String)] = []
        for path in paths {
            do {
                // The whole file, not only its header: a file cut short is never sent.
                let file = try DICOMFile.verify(path: path)
                instances.append(OutgoingInstance(path: path, uid: file.dataSet.string(.sopInstanceUID) ?? ""))
            } catch {
                unreadable.append((path, "\(error)"))
            }
        }
        return (instances, unreadable)
    }

    /// One STOW-RS request for a batch; what became of each instance, and why if not stored.
    /// `pace`, when given, is told of every block read from disk before it is sent (a bandwidth
    /// cap sleeps there).
    /// `headers`: fields beside the request's own (an agent says the job's priority, for the
    /// receiver to give a bulk request the CPU and disk only urgent work does not need).
    public static func deliver(
        _ batch: [OutgoingInstance], to base: String, with client: HTTPClient, headers extra: [(String, String)] = [], pace: ((Int) -> Void)? = nil
    ) -> [InstanceOutcome] {
        var outcomes: [String: DeliveryClass] = [:]
        var reasons: [String: String] = [:]
        var held: Set<String> = []
        var transportCode: Int?
        var status: Int?
        do {
            let body = try MultipartFileBody(parts: batch.map { instance in
                instance.pieces.map { .pieces(source: instance.path, $0, stamp: instance.stamp) } ?? .file(instance.path)
            })
            let answer = ByteCollector(limit: 16 << 20)
            let result = Result { () throws(HTTPClientError) -> ClientResponse in
                try client.send(
                    method: "POST", url: base + "/studies",
                    headers: [("Content-Type", body.encoder.contentType()), ("Accept", "application/dicom+json")] + extra,
                    body: { buffer in
                        let n = try body.read(into: buffer)
                        pace?(n)
                        return n
                    }, bodyLength: body.contentLength, sink: answer.append)
            }
            switch result {
            case .success(let response):
                status = response.status
                let parsed = (try? StowResponse.parse(answer.bytes)) ?? StowResponse()
                outcomes = FailureClassifier.outcomes(status: response.status, response: parsed, sent: batch.map(\.uid))
                // A partial answer (202) we cannot read says nothing about which instances were
                // stored: none is counted as delivered on its word.
                if response.status == 202, (try? StowResponse.parse(answer.bytes)) == nil {
                    for file in batch { outcomes[file.uid] = .failed(.transient) }
                }
                for failure in parsed.failed {
                    reasons[failure.sopInstanceUID] = String(format: "failure reason 0x%04X", failure.reason) + (failure.reasonText.map { ": " + $0 } ?? "")
                }
                held = Set(parsed.stored.filter(\.alreadyHeld).map(\.sopInstanceUID))
                    .union(parsed.failed.filter { $0.reason == FailureClassifier.duplicateInstance }.map(\.sopInstanceUID))
                if !(200..<300).contains(response.status) {
                    let text = String(decoding: answer.bytes.prefix(300), as: UTF8.self).trimmingCharacters(in: .whitespacesAndNewlines)
                    for file in batch where reasons[file.uid] == nil { reasons[file.uid] = "HTTP \(response.status) \(text)" }
                }
            case .failure(let error):
                transportCode = error.code
                let failure = FailureClassifier.failure(error)
                for file in batch {
                    outcomes[file.uid] = .failed(failure)
                    reasons[file.uid] = error.callbackError.map { "\($0)" } ?? FailureClassifier.summary(curlCode: error.code).map { "\($0): \(error)" } ?? "\(error)"
                }
            }
        } catch {
            // A file vanished or became unreadable after its header was read: nothing of this batch went out.
            for file in batch {
                outcomes[file.uid] = .failed(.local)
                reasons[file.uid] = "\(error)"
            }
        }
        return batch.map { file in
            let delivery = outcomes[file.uid] ?? .failed(.refused)
            return InstanceOutcome(
                instance: file, delivery: delivery, alreadyPresent: delivery == .delivered && held.contains(file.uid),
                reason: delivery == .delivered ? nil : reasons[file.uid], transportCode: transportCode, status: status)
        }
    }
}

/// Keeps the first `limit` bytes of a response body (an error page, a STOW-RS answer).
public final class ByteCollector {
    public private(set) var bytes: [UInt8] = []
    public let limit: Int
    public init(limit: Int) { self.limit = limit }
    public func append(_ piece: UnsafeRawBufferPointer) {
        if bytes.count < limit { bytes += piece.prefix(limit - bytes.count) }
    }
}

/// QIDO-RS at instance level from the sending side: which instances of a study a peer holds.
public enum HeldInstances {
    /// The SOP Instance UIDs `base` says it holds of `study`; nil when it cannot tell (the peer
    /// does not answer this query, or is down: the caller sends everything, which the receiver
    /// deduplicates anyway).
    /// `headers`: the sender's own fields (its purpose).
    public static func ask(_ base: String, study: String, with client: HTTPClient, headers: [(String, String)] = []) -> Set<String>? {
        let answer = ByteCollector(limit: 64 << 20)
        guard let response = try? client.send(method: "GET", url: "\(base)/studies/\(study)/instances", headers: [("Accept", "application/dicom+json")] + headers, sink: answer.append),
            response.status == 200 || response.status == 204
        else { return nil }
        if response.status == 204 || answer.bytes.isEmpty { return [] }
        guard let items = try? JSONSerialization.jsonObject(with: Data(answer.bytes)) as? [[String: Any]] else { return nil }
        return Set(items.compactMap { (($0["00080018"] as? [String: Any])?["Value"] as? [Any])?.first as? String })
    }
}
