#if canImport(Glibc)
    import Glibc
#endif

/// The Specific Character Set (0008,0005) in force for a data set, and the decoding of text values
/// under it (PS3.5 §6.1 and Annex H–K; PS3.3 C.12.1.1.2).
///
/// Decoding follows pydicom's reading of the standard, so that both read a file alike: the default
/// repertoire decodes bytes above 0x7F as ISO 8859-1 rather than failing; with ISO 2022 code
/// extensions, each run of bytes introduced by an escape sequence is decoded with the character set
/// it designates, and a delimiter (CR, LF, TAB, FF; for person names also "^" and "=") returns to the
/// first character set. An unknown term is reported in `problems` and decoded with the default
/// repertoire; the element's raw bytes are always still there (`DataElement.bytes`).
public struct SpecificCharacterSet: Sendable, Equatable {
    /// nil for the default repertoire, the common case: copying a data set's character set is
    /// then free, and otherwise one reference.
    private let storage: Storage?

    final class Storage: Sendable {
        let terms: [String]
        let repertoires: [Repertoire]
        let problems: [String]
        init(terms: [String], repertoires: [Repertoire], problems: [String]) {
            self.terms = terms
            self.repertoires = repertoires
            self.problems = problems
        }
    }

    /// The terms as written, e.g. ["", "ISO 2022 IR 87"].
    public var terms: [String] { storage?.terms ?? [] }
    /// What each usable term decodes with; the first is the one in force at the start of a value.
    var repertoires: [Repertoire] { storage?.repertoires ?? [.defaultRepertoire] }
    /// Terms we did not recognise or could not use (for a warning).
    public var problems: [String] { storage?.problems ?? [] }

    public static let defaultRepertoire = SpecificCharacterSet(storage: nil)

    private init(storage: Storage?) { self.storage = storage }

    public static func == (a: SpecificCharacterSet, b: SpecificCharacterSet) -> Bool { a.terms == b.terms }

    /// From the raw value of (0008,0005).
    public init(value: ArraySlice<UInt8>) {
        // Most files say nothing, "ISO_IR 100" or "ISO_IR 192": answer those without parsing.
        var end = value.endIndex
        while end > value.startIndex, value[end - 1] == 0x20 || value[end - 1] == 0 { end -= 1 }
        let trimmed = value[value.startIndex..<end]
        if trimmed.isEmpty || trimmed.elementsEqual("ISO_IR 6".utf8) {
            self = .defaultRepertoire
            return
        }
        if trimmed.elementsEqual("ISO_IR 100".utf8) {
            self = Self.latin1
            return
        }
        if trimmed.elementsEqual("ISO_IR 192".utf8) {
            self = Self.utf8
            return
        }
        let text = String(decoding: trimmed, as: UTF8.self)
        self.init(terms: text.split(separator: "\\", omittingEmptySubsequences: false).map {
            $0.trimmingCharacters(in: " \0")
        })
    }

    private static let latin1 = SpecificCharacterSet(terms: ["ISO_IR 100"])
    private static let utf8 = SpecificCharacterSet(terms: ["ISO_IR 192"])

    public init(terms rawTerms: [String]) {
        var terms = rawTerms
        if terms.isEmpty { terms = [""] }
        var repertoires: [Repertoire] = []
        var problems: [String] = []
        for (index, term) in terms.enumerated() {
            var repertoire = Repertoire(term: term)
            if repertoire == nil, let corrected = Repertoire.correctedSpelling(of: term) {
                repertoire = Repertoire(term: corrected)
                problems.append("Specific Character Set \"\(term)\" is misspelled; read as \"\(corrected)\"")
            }
            guard let repertoire else {
                problems.append("Unknown Specific Character Set \"\(term)\"; text read with the default repertoire")
                repertoires.append(.defaultRepertoire)
                continue
            }
            if index > 0, repertoire.isStandAlone {
                problems.append("\"\(term)\" cannot be used as a code extension; ignored")
                continue
            }
            repertoires.append(repertoire)
        }
        if terms.count > 1, let first = Repertoire(term: terms[0]), first.isStandAlone {
            problems.append("\"\(terms[0])\" does not allow code extensions; the other terms are ignored")
            repertoires = [first]
        }
        if rawTerms.count <= 1, repertoires == [.defaultRepertoire], problems.isEmpty {
            self.init(storage: nil)
        } else {
            self.init(storage: Storage(terms: rawTerms, repertoires: repertoires, problems: problems))
        }
    }

