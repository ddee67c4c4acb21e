import DICOM
import Digest
import Foundation

/// De-identifies a data set under the Basic Application Level Confidentiality Profile and the
/// options chosen (`ConfidentialityProfile`), in memory: a header, whose pixel data (not loaded,
/// or loaded) is left as it is — the file around it is streamed by the writer.
///
/// UIDs are replaced by a keyed mapping: `2.25.` and the first 128 bits of HMAC-SHA256 of the
/// original under the sending trust's key, so the same UID always maps to the same one (a
/// study's instances stay one study, a patient's studies stay one patient's), nobody without the
/// key can go back, and the trust can (it keeps what it mapped, to re-identify what comes back).
/// Dates shifted under the modified-dates option move by a number of days derived the same way
/// from the patient, so intervals between a patient's studies survive.
///
/// Stricter than the table where the table alone lets identity through (a fresh read found
/// these): a sequence the profile would give a dummy is emptied, not walked into (its items'
/// text values, dates and codes are not in the table); person names and dates the table does not
/// list are emptied too, wherever they are (Instance Creation Date, a report's observer, an
/// observation's date-time), unless an option keeps dates; a bulk value other than the pixel
/// data (an encapsulated document, a long value of unknown kind) is removed, as it cannot be
/// looked at; and the file meta keeps only what says what the file is.
public struct Deidentifier: Sendable {
    public let options: Set<ConfidentialityProfile.Option>
    /// Whether instances whose pixels may carry burned-in text go all the same (a rule's
    /// `allow-burned-in`); encapsulated documents never do.
    public let allowsBurnedIn: Bool
    private let key: [UInt8]

    public struct KeyTooShort: Error, CustomStringConvertible {
        public var description: String { "a de-identification key has at least 32 bytes" }
    }

    public init(key: [UInt8], options: Set<ConfidentialityProfile.Option> = [], allowsBurnedIn: Bool = false) throws {
        guard key.count >= 32 else { throw KeyTooShort() }
        self.key = key
        self.options = options
        self.allowsBurnedIn = allowsBurnedIn
    }

    /// The de-identifier for one destination: a key of its own, derived from the trust's (the
    /// HMAC of the destination's name under it), so that two peers sent the same study get
    /// unrelated UIDs and cannot link what each holds by them; the trust makes either mapping
    /// again from its one key, to re-identify what each peer sends back.
    public func forDestination(_ name: String) -> Deidentifier {
        // 32 bytes: the key checked when this one was made has at least as many.
        try! Deidentifier(key: mac("destination\u{0}" + name), options: options, allowsBurnedIn: allowsBurnedIn)
    }

    /// The same key under a rule's choice of options.
    public func choosing(_ choice: DeidentificationChoice) -> Deidentifier {
        // The key was checked when this one was made.
        try! Deidentifier(key: key, options: choice.options, allowsBurnedIn: choice.allowsBurnedIn)
    }

    // MARK: - The keyed mapping

    /// HMAC-SHA256 (RFC 2104) of `message` under the key.
    func mac(_ message: String) -> [UInt8] {
        HMACSHA256.mac(key: key, message: Array(message.utf8))
    }

    /// The UID that stands for `original`: `2.25.` and a 128-bit number (PS3.5 §B.2), at most 44
    /// characters.
    public func uid(_ original: String) -> String {
        let digest = mac("uid\u{0}" + original)
        var value = Array(digest.prefix(16))
        // The decimal digits of a 128-bit number, by repeated division.
        var digits: [UInt8] = []
        while value.contains(where: { $0 != 0 }) {
            var remainder = 0
            for index in value.indices {
                let current = remainder << 8 | Int(value[index])
                value[index] = UInt8(current / 10)
                remainder = current % 10
            }
            digits.append(UInt8(remainder))
        }
        return "2.25." + (digits.isEmpty ? "0" : String(digits.reversed().map { Character(String($0)) }))
    }

    /// The UID a de-identified copy carries for `original`: the keyed one, or the original
    /// itself under the Retain UIDs option.
    public func uidAtPeer(_ original: String) -> String {
        options.contains(.retainUIDs) ? original : uid(original)
    }

    /// Days a patient's dates move under the modified-dates option: 1 to 3,650 back.
    public func dateShift(patient: String) -> Int {
        let digest = mac("shift\u{0}" + patient)
        return -(1 + (Int(digest[0]) << 8 | Int(digest[1])) % 3650)
    }

    // MARK: - The data set

