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
/// The tables are generated into `DataDictionary+Generated.swift` as text and indexed on first use
/// by scanning their bytes (a Swift `static let` is initialised once, thread-safely): the index
/// holds numbers only, and an entry's strings are made when someone asks for that entry. Indexing
/// both tables costs about a millisecond.
public enum DataDictionary {
    public static func entry(for tag: Tag) -> DictionaryEntry? {
        let index = standardIndex
        if let row = index.byTag.row(for: tag.rawValue) { return index.entry(row) }
        if tag.isPrivate { return nil }
        for repeater in index.repeaters where tag.rawValue & repeater.mask == repeater.value {
            return index.entry(repeater.row)
        }
        return nil
    }

    /// The VR (and any ambiguity) of a tag, without making the entry's strings: the reader's
    /// lookup for implicit VR data sets.
    static func vr(for tag: Tag) -> (VR, AmbiguousVR?)? {
        if let row = standardIndex.byTag.row(for: tag.rawValue) { return (standardIndex.rows[row].vr, standardIndex.rows[row].ambiguity) }
        if tag.isPrivate { return nil }
        for repeater in standardIndex.repeaters where tag.rawValue & repeater.mask == repeater.value {
            return (standardIndex.rows[repeater.row].vr, standardIndex.rows[repeater.row].ambiguity)
        }
        return nil
    }

    public static func tag(forKeyword keyword: String) -> Tag? { keywordIndex[keyword] }

    public static func keyword(for tag: Tag) -> String? { entry(for: tag)?.keyword }

    /// Every keyword the dictionary knows (for "did you mean" suggestions).
    public static var allKeywords: Dictionary<String, Tag>.Keys { keywordIndex.keys }

    /// The entry for a private element, given the value of the creator element that reserved
    /// its block (e.g. "SIEMENS CSA HEADER"). Looked up as pydicom does: exact tag, then with
    /// the block byte as "xx", then with the group's low byte as well.
    public static func privateEntry(for tag: Tag, creator: String) -> PrivateDictionaryEntry? {
        guard let table = privateIndex[creator] else { return nil }
        let group = UInt32(tag.group), element = UInt32(tag.element)
        let keys = [
            group << 16 | element,
            group << 16 | 0xFF00 | (element & 0xFF),
            // "ggxxxxee": the group's high byte only, any block (pydicom's third form).
            (group & 0xFF00) << 16 | 0x00FF_FF00 | (element & 0xFF),
        ]
        for key in keys {
            if let line = table[key] { return parsePrivateLine(line, creator: creator) }
        }
        return nil
    }

    // MARK: - Indexing the generated tables

    /// One line of a table: where it is in the text, and the parsed VR.
    struct Row: Sendable {
        let start: Int
        let end: Int
        let vr: VR
        let ambiguity: AmbiguousVR?
    }

    struct Repeater: Sendable {
        let mask: UInt32
        let value: UInt32
        let row: Int
    }

    struct StandardIndex: Sendable {
        var rows: [Row] = []
        var byTag = TagTable(capacity: 5200)
        var repeaters: [Repeater] = []

        func entry(_ row: Int) -> DictionaryEntry {
            let fields = DataDictionary.fields(of: DataDictionary.standardTable, rows[row])
            let tag = DataDictionary.parsePattern(fields[0])?.value ?? 0
            return DictionaryEntry(
                tag: Tag(rawValue: tag), vr: rows[row].vr, ambiguity: rows[row].ambiguity,
                vm: fields.count > 2 ? String(fields[2]) : "", keyword: fields.count > 3 ? String(fields[3]) : "",
                name: fields.count > 4 ? String(fields[4]) : "", isRetired: fields.count > 5 && fields[5] == "R")
        }
    }

