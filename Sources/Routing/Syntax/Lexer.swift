/// One token of the rules language, with where it starts.
struct Token: Sendable, Equatable {
    enum Kind: Sendable, Equatable {
        /// A bare word: keywords, attribute names, peer codes, values, times ("19:00").
        case word(String)
        /// A quoted string, escapes resolved.
        case string(String)
        case number(Double, text: String)
        /// A tag written (gggg,eeee).
        case tag(UInt32)
        case symbol(String)  // { } ( ) , = != ~ < <= > >= / -
        case end
    }

    let kind: Kind
    let location: SourceLocation

    var word: String? {
        if case .word(let w) = kind { return w }
        return nil
    }

    var text: String {
        switch kind {
        case .word(let w): return w
        case .string(let s): return "\"\(s)\""
        case .number(_, let text): return text
        case .tag(let t): return String(format6: t)
        case .symbol(let s): return s
        case .end: return "end of file"
        }
    }
}

extension String {
    init(format6 tag: UInt32) {
        let hex = String(tag, radix: 16, uppercase: true)
        let padded = String(repeating: "0", count: 8 - hex.count) + hex
        self = "(\(padded.prefix(4)),\(padded.suffix(4)))"
    }
}

/// Splits a rules file into tokens. Comments run from `#` to the end of the line. Never fails:
/// a character that cannot start a token becomes a one-character symbol the parser reports.
struct Lexer {
    static func tokens(_ source: String, file: String) -> [Token] {
        var tokens: [Token] = []
        let chars = Array(source)
        var i = 0, line = 1, column = 1
        func location(_ length: Int) -> SourceLocation { SourceLocation(file: file, line: line, column: column, length: length) }
        func advance(_ n: Int) {
            for _ in 0..<n {
                if i < chars.count, chars[i] == "\n" {
                    line += 1
                    column = 1
                } else {
                    column += 1
                }
                i += 1
            }
        }
        func isWordCharacter(_ c: Character) -> Bool {
            c.isLetter || c.isNumber || c == "_" || c == "-" || c == "." || c == "&" || c == ":" || c == "'"
        }
        while i < chars.count {
            let c = chars[i]
            if c == "#" {
                while i < chars.count, chars[i] != "\n" { advance(1) }
                continue
            }
            if c.isWhitespace {
                advance(1)
                continue
            }
            if c == "\"" {
                let start = location(1)
                var value = ""
                var j = i + 1
                var closed = false
                while j < chars.count, chars[j] != "\n" {
                    if chars[j] == "\\", j + 1 < chars.count {
                        value.append(chars[j + 1])
                        j += 2
                        continue
                    }
                    if chars[j] == "\"" {
                        closed = true
                        break
                    }
                    value.append(chars[j])
                    j += 1
                }
                let length = j - i + (closed ? 1 : 0)
                tokens.append(Token(kind: closed ? .string(value) : .symbol("\"unterminated"), location: SourceLocation(file: file, line: start.line, column: start.column, length: length)))
                advance(length)
                continue
            }
            // A tag: (gggg,eeee)
            if c == "(", i + 10 < chars.count, chars[i + 5] == ",", chars[i + 10] == ")",
                let group = UInt32(String(chars[i + 1...i + 4]), radix: 16),
                let element = UInt32(String(chars[i + 6...i + 9]), radix: 16)
            {
                tokens.append(Token(kind: .tag(group << 16 | element), location: location(11)))
                advance(11)
                continue
            }
            if i + 1 < chars.count {
                let pair = String(chars[i...i + 1])
                if pair == "!=" || pair == "<=" || pair == ">=" {
                    tokens.append(Token(kind: .symbol(pair), location: location(2)))
                    advance(2)
                    continue
                }
            }
            if "{}(),=~<>/".contains(c) {
                tokens.append(Token(kind: .symbol(String(c)), location: location(1)))
                advance(1)
                continue
            }
            if isWordCharacter(c) {
                var j = i
                while j < chars.count, isWordCharacter(chars[j]) { j += 1 }
                let text = String(chars[i..<j])
                let kind: Token.Kind = Double(text).map { .number($0, text: text) } ?? .word(text)
                tokens.append(Token(kind: kind, location: location(j - i)))
                advance(j - i)
                continue
            }
            tokens.append(Token(kind: .symbol(String(c)), location: location(1)))
            advance(1)
        }
        tokens.append(Token(kind: .end, location: SourceLocation(file: file, line: line, column: column)))
        return tokens
    }
}