    /// The data set de-identified, with the attributes that say so (Patient Identity Removed,
    /// De-identification Method and its codes, Longitudinal Temporal Information Modified).
    public func deidentify(_ data: DataSet) -> DataSet {
        let shift = dateShift(patient: data.string(.patientID) ?? "")
        var out = apply(data, shift: shift)
        out.set(DICOMWriter.textElement(Tag(0x0012, 0x0062), .CS, "YES"))
        let chosen = ConfidentialityProfile.Option.allCases.filter { options.contains($0) }
        let method = (["PS3.15 Basic Application Level Confidentiality Profile"] + chosen.map(\.code.meaning)).joined(separator: "; ")
        out.set(DICOMWriter.textElement(Tag(0x0012, 0x0063), .LO, String(method.prefix(64))))
        let codes = [("113100", "Basic Application Confidentiality Profile")] + chosen.map(\.code)
        out.set(DataElement(tag: Tag(0x0012, 0x0064), vr: .SQ, length: nil, value: .sequence(codes.map { code in
            var item = DataSet()
            item.set(DICOMWriter.textElement(Tag(0x0008, 0x0100), .SH, code.0))
            item.set(DICOMWriter.textElement(Tag(0x0008, 0x0102), .SH, "DCM"))
            item.set(DICOMWriter.textElement(Tag(0x0008, 0x0104), .LO, code.1))
            return item
        })))
        let temporal = options.contains(.retainLongitudinalFullDates) ? "UNMODIFIED" : options.contains(.retainLongitudinalModifiedDates) ? "MODIFIED" : "REMOVED"
        out.set(DICOMWriter.textElement(Tag(0x0028, 0x0303), .CS, temporal))
        return out
    }

    /// Writes the Part 10 file `source` de-identified at `target`, streaming: the header changed
    /// in memory, the pixel data and other bulk values copied from the source as they are
    /// (`StreamingRewrite`: little-endian sources, compressed ones too; big endian and deflated
    /// ones are refused with `.unsupportedTransferSyntax`). Durable when it returns. An instance that may not go
    /// de-identified (`notDeidentifiable`) is refused from the header read for the rewrite —
    /// not read twice — with `.unencodable` and the reason; nothing is written.
    public func write(_ source: String, to target: String) throws(DICOMError) {
        try StreamingRewrite.rewrite(source, to: target, meta: deidentifyMeta, dataSet: checkedAndDeidentified)
    }

    /// The Part 10 file `source` de-identified, as pieces to send (`StreamingRewrite.pieces`):
    /// the header made here, the pixel data a range of the source. Refused as `write` refuses.
    public func pieces(_ source: String) throws(DICOMError) -> [TransferSyntaxConversion.Piece] {
        try StreamingRewrite.pieces(source, meta: deidentifyMeta, dataSet: checkedAndDeidentified)
    }

    private func checkedAndDeidentified(_ data: DataSet) throws -> DataSet {
        if let why = Self.notDeidentifiable(data, allowingBurnedIn: allowsBurnedIn) { throw DICOMError(.unencodable, why) }
        return deidentify(data)
    }

    /// Why an instance may not go de-identified though its header can: its pixels may carry a
    /// name or a number burned in (marked so, or of a kind known to: ultrasound, secondary
    /// capture), which the profile's header changes do not touch, or its content is a document
    /// the profile cannot look into (an encapsulated PDF or CDA). nil: it may go. A rule's
    /// `allow-burned-in` lets the first kind go; the second never does.
    public static func notDeidentifiable(_ header: DataSet, allowingBurnedIn: Bool = false) -> String? {
        let sopClass = header.string(.sopClassUID) ?? ""
        if sopClass.hasPrefix("1.2.840.10008.5.1.4.1.1.104.") || header[Tag(0x0042, 0x0011)] != nil { return "an encapsulated document's content cannot be de-identified" }
        if allowingBurnedIn { return nil }
        let hint = " (a rule may send it with deidentified with allow-burned-in)"
        if header.string(Tag(0x0028, 0x0301))?.uppercased() == "YES" { return "it is marked Burned In Annotation YES" + hint }
        if header.string(.modality)?.uppercased() == "US" { return "ultrasound may carry burned-in text" + hint }
        if sopClass == "1.2.840.10008.5.1.4.1.1.7" || sopClass.hasPrefix("1.2.840.10008.5.1.4.1.1.7.") { return "a secondary capture may carry burned-in text" + hint }
        return nil
    }

    /// The file meta information for the de-identified data set: what says what the file is
    /// (its version, SOP class, transfer syntax), its SOP Instance UID mapped; the source's and
    /// sender's AE titles and any private information left out.
    public func deidentifyMeta(_ meta: DataSet) -> DataSet {
        var out = meta
        out.elements = meta.elements.filter { [0x0000, 0x0001, 0x0002, 0x0010].contains($0.tag.element) }
        if let sop = meta.string(Tag(0x0002, 0x0003)) { out.set(DICOMWriter.textElement(Tag(0x0002, 0x0003), .UI, uidAtPeer(sop))) }
        return out
    }

    /// The pixel data's elements: the one bulk value kept as it is.
    static let pixelTags: Set<Tag> = [Tag(0x7FE0, 0x0008), Tag(0x7FE0, 0x0009), .pixelData]

