/// Typed access to a data set's values, by tag or keyword. Text is decoded with the data set's
/// Specific Character Set. Absent elements and empty values give nil (or []).
extension DataSet {
    /// All values of a text element, decoded (see `DataElement.strings`).
    public func strings(_ tag: Tag) -> [String] {
        self[tag]?.strings(characterSet: characterSet) ?? []
    }

    /// The whole value of a text element as one string: for multi-valued elements the values joined
    /// with "\". With `trimming`, trailing (and for some VRs leading) padding is removed.
    public func string(_ tag: Tag, trimming: Bool = true) -> String? {
        guard let element = self[tag], case .bytes(let bytes) = element.value else { return nil }
        if trimming {
            // Most header values (UIDs, codes, dates, plain names): one value of printable ASCII,
            // read without splitting or decoding; the same string `strings` would give.
            if let plain = element.singlePrintableASCIIValue(bytes) { return plain }
            // Not that: the rest of `strings` (which would try the shortcut again).
            guard !bytes.isEmpty else { return nil }
            let values = element.decodedStrings(bytes, characterSet: characterSet)
            return values.isEmpty ? nil : values.joined(separator: "\\")
        }
        return element.vr.usesSpecificCharacterSet ? characterSet.decode(bytes) : decodeLatin1(bytes)
    }

    public func string(_ keyword: String) -> String? {
        DataDictionary.tag(forKeyword: keyword).flatMap { string($0) }
    }

    /// The first value as an integer: binary integer VRs, or IS text.
    public func int(_ tag: Tag) -> Int? {
        guard let element = self[tag] else { return nil }
        if element.vr == .IS || element.vr == .DS {
            return element.strings().first.flatMap { Int($0.trimmingCharacters(in: " ")) }
        }
        return element.integers(byteOrder: byteOrder).first.map { Int($0) }
    }

    /// All integer values.
    public func ints(_ tag: Tag) -> [Int] {
        guard let element = self[tag] else { return [] }
        if element.vr == .IS {
            return element.strings().compactMap { Int($0.trimmingCharacters(in: " ")) }
        }
        return element.integers(byteOrder: byteOrder).map { Int($0) }
    }

    /// First value of a US/UL-like element as an unsigned number (used by the reader itself).
    func uint(_ tag: Tag) -> UInt64? {
        guard let element = self[tag], case .bytes(let bytes) = element.value, bytes.count >= 2 else { return nil }
        let size = bytes.count >= 4 && (element.vr == .UL || element.vr == .SL) ? 4 : 2
        return decodeNumbers(bytes, size: size, byteOrder) { $0 }.first
    }

    /// The first value as a floating-point number: FL, FD, or DS/IS text.
    public func double(_ tag: Tag) -> Double? { doubles(tag).first }

    public func doubles(_ tag: Tag) -> [Double] {
        guard let element = self[tag] else { return [] }
        switch element.vr {
        case .DS, .IS:
            return element.strings().compactMap { Double($0.trimmingCharacters(in: " ")) }
        case .FL, .FD, .OF, .OD:
            return element.floats(byteOrder: byteOrder)
        default:
            return element.integers(byteOrder: byteOrder).map { Double($0) }
        }
    }

    /// A date (DA) value.
    public func date(_ tag: Tag) -> DICOMDate? { string(tag).flatMap { DICOMDate($0) } }

    /// A person name (PN) value with its components.
    public func personName(_ tag: Tag) -> PersonName? { strings(tag).first.map { PersonName($0) } }

    /// The items of a sequence.
    public func sequence(_ tag: Tag) -> [DataSet]? { self[tag]?.items }

    /// Attribute tag (AT) values.
    public func tags(_ tag: Tag) -> [Tag] { self[tag]?.tags(byteOrder: byteOrder) ?? [] }
}

/// A DA value (PS3.5 §6.2): YYYYMMDD. The ACR-NEMA form YYYY.MM.DD is accepted too.
public struct DICOMDate: Sendable, Hashable, Comparable, CustomStringConvertible {
    public var year: Int
    public var month: Int
    public var day: Int

    public init?(_ text: String) {
        let digits = text.filter { $0 != "." }.trimmingCharacters(in: " ")
        guard digits.count == 8, digits.allSatisfy({ $0.isASCII && $0.isNumber }),
            let y = Int(digits.prefix(4)), let m = Int(digits.dropFirst(4).prefix(2)), let d = Int(digits.suffix(2)),
            (1...12).contains(m), (1...31).contains(d)
        else { return nil }
        year = y
        month = m
        day = d
    }

    public init(year: Int, month: Int, day: Int) {
        self.year = year
        self.month = month
        self.day = day
    }

    public static func < (a: DICOMDate, b: DICOMDate) -> Bool {
        (a.year, a.month, a.day) < (b.year, b.month, b.day)
    }

    /// "20240131", the DICOM form.
    public var description: String {
        func pad(_ n: Int, _ width: Int) -> String {
            let s = String(n)
            return String(repeating: "0", count: max(0, width - s.count)) + s
        }
        return pad(year, 4) + pad(month, 2) + pad(day, 2)
    }
}

/// A PN value (PS3.5 §6.2.1): up to three component groups (alphabetic, ideographic, phonetic),
/// each of up to five components (family, given, middle, prefix, suffix).
public struct PersonName: Sendable, Hashable, CustomStringConvertible {
    public var groups: [[String]]

    public init(_ text: String) {
        groups = text.split(separator: "=", omittingEmptySubsequences: false).map {
            $0.split(separator: "^", omittingEmptySubsequences: false).map(String.init)
        }
    }

    public var alphabetic: [String] { groups.first ?? [] }
    public var familyName: String? { alphabetic.first.flatMap { $0.isEmpty ? nil : $0 } }
    public var givenName: String? { alphabetic.count > 1 && !alphabetic[1].isEmpty ? alphabetic[1] : nil }
    public var ideographic: [String]? { groups.count > 1 ? groups[1] : nil }
    public var phonetic: [String]? { groups.count > 2 ? groups[2] : nil }

    public var description: String { groups.map { $0.joined(separator: "^") }.joined(separator: "=") }
}
