import DICOM
import DICOMweb
import Digest
import Foundation
import Platform
import Transport

/// What a push job will deliver of a study, said to the receiving agent before the instances
/// (`PUT {base}/consort/v1/studies/{study}/manifest`): each instance's SOP Instance UID, size and
/// the SHA-256 of the bytes that will be sent. With it the receiver knows exactly when it holds
/// the whole study — its study-stable rules fire then, not after a quiet timer that guesses —
/// and a study still missing instances is visible as such. A Consort endpoint beside the
/// DICOMweb ones: a plain DICOMweb peer (Orthanc, an AI service) answers 404 and just gets
/// STOW-RS.
///
/// `final`: the sender holds the study as complete (its job came from a study-stable rule). A
/// manifest of a job started on the first instance lists what has arrived so far; the receiver
/// goes on using its quiet timer for that study.
public struct StudyManifest: Sendable, Equatable {
    public struct Instance: Sendable, Equatable {
        public var sop: String
        public var size: Int
        public var sha256: String
        public init(sop: String, size: Int, sha256: String) {
            self.sop = sop
            self.size = size
            self.sha256 = sha256
        }
    }

    public var study: String
    public var final: Bool
    public var instances: [Instance]

    public init(study: String, final: Bool, instances: [Instance]) {
        self.study = study
        self.final = final
        self.instances = instances
    }

    /// A manifest of at most this many instances (about 150 bytes each on the wire): larger
    /// than any real study (a 5,000-slice CT is 5,000), and a bound on what a peer may make us hold.
    public static let maximumInstances = 100_000
    public static let maximumBody = 24 << 20

    public static func path(study: String) -> String { "/consort/v1/studies/\(study)/manifest" }

    /// Made from the files about to be sent: each hashed as it is on disk now, unless `known`
    /// gives its SHA-256 already (keyed by SOP Instance UID).
    public static func make(study: String, final: Bool, files: [(sop: String, path: String, size: Int)], known: [String: String] = [:]) throws -> StudyManifest {
        var instances: [Instance] = []
        instances.reserveCapacity(files.count)
        for file in files {
            guard let digest = known[file.sop] ?? SHA256Hasher.hex(ofFile: file.path) else {
                throw PlatformError("cannot read \(file.path) to hash it for the study's manifest", errno: errno == 0 ? EIO : errno)
            }
            instances.append(Instance(sop: file.sop, size: file.size, sha256: digest))
        }
        return StudyManifest(study: study, final: final, instances: instances)
    }

    public var json: JSON {
        .object([
            ("study", .string(study)), ("final", .bool(final)),
            ("instances", .array(instances.map { .object([("sop", .string($0.sop)), ("size", .int(Int64($0.size))), ("sha256", .string($0.sha256))]) })),
        ])
    }

    /// A manifest as received; nil with the reason when it is not one.
    public static func parse(_ bytes: [UInt8], study: String) -> Result<StudyManifest, ParseError> {
        guard let object = try? JSONSerialization.jsonObject(with: Data(bytes)) as? [String: Any] else { return .failure(ParseError("the body is not a JSON object")) }
        guard (object["study"] as? String) == study else { return .failure(ParseError("the manifest's study is not the one in the path")) }
        guard let items = object["instances"] as? [[String: Any]] else { return .failure(ParseError("no \"instances\" array")) }
        guard !items.isEmpty else { return .failure(ParseError("a manifest lists at least one instance")) }
        guard items.count <= maximumInstances else { return .failure(ParseError("more than \(maximumInstances) instances")) }
        var instances: [Instance] = []
        instances.reserveCapacity(items.count)
        for (index, item) in items.enumerated() {
            guard let sop = item["sop"] as? String, UID.isValid(sop), let size = (item["size"] as? NSNumber)?.intValue, size >= 0,
                let digest = item["sha256"] as? String, digest.utf8.count == 64, digest.utf8.allSatisfy({ (48...57).contains($0) || (97...102).contains($0) })
            else { return .failure(ParseError("instance \(index + 1): needs a valid \"sop\", a \"size\" and a 64-hex-digit \"sha256\"")) }
            instances.append(Instance(sop: sop, size: size, sha256: digest))
        }
        guard Set(instances.map(\.sop)).count == instances.count else { return .failure(ParseError("an instance is listed twice")) }
        return .success(StudyManifest(study: study, final: object["final"] as? Bool ?? false, instances: instances))
    }

    public struct ParseError: Error, CustomStringConvertible {
        public var description: String
        init(_ description: String) { self.description = description }
    }

    /// The receiver's answer.
    public enum Answer: Sendable, Equatable {
        /// Taken: how many of its instances the receiver holds already.
        case taken(held: Int)
        /// The peer does not speak manifests (a plain DICOMweb peer): it just gets STOW-RS.
        case notSpoken
        /// Refused or failed; the push goes on without it (the receiver keeps its quiet timer).
        case failed(String)
    }

    /// Puts the manifest at the peer. Never throws: a manifest is an improvement on the quiet
    /// timer, not a condition of delivery.
    /// `headers`: the sender's own fields (its purpose).
    public func send(to base: String, with client: HTTPClient, headers: [(String, String)] = []) -> Answer {
        let body = json.bytes()
        var offset = 0
        let answer = ByteCollector(limit: 1 << 16)
        do {
            let response = try client.send(
                method: "PUT", url: base + Self.path(study: study), headers: [("Content-Type", "application/json")] + headers,
                body: { buffer in
                    let n = min(buffer.count, body.count - offset)
                    body.withUnsafeBytes { source in buffer.baseAddress!.copyMemory(from: source.baseAddress! + offset, byteCount: n) }
                    offset += n
                    return n
                }, bodyLength: body.count, sink: answer.append)
            switch response.status {
            case 200...299:
                let object = (try? JSONSerialization.jsonObject(with: Data(answer.bytes))) as? [String: Any]
                return .taken(held: (object?["held"] as? NSNumber)?.intValue ?? 0)
            case 404, 405, 501: return .notSpoken
            default: return .failed("the peer answered \(response.status): \(String(decoding: answer.bytes.prefix(200), as: UTF8.self))")
            }
        } catch {
            return .failed("\(error)")
        }
    }
}
