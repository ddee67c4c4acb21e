import Deidentification
import DICOM

/// Reads one rules file into declarations, collecting every syntax error with its place rather
/// than stopping at the first: after an error it skips to the next declaration.
///
/// The language (see routing-rules/README.md for the version a PACS manager reads):
///
///     member CODE "Name" [roles r1, r2]          peer CODE "Name" [roles ...]
///     group NAME = CODE, CODE, ...
///     agreement "Name" { purposes p1, p2   between A, B   |   from A, B  to C   [results back]
///                        [requires deidentification] }
///     rule "Name" {
///       purpose PURPOSE
///       [at SITE, GROUP]
///       on instance-arrival | study-stable [after DURATION] | list-arrival [in "folder"] [lead-time DURATION]
///       [when CONDITION]
///       ACTION...
///     }
///
///     CONDITION := TEST | CONDITION and CONDITION | CONDITION or CONDITION | not CONDITION | ( CONDITION )
///     TEST := ATTRIBUTE = VALUE | ATTRIBUTE != VALUE | ATTRIBUTE in (V, ...) | ATTRIBUTE ~ "regex"
///           | ATTRIBUTE is present | ATTRIBUTE is absent | ATTRIBUTE < <= > >= NUMBER
///           | ATTRIBUTE within [the] last DURATION | origin is local | origin is received [from NAMES]
///           | host in (NAMES)
///     ATTRIBUTE := Keyword | (gggg,eeee) | ATTRIBUTE / ATTRIBUTE   (into sequences)
///     ACTION := push to NAMES SCHEDULING          (NAMES may say origin: the trust the study came from)
///             | prefetch priors [from any member | from NAMES] [same modality] [same body-part]
///               [within DURATION] [at most N] [newest first] SCHEDULING
///             | deliver to [local] TARGET SCHEDULING
///             | gather imaging [from ...] [within DURATION] [to host | to NAME] SCHEDULING
///     SCHEDULING := [priority urgent|normal|bulk] [window HH:MM-HH:MM] [deadline DURATION]
///                   [expect result within DURATION] [deidentified [with OPTION, ...]]
///     OPTION := retain-safe-private | retain-uids | retain-device-identity
///             | retain-institution-identity | retain-patient-characteristics | retain-full-dates
///             | retain-modified-dates | clean-descriptors | clean-structured-content
///             | clean-graphics | allow-burned-in        (PS3.15 Annex E's options)
struct Parser {
    private var tokens: [Token]
    private var index = 0
    private(set) var diagnostics: [Diagnostic] = []
    let file: String
    /// Where each name (member, group) was last written in the rule being parsed.
    private var nameLocations: [String: SourceLocation] = [:]
    /// Brackets and "not"s open at once: bounded, so hostile input cannot overflow the stack.
    private var depth = 0
    static let maximumDepth = 64
    /// "Did you mean" searches the 5,000 keywords: done for the first few unknown words only.
    private var suggestionsLeft = 20

    struct Declarations {
        var members: [Member] = []
        var groups: [Group] = []
        var agreements: [Agreement] = []
        var rules: [Rule] = []
    }

    init(source: String, file: String) {
        tokens = Lexer.tokens(source, file: file)
        self.file = file
    }

    private struct Failure: Error {}

    private var current: Token { tokens[index] }
    private var next: Token { tokens[min(index + 1, tokens.count - 1)] }

    private mutating func advance() -> Token {
        let token = tokens[index]
        if index < tokens.count - 1 { index += 1 }
        return token
    }

    private func isWord(_ word: String, _ token: Token? = nil) -> Bool { (token ?? current).word == word }
    private func isSymbol(_ symbol: String) -> Bool { current.kind == .symbol(symbol) }

    private mutating func fail(_ message: String, at token: Token? = nil, hint: String? = nil) -> Failure {
        let t = token ?? current
        diagnostics.append(Diagnostic(.error, t.location, message, hint: hint))
        return Failure()
    }

    private mutating func expectWord(_ word: String, hint: String? = nil) throws {
        guard isWord(word) else { throw fail("expected \"\(word)\", found \(describe(current))", hint: hint) }
        _ = advance()
    }

