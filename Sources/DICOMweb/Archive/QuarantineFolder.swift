import DICOM
import Digest
import Foundation

/// The instances a receiver kept aside because one with the same SOP Instance UID and other bytes
/// was already held (`StowIngest`): `STORE/.quarantine/<StudyUID>/<SOPUID>.<sha256>.dcm`. Each
/// waits for a person to decide which copy is right; nothing here is served or routed.
public struct QuarantineFolder: Sendable {
    public struct Entry: Sendable {
        public var studyUID: String
        public var sopInstanceUID: String
        /// SHA-256 of the quarantined copy (from its name) and of the copy held in the store.
        public var receivedDigest: String
        public var heldDigest: String?
        public var path: String
        public var heldPath: String
        public var size: Int
        public var received: Date
    }

    public let store: String
    public init(store: String) { self.store = store }

    public var folder: String { "\(store)/\(StowIngest.quarantineFolderName)" }

    /// Every quarantined instance, oldest first. Hashes of the held copies only when asked for
    /// (reading each held file whole).
    public func entries(hashingHeldCopies: Bool = false) -> [Entry] {
        var out: [Entry] = []
        let studies = ((try? FileManager.default.contentsOfDirectory(atPath: folder)) ?? []).filter { UID.isValid($0) }
        for study in studies {
            for name in (try? FileManager.default.contentsOfDirectory(atPath: "\(folder)/\(study)")) ?? [] where name.hasSuffix(".dcm") {
                // <SOPUID>.<64 hex digits>.dcm
                let stem = name.dropLast(4)
                guard let dot = stem.lastIndex(of: "."), stem.distance(from: dot, to: stem.endIndex) == 65 else { continue }
                let uid = String(stem[..<dot]), digest = String(stem[stem.index(after: dot)...])
                guard UID.isValid(uid) else { continue }
                let path = "\(folder)/\(study)/\(name)", held = "\(store)/\(study)/\(uid).dcm"
                let attributes = try? FileManager.default.attributesOfItem(atPath: path)
                out.append(
                    Entry(
                        studyUID: study, sopInstanceUID: uid, receivedDigest: digest,
                        heldDigest: hashingHeldCopies ? SHA256Hasher.hex(ofFile: held) : nil, path: path, heldPath: held,
                        size: (attributes?[.size] as? Int) ?? 0, received: (attributes?[.modificationDate] as? Date) ?? .distantPast))
            }
        }
        return out.sorted { $0.received < $1.received }
    }
}