    /// Delimiters that end a code extension in text values (PS3.5 §6.1.2.5.3).
    static let textDelimiters: Set<UInt8> = [0x0D, 0x0A, 0x09, 0x0C]
    /// In person names the component and group separators reset as well.
    static let personNameDelimiters: Set<UInt8> = [0x5E]

    /// Decodes a text value.
    public func decode(_ bytes: some Collection<UInt8>) -> String {
        decode(Array(bytes), delimiters: Self.textDelimiters)
    }

    func decode(_ bytes: [UInt8], delimiters: Set<UInt8>) -> String {
        let first = repertoires.first ?? .defaultRepertoire
        guard bytes.contains(0x1B) else { return first.decode(bytes[...]) }
        // Split into the run before the first ESC and runs each starting with an ESC.
        var result = ""
        var start = 0
        var index = 0
        while index <= bytes.count {
            if index == bytes.count || (bytes[index] == 0x1B && index > start) {
                result += decodeRun(bytes[start..<index], delimiters: delimiters)
                start = index
            }
            index += 1
        }
        return result
    }

    private func decodeRun(_ run: ArraySlice<UInt8>, delimiters: Set<UInt8>) -> String {
        let first = repertoires.first ?? .defaultRepertoire
        guard run.first == 0x1B else { return first.decode(run) }
        guard let (designated, escapeLength) = Repertoire.designated(by: run),
            designated == .defaultRepertoire || repertoires.contains(designated)
        else {
            // An escape sequence for a set the value did not declare: decoded as it stands.
            return first.decode(run)
        }
        if designated.decodesItsOwnEscapes {
            return designated.decode(run)
        }
        let body = run.dropFirst(escapeLength)
        if let cut = body.firstIndex(where: { delimiters.contains($0) }) {
            return designated.decode(body[..<cut]) + first.decode(body[cut...])
        }
        return designated.decode(body)
    }
}

/// One character set a term or an escape sequence can name, and how to decode it.
enum Repertoire: Sendable, Equatable {
    /// ISO-IR 6; bytes above 0x7F are taken as ISO 8859-1, as pydicom does.
    case defaultRepertoire
    case latin1
    /// Single-byte sets decoded through iconv: ISO 8859-2/3/4/5/6/7/8/9, TIS 620.
    case singleByte(String)
    /// JIS X 0201: ASCII (as pydicom reads it) and half-width katakana in G1 (ISO-IR 13).
    case jisX0201
    /// JIS X 0208 via ISO 2022 (ISO-IR 87).
    case jisX0208
    /// JIS X 0212 via ISO 2022 (ISO-IR 159).
    case jisX0212
    /// KS X 1001 in G1 (ISO-IR 149): EUC-KR.
    case ksX1001
    /// GB 2312 in G1 (ISO-IR 58).
    case gb2312
    case utf8
    case gb18030
    case gbk

