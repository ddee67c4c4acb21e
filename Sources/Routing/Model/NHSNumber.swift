/// An NHS number: ten digits, the last a Modulus 11 check digit (NHS Data Dictionary).
public struct NHSNumber: Sendable, Hashable, CustomStringConvertible {
    public let digits: String

    /// Validates: ten digits (spaces and hyphens allowed between groups), correct check digit.
    public init?(_ text: String) {
        let digits = text.filter { $0 != " " && $0 != "-" }
        guard digits.count == 10, digits.allSatisfy({ $0.isASCII && $0.isNumber }) else { return nil }
        let values = digits.map { Int(String($0))! }
        guard let check = NHSNumber.checkDigit(Array(values[0..<9])), check == values[9] else { return nil }
        self.digits = digits
    }

    /// The Modulus 11 check digit for nine digits, or nil where none exists (remainder 10).
    public static func checkDigit(_ nine: [Int]) -> Int? {
        let sum = zip(nine, (2...10).reversed()).reduce(0) { $0 + $1.0 * $1.1 }
        let check = 11 - sum % 11
        if check == 11 { return 0 }
        if check == 10 { return nil }
        return check
    }

    /// A valid number in the 999 range, which the NHS never issues: for tests and demos.
    public static func testNumber(seed: UInt64) -> NHSNumber {
        var n = seed
        while true {
            let six = String(format6(n % 1_000_000))
            let nine = ("999" + six).map { Int(String($0))! }
            if let check = checkDigit(nine), let number = NHSNumber("999" + six + String(check)) { return number }
            n += 1
        }
    }

    private static func format6(_ n: UInt64) -> String {
        let s = String(n)
        return String(repeating: "0", count: 6 - s.count) + s
    }

    /// "999 123 4567", as people write it.
    public var description: String {
        let d = Array(digits)
        return String(d[0..<3]) + " " + String(d[3..<6]) + " " + String(d[6..<10])
    }
}