    private mutating func expectSymbol(_ symbol: String, hint: String? = nil) throws {
        guard isSymbol(symbol) else { throw fail("expected \"\(symbol)\", found \(describe(current))", hint: hint) }
        _ = advance()
    }

    private func describe(_ token: Token) -> String {
        if case .end = token.kind { return "the end of the file" }
        if case .symbol("\"unterminated") = token.kind { return "a string with no closing quote" }
        return "\"\(token.text)\""
    }

    private mutating func name(_ what: String) throws -> (String, SourceLocation) {
        switch current.kind {
        case .word(let w):
            _ = advance()
            return (w, tokens[index - 1].location)
        case .number(_, let text):
            _ = advance()
            return (text, tokens[index - 1].location)
        default:
            throw fail("expected \(what), found \(describe(current))")
        }
    }

    private mutating func quoted(_ what: String) throws -> (String, SourceLocation) {
        guard case .string(let s) = current.kind else {
            throw fail("expected \(what) in double quotes, found \(describe(current))")
        }
        _ = advance()
        return (s, tokens[index - 1].location)
    }

    /// NAME, NAME, ... (at least one).
    private mutating func names(_ what: String) throws -> [(String, SourceLocation)] {
        var out = [try name(what)]
        while isSymbol(",") {
            _ = advance()
            out.append(try name(what))
        }
        for (n, l) in out where nameLocations[n] == nil { nameLocations[n] = l }
        return out
    }

    // MARK: - Declarations

    static let declarationWords: Set<String> = ["member", "peer", "group", "agreement", "rule"]

    mutating func parse() -> Declarations {
        var declarations = Declarations()
        while true {
            if case .end = current.kind { break }
            do {
                guard let word = current.word, Self.declarationWords.contains(word) else {
                    let hint = current.word.flatMap { closest(to: $0, among: Self.declarationWords) }.map { "did you mean \"\($0)\"?" }
                        ?? "a rules file holds member, peer, group, agreement and rule declarations"
                    throw fail("expected a declaration, found \(describe(current))", hint: hint)
                }
                switch word {
                case "member", "peer": declarations.members.append(try member())
                case "group": declarations.groups.append(try group())
                case "agreement": declarations.agreements.append(try agreement())
                default: declarations.rules.append(try rule())
                }
            } catch {
                recover()
            }
        }
        return declarations
    }

    /// After an error: skip to the next declaration word at the start of a line.
    private mutating func recover() {
        let line = current.location.line
        _ = advance()
        while true {
            if case .end = current.kind { return }
            if let w = current.word, Self.declarationWords.contains(w), current.location.line != line, current.location.column == 1 {
                return
            }
            _ = advance()
        }
    }

    private mutating func member() throws -> Member {
        let keyword = advance()
        let (code, location) = try name("a member code such as RSCH")
        let (title, _) = try quoted("the member's name")
        var roles: [String] = []
        if isWord("roles") {
            _ = advance()
            roles = try names("a role").map(\.0)
        }
        return Member(code: code, name: title, roles: roles, isTrust: keyword.word == "member", location: location)
    }

    private mutating func group() throws -> Group {
        _ = advance()
        let (groupName, location) = try name("a group name")
        try expectSymbol("=", hint: "groups are written: group cancer-centres = RSCH, UHSX")
        return Group(name: groupName, members: try names("a member code").map(\.0), location: location)
    }

    private mutating func agreement() throws -> Agreement {
        _ = advance()
        let (title, location) = try quoted("the agreement's name")
        try expectSymbol("{")
        var agreement = Agreement(name: title, purposes: [], from: [], to: [], location: location)
        while !isSymbol("}") {
            guard let word = current.word else { throw fail("expected purposes, between, from, to, results back or requires deidentification, found \(describe(current))") }
            _ = advance()
            switch word {
            case "purposes", "purpose": agreement.purposes += try names("a purpose").map(\.0)
            case "between":
                let parties = try names("a member or group").map(\.0)
                agreement.from += parties
                agreement.to += parties
            case "from": agreement.from += try names("a member or group").map(\.0)
            case "to": agreement.to += try names("a member or group").map(\.0)
            case "results":
                try expectWord("back", hint: "write: results back")
                agreement.resultsBack = true
            case "requires":
                try expectWord("deidentification", hint: "write: requires deidentification")
                agreement.requiresDeidentification = true
            default:
                throw fail(
                    "unknown agreement clause \"\(word)\"", at: tokens[index - 1],
                    hint: closest(to: word, among: ["purposes", "between", "from", "to", "results", "requires"]).map { "did you mean \"\($0)\"?" })
            }
        }
        _ = advance()
        if agreement.purposes.isEmpty { throw fail("agreement \"\(title)\" names no purposes", at: tokens[index - 1]) }
        return agreement
    }

