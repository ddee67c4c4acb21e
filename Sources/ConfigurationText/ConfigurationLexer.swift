import Foundation
import Routing

/// The lexical layer of Consort's configuration files, the agent's and the coordinator's alike:
/// one setting per line, `#` comments, quoted strings where there are spaces, `{ }` for a
/// setting's options — the routing rules' lexical style, and reported the same way (Routing's
/// `SourceLocation` and `Diagnostic`, file:line:column with a caret). Each daemon keeps its own
/// words and their meaning; only the reading of the text is here, so that the coordinator does
/// not depend on the agent to read its file.
public enum ConfigurationLexer {
    /// A word of a configuration line.
    public struct Token: Sendable {
        public let text: String
        public let quoted: Bool
        public let location: SourceLocation
        public var isOpen: Bool { !quoted && text == "{" }
        public var isClose: Bool { !quoted && text == "}" }
    }

    /// The file's text, or nil when it cannot be read as UTF-8.
    public static func read(file: String) -> String? {
        guard let data = FileManager.default.contents(atPath: file) else { return nil }
        return String(data: data, encoding: .utf8)
    }

    /// `HOST:PORT` (the host may be empty for "every address"), or nil.
    public static func address(_ text: String) -> (host: String, port: UInt16)? {
        guard let colon = text.lastIndex(of: ":"), let port = UInt16(text[text.index(after: colon)...]) else { return nil }
        return (String(text[..<colon]), port)
    }

    /// An absolute path without a trailing slash, or nil (a service does not know which folder
    /// it was started from, so a relative path means nothing to it).
    public static func absolutePath(_ text: String) -> String? {
        guard text.hasPrefix("/") else { return nil }
        return text.count > 1 && text.hasSuffix("/") ? String(text.dropLast()) : text
    }

    /// An absolute path made lexically normal — no empty or "." components, ".." applied, no
    /// trailing slash — or nil for a relative one. Normal as the archive watchers report paths
    /// (`PathFilter.normalize`): the agent's folders are read with it, so that a path it writes
    /// under `inbound` and the same path in a watcher's event are one string (`/srv//import`
    /// once made them two, and a file deleted there was never matched to the inventory).
    public static func normalAbsolutePath(_ text: String) -> String? {
        guard text.hasPrefix("/") else { return nil }
        var parts: [Substring] = []
        for part in text.split(separator: "/") where part != "." {
            if part == ".." { _ = parts.popLast() } else { parts.append(part) }
        }
        return "/" + parts.joined(separator: "/")
    }

    /// The known word nearest to a misspelt one, if any is near enough to suggest.
    public static func closest(_ word: String, among settings: [String]) -> String? {
        let lowered = word.lowercased()
        var best: (String, Int)?
        for candidate in settings {
            let distance = editDistance(Array(lowered), Array(candidate))
            if distance <= max(2, candidate.count / 3), distance < (best?.1 ?? .max) { best = (candidate, distance) }
        }
        return best?.0
    }

    /// Levenshtein distance: insertions, deletions and substitutions of one character each.
    public static func editDistance(_ a: [Character], _ b: [Character]) -> Int {
        var previous = Array(0...b.count)
        for (i, x) in a.enumerated() {
            var current = [i + 1]
            for (j, y) in b.enumerated() {
                current.append(min(previous[j + 1] + 1, current[j] + 1, previous[j] + (x == y ? 0 : 1)))
            }
            previous = current
        }
        return previous[b.count]
    }

    /// The file's tokens, line by line (blank and comment-only lines left out). A quoted string
    /// may hold spaces and `#`; `\"` and `\\` are its escapes.
    public static func lines(_ text: String, file: String) -> [[Token]] {
        var out: [[Token]] = []
        for (number, line) in text.split(separator: "\n", omittingEmptySubsequences: false).enumerated() {
            let chars = Array(line)
            var tokens: [Token] = []
            var i = 0
            while i < chars.count {
                let c = chars[i]
                if c == " " || c == "\t" || c == "\r" { i += 1; continue }
                if c == "#" { break }
                let location = SourceLocation(file: file, line: number + 1, column: i + 1)
                if c == "\"" {
                    var value = ""
                    var j = i + 1
                    while j < chars.count, chars[j] != "\"" {
                        if chars[j] == "\\", j + 1 < chars.count { j += 1 }
                        value.append(chars[j])
                        j += 1
                    }
                    tokens.append(Token(text: value, quoted: true, location: SourceLocation(file: file, line: number + 1, column: i + 1, length: j - i + 1)))
                    i = j + 1
                    continue
                }
                if c == "{" || c == "}" {
                    tokens.append(Token(text: String(c), quoted: false, location: location))
                    i += 1
                    continue
                }
                var j = i
                while j < chars.count, !" \t\r{}\"#".contains(chars[j]) { j += 1 }
                tokens.append(Token(text: String(chars[i..<j]), quoted: false, location: SourceLocation(file: file, line: number + 1, column: i + 1, length: j - i)))
                i = j
            }
            if !tokens.isEmpty { out.append(tokens) }
        }
        return out
    }
}

/// What reading a configuration file gave: the configuration (nil when there were errors), every
/// diagnostic, and the text they point into (for the caret lines of `report()`).
public struct ConfigurationOutcome<Configuration: Sendable>: Sendable {
    public var configuration: Configuration?
    public var diagnostics: [Diagnostic]
    public var source: String

    public init(configuration: Configuration?, diagnostics: [Diagnostic], source: String) {
        self.configuration = configuration
        self.diagnostics = diagnostics
        self.source = source
    }

    /// The outcome for a file that cannot be read at all: one error at its first line.
    public static func unreadable(file: String) -> Self {
        let location = SourceLocation(file: file, line: 1, column: 1)
        return Self(configuration: nil, diagnostics: [Diagnostic(.error, location, "cannot read the configuration file")], source: "")
    }

    public var errors: [Diagnostic] { diagnostics.filter { $0.severity == .error } }
    public func report() -> String { diagnostics.map { $0.rendered(source: source) }.joined(separator: "\n") }
}