    init?(term: String) {
        switch term {
        case "", "ISO_IR 6", "ISO 2022 IR 6": self = .defaultRepertoire
        case "ISO_IR 100", "ISO 2022 IR 100": self = .latin1
        case "ISO_IR 101", "ISO 2022 IR 101": self = .singleByte("ISO-8859-2")
        case "ISO_IR 109", "ISO 2022 IR 109": self = .singleByte("ISO-8859-3")
        case "ISO_IR 110", "ISO 2022 IR 110": self = .singleByte("ISO-8859-4")
        case "ISO_IR 144", "ISO 2022 IR 144": self = .singleByte("ISO-8859-5")
        case "ISO_IR 127", "ISO 2022 IR 127": self = .singleByte("ISO-8859-6")
        case "ISO_IR 126", "ISO 2022 IR 126": self = .singleByte("ISO-8859-7")
        case "ISO_IR 138", "ISO 2022 IR 138": self = .singleByte("ISO-8859-8")
        case "ISO_IR 148", "ISO 2022 IR 148": self = .singleByte("ISO-8859-9")
        case "ISO_IR 166", "ISO 2022 IR 166": self = .singleByte("TIS-620")
        case "ISO_IR 13", "ISO 2022 IR 13": self = .jisX0201
        case "ISO 2022 IR 87": self = .jisX0208
        case "ISO 2022 IR 159": self = .jisX0212
        case "ISO 2022 IR 149": self = .ksX1001
        case "ISO 2022 IR 58", "ISO 2022 58": self = .gb2312
        case "ISO_IR 192": self = .utf8
        case "GB18030": self = .gb18030
        case "GBK", "ISO 2022 GBK": self = .gbk
        default: return nil
        }
    }

    /// Common misspellings seen in the wild ("ISO IR 100", "ISO-IR 100", "ISO_2022_IR_87").
    static func correctedSpelling(of term: String) -> String? {
        let bytes = Array(term.utf8)
        if term.hasPrefix("ISO"), bytes.count > 6, bytes[3] != UInt8(ascii: "_"),
            term.dropFirst(4).hasPrefix("IR")
        {
            return "ISO_IR" + term.dropFirst(6)
        }
        if term.hasPrefix("ISO"), bytes.count > 12, !term.hasPrefix("ISO 2022 IR "),
            Array(Array(term.utf8)[4...7]) == Array("2022".utf8), term.dropFirst(9).hasPrefix("IR")
        {
            return "ISO 2022 IR " + term.dropFirst(12)
        }
        return nil
    }

    /// Sets that may not be combined with code extensions (PS3.3 C.12.1.1.2).
    var isStandAlone: Bool { self == .utf8 || self == .gb18030 || self == .gbk }

    /// JIS X 0208/0212 runs are decoded with their escape sequence by an ISO 2022 decoder, which
    /// also honours any ESC ( B inside the run.
    var decodesItsOwnEscapes: Bool { self == .jisX0208 || self == .jisX0212 }

    /// The set an escape sequence at the start of `run` designates, and the sequence's length.
    static func designated(by run: ArraySlice<UInt8>) -> (Repertoire, Int)? {
        let bytes = Array(run.prefix(4))
        guard bytes.count >= 3 else { return nil }
        if bytes.count == 4, bytes[1] == 0x24, bytes[2] == 0x28 || bytes[2] == 0x29 {
            switch (bytes[2], bytes[3]) {
            case (0x29, 0x43): return (.ksX1001, 4)  // ESC $ ) C
            case (0x28, 0x44): return (.jisX0212, 4)  // ESC $ ( D
            case (0x29, 0x41): return (.gb2312, 4)  // ESC $ ) A
            default: return nil
            }
        }
        switch (bytes[1], bytes[2]) {
        case (0x28, 0x42): return (.defaultRepertoire, 3)  // ESC ( B
        case (0x28, 0x4A), (0x29, 0x49): return (.jisX0201, 3)  // ESC ( J, ESC ) I
        case (0x24, 0x42): return (.jisX0208, 3)  // ESC $ B
        case (0x2D, 0x41): return (.latin1, 3)  // ESC - A
        case (0x2D, 0x42): return (.singleByte("ISO-8859-2"), 3)
        case (0x2D, 0x43): return (.singleByte("ISO-8859-3"), 3)
        case (0x2D, 0x44): return (.singleByte("ISO-8859-4"), 3)
        case (0x2D, 0x46): return (.singleByte("ISO-8859-7"), 3)
        case (0x2D, 0x47): return (.singleByte("ISO-8859-6"), 3)
        case (0x2D, 0x48): return (.singleByte("ISO-8859-8"), 3)
        case (0x2D, 0x4C): return (.singleByte("ISO-8859-5"), 3)
        case (0x2D, 0x4D): return (.singleByte("ISO-8859-9"), 3)
        case (0x2D, 0x54): return (.singleByte("TIS-620"), 3)
        default: return nil
        }
    }