    // MARK: - Rules

    static let ruleClauses: Set<String> = ["purpose", "at", "on", "when", "push", "prefetch", "deliver", "gather"]

    private mutating func rule() throws -> Rule {
        _ = advance()
        let (title, location) = try quoted("the rule's name")
        nameLocations = [:]
        try expectSymbol("{", hint: "a rule's clauses go between { and }")
        var purpose: String?
        var trigger: Trigger?
        var at: [String]?
        var condition: Condition?
        var actions: [Action] = []
        var actionLocations: [SourceLocation] = []
        while !isSymbol("}") {
            if case .end = current.kind { throw fail("rule \"\(title)\" has no closing }", at: tokens[index]) }
            guard let word = current.word, Self.ruleClauses.contains(word) else {
                let hint = current.word.flatMap { closest(to: $0, among: Self.ruleClauses) }.map { "did you mean \"\($0)\"?" }
                    ?? "a rule has: purpose, at, on, when, and actions (push, prefetch, deliver, gather)"
                throw fail("expected a rule clause, found \(describe(current))", hint: hint)
            }
            let clause = advance()
            switch word {
            case "purpose": purpose = try name("a purpose such as direct-care").0
            case "at": at = try names("a member or group").map(\.0)
            case "on": trigger = try parseTrigger()
            case "when":
                if condition != nil { throw fail("a rule has one when clause; combine tests with and/or", at: clause) }
                condition = try parseCondition()
            default:
                actionLocations.append(clause.location)
                actions.append(try parseAction(word))
            }
        }
        _ = advance()
        guard let purpose else {
            throw fail("rule \"\(title)\" has no purpose", at: tokens[index - 1], hint: "every rule names its clinical purpose, e.g. purpose direct-care")
        }
        guard let trigger else {
            throw fail("rule \"\(title)\" has no trigger", at: tokens[index - 1], hint: "add: on instance-arrival, on study-stable, or on list-arrival")
        }
        if actions.isEmpty { throw fail("rule \"\(title)\" does nothing", at: tokens[index - 1], hint: "add an action: push, prefetch, deliver or gather") }
        return Rule(
            name: title, purpose: purpose, trigger: trigger, at: at, condition: condition, actions: actions, location: location,
            actionLocations: actionLocations, nameLocations: nameLocations)
    }

    private mutating func parseTrigger() throws -> Trigger {
        let (word, _) = try name("a trigger")
        switch word {
        case "instance-arrival": return .instanceArrival
        case "study-stable":
            var quiet = 300
            if isWord("after") {
                _ = advance()
                quiet = try duration()
            }
            return .studyStable(quietSeconds: quiet)
        case "list-arrival":
            var folder = "lists"
            var lead = 0
            while isWord("in") || isWord("lead-time") {
                if advance().word == "in" { folder = try quoted("the folder lists are dropped into").0 } else { lead = try duration() }
            }
            return .listArrival(folder: folder, leadSeconds: lead)
        default:
            throw fail(
                "unknown trigger \"\(word)\"", at: tokens[index - 1],
                hint: closest(to: word, among: ["instance-arrival", "study-stable", "list-arrival"]).map { "did you mean \"\($0)\"?" }
                    ?? "triggers: instance-arrival, study-stable, list-arrival")
        }
    }

    /// NUMBER UNIT, in seconds.
    /// The longest duration a rule may give (100 years, in seconds).
    static let longestDuration = 100 * 31_556_952

