import DICOM
import Foundation

/// A result that came back from a peer the study went to de-identified (issue 29), put back into
/// the trust's own identity: every UID the peer was given for the study (its study, series,
/// instances and frames of reference, under the trust's key) replaced by the original wherever it
/// appears — the result's own study, its evidence, its references to the images it measured —
/// and the patient (and, for a result in the study itself, the study's own attributes) written
/// again as the trust holds them. The result's own new UIDs (its instance, its series, codes)
/// are not the study's and stay as the peer made them.
///
/// The mapping is built by the trust from what it holds (`uidAtPeer` of each UID of the
/// original study), never read from the result: a peer cannot make a result land in a study by
/// naming it.
public struct Reidentification: Sendable {
    /// The UIDs the peer knows, to the originals they stand for.
    public var originals: [String: String]
    /// The original study's header (one instance's): the patient and study attributes restored
    /// from it.
    public var identity: DataSet
    /// Whether the result is in the study itself (its Study Instance UID was the study's at the
    /// peer): then the study's attributes (date, accession number, description) are restored
    /// too; a result in a study of its own keeps its own.
    public var restoresStudy: Bool

    public init(originals: [String: String], identity: DataSet, restoresStudy: Bool) {
        self.originals = originals
        self.identity = identity
        self.restoresStudy = restoresStudy
    }

    /// The original study's UIDs as a peer knows them under `deidentifier` (its key and
    /// options), each to its original.
    public static func originals(of uids: some Sequence<String>, under deidentifier: Deidentifier) -> [String: String] {
        var map: [String: String] = [:]
        for uid in uids where !uid.isEmpty { map[deidentifier.uidAtPeer(uid)] = uid }
        return map
    }

    /// The patient's attributes (Patient module, Patient Study module) and what marked the
    /// instance de-identified: written again as the trust holds them (removed where it holds
    /// none — a de-identified marker, above all).
    static let patientTags: [Tag] = [
        Tag(0x0010, 0x0010), Tag(0x0010, 0x0020), Tag(0x0010, 0x0021), Tag(0x0010, 0x0024), Tag(0x0010, 0x0030),
        Tag(0x0010, 0x0032), Tag(0x0010, 0x0040), Tag(0x0010, 0x1000), Tag(0x0010, 0x1001), Tag(0x0010, 0x1002),
        Tag(0x0010, 0x1005), Tag(0x0010, 0x1010), Tag(0x0010, 0x1020), Tag(0x0010, 0x1030), Tag(0x0010, 0x1040),
        Tag(0x0010, 0x1060), Tag(0x0010, 0x2000), Tag(0x0010, 0x2110), Tag(0x0010, 0x2154), Tag(0x0010, 0x2160),
        Tag(0x0010, 0x2180), Tag(0x0010, 0x21B0), Tag(0x0010, 0x4000),
        Tag(0x0012, 0x0062), Tag(0x0012, 0x0063), Tag(0x0012, 0x0064), Tag(0x0028, 0x0303),
    ]
    /// The study's attributes (General Study module): for a result in the study itself.
    static let studyTags: [Tag] = [
        Tag(0x0008, 0x0020), Tag(0x0008, 0x0030), Tag(0x0008, 0x0050), Tag(0x0008, 0x0051), Tag(0x0008, 0x0090),
        Tag(0x0008, 0x1030), Tag(0x0020, 0x0010),
    ]

    public struct Refused: Error, CustomStringConvertible {
        public var description: String
    }

    /// The result in the trust's identity. Refused when the result's own instance UID is one
    /// the study's instances went by: re-identified, it would take an image's place.
    public func apply(_ result: DataSet) throws(Refused) -> DataSet {
        // (The reason goes back to the peer: it names only what the peer was given.)
        if let own = result.string(.sopInstanceUID), originals[own] != nil {
            throw Refused(description: "its SOP Instance UID \(own) is one an instance of the study was sent under: a result is a new instance")
        }
        var out = mapped(result, depth: 0)
        let restored = Self.patientTags + (restoresStudy ? Self.studyTags : [])
        // The restored values are in the original's character set: the result must say it, and
        // can, unless its own text is in another that is not ASCII.
        let charset = Tag(0x0008, 0x0005)
        let originalSet = identity.string(charset) ?? "", resultSet = result.string(charset) ?? ""
        if originalSet != resultSet, restored.contains(where: { identity[$0].map(Self.hasNonASCIIText) ?? false }) {
            var own = out
            for tag in restored { _ = own.remove(tag) }
            guard !own.elements.contains(where: Self.hasNonASCIIText) else {
                throw Refused(description: "the patient's details are in character set \"\(originalSet)\" and the result's own text in \"\(resultSet)\": it cannot say both")
            }
            if let element = identity[charset] { out.set(element) } else { _ = out.remove(charset) }
        }
        for tag in restored {
            if let element = identity[tag] { out.set(element) } else { _ = out.remove(tag) }
        }
        return out
    }

    /// Whether a text value (or one in a sequence's items) is not plain ASCII.
    static func hasNonASCIIText(_ element: DataElement) -> Bool {
        switch element.value {
        case .sequence(let items): return items.contains { $0.elements.contains(where: hasNonASCIIText) }
        case .bytes(let bytes):
            guard [.PN, .LO, .SH, .ST, .LT, .UT, .UC, .CS].contains(element.vr) else { return false }
            // Beyond ASCII, or ISO 2022 escapes (a 7-bit Japanese or Korean name).
            return bytes.contains { $0 >= 0x80 || $0 == 0x1B }
        default: return false
        }
    }

    /// Every UID value found in the mapping replaced, in sequences too (evidence, references).
    private func mapped(_ data: DataSet, depth: Int) -> DataSet {
        var out = data
        out.elements = data.elements.map { element in
            switch element.value {
            case .sequence(let items) where depth < 16:
                return DataElement(tag: element.tag, vr: .SQ, length: nil, value: .sequence(items.map { mapped($0, depth: depth + 1) }))
            default:
                guard element.vr == .UI else { return element }
                let values = data.strings(element.tag).map { $0.trimmingCharacters(in: CharacterSet(charactersIn: " \u{0}")) }
                guard values.contains(where: { originals[$0] != nil }) else { return element }
                return DICOMWriter.textElement(element.tag, .UI, values.map { originals[$0] ?? $0 }.joined(separator: "\\"))
            }
        }
        return out
    }
}
