#if canImport(Glibc)
    import Glibc
#endif

/// One line per event on standard error — `level component: message key=value ...` — for
/// journald, which adds the time. Each line is written whole with one write(2), so lines from
/// several threads never interleave. Values with spaces are quoted.
public struct Logger: Sendable {
    public enum Level: String, Sendable { case debug, info, warning, error }

    public let component: String
    /// Lines below this level are dropped.
    public let minimum: Level
    /// Where lines go (standard error; tests give a collector).
    public let sink: @Sendable (String) -> Void

    public init(_ component: String, minimum: Level = .info, sink: (@Sendable (String) -> Void)? = nil) {
        self.component = component
        self.minimum = minimum
        self.sink = sink ?? Logger.standardError
    }

    /// The same sink and level, another component.
    public func named(_ component: String) -> Logger { Logger(component, minimum: minimum, sink: sink) }

    public func debug(_ message: String, _ fields: KeyValuePairs<String, Any> = [:]) { log(.debug, message, fields) }
    public func info(_ message: String, _ fields: KeyValuePairs<String, Any> = [:]) { log(.info, message, fields) }
    public func warning(_ message: String, _ fields: KeyValuePairs<String, Any> = [:]) { log(.warning, message, fields) }
    public func error(_ message: String, _ fields: KeyValuePairs<String, Any> = [:]) { log(.error, message, fields) }

    public func log(_ level: Level, _ message: String, _ fields: KeyValuePairs<String, Any>) {
        guard Self.rank(level) >= Self.rank(minimum) else { return }
        var line = "\(level.rawValue) \(component): \(message)"
        for (key, value) in fields {
            let text = "\(value)"
            let quoted = text.isEmpty || text.contains(" ") || text.contains("\"") || text.contains("=")
            line += " \(key)=" + (quoted ? "\"" + text.replacingQuotes() + "\"" : text)
        }
        sink(line)
    }

    static func rank(_ level: Level) -> Int {
        switch level {
        case .debug: return 0
        case .info: return 1
        case .warning: return 2
        case .error: return 3
        }
    }

    public static let standardError: @Sendable (String) -> Void = { line in
        var bytes = Array((line.replacingNewlines() + "\n").utf8)
        bytes.withUnsafeMutableBytes { raw in
            var offset = 0
            while offset < raw.count {
                let n = write(2, raw.baseAddress! + offset, raw.count - offset)
                if n < 0 && errno == EINTR { continue }
                if n <= 0 { return }
                offset += n
            }
        }
    }
}

extension String {
    fileprivate func replacingQuotes() -> String {
        var out = ""
        for c in self { out += c == "\"" ? "\\\"" : String(c) }
        return out
    }

    /// One event, one line: a message with newlines (an error page) is folded.
    fileprivate func replacingNewlines() -> String {
        guard contains("\n") else { return self }
        return String(map { $0 == "\n" ? " " : $0 })
    }
}
