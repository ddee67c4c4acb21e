import DICOM
import Foundation

/// A rule's `when` clause: tests on the header's attributes and on where the study came from,
/// combined with and / or / not.
public indirect enum Condition: Sendable {
    case all([Condition])
    case any([Condition])
    case not(Condition, SourceLocation)
    case attribute(AttributeTest)
    case origin(OriginTest, SourceLocation)
    /// List rules: the list's host trust is one of these members (groups expanded at check time).
    case host([String], SourceLocation)

    /// A rough cost, so that `and`/`or` test cheap things first (the result does not change:
    /// tests have no side effects).
    var cost: Int {
        switch self {
        case .origin, .host: return 0
        case .attribute(let t): return t.test.cost
        case .not(let c, _): return c.cost
        case .all(let cs), .any(let cs): return cs.reduce(0) { $0 + $1.cost }
        }
    }

    /// The same condition with every `and`/`or` ordered cheapest first.
    func cheapestFirst() -> Condition {
        switch self {
        case .all(let cs): return .all(cs.map { $0.cheapestFirst() }.sorted { $0.cost < $1.cost })
        case .any(let cs): return .any(cs.map { $0.cheapestFirst() }.sorted { $0.cost < $1.cost })
        case .not(let c, let l): return .not(c.cheapestFirst(), l)
        default: return self
        }
    }
}

public enum OriginTest: Sendable, Hashable {
    /// Acquired here (not received from a peer).
    case local
    /// Received from a peer; from one of these members or groups when given.
    case received(from: [String]?)
}

/// One test on one attribute. The attribute may sit inside sequences (`A/B/C`): the test holds if
/// it holds in any item.
public struct AttributeTest: Sendable {
    public var path: [Tag]
    /// As written, for explanations ("BodyPartExamined").
    public var name: String
    public var test: Test
    public var location: SourceLocation

    public enum Test: Sendable {
        /// Equal to one of the values: text compared without case and padding; numbers as numbers.
        case oneOf([ExpectedValue])
        case noneOf([ExpectedValue])
        /// A case-insensitive regular expression found anywhere in the value.
        case matches(Pattern)
        case present
        case absent
        case compare(Comparison, Double)
        /// A date (DA, or the date part of DT) no older than this many days before now.
        case withinLast(days: Int)

        var cost: Int {
            switch self {
            case .present, .absent: return 1
            case .oneOf, .noneOf: return 2
            case .compare, .withinLast: return 3
            case .matches: return 20
            }
        }
    }

    public enum Comparison: String, Sendable {
        case less = "<", lessOrEqual = "<=", greater = ">", greaterOrEqual = ">="
        func holds(_ a: Double, _ b: Double) -> Bool {
            switch self {
            case .less: return a < b
            case .lessOrEqual: return a <= b
            case .greater: return a > b
            case .greaterOrEqual: return a >= b
            }
        }
    }
}

/// A value to compare with, prepared once: upper-case ASCII bytes for a byte-level comparison
/// with the raw value (no decoding on the hot path), the text, and the number if it is one.
public struct ExpectedValue: Sendable, Hashable, CustomStringConvertible {
    public let text: String
    let upperBytes: [UInt8]
    let isASCII: Bool
    let number: Double?

    public init(_ text: String) {
        self.text = text
        let bytes = Array(text.utf8)
        isASCII = bytes.allSatisfy { $0 < 0x80 }
        upperBytes = bytes.map { $0 >= 0x61 && $0 <= 0x7A ? $0 - 0x20 : $0 }
        number = Double(text)
    }

    public var description: String { text }
}

/// A compiled case-insensitive regular expression (Foundation's NSRegularExpression, which is
/// immutable and safe to use from several threads once made).
public final class Pattern: @unchecked Sendable {
    public let source: String
    let regex: NSRegularExpression

    public init(_ source: String) throws {
        self.source = source
        regex = try NSRegularExpression(pattern: source, options: [.caseInsensitive])
    }

    func matches(_ text: String) -> Bool {
        regex.firstMatch(in: text, options: [], range: NSRange(text.startIndex..., in: text)) != nil
    }
}