    static let standardIndex: StandardIndex = {
        var index = StandardIndex()
        index.rows.reserveCapacity(5200)
        forEachLine(of: standardTable) { start, end, bytes in
            // TAG \t VR ...: the tag pattern is the first 8 bytes, the VR field starts at 9.
            guard end - start > 11, let (mask, value) = parsePattern(bytes[start..<start + 8]) else { return }
            let vrEnd = (start + 9..<end).first { bytes[$0] == 0x09 } ?? end
            let (vr, ambiguity) = parseVR(bytes[start + 9..<vrEnd])
            let row = index.rows.count
            index.rows.append(Row(start: start, end: end, vr: vr, ambiguity: ambiguity))
            if mask == 0xFFFF_FFFF {
                index.byTag.insert(value, row: row)
            } else {
                index.repeaters.append(Repeater(mask: mask, value: value, row: row))
            }
        }
        return index
    }()

    static let keywordIndex: [String: Tag] = {
        var map: [String: Tag] = [:]
        let index = standardIndex
        map.reserveCapacity(index.rows.count)
        for row in index.rows {
            let fields = fields(of: standardTable, row)
            guard fields.count > 3, !fields[3].isEmpty, let (_, value) = parsePattern(fields[0]) else { continue }
            let keyword = String(fields[3])
            if map[keyword] == nil { map[keyword] = Tag(rawValue: value) }
        }
        return map
    }()

    /// creator → (tag pattern with 'x' nibbles set to F → the line's text).
    static let privateIndex: [String: [UInt32: Substring]] = {
        var result: [String: [UInt32: Substring]] = [:]
        var current: (name: Substring, table: [UInt32: Substring])?
        let text = privateTable
        forEachLine(of: text) { start, end, bytes in
            guard let tab = (start..<end).first(where: { bytes[$0] == 0x09 }), tab + 9 <= end else { return }
            var key: UInt32 = 0
            for b in bytes[tab + 1..<tab + 9] {
                key = key << 4 | UInt32(b == UInt8(ascii: "x") ? 0xF : hexDigit(b) ?? 0)
            }
            let utf8 = text.utf8
            let line = Substring(utf8[utf8.index(utf8.startIndex, offsetBy: start)..<utf8.index(utf8.startIndex, offsetBy: end)])
            let creator = line.prefix(tab - start)
            if current?.name != creator {
                if let done = current { result[String(done.name)] = done.table }
                current = (creator, [:])
            }
            current!.table[key] = line
        }
        if let done = current { result[String(done.name)] = done.table }
        return result
    }()

    /// A private element's VR, as the reader needs it.
    struct PrivateVR: Sendable {
        let vr: VR
        let ambiguity: AmbiguousVR?
    }

    /// creator → (tag pattern → VR), parsed once from `privateIndex` (about a millisecond): the
    /// reader finds a creator's table once, when it reads the creator element, and then each of
    /// its elements by number. Hashing the creator's name and splitting its dictionary line for
    /// every private element of an implicit VR file cost several percent of reading a header.
    static let privateVRIndex: [String: [UInt32: PrivateVR]] = privateIndex.mapValues { table in
        table.compactMapValues { line in
            // creator \t tag \t VR \t VM \t name: the third field, on lines with all five.
            let fields = line.utf8.split(separator: 0x09, maxSplits: 4, omittingEmptySubsequences: false)
            guard fields.count >= 5 else { return nil }
            let (vr, ambiguity) = parseVR(fields[2])
            return PrivateVR(vr: vr, ambiguity: ambiguity)
        }
    }

    /// A private element's VR in its creator's table (from `privateVRIndex`), found as
    /// `privateEntry` finds it.
    static func privateVR(for tag: Tag, in table: [UInt32: PrivateVR]) -> PrivateVR? {
        let group = UInt32(tag.group), element = UInt32(tag.element)
        if let found = table[group << 16 | element] { return found }
        if let found = table[group << 16 | 0xFF00 | (element & 0xFF)] { return found }
        return table[(group & 0xFF00) << 16 | 0x00FF_FF00 | (element & 0xFF)]
    }

    static func parsePrivateLine(_ line: Substring, creator: String) -> PrivateDictionaryEntry? {
        let fields = line.split(separator: "\t", omittingEmptySubsequences: false)
        guard fields.count >= 5 else { return nil }
        let (vr, ambiguity) = parseVR(fields[2].utf8)
        return PrivateDictionaryEntry(creator: creator, vr: vr, ambiguity: ambiguity, vm: String(fields[3]), name: String(fields[4]))
    }

