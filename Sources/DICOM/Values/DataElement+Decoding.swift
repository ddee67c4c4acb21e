/// Decoding of raw values by VR (PS3.5 §6.2). Each function reads only the bytes of one element
/// and never fails: a value that does not fit its VR decodes to what can be read (numbers: the
/// whole values present; text: the characters), and callers that need strictness check `length`.
extension DataElement {
    /// The text values of a string VR, decoded with `characterSet` where the VR uses it, split on
    /// backslashes for multi-valued VRs, trailing spaces and NULs removed (and leading spaces for
    /// AE, DS, IS). Person names come whole ("Family^Given=Ideographic=Phonetic").
    public func strings(characterSet: SpecificCharacterSet = .defaultRepertoire) -> [String] {
        guard case .bytes(let bytes) = value, !bytes.isEmpty else { return [] }
        if let plain = singlePrintableASCIIValue(bytes) { return [plain] }
        return decodedStrings(bytes, characterSet: characterSet)
    }

    /// `strings` the whole way, for a non-empty value: decoded, split, trimmed (what the ASCII
    /// shortcut must equal).
    func decodedStrings(_ bytes: ArraySlice<UInt8>, characterSet: SpecificCharacterSet) -> [String] {
        if vr == .PN { return personNameStrings(bytes, characterSet: characterSet) }
        let text =
            vr.usesSpecificCharacterSet
            ? characterSet.decode(Array(bytes), delimiters: SpecificCharacterSet.textDelimiters)
            : decodeLatin1(bytes)
        let parts: [Substring] =
            vr.isMultiValuedText || !vr.isText
            ? text.split(separator: "\\", omittingEmptySubsequences: false) : [Substring(text)]
        return parts.map { part in
            var s = part
            while let c = s.last, c == " " || c == "\0" { s = s.dropLast() }
            if vr == .AE || vr == .DS || vr == .IS {
                while let c = s.first, c == " " { s = s.dropFirst() }
            }
            return String(s)
        }
    }

    /// The value trimmed as `strings` trims it, when the bytes are one value of printable ASCII
    /// (0x20–0x7E, padded with spaces or NULs): no "\\" (a value or, in LT/ST/UT, a character
    /// `strings` keeps whole: left to it), and in a person name no "=" (component groups). nil
    /// for anything else, an empty value included. Without an escape sequence ASCII reads as
    /// ASCII in every character set DICOM names, so the set needs no look; the catch-up scan
    /// reads ten of these a file.
    func singlePrintableASCIIValue(_ bytes: ArraySlice<UInt8>) -> String? {
        // An empty value has no value at all (nil from DataSet.string, [] from strings), not "".
        guard !bytes.isEmpty else { return nil }
        var end = bytes.endIndex
        while end > bytes.startIndex, bytes[end - 1] == 0x20 || bytes[end - 1] == 0 { end -= 1 }
        var start = bytes.startIndex
        if vr == .AE || vr == .DS || vr == .IS {
            while start < end, bytes[start] == 0x20 { start += 1 }
        }
        let isName = vr == .PN
        for byte in bytes[start..<end] where byte < 0x20 || byte > 0x7E || byte == 0x5C || (isName && byte == 0x3D) { return nil }
        return String(decoding: bytes[start..<end], as: UTF8.self)
    }

    /// Person names: split into values on "\", each into component groups on "=", every group
    /// decoded on its own (escape sequences reset at "^" and "=", PS3.5 §6.1.2.5.3), empty trailing
    /// groups dropped.
    private func personNameStrings(_ bytes: ArraySlice<UInt8>, characterSet: SpecificCharacterSet) -> [String] {
        var end = bytes.endIndex
        while end > bytes.startIndex, bytes[end - 1] == 0x20 || bytes[end - 1] == 0 { end -= 1 }
        let trimmed = bytes[bytes.startIndex..<end]
        return trimmed.split(separator: 0x5C, omittingEmptySubsequences: false).map { value in
            var groups = value.split(separator: 0x3D, omittingEmptySubsequences: false).map {
                characterSet.decode(Array($0), delimiters: SpecificCharacterSet.personNameDelimiters)
            }
            while let last = groups.last, last.isEmpty { groups.removeLast() }
            var name = groups.joined(separator: "=")
            while let c = name.last, c == " " || c == "\0" { name.removeLast() }
            return name
        }
    }

    /// Binary integers (US, SS, UL, SL, UV, SV), in the data set's byte order.
    public func integers(byteOrder: ByteOrder) -> [Int64] {
        guard case .bytes(let bytes) = value else { return [] }
        switch vr {
        case .US, .OW: return decodeNumbers(bytes, size: 2, byteOrder) { Int64(UInt16(truncatingIfNeeded: $0)) }
        case .SS: return decodeNumbers(bytes, size: 2, byteOrder) { Int64(Int16(truncatingIfNeeded: $0)) }
        case .UL, .OL: return decodeNumbers(bytes, size: 4, byteOrder) { Int64(UInt32(truncatingIfNeeded: $0)) }
        case .SL: return decodeNumbers(bytes, size: 4, byteOrder) { Int64(Int32(truncatingIfNeeded: $0)) }
        case .SV: return decodeNumbers(bytes, size: 8, byteOrder) { Int64(bitPattern: $0) }
        case .UV, .OV:
            // Values above Int64.max do not fit; use `unsignedIntegers` for those.
            return decodeNumbers(bytes, size: 8, byteOrder) { Int64(bitPattern: $0) }
        default: return []
        }
    }

    /// UV values in full.
    public func unsignedIntegers(byteOrder: ByteOrder) -> [UInt64] {
        guard case .bytes(let bytes) = value else { return [] }
        let size = vr.numberSize ?? 0
        guard size > 0 else { return [] }
        return decodeNumbers(bytes, size: size, byteOrder) { $0 }
    }

    /// Binary floats (FL, FD, OF, OD); FL values widened to Double.
    public func floats(byteOrder: ByteOrder) -> [Double] {
        guard case .bytes(let bytes) = value else { return [] }
        switch vr {
        case .FL, .OF:
            return decodeNumbers(bytes, size: 4, byteOrder) { Double(Float(bitPattern: UInt32(truncatingIfNeeded: $0))) }
        case .FD, .OD:
            return decodeNumbers(bytes, size: 8, byteOrder) { Double(bitPattern: $0) }
        default: return []
        }
    }

    /// Attribute tags (AT): pairs of group and element numbers.
    public func tags(byteOrder: ByteOrder) -> [Tag] {
        guard case .bytes(let bytes) = value else { return [] }
        let halves = decodeNumbers(bytes, size: 2, byteOrder) { UInt16(truncatingIfNeeded: $0) }
        return stride(from: 0, to: halves.count - 1, by: 2).map { Tag(halves[$0], halves[$0 + 1]) }
    }
}

/// Reads `count / size` unsigned numbers of `size` bytes, converted by `make`.
func decodeNumbers<T>(_ bytes: ArraySlice<UInt8>, size: Int, _ order: ByteOrder, _ make: (UInt64) -> T) -> [T] {
    let count = bytes.count / size
    var result: [T] = []
    result.reserveCapacity(count)
    var index = bytes.startIndex
    for _ in 0..<count {
        var raw: UInt64 = 0
        if order == .littleEndian {
            for k in stride(from: size - 1, through: 0, by: -1) { raw = raw << 8 | UInt64(bytes[index + k]) }
        } else {
            for k in 0..<size { raw = raw << 8 | UInt64(bytes[index + k]) }
        }
        result.append(make(raw))
        index += size
    }
    return result
}