    func apply(_ data: DataSet, shift: Int) -> DataSet {
        var out = data
        out.elements = []
        let keepsDates = options.contains(.retainLongitudinalFullDates) || options.contains(.retainLongitudinalModifiedDates)
        for element in data.elements {
            // A bulk value other than the pixel data cannot be looked at: it does not go.
            if case .notLoaded = element.value, !Self.pixelTags.contains(element.tag) { continue }
            guard let action = ConfidentialityProfile.action(for: element.tag, options: options) else {
                // Not in the table: names and dates go empty anyway (a report's observer, an
                // observation's date, the instance's creation date).
                if element.vr == .PN || (!keepsDates && (element.vr == .DA || element.vr == .DT)) {
                    out.elements.append(zeroed(element))
                } else {
                    out.elements.append(recursed(element, shift: shift))
                }
                continue
            }
            switch action {
            case .remove:
                continue
            case .keep:
                out.elements.append(recursed(element, shift: shift))
            case .zero, .removeOrZero, .removeZeroOrDummy, .zeroOrDummy:
                out.elements.append(zeroed(element))
            case .dummy, .removeOrDummy:
                out.elements.append(dummy(element, data, shift: shift))
            case .uid:
                out.elements.append(element.vr == .UI ? mapped(element, data) : recursed(element, shift: shift))
            case .referenceSequence:
                out.elements.append(element.vr == .SQ ? recursed(element, shift: shift) : zeroed(element))
            case .clean:
                // Only dates can be cleaned without reading free text (a shifted date is a
                // date of similar meaning); any other value under "clean" is removed.
                if options.contains(.retainLongitudinalModifiedDates), element.vr == .DA || element.vr == .DT {
                    out.elements.append(shifted(element, data, by: shift))
                }
            }
        }
        return out
    }

    /// A sequence's items de-identified in turn (identifying attributes nest); other values as
    /// they are.
    func recursed(_ element: DataElement, shift: Int) -> DataElement {
        guard case .sequence(let items) = element.value else { return element }
        return DataElement(tag: element.tag, vr: .SQ, length: nil, value: .sequence(items.map { apply($0, shift: shift) }))
    }

    func zeroed(_ element: DataElement) -> DataElement {
        if element.vr == .SQ { return DataElement(tag: element.tag, vr: .SQ, length: nil, value: .sequence([])) }
        return DataElement(tag: element.tag, vr: element.vr, length: 0, value: .bytes([]))
    }

    func mapped(_ element: DataElement, _ data: DataSet) -> DataElement {
        let values = data.strings(element.tag).map { $0.trimmingCharacters(in: CharacterSet(charactersIn: " \u{0}")) }.filter { !$0.isEmpty }
        if values.isEmpty { return zeroed(element) }
        return DICOMWriter.textElement(element.tag, .UI, values.map(uid).joined(separator: "\\"))
    }

    func dummy(_ element: DataElement, _ data: DataSet, shift: Int) -> DataElement {
        let text: String
        switch element.vr {
        // A dummy for a sequence is an empty one: its items' text, dates and codes are not in
        // the table, so walking into them would keep them.
        case .SQ: return zeroed(element)
        case .UI: return mapped(element, data)
        case .PN: text = "ANONYMOUS"
        case .DA: text = "19000101"
        case .TM: text = "000000"
        case .DT: text = "19000101000000"
        case .AS: text = "000Y"
        case .DS, .IS: text = "0"
        case .CS, .SH, .LO, .ST, .LT, .UT, .UC: text = "ANONYMIZED"
        case .US, .SS: return DataElement(tag: element.tag, vr: element.vr, length: 2, value: .bytes([0, 0]))
        case .UL, .SL, .FL: return DataElement(tag: element.tag, vr: element.vr, length: 4, value: .bytes([0, 0, 0, 0]))
        case .FD: return DataElement(tag: element.tag, vr: element.vr, length: 8, value: .bytes(ArraySlice(repeating: 0, count: 8)))
        default: return zeroed(element)
        }
        return DICOMWriter.textElement(element.tag, element.vr, text)
    }

    /// A date (DA) or the date of a date-time (DT) moved by `days`; a value that is not a date
    /// is removed rather than kept.
    func shifted(_ element: DataElement, _ data: DataSet, by days: Int) -> DataElement {
        var calendar = Calendar(identifier: .gregorian)
        calendar.timeZone = TimeZone(identifier: "UTC")!
        let values = data.strings(element.tag).map { $0.trimmingCharacters(in: .whitespaces) }
        let moved = values.map { value -> String in
            guard value.count >= 8, let year = Int(value.prefix(4)), let month = Int(value.dropFirst(4).prefix(2)), let day = Int(value.dropFirst(6).prefix(2)),
                let date = calendar.date(from: DateComponents(year: year, month: month, day: day)),
                let target = calendar.date(byAdding: .day, value: days, to: date)
            else { return "" }
            let parts = calendar.dateComponents([.year, .month, .day], from: target)
            return String(format: "%04d%02d%02d", parts.year ?? 1900, parts.month ?? 1, parts.day ?? 1) + value.dropFirst(8)
        }
        if moved.allSatisfy(\.isEmpty) { return zeroed(element) }
        return DICOMWriter.textElement(element.tag, element.vr, moved.joined(separator: "\\"))
    }
}