    /// Calls `body(start, end, bytes)` for each line of `text`, offsets into its UTF-8 bytes.
    static func forEachLine(of text: String, _ body: (Int, Int, UnsafeBufferPointer<UInt8>) -> Void) {
        var text = text
        text.withUTF8 { bytes in
            var start = 0
            for i in 0..<bytes.count where bytes[i] == 0x0A {
                if i > start { body(start, i, bytes) }
                start = i + 1
            }
            if start < bytes.count { body(start, bytes.count, bytes) }
        }
    }

    static func fields(of text: String, _ row: Row) -> [Substring] {
        let utf8 = text.utf8
        let line = Substring(utf8[utf8.index(utf8.startIndex, offsetBy: row.start)..<utf8.index(utf8.startIndex, offsetBy: row.end)])
        return line.split(separator: "\t", omittingEmptySubsequences: false)
    }

    /// "0010xx10" → (mask with x nibbles cleared, value with x nibbles zero).
    static func parsePattern<C: Collection<UInt8>>(_ text: C) -> (mask: UInt32, value: UInt32)? {
        guard text.count == 8 else { return nil }
        var mask: UInt32 = 0, value: UInt32 = 0
        for c in text {
            mask <<= 4
            value <<= 4
            if c == UInt8(ascii: "x") { continue }
            guard let digit = hexDigit(c) else { return nil }
            mask |= 0xF
            value |= UInt32(digit)
        }
        return (mask, value)
    }

    static func parsePattern(_ text: Substring) -> (mask: UInt32, value: UInt32)? { parsePattern(text.utf8) }

    static func parseVR<C: Collection<UInt8>>(_ field: C) -> (VR, AmbiguousVR?) {
        let bytes = Array(field)
        switch bytes {
        case Array("US or SS".utf8): return (.US, .usOrSS)
        case Array("OB or OW".utf8), Array("OB_OW".utf8): return (.OB, .obOrOW)
        case Array("US or OW".utf8): return (.US, .usOrOW)
        case Array("US or SS or OW".utf8): return (.US, .usOrSSOrOW)
        default:
            // "NONE" (item tags) and anything unexpected: UN.
            guard bytes.count == 2 else { return (.UN, nil) }
            return (VR(bytes[0], bytes[1]), nil)
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

/// Tag → row of the dictionary: open addressing with a multiplicative hash. The reader looks up
/// every element of an implicit VR data set here; Swift's Dictionary (SipHash, seeded per
/// process) cost about 5% of reading a header.
struct TagTable: Sendable {
    /// tag << 32 | (row + 1); 0 is an empty slot.
    private var slots: [UInt64]
    private let shift: UInt32
    private var mask: Int { slots.count - 1 }

    init(capacity: Int) {
        var bits: UInt32 = 4
        while 1 << bits < capacity * 2 { bits += 1 }  // at most half full: short probes
        slots = Array(repeating: 0, count: 1 << bits)
        shift = 32 - bits
    }

    @inline(__always) private func home(_ tag: UInt32) -> Int { Int((tag &* 0x9E37_79B9) >> shift) }

    mutating func insert(_ tag: UInt32, row: Int) {
        precondition(row < Int(UInt32.max), "too many rows")
        var i = home(tag)
        while slots[i] != 0 && UInt32(truncatingIfNeeded: slots[i] >> 32) != tag { i = (i + 1) & mask }
        slots[i] = UInt64(tag) << 32 | UInt64(row + 1)
    }

    @inline(__always) func row(for tag: UInt32) -> Int? {
        var i = home(tag)
        while true {
            let slot = slots[i]
            if slot == 0 { return nil }
            if UInt32(truncatingIfNeeded: slot >> 32) == tag { return Int(UInt32(truncatingIfNeeded: slot)) - 1 }
            i = (i + 1) & mask
        }
    }
}