    private mutating func duration() throws -> Int {
        guard case .number(let n, _) = current.kind, n >= 0, n == n.rounded() else {
            throw fail("expected a duration such as 10 min or 48 h, found \(describe(current))")
        }
        _ = advance()
        let units: [String: Int] = [
            "s": 1, "sec": 1, "second": 1, "seconds": 1, "min": 60, "minute": 60, "minutes": 60, "h": 3600, "hour": 3600,
            "hours": 3600, "d": 86400, "day": 86400, "days": 86400, "week": 604_800, "weeks": 604_800,
            "month": 2_629_746, "months": 2_629_746, "year": 31_556_952, "years": 31_556_952,
        ]
        let (unit, _) = try name("a unit (s, min, h, days, weeks, months, years)")
        guard let factor = units[unit] else {
            throw fail("unknown unit \"\(unit)\"", at: tokens[index - 1], hint: "units: s, min, h, days, weeks, months, years")
        }
        // Bounded before it becomes an Int: a number too large for one would trap (found by the
        // rules fuzzer: "lead-time 48333…333 h").
        guard n * Double(factor) <= Double(Self.longestDuration) else {
            throw fail("a duration of at most 100 years, not \(describe(tokens[index - 2])) \(unit)", at: tokens[index - 2])
        }
        return Int(n) * factor
    }

    // MARK: - Conditions

    private mutating func parseCondition() throws -> Condition {
        var terms = [try parseAnd()]
        while isWord("or") {
            _ = advance()
            terms.append(try parseAnd())
        }
        return terms.count == 1 ? terms[0] : .any(terms)
    }

    private mutating func parseAnd() throws -> Condition {
        var terms = [try parseUnary()]
        while isWord("and") {
            _ = advance()
            terms.append(try parseUnary())
        }
        return terms.count == 1 ? terms[0] : .all(terms)
    }

    private mutating func parseUnary() throws -> Condition {
        depth += 1
        defer { depth -= 1 }
        if depth > Self.maximumDepth {
            throw fail("the condition is nested more than \(Self.maximumDepth) deep", hint: "split it into simpler tests")
        }
        if isWord("not") {
            let location = advance().location
            return .not(try parseUnary(), location)
        }
        if isSymbol("(") {
            _ = advance()
            let inner = try parseCondition()
            try expectSymbol(")", hint: "each ( needs a matching )")
            return inner
        }
        return try parseTest()
    }

    private mutating func parseTest() throws -> Condition {
        let start = current
        if isWord("origin") {
            _ = advance()
            try expectWord("is", hint: "write: origin is local, or origin is received [from UHSX]")
            if isWord("local") {
                _ = advance()
                return .origin(.local, start.location)
            }
            try expectWord("received", hint: "write: origin is local, or origin is received [from UHSX]")
            if isWord("from") {
                _ = advance()
                return .origin(.received(from: try names("a member or group").map(\.0)), start.location)
            }
            return .origin(.received(from: nil), start.location)
        }
        if isWord("host") {
            _ = advance()
            if isSymbol("=") {
                _ = advance()
                return .host([try name("a member or group").0], start.location)
            }
            try expectWord("in", hint: "write: host in (RSCH, UHSX)")
            try expectSymbol("(")
            let hosts = try names("a member or group").map(\.0)
            try expectSymbol(")")
            return .host(hosts, start.location)
        }
        let (path, text, location) = try attribute()
        func make(_ test: AttributeTest.Test) -> Condition {
            .attribute(AttributeTest(path: path, name: text, test: test, location: location))
        }
        switch current.kind {
        case .symbol("="), .symbol("!="):
            let negate = advance().kind == .symbol("!=")
            let v = ExpectedValue(try value())
            return make(negate ? .noneOf([v]) : .oneOf([v]))
        case .symbol("~"):
            _ = advance()
            let (source, patternLocation) = try quoted("a regular expression")
            do {
                return make(.matches(try Pattern(source)))
            } catch {
                diagnostics.append(Diagnostic(.error, patternLocation, "the regular expression \"\(source)\" does not compile", hint: "matching ignores case already; check brackets and escapes (\\. for a dot)"))
                return make(.present)
            }
        case .symbol(let op) where ["<", "<=", ">", ">="].contains(op):
            _ = advance()
            guard case .number(let n, _) = current.kind else { throw fail("expected a number after \(op), found \(describe(current))") }
            _ = advance()
            return make(.compare(AttributeTest.Comparison(rawValue: op)!, n))
        case .word("in"), .word("not"):
            var negate = false
            if isWord("not") {
                _ = advance()
                negate = true
            }
            try expectWord("in")
            try expectSymbol("(", hint: "a list of values goes in brackets: in (HEAD, BRAIN)")
            var values = [ExpectedValue(try value())]
            while isSymbol(",") {
                _ = advance()
                values.append(ExpectedValue(try value()))
            }
            try expectSymbol(")", hint: "close the list of values with )")
            return make(negate ? .noneOf(values) : .oneOf(values))
        case .word("is"):
            _ = advance()
            if isWord("present") {
                _ = advance()
                return make(.present)
            }
            if isWord("absent") {
                _ = advance()
                return make(.absent)
            }
            throw fail("expected \"present\" or \"absent\" after \"is\", found \(describe(current))")
        case .word("within"):
            _ = advance()
            if isWord("the") { _ = advance() }
            try expectWord("last", hint: "write: StudyDate within last 30 days")
            return make(.withinLast(days: max(1, try duration() / 86400)))
        default:
            throw fail(
                "expected a test after \(text) (=, !=, in, ~, is present, is absent, <, >, within last), found \(describe(current))",
                hint: start.word == "origine" ? "did you mean \"origin\"?" : nil)
        }
    }

