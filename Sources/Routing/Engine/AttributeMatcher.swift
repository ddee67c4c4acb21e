import DICOM

/// Evaluates one attribute test against a header, on the raw bytes where it can: text values are
/// compared with the expected values byte by byte, without case and padding, with no decoding and
/// no allocation; only regular expressions (and text outside ASCII) decode to strings.
enum AttributeMatcher {
    static func holds(_ test: AttributeTest, in header: DataSet, now: Int64) -> Bool {
        switch test.test {
        case .absent:
            return !anyElement(test.path[...], in: header) { element, _ in isPresent(element) }
        case .noneOf(let values):
            return !anyElement(test.path[...], in: header) { element, ds in equalsAny(element, values, ds) }
        default:
            return anyElement(test.path[...], in: header) { element, ds in holds(test.test, element, ds, now: now) }
        }
    }

    /// Whether `body` holds for the element at `path` in any item along the way.
    static func anyElement(_ path: ArraySlice<Tag>, in dataSet: DataSet, _ body: (DataElement, DataSet) -> Bool) -> Bool {
        guard let first = path.first, let element = dataSet[first] else { return false }
        if path.count == 1 { return body(element, dataSet) }
        guard case .sequence(let items) = element.value else { return false }
        for item in items where anyElement(path.dropFirst(), in: item, body) { return true }
        return false
    }

    static func isPresent(_ element: DataElement) -> Bool {
        switch element.value {
        case .bytes(let b): return b.contains { $0 != 0x20 && $0 != 0 }
        case .sequence(let items): return !items.isEmpty
        case .fragments, .notLoaded: return true
        }
    }

    static func holds(_ test: AttributeTest.Test, _ element: DataElement, _ dataSet: DataSet, now: Int64) -> Bool {
        switch test {
        case .present: return isPresent(element)
        case .absent: return !isPresent(element)
        case .oneOf(let values): return equalsAny(element, values, dataSet)
        case .noneOf(let values): return !equalsAny(element, values, dataSet)
        case .matches(let pattern):
            return element.strings(characterSet: dataSet.characterSet).contains { pattern.matches($0) }
        case .compare(let comparison, let limit):
            return numbers(element, dataSet).contains { comparison.holds($0, limit) }
        case .withinLast(let days):
            guard case .bytes(let bytes) = element.value, let day = dayNumber(bytes) else { return false }
            let today = Int(now / 86400)
            return today - day <= days
        }
    }

    /// Any value of the element equals any expected value.
    static func equalsAny(_ element: DataElement, _ expected: [ExpectedValue], _ dataSet: DataSet) -> Bool {
        guard case .bytes(let bytes) = element.value else { return false }
        let vr = element.vr
        if vr == .DS || vr == .IS || !vr.isText {
            // Numbers compare as numbers ("1.50" = 1.5); text that is not a number, as text.
            let values = numbers(element, dataSet)
            if !values.isEmpty {
                return expected.contains { e in e.number.map { n in values.contains(n) } ?? false }
            }
        }
        if vr.usesSpecificCharacterSet && bytes.contains(where: { $0 >= 0x80 || $0 == 0x1B }) || expected.contains(where: { !$0.isASCII }) {
            let values = element.strings(characterSet: dataSet.characterSet).map { $0.uppercased() }
            return expected.contains { values.contains($0.text.uppercased()) }
        }
        // Byte level: each backslash-separated value, padding trimmed, ASCII case folded.
        var start = bytes.startIndex
        let end = bytes.endIndex
        while start <= end {
            var stop = start
            while stop < end && bytes[stop] != 0x5C { stop += 1 }
            var lo = start, hi = stop
            while lo < hi && (bytes[lo] == 0x20 || bytes[lo] == 0) { lo += 1 }
            while hi > lo && (bytes[hi - 1] == 0x20 || bytes[hi - 1] == 0) { hi -= 1 }
            for candidate in expected where candidate.upperBytes.count == hi - lo {
                var equal = true
                var k = 0
                for i in lo..<hi {
                    var b = bytes[i]
                    if b >= 0x61 && b <= 0x7A { b -= 0x20 }
                    if b != candidate.upperBytes[k] {
                        equal = false
                        break
                    }
                    k += 1
                }
                if equal { return true }
            }
            if !vr.isMultiValuedText { break }
            start = stop + 1
        }
        return false
    }

    static func numbers(_ element: DataElement, _ dataSet: DataSet) -> [Double] {
        switch element.vr {
        case .DS, .IS:
            return element.strings().compactMap { Double($0.trimmingSpaces) }
        case .US, .SS, .UL, .SL, .SV, .UV:
            return element.integers(byteOrder: dataSet.byteOrder).map(Double.init)
        case .FL, .FD:
            return element.floats(byteOrder: dataSet.byteOrder)
        case .DA, .TM, .DT:
            // Dates and times compare as their digits: StudyDate >= 20240101.
            return element.strings().compactMap { Double($0.filter { $0.isNumber }) }
        default:
            return []
        }
    }

    /// YYYYMMDD (a DA, or the start of a DT) as days since 1970.
    static func dayNumber(_ bytes: ArraySlice<UInt8>) -> Int? {
        var digits: [Int] = []
        for b in bytes {
            if b >= 0x30 && b <= 0x39 {
                digits.append(Int(b - 0x30))
                if digits.count == 8 { break }
            } else if b != 0x2E && b != 0x20 {
                break
            }
        }
        guard digits.count == 8 else { return nil }
        let year = digits[0] * 1000 + digits[1] * 100 + digits[2] * 10 + digits[3]
        let month = digits[4] * 10 + digits[5], day = digits[6] * 10 + digits[7]
        guard (1...12).contains(month), (1...31).contains(day) else { return nil }
        return daysFromCivil(year, month, day)
    }
}

extension String {
    var trimmingSpaces: String {
        var s = Substring(self)
        while s.first == " " { s = s.dropFirst() }
        while s.last == " " { s = s.dropLast() }
        return String(s)
    }
}