    func decode(_ bytes: ArraySlice<UInt8>) -> String {
        switch self {
        case .defaultRepertoire, .latin1:
            return decodeLatin1(bytes)
        case .utf8:
            return String(decoding: bytes, as: UTF8.self)
        case .jisX0201:
            // ASCII below 0x80; 0xA1–0xDF are half-width katakana U+FF61–U+FF9F.
            if bytes.allSatisfy({ $0 < 0x80 || (0xA1...0xDF).contains($0) }) {
                var scalars = String.UnicodeScalarView()
                for b in bytes {
                    scalars.append(Unicode.Scalar(b < 0x80 ? UInt32(b) : 0xFF61 + UInt32(b - 0xA1))!)
                }
                return String(scalars)
            }
            return iconvDecode(bytes, from: "SHIFT_JIS") ?? decodeLatin1(bytes)
        case .jisX0208:
            return iconvDecode(bytes, from: "ISO-2022-JP") ?? decodeLatin1(bytes)
        case .jisX0212:
            return iconvDecode(bytes, from: "ISO-2022-JP-2") ?? decodeLatin1(bytes)
        case .ksX1001:
            return iconvDecode(bytes, from: "EUC-KR") ?? decodeLatin1(bytes)
        case .gb2312:
            return iconvDecode(bytes, from: "GB2312") ?? decodeLatin1(bytes)
        case .gb18030:
            return iconvDecode(bytes, from: "GB18030") ?? decodeLatin1(bytes)
        case .gbk:
            return iconvDecode(bytes, from: "GBK") ?? decodeLatin1(bytes)
        case .singleByte(let name):
            return iconvDecode(bytes, from: name) ?? decodeLatin1(bytes)
        }
    }
}

func decodeLatin1(_ bytes: ArraySlice<UInt8>) -> String {
    if bytes.allSatisfy({ $0 < 0x80 }) { return String(decoding: bytes, as: UTF8.self) }
    var scalars = String.UnicodeScalarView()
    for b in bytes { scalars.append(Unicode.Scalar(b)) }
    return String(scalars)
}

/// Decodes through glibc's iconv; nil when the bytes are not valid in that set (the caller then
/// falls back), or iconv does not know it.
func iconvDecode(_ bytes: ArraySlice<UInt8>, from charset: String) -> String? {
    if bytes.isEmpty { return "" }
    let converter = iconv_open("UTF-8", charset)
    if converter == iconv_t(bitPattern: -1) { return nil }
    defer { iconv_close(converter) }
    var input = Array(bytes)
    var output = [UInt8](repeating: 0, count: input.count * 4 + 16)
    let produced: Int? = input.withUnsafeMutableBufferPointer { inBuffer in
        output.withUnsafeMutableBufferPointer { outBuffer in
            var inPointer: UnsafeMutablePointer<CChar>? = UnsafeMutableRawPointer(inBuffer.baseAddress!)
                .assumingMemoryBound(to: CChar.self)
            var inLeft = inBuffer.count
            var outPointer: UnsafeMutablePointer<CChar>? = UnsafeMutableRawPointer(outBuffer.baseAddress!)
                .assumingMemoryBound(to: CChar.self)
            var outLeft = outBuffer.count
            if iconv(converter, &inPointer, &inLeft, &outPointer, &outLeft) == -1 { return nil }
            // Flush any shift state (ISO 2022 decoders).
            if iconv(converter, nil, nil, &outPointer, &outLeft) == -1 { return nil }
            return outBuffer.count - outLeft
        }
    }
    guard let produced else { return nil }
    return String(decoding: output[..<produced], as: UTF8.self)
}

extension StringProtocol {
    /// Trims the given characters from both ends (Foundation-free).
    func trimmingCharacters(in set: String) -> String {
        let chars = Set(set)
        var slice = Substring(self)
        while let c = slice.first, chars.contains(c) { slice = slice.dropFirst() }
        while let c = slice.last, chars.contains(c) { slice = slice.dropLast() }
        return String(slice)
    }
}