    /// A keyword or (gggg,eeee), or a path into sequences: A/B/C.
    private mutating func attribute() throws -> ([Tag], String, SourceLocation) {
        var path: [Tag] = []
        var parts: [String] = []
        let first = current.location
        var last = first
        repeat {
            if !path.isEmpty { _ = advance() }  // the "/"
            let token = current
            switch token.kind {
            case .tag(let raw):
                path.append(Tag(rawValue: raw))
                parts.append(token.text)
            case .word(let keyword):
                guard let tag = Tag(keyword: keyword) else {
                    suggestionsLeft -= 1
                    let suggestion = suggestionsLeft >= 0 && keyword.count < 64 ? closest(to: keyword, amongPrepared: preparedKeywords) : nil
                    let hint = suggestion.map { "did you mean \($0)?" }
                        ?? "attributes are DICOM keywords (PS3.6), e.g. Modality, or tags written (0008,0060)"
                    throw fail("unknown attribute \"\(keyword)\"", hint: hint)
                }
                path.append(tag)
                parts.append(keyword)
            default:
                throw fail("expected an attribute (a DICOM keyword or (gggg,eeee)), found \(describe(token))")
            }
            last = advance().location
        } while isSymbol("/")
        let length = last.line == first.line ? last.column + last.length - first.column : first.length
        return (path, parts.joined(separator: "/"), SourceLocation(file: file, line: first.line, column: first.column, length: length))
    }

    private mutating func value() throws -> String {
        switch current.kind {
        case .word(let w):
            _ = advance()
            return w
        case .string(let s):
            _ = advance()
            return s
        case .number(_, let text):
            _ = advance()
            return text
        default:
            throw fail("expected a value, found \(describe(current))")
        }
    }

    // MARK: - Actions

    private mutating func parseAction(_ word: String) throws -> Action {
        switch word {
        case "push":
            try expectWord("to", hint: "write: push to UHSX")
            let destinations = try names("a member or group").map(\.0)
            return .push(to: destinations, try scheduling())
        case "prefetch":
            try expectWord("priors", hint: "write: prefetch priors [from any member] [same modality] [within 5 years] [at most 3]")
            let query = try priorQuery(allowTo: false).0
            return .prefetchPriors(query, try scheduling())
        case "deliver":
            try expectWord("to", hint: "write: deliver to local PACS")
            if isWord("local") { _ = advance() }
            let target = try name("a local target such as PACS").0
            return .deliver(target: target, try scheduling())
        default:
            try expectWord("imaging", hint: "write: gather imaging [within 2 years] [to host]")
            let (query, destination) = try priorQuery(allowTo: true)
            return .gather(query, to: destination == "host" ? nil : destination, try scheduling())
        }
    }

