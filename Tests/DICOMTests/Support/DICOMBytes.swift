import DICOM

/// Builds DICOM byte streams by hand for tests: elements in any encoding, items, sequences,
/// Part 10 wrapping. Deliberately independent of the writer under test, so a bug in one cannot
/// hide a bug in the other.
struct DICOMBytes {
    var explicit = true
    var little = true

    static let explicitLE = DICOMBytes(explicit: true, little: true)
    static let implicitLE = DICOMBytes(explicit: false, little: true)
    static let explicitBE = DICOMBytes(explicit: true, little: false)

    func u16(_ v: UInt16) -> [UInt8] {
        little ? [UInt8(v & 0xFF), UInt8(v >> 8)] : [UInt8(v >> 8), UInt8(v & 0xFF)]
    }
    func u32(_ v: UInt32) -> [UInt8] {
        little ? u16(UInt16(v & 0xFFFF)) + u16(UInt16(v >> 16)) : u16(UInt16(v >> 16)) + u16(UInt16(v & 0xFFFF))
    }

    static let longVRs: Set<String> = ["OB", "OD", "OF", "OL", "OV", "OW", "SQ", "SV", "UC", "UN", "UR", "UT", "UV"]

    /// One element; `undefined` writes 0xFFFFFFFF as the length.
    func element(_ group: UInt16, _ element: UInt16, _ vr: String, _ value: [UInt8], undefined: Bool = false) -> [UInt8] {
        let length: UInt32 = undefined ? 0xFFFF_FFFF : UInt32(value.count)
        var out = u16(group) + u16(element)
        if explicit {
            out += Array(vr.utf8)
            if Self.longVRs.contains(vr) {
                out += [0, 0] + u32(length)
            } else {
                out += u16(UInt16(truncatingIfNeeded: length))
            }
        } else {
            out += u32(length)
        }
        return out + value
    }

    func text(_ group: UInt16, _ element: UInt16, _ vr: String, _ text: String) -> [UInt8] {
        var bytes = Array(text.utf8)
        if bytes.count % 2 == 1 { bytes.append(vr == "UI" ? 0 : 0x20) }
        return self.element(group, element, vr, bytes)
    }

    func item(_ content: [UInt8], undefined: Bool = true) -> [UInt8] {
        if undefined {
            return u16(0xFFFE) + u16(0xE000) + u32(0xFFFF_FFFF) + content + u16(0xFFFE) + u16(0xE00D) + u32(0)
        }
        return u16(0xFFFE) + u16(0xE000) + u32(UInt32(content.count)) + content
    }

    var sequenceEnd: [UInt8] { u16(0xFFFE) + u16(0xE0DD) + u32(0) }

    func sequence(_ group: UInt16, _ element: UInt16, items: [[UInt8]], undefined: Bool = true) -> [UInt8] {
        let body = items.map { item($0, undefined: undefined) }.reduce([], +)
        if undefined { return self.element(group, element, "SQ", body + sequenceEnd, undefined: true) }
        return self.element(group, element, "SQ", body)
    }

    /// Preamble, "DICM", and File Meta Information (always explicit VR little endian).
    static func part10(transferSyntax: String, dataSet: [UInt8], sopInstance: String = "1.2.3.4") -> [UInt8] {
        let m = DICOMBytes.explicitLE
        let meta =
            m.element(0x0002, 0x0001, "OB", [0, 1]) + m.text(0x0002, 0x0002, "UI", "1.2.840.10008.5.1.4.1.1.7")
            + m.text(0x0002, 0x0003, "UI", sopInstance) + m.text(0x0002, 0x0010, "UI", transferSyntax)
            + m.text(0x0002, 0x0012, "UI", "1.2.3.999")
        return [UInt8](repeating: 0, count: 128) + Array("DICM".utf8)
            + m.element(0x0002, 0x0000, "UL", m.u32(UInt32(meta.count))) + meta + dataSet
    }

    /// A small but complete header: text, numbers, a nested sequence, a private block, pixel data.
    func sampleDataSet(pixels: [UInt8] = [1, 2, 3, 4]) -> [UInt8] {
        let inner = text(0x0008, 0x0100, "SH", "CODE") + text(0x0008, 0x0102, "SH", "L")
        let referenced = text(0x0008, 0x1150, "UI", "1.2.840.10008.5.1.4.1.1.2")
            + sequence(0x0040, 0xA043, items: [inner])
        return text(0x0008, 0x0005, "CS", "ISO_IR 100")
            + text(0x0008, 0x0016, "UI", "1.2.840.10008.5.1.4.1.1.7")
            + text(0x0008, 0x0018, "UI", "1.2.3.4")
            + text(0x0008, 0x0060, "CS", "CT")
            + sequence(0x0008, 0x1140, items: [referenced, referenced], undefined: false)
            + element(0x0010, 0x0010, "PN", Array("M\u{FC}ller^J\u{F6}rg".unicodeScalars.map { UInt8($0.value) }))
            + text(0x0010, 0x0020, "LO", "RSCH123")
            + text(0x0019, 0x0010, "LO", "CONSORT")
            + element(0x0019, 0x1001, "UL", u32(123_456))
            + text(0x0020, 0x000D, "UI", "1.2.3.4.5")
            + text(0x0020, 0x0032, "DS", "-12.5\\0\\3e2")
            + element(0x0028, 0x0010, "US", u16(512))
            + element(0x0028, 0x0100, "US", u16(16))
            + element(0x0028, 0x0103, "US", u16(0))
            + element(0x7FE0, 0x0010, "OW", pixels)
    }
}

extension DICOMFile {
    static func read(_ bytes: [UInt8], options: ReadOptions = .headers) throws(DICOMError) -> DICOMFile {
        try DICOMFile.read(bytes: bytes, options: options)
    }
}
