/// A TM value (PS3.5 §6.2): HH, HHMM, HHMMSS or HHMMSS.FFFFFF; the ACR-NEMA form HH:MM:SS too.
/// Components not given are nil, not zero: "10" is ten o'clock, to the hour.
public struct DICOMTime: Sendable, Hashable, CustomStringConvertible {
    public var hour: Int
    public var minute: Int?
    public var second: Int?
    /// Microseconds, when the value has a fraction.
    public var microsecond: Int?

    public init?(_ text: String) {
        let trimmed = text.filter { $0 != ":" }.trimmingCharacters(in: " ")
        let parts = trimmed.split(separator: ".", maxSplits: 1, omittingEmptySubsequences: false)
        let whole = Array(parts[0])
        guard [2, 4, 6].contains(whole.count), whole.allSatisfy({ $0.isASCII && $0.isNumber }) else { return nil }
        let numbers = stride(from: 0, to: whole.count, by: 2).map { Int(String(whole[$0..<$0 + 2]))! }
        guard numbers[0] < 24 else { return nil }
        hour = numbers[0]
        minute = numbers.count > 1 ? numbers[1] : nil
        second = numbers.count > 2 ? numbers[2] : nil
        if let m = minute, m > 59 { return nil }
        if let s = second, s > 60 { return nil }  // 60: a leap second
        if parts.count == 2 {
            let fraction = Array(parts[1])
            guard second != nil, (1...6).contains(fraction.count), fraction.allSatisfy({ $0.isASCII && $0.isNumber }) else { return nil }
            microsecond = Int(String(fraction) + String(repeating: "0", count: 6 - fraction.count))
        }
    }

    public var description: String {
        func two(_ n: Int) -> String { n < 10 ? "0\(n)" : "\(n)" }
        var text = two(hour) + (minute.map(two) ?? "") + (second.map(two) ?? "")
        if let microsecond {
            let digits = String(microsecond)
            text += "." + String(repeating: "0", count: 6 - digits.count) + digits
        }
        return text
    }
}

/// A DT value (PS3.5 §6.2): YYYY[MM[DD[HH[MM[SS[.F{1-6}]]]]]][&ZZXX], with its UTC offset if given.
public struct DICOMDateTime: Sendable, Hashable {
    public var year: Int
    public var month: Int?
    public var day: Int?
    public var time: DICOMTime?
    /// Offset from UTC in minutes ("+0100" → 60), when the value carries one.
    public var utcOffsetMinutes: Int?

    public init?(_ text: String) {
        var body = Substring(text.trimmingCharacters(in: " "))
        if let sign = body.lastIndex(where: { $0 == "+" || $0 == "-" }) {
            let zone = body[body.index(after: sign)...]
            guard zone.count == 4, let hh = Int(zone.prefix(2)), let mm = Int(zone.suffix(2)), hh <= 14, mm < 60 else { return nil }
            utcOffsetMinutes = (body[sign] == "-" ? -1 : 1) * (hh * 60 + mm)
            body = body[..<sign]
        }
        let digits = Array(body.prefix { $0 != "." })
        guard [4, 6, 8, 10, 12, 14].contains(digits.count), digits.allSatisfy({ $0.isASCII && $0.isNumber }) else { return nil }
        year = Int(String(digits[0..<4]))!
        if digits.count >= 6 {
            month = Int(String(digits[4..<6]))
            guard (1...12).contains(month!) else { return nil }
        }
        if digits.count >= 8 {
            day = Int(String(digits[6..<8]))
            guard (1...31).contains(day!) else { return nil }
        }
        if digits.count >= 10 {
            guard let time = DICOMTime(String(body.dropFirst(8))) else { return nil }
            self.time = time
        } else if body.contains(".") {
            return nil
        }
    }
}

extension DataSet {
    /// A time (TM) value.
    public func time(_ tag: Tag) -> DICOMTime? { string(tag).flatMap { DICOMTime($0) } }
    /// A date-time (DT) value.
    public func dateTime(_ tag: Tag) -> DICOMDateTime? { string(tag).flatMap { DICOMDateTime($0) } }
}

extension Tag {
    /// The tag of a keyword from the data dictionary ("PatientID" → (0010,0020)).
    public init?(keyword: String) {
        guard let tag = DataDictionary.tag(forKeyword: keyword) else { return nil }
        self = tag
    }
}