    private mutating func priorQuery(allowTo: Bool) throws -> (PriorQuery, String?) {
        var query = PriorQuery()
        var destination: String?
        loop: while let word = current.word {
            switch word {
            case "from":
                _ = advance()
                if isWord("any") {
                    _ = advance()
                    try expectWord("member", hint: "write: from any member, or from RSCH, UHSX")
                    query.from = ["any-member"]
                } else {
                    query.from = try names("a member or group").map(\.0)
                }
            case "same":
                _ = advance()
                let (what, _) = try name("modality or body-part")
                switch what {
                case "modality": query.sameModality = true
                case "body-part", "body-region", "region": query.sameBodyPart = true
                default: throw fail("expected modality or body-part after same, found \"\(what)\"", at: tokens[index - 1])
                }
            case "within":
                _ = advance()
                query.withinDays = max(1, try duration() / 86400)
            case "at" where next.word == "most":
                _ = advance()
                _ = advance()
                guard case .number(let n, _) = current.kind, n >= 1, n <= 10_000, n == n.rounded() else {
                    throw fail("expected a whole number from 1 to 10000 after \"at most\", found \(describe(current))")
                }
                _ = advance()
                query.atMost = Int(n)
            case "newest":
                _ = advance()
                try expectWord("first")
            case "to" where allowTo:
                _ = advance()
                destination = try name("host or a member").0
            default:
                break loop
            }
        }
        return (query, destination)
    }

    private mutating func scheduling() throws -> Scheduling {
        var s = Scheduling()
        while true {
            if isSymbol(","), let w = next.word, Self.schedulingWords.contains(w) { _ = advance() }
            guard let word = current.word, Self.schedulingWords.contains(word) else { return s }
            _ = advance()
            switch word {
            case "priority":
                let (p, _) = try name("urgent, normal or bulk")
                guard let priority = Priority(name: p) else {
                    throw fail("unknown priority \"\(p)\"", at: tokens[index - 1], hint: "priorities: urgent, normal, bulk")
                }
                s.priority = priority
            case "window":
                let (text, _) = try name("a time window such as 19:00-07:00")
                guard let window = Self.window(text) else {
                    throw fail("expected a time window such as 19:00-07:00, found \"\(text)\"", at: tokens[index - 1])
                }
                s.window = window
            case "deidentified":
                s.deidentified = true
                if isWord("with") {
                    _ = advance()
                    repeat {
                        if isSymbol(",") { _ = advance() }
                        let (word, _) = try name("a de-identification option")
                        guard s.deidentification.add(word: word) else {
                            throw fail(
                                "unknown de-identification option \"\(word)\"", at: tokens[index - 1],
                                hint: closest(to: word, among: DeidentificationChoice.words).map { "did you mean \"\($0)\"?" }
                                    ?? "options: " + DeidentificationChoice.words.joined(separator: ", "))
                        }
                    // After a comma, another option unless another modifier starts (so that a
                    // misspelt option is named, with "did you mean").
                    } while isSymbol(",") && next.word.map { !Self.schedulingWords.contains($0) } == true
                }
            case "expect":
                try expectWord("result", hint: "write: expect result within 30 min")
                try expectWord("within", hint: "write: expect result within 30 min")
                s.expectResultSeconds = try duration()
            default:
                s.deadlineSeconds = try duration()
            }
        }
    }

    static let schedulingWords: Set<String> = ["priority", "window", "deadline", "expect", "deidentified"]

    static func window(_ text: String) -> TimeWindow? {
        let parts = text.split(separator: "-")
        guard parts.count == 2 else { return nil }
        func minutes(_ p: Substring) -> Int? {
            let hm = p.split(separator: ":")
            guard hm.count == 2, let h = Int(hm[0]), let m = Int(hm[1]), (0...24).contains(h), (0..<60).contains(m), h * 60 + m <= 1440 else { return nil }
            return h * 60 + m
        }
        guard let start = minutes(parts[0]), let end = minutes(parts[1]), start != end else { return nil }
        // An end of 24:00 is the end of the day (1440), not its start: "00:00-24:00" is always
        // open, "19:00-24:00" the evening (as 0 it would be an empty or a wrapping window).
        return TimeWindow(startMinute: start % 1440, endMinute: end)
    }
}
