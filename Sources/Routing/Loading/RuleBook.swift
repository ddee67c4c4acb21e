import Foundation

/// Reads a folder of `*.rules` files into a checked `RuleSet`.
public enum RuleSetLoader {
    public struct Outcome: Sendable {
        /// nil when any error was found: the set must not be used.
        public var ruleSet: RuleSet?
        public var diagnostics: [Diagnostic]
        public var sources: [String: String]
        public var files: [String]

        public var errors: [Diagnostic] { diagnostics.filter { $0.severity == .error } }
        public var warnings: [Diagnostic] { diagnostics.filter { $0.severity == .warning } }

        /// Every diagnostic, compiler style, with the faulty line and a caret.
        public func report() -> String {
            diagnostics.map { $0.rendered(source: sources[$0.location.file]) }.joined(separator: "\n")
        }
    }

    /// Parses and checks every `.rules` file in `directory` (in name order), or one file.
    public static func load(_ path: String) -> Outcome {
        var isDirectory: ObjCBool = false
        guard FileManager.default.fileExists(atPath: path, isDirectory: &isDirectory) else {
            let location = SourceLocation(file: path, line: 1, column: 1)
            return Outcome(ruleSet: nil, diagnostics: [Diagnostic(.error, location, "no such file or folder")], sources: [:], files: [])
        }
        var files: [String]
        if isDirectory.boolValue {
            let names = (try? FileManager.default.contentsOfDirectory(atPath: path)) ?? []
            files = names.filter { $0.hasSuffix(".rules") }.sorted().map { (path.hasSuffix("/") ? path : path + "/") + $0 }
        } else {
            files = [path]
        }
        var sources: [String: String] = [:]
        var diagnostics: [Diagnostic] = []
        for file in files {
            guard let data = FileManager.default.contents(atPath: file) else {
                diagnostics.append(Diagnostic(.error, SourceLocation(file: file, line: 1, column: 1), "cannot read the file"))
                continue
            }
            guard let text = String(data: data, encoding: .utf8) else {
                diagnostics.append(Diagnostic(.error, SourceLocation(file: file, line: 1, column: 1), "the file is not UTF-8 text"))
                continue
            }
            sources[file] = text
        }
        if files.isEmpty {
            diagnostics.append(Diagnostic(.error, SourceLocation(file: path, line: 1, column: 1), "no .rules files here"))
        }
        var outcome = load(sources: sources.sorted { $0.key < $1.key })
        outcome.diagnostics = diagnostics + outcome.diagnostics
        outcome.files = files
        if !outcome.errors.isEmpty { outcome.ruleSet = nil }
        return outcome
    }

    /// Parses and checks rule text already in memory: (file name, text) pairs.
    public static func load(sources: [(key: String, value: String)]) -> Outcome {
        var set = RuleSet()
        var diagnostics: [Diagnostic] = []
        for (file, text) in sources {
            var parser = Parser(source: text, file: file)
            let declarations = parser.parse()
            diagnostics += parser.diagnostics
            set.members += declarations.members
            set.groups += declarations.groups
            set.agreements += declarations.agreements
            set.rules += declarations.rules
            set.sources[file] = text
        }
        var checker = RuleChecker(set)
        diagnostics += checker.check()
        diagnostics.sort { $0.location < $1.location }
        let hasErrors = diagnostics.contains { $0.severity == .error }
        return Outcome(
            ruleSet: hasErrors ? nil : set, diagnostics: diagnostics, sources: set.sources, files: sources.map(\.key))
    }
}

/// The rule set in force, replaced whole or not at all. The agent calls `reload()` on SIGHUP: the
/// new files are parsed and checked first; a set with errors is refused, the old one stays in
/// force, and the refusal (with every error) is returned for the log.
public final class RuleBook: @unchecked Sendable {
    private let lock = NSLock()
    private var inForce: RuleSet
    private var engineInForce: RuleEngine
    public let path: String

    public enum ReloadResult: Sendable {
        case reloaded(warnings: [Diagnostic])
        case refused(RuleSetLoader.Outcome)
    }

    /// Loads the rules at `path`; throws the loader's outcome if they have errors.
    public init(path: String) throws {
        let outcome = RuleSetLoader.load(path)
        guard let set = outcome.ruleSet else { throw RuleSetError(outcome: outcome) }
        self.path = path
        inForce = set
        engineInForce = RuleEngine(set)
    }

    public var current: RuleSet { lock.withLock { inForce } }
    public var engine: RuleEngine { lock.withLock { engineInForce } }

    public func reload() -> ReloadResult {
        let outcome = RuleSetLoader.load(path)
        guard let set = outcome.ruleSet else { return .refused(outcome) }
        let engine = RuleEngine(set)  // compiled outside the lock
        lock.withLock {
            inForce = set
            engineInForce = engine
        }
        return .reloaded(warnings: outcome.warnings)
    }
}

public struct RuleSetError: Error, CustomStringConvertible {
    public let outcome: RuleSetLoader.Outcome
    public init(outcome: RuleSetLoader.Outcome) { self.outcome = outcome }
    public var description: String { outcome.report() }
}
