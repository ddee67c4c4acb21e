/// What PS3.6 says about one attribute.
public struct DictionaryEntry: Sendable {
    public let tag: Tag
    /// The VR, or the first of the choices when PS3.6 gives several ("US or SS").
    public let vr: VR
    /// Non-nil when PS3.6 gives a choice of VRs; resolved per data set (see `AmbiguousVR`).
    public let ambiguity: AmbiguousVR?
    /// Value multiplicity as PS3.6 writes it: "1", "1-n", "2-2n", ...
    public let vm: String
    public let keyword: String
    public let name: String
    public let isRetired: Bool
}

/// The VR choices PS3.6 leaves to the data set (PS3.5 Annex A; pydicom's `correct_ambiguous_vr`).
public enum AmbiguousVR: Sendable, Equatable {
    /// US if Pixel Representation is 0, else SS (e.g. Smallest Image Pixel Value).
    case usOrSS
    /// OW in implicit VR; OB or OW by Bits Allocated in explicit VR (Pixel Data, Waveform Data).
    case obOrOW
    /// LUT Data (0028,3006): US when the LUT Descriptor says one entry, else OW.
    case usOrOW
    /// "US or SS or OW": treated like US or SS.
    case usOrSSOrOW
}

/// A private attribute known from a creator's published dictionary.
public struct PrivateDictionaryEntry: Sendable {
    public let creator: String
    public let vr: VR
    public let ambiguity: AmbiguousVR?
    public let vm: String
    public let name: String
}

/// The DICOM data dictionary (PS3.6): tag ⇄ keyword, VR, VM, name; repeating groups (50xx, 60xx,
/// ...) and the private dictionaries of well-known creators.
///
/// The tables are generated into `DataDictionary+Generated.swift` and parsed on first use
/// (a Swift `static let` is initialised once, thread-safely).
public enum DataDictionary {
    public static func entry(for tag: Tag) -> DictionaryEntry? {
        if let entry = tables.byTag[tag.rawValue] { return entry }
        if tag.isPrivate { return nil }
        for repeater in tables.repeaters where tag.rawValue & repeater.mask == repeater.value {
            return repeater.entry
        }
        return nil
    }

    public static func tag(forKeyword keyword: String) -> Tag? { tables.byKeyword[keyword] }

    public static func keyword(for tag: Tag) -> String? { entry(for: tag)?.keyword }

    /// The entry for a private element, given the value of the creator element that reserved
    /// its block (e.g. "SIEMENS CSA HEADER"). Looked up as pydicom does: exact tag, then with
    /// the block byte as "xx", then with the group's low byte as well.
    public static func privateEntry(for tag: Tag, creator: String) -> PrivateDictionaryEntry? {
        guard let table = privateTables[creator] else { return nil }
        let group = UInt32(tag.group), element = UInt32(tag.element)
        if let e = table[group << 16 | element] { return e }
        if let e = table[group << 16 | 0xFF00 | (element & 0xFF)] { return e }
        // "ggxxxxee": group's high byte only, any block (pydicom's third form).
        if let e = table[(group & 0xFF00) << 16 | 0x00FF_FF00 | (element & 0xFF)] { return e }
        return nil
    }

    // MARK: - Parsing the generated tables

    struct Repeater: Sendable {
        let mask: UInt32
        let value: UInt32
        let entry: DictionaryEntry
    }

    struct Tables: Sendable {
        var byTag: [UInt32: DictionaryEntry] = [:]
        var byKeyword: [String: Tag] = [:]
        var repeaters: [Repeater] = []
    }

    static let tables: Tables = {
        var tables = Tables()
        tables.byTag.reserveCapacity(5200)
        tables.byKeyword.reserveCapacity(5200)
        for line in standardTable.split(separator: "\n") {
            let fields = line.split(separator: "\t", omittingEmptySubsequences: false)
            guard fields.count >= 6, let (mask, value) = parsePattern(fields[0]) else { continue }
            let (vr, ambiguity) = parseVR(fields[1])
            let keyword = String(fields[3])
            let entry = DictionaryEntry(
                tag: Tag(rawValue: value), vr: vr, ambiguity: ambiguity, vm: String(fields[2]),
                keyword: keyword, name: String(fields[4]), isRetired: fields[5] == "R")
            if mask == 0xFFFF_FFFF {
                tables.byTag[value] = entry
            } else {
                tables.repeaters.append(Repeater(mask: mask, value: value, entry: entry))
            }
            if !keyword.isEmpty, tables.byKeyword[keyword] == nil {
                tables.byKeyword[keyword] = Tag(rawValue: value)
            }
        }
        return tables
    }()

    /// creator → (tag pattern with 'x' nibbles set to F → entry).
    static let privateTables: [String: [UInt32: PrivateDictionaryEntry]] = {
        var result: [String: [UInt32: PrivateDictionaryEntry]] = [:]
        for line in privateTable.split(separator: "\n") {
            let fields = line.split(separator: "\t", omittingEmptySubsequences: false)
            guard fields.count >= 5 else { continue }
            let pattern = String(fields[1].map { $0 == "x" ? "F" : $0 })
            guard let key = UInt32(pattern, radix: 16) else { continue }
            let creator = String(fields[0])
            let (vr, ambiguity) = parseVR(fields[2])
            result[creator, default: [:]][key] = PrivateDictionaryEntry(
                creator: creator, vr: vr, ambiguity: ambiguity, vm: String(fields[3]),
                name: String(fields[4]))
        }
        return result
    }()

    /// "0010xx10" → (mask with x nibbles cleared, value with x nibbles zero).
    static func parsePattern(_ text: Substring) -> (mask: UInt32, value: UInt32)? {
        guard text.utf8.count == 8 else { return nil }
        var mask: UInt32 = 0, value: UInt32 = 0
        for c in text.utf8 {
            mask <<= 4
            value <<= 4
            if c == UInt8(ascii: "x") { continue }
            guard let digit = hexDigit(c) else { return nil }
            mask |= 0xF
            value |= UInt32(digit)
        }
        return (mask, value)
    }

    static func parseVR(_ text: Substring) -> (VR, AmbiguousVR?) {
        switch text {
        case "US or SS": return (.US, .usOrSS)
        case "OB or OW", "OB_OW": return (.OB, .obOrOW)
        case "US or OW": return (.US, .usOrOW)
        case "US or SS or OW": return (.US, .usOrSSOrOW)
        default:
            // "NONE" (item tags) and anything unexpected: UN.
            return (VR(text.prefix(2)) ?? .UN, nil)
        }
    }
}

@inlinable func hexDigit(_ c: UInt8) -> UInt8? {
    switch c {
    case UInt8(ascii: "0")...UInt8(ascii: "9"): return c - UInt8(ascii: "0")
    case UInt8(ascii: "A")...UInt8(ascii: "F"): return c - UInt8(ascii: "A") + 10
    case UInt8(ascii: "a")...UInt8(ascii: "f"): return c - UInt8(ascii: "a") + 10
    default: return nil
    }
}
