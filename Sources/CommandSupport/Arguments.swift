/// A usage error: wrong flags or arguments. The CLI prints it with a hint and exits 2.
public struct UsageError: Error, CustomStringConvertible {
    public let message: String
    public let command: String
    public var description: String { message }

    public init(message: String, command: String) {
        self.message = message
        self.command = command
    }
}

/// Exit codes every subcommand uses (documented in `consort --help`).
public enum ExitCode: Int32 {
    case success = 0
    /// Some inputs failed (unreadable files, a failed instance), the rest were processed.
    case someFailed = 1
    case usage = 2
}

/// A small, strict argument reader: declared flags and options only; anything else is a usage
/// error naming it. Supports `--name value`, `--name=value`, and `--` to end options.
public struct Arguments {
    public private(set) var positional: [String] = []
    private var flags: Set<String> = []
    private var options: [String: [String]] = [:]
    public let command: String

    public init(_ args: [String], command: String, flags knownFlags: Set<String>, options knownOptions: Set<String>) throws {
        self.command = command
        var index = 0
        var onlyPositional = false
        while index < args.count {
            let arg = args[index]
            index += 1
            if onlyPositional || !arg.hasPrefix("-") || arg == "-" {
                positional.append(arg)
                continue
            }
            if arg == "--" {
                onlyPositional = true
                continue
            }
            var name = arg
            var inlineValue: String?
            if let eq = arg.firstIndex(of: "=") {
                name = String(arg[..<eq])
                inlineValue = String(arg[arg.index(after: eq)...])
            }
            if knownFlags.contains(name) {
                if inlineValue != nil { throw UsageError(message: "\(name) takes no value", command: command) }
                flags.insert(name)
            } else if knownOptions.contains(name) {
                let value: String
                if let inlineValue {
                    value = inlineValue
                } else if index < args.count {
                    value = args[index]
                    index += 1
                } else {
                    throw UsageError(message: "\(name) needs a value", command: command)
                }
                options[name, default: []].append(value)
            } else {
                throw UsageError(message: "unknown option \(name)", command: command)
            }
        }
    }

    public func flag(_ name: String) -> Bool { flags.contains(name) }
    public func option(_ name: String) -> String? { options[name]?.last }
    /// Every value of an option given more than once (`--host a --host b`).
    public func values(_ name: String) -> [String] { options[name] ?? [] }

    public func integer(_ name: String, default value: Int, range: ClosedRange<Int>) throws -> Int {
        guard let text = option(name) else { return value }
        guard let n = Int(text), range.contains(n) else {
            throw UsageError(message: "\(name) must be a whole number from \(range.lowerBound) to \(range.upperBound), not \"\(text)\"", command: command)
        }
        return n
    }
}
