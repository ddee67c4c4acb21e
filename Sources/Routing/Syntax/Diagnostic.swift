import DICOM

/// A place in a rules file: 1-based line and column (columns count characters).
public struct SourceLocation: Sendable, Hashable, Comparable, CustomStringConvertible {
    public var file: String
    public var line: Int
    public var column: Int
    /// How many characters the located thing spans (for the caret line).
    public var length: Int

    public init(file: String, line: Int, column: Int, length: Int = 1) {
        self.file = file
        self.line = line
        self.column = column
        self.length = max(1, length)
    }

    public static func < (a: SourceLocation, b: SourceLocation) -> Bool {
        (a.file, a.line, a.column) < (b.file, b.line, b.column)
    }

    public var description: String { "\(file):\(line):\(column)" }
}

/// A problem found in a rule set, as a compiler reports one: where, what, and a hint.
public struct Diagnostic: Sendable, Hashable, CustomStringConvertible {
    public enum Severity: String, Sendable {
        /// The rule set is refused: it would not do what it says.
        case error
        /// Loaded, but probably not what was meant.
        case warning
    }

    public var severity: Severity
    public var location: SourceLocation
    public var message: String
    public var hint: String?

    public init(_ severity: Severity, _ location: SourceLocation, _ message: String, hint: String? = nil) {
        self.severity = severity
        self.location = location
        self.message = message
        self.hint = hint
    }

    public var description: String { "\(location): \(severity.rawValue): \(message)" }

    /// The compiler-style report: the line, a caret under the fault, and the hint.
    public func rendered(source: String?) -> String {
        var text = description
        if let source {
            let lines = source.split(separator: "\n", omittingEmptySubsequences: false)
            if location.line >= 1 && location.line <= lines.count {
                let line = String(lines[location.line - 1])
                let expanded = line.replacingTabs()
                text += "\n    " + expanded
                let prefix = String(line.prefix(max(0, location.column - 1))).replacingTabs()
                let marker = "^" + String(repeating: "~", count: max(0, min(location.length, max(1, expanded.count - prefix.count)) - 1))
                text += "\n    " + String(repeating: " ", count: prefix.count) + marker
            }
        }
        if let hint { text += "\n  hint: " + hint }
        return text
    }
}

extension String {
    fileprivate func replacingTabs() -> String {
        String(self.map { $0 == "\t" ? " " : $0 })
    }
}

/// Suggests the closest of `candidates` to a misspelled `word` ("did you mean ...?"), or nil
/// when nothing is close (edit distance more than a third of the word).
func closest(to word: String, among candidates: some Sequence<String>) -> String? {
    closest(to: word, amongPrepared: candidates.map { ($0, Array($0.lowercased())) })
}

/// The same over candidates already lower-cased (the 5,000 DICOM keywords are prepared once).
func closest(to word: String, amongPrepared candidates: [(String, [Character])]) -> String? {
    let target = Array(word.lowercased())
    let slack = max(2, target.count / 3)
    var best: (String, Int)?
    for (candidate, c) in candidates where abs(c.count - target.count) <= slack {
        let d = editDistance(target, c)
        if d <= max(1, target.count / 3), best == nil || d < best!.1 { best = (candidate, d) }
    }
    return best?.0
}

/// DICOM keywords, lower-cased once, for "did you mean" on attributes.
let preparedKeywords: [(String, [Character])] = DataDictionary.allKeywords.sorted().map { ($0, Array($0.lowercased())) }

func editDistance(_ a: [Character], _ b: [Character]) -> Int {
    if a.isEmpty { return b.count }
    if b.isEmpty { return a.count }
    var previous = Array(0...b.count)
    var current = [Int](repeating: 0, count: b.count + 1)
    for i in 1...a.count {
        current[0] = i
        for j in 1...b.count {
            current[j] = min(previous[j] + 1, current[j - 1] + 1, previous[j - 1] + (a[i - 1] == b[j - 1] ? 0 : 1))
        }
        swap(&previous, &current)
    }
    return previous[b.count]
}
