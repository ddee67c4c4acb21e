/// A data element tag: (group, element) packed as one `UInt32`, group in the high half.
///
/// Tags are compared as numbers, which is the order DICOM requires within a data set
/// (PS3.5 §7.1: "Data Elements ... shall occur in increasing numeric Tag order").
public struct Tag: RawRepresentable, Hashable, Comparable, Sendable, CustomStringConvertible {
    public let rawValue: UInt32

    @inlinable public init(rawValue: UInt32) { self.rawValue = rawValue }
    @inlinable public init(_ group: UInt16, _ element: UInt16) {
        rawValue = UInt32(group) << 16 | UInt32(element)
    }

    @inlinable public var group: UInt16 { UInt16(truncatingIfNeeded: rawValue >> 16) }
    @inlinable public var element: UInt16 { UInt16(truncatingIfNeeded: rawValue) }

    /// Odd groups other than 1, 3, 5, 7 and FFFF are private (PS3.5 §7.8.1).
    @inlinable public var isPrivate: Bool {
        group & 1 == 1 && group > 0x0007 && group != 0xFFFF
    }
    /// (gggg,0010)–(gggg,00FF) in a private group reserve a block for a creator (PS3.5 §7.8.1).
    @inlinable public var isPrivateCreator: Bool {
        isPrivate && element >= 0x0010 && element <= 0x00FF
    }
    /// Group length elements (gggg,0000).
    @inlinable public var isGroupLength: Bool { element == 0 }

    /// The creator element that reserves this private element's block, e.g. (0029,10xx) → (0029,0010).
    public var privateCreatorTag: Tag? {
        guard isPrivate, element >= 0x1000 else { return nil }
        return Tag(group, element >> 8)
    }

    @inlinable public static func < (a: Tag, b: Tag) -> Bool { a.rawValue < b.rawValue }

    /// "(0010,0020)", the form DCMTK and the standard print.
    public var description: String { "(\(hex4(group)),\(hex4(element)))" }
    /// "00100020", the form of the DICOM JSON model (PS3.18 §F.2) and our canonical dumps.
    public var hexString: String { hex4(group) + hex4(element) }

    /// Parses "00100020", "(0010,0020)" or "0010,0020".
    public init?(hexString text: some StringProtocol) {
        let digits = String(text.filter { $0 != "(" && $0 != ")" && $0 != "," })
        guard digits.utf8.count == 8, let value = UInt32(digits, radix: 16) else { return nil }
        rawValue = value
    }
}

@usableFromInline func hex4(_ value: UInt16) -> String {
    let digits: [UInt8] = Array("0123456789ABCDEF".utf8)
    var out = [UInt8](repeating: 0, count: 4)
    for i in 0..<4 { out[i] = digits[Int(value >> UInt16(12 - 4 * i)) & 0xF] }
    return String(decoding: out, as: UTF8.self)
}

extension Tag {
    // Tags the reader itself needs; everything else is reached through the dictionary by keyword.
    public static let fileMetaInformationGroupLength = Tag(0x0002, 0x0000)
    public static let mediaStorageSOPClassUID = Tag(0x0002, 0x0002)
    public static let mediaStorageSOPInstanceUID = Tag(0x0002, 0x0003)
    public static let transferSyntaxUID = Tag(0x0002, 0x0010)
    public static let implementationClassUID = Tag(0x0002, 0x0012)
    public static let implementationVersionName = Tag(0x0002, 0x0013)
    public static let specificCharacterSet = Tag(0x0008, 0x0005)
    public static let sopClassUID = Tag(0x0008, 0x0016)
    public static let sopInstanceUID = Tag(0x0008, 0x0018)
    public static let studyDate = Tag(0x0008, 0x0020)
    public static let modality = Tag(0x0008, 0x0060)
    public static let patientName = Tag(0x0010, 0x0010)
    public static let patientID = Tag(0x0010, 0x0020)
    public static let studyInstanceUID = Tag(0x0020, 0x000D)
    public static let seriesInstanceUID = Tag(0x0020, 0x000E)
    public static let bitsAllocated = Tag(0x0028, 0x0100)
    public static let pixelRepresentation = Tag(0x0028, 0x0103)
    public static let lutDescriptor = Tag(0x0028, 0x3002)
    public static let lutData = Tag(0x0028, 0x3006)
    public static let waveformBitsAllocated = Tag(0x5400, 0x1004)
    public static let floatPixelData = Tag(0x7FE0, 0x0008)
    public static let doubleFloatPixelData = Tag(0x7FE0, 0x0009)
    public static let pixelData = Tag(0x7FE0, 0x0010)
    public static let item = Tag(0xFFFE, 0xE000)
    public static let itemDelimitationItem = Tag(0xFFFE, 0xE00D)
    public static let sequenceDelimitationItem = Tag(0xFFFE, 0xE0DD)
    /// Data set trailing padding (PS3.10 §7.2), found after Pixel Data in the wild.
    public static let dataSetTrailingPadding = Tag(0xFFFC, 0xFFFC)

    /// The three pixel data elements at which a header-only read stops.
    @inlinable public var isPixelData: Bool {
        rawValue == 0x7FE0_0010 || rawValue == 0x7FE0_0008 || rawValue == 0x7FE0_0009
    }
}
