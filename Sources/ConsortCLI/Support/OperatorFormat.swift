import CommandSupport
import Foundation
import Spool

#if canImport(Glibc)
    import Glibc
#endif

/// How the operator commands write times, sizes and states: short, fixed units, readable at 80
/// columns; colour only on a terminal (and never with NO_COLOR set).
enum OperatorFormat {
    /// "45s", "3m12s", "2h05m", "3d04h".
    static func duration(_ seconds: Double) -> String {
        let s = Int(max(0, seconds).rounded())
        if s < 60 { return "\(s)s" }
        if s < 3600 { return "\(s / 60)m\(String(format: "%02d", s % 60))s" }
        if s < 86_400 { return "\(s / 3600)h\(String(format: "%02d", (s % 3600) / 60))m" }
        return "\(s / 86_400)d\(String(format: "%02d", (s % 86_400) / 3600))h"
    }

    /// "512 B", "60.2 MB", "1.4 GB" (decimal units, as the configuration's bandwidth).
    static func bytes(_ value: Int64) -> String {
        let v = Double(value)
        if abs(v) < 1000 { return "\(value) B" }
        if abs(v) < 1e6 { return String(format: "%.1f kB", v / 1e3) }
        if abs(v) < 1e9 { return String(format: "%.1f MB", v / 1e6) }
        return String(format: "%.2f GB", v / 1e9)
    }

    /// "12,345".
    static func count(_ value: Int) -> String {
        let digits = String(abs(value))
        var out = ""
        for (index, character) in digits.enumerated() {
            if index > 0 && (digits.count - index) % 3 == 0 { out += "," }
            out.append(character)
        }
        return (value < 0 ? "-" : "") + out
    }

    /// Local wall-clock time, "2026-12-01 17:02:37".
    static func time(_ seconds: Double) -> String {
        var t = time_t(seconds)
        var parts = tm()
        localtime_r(&t, &parts)
        return String(format: "%04d-%02d-%02d %02d:%02d:%02d", parts.tm_year + 1900, parts.tm_mon + 1, parts.tm_mday, parts.tm_hour, parts.tm_min, parts.tm_sec)
    }

    /// "30s" or "5 min" or "2h" or "1d" → seconds (for --older-than).
    static func parseDuration(_ text: String) -> Double? {
        let trimmed = text.trimmingCharacters(in: .whitespaces).lowercased()
        let digits = trimmed.prefix { $0.isNumber || $0 == "." }
        guard let number = Double(digits), number >= 0 else { return nil }
        let unit = trimmed.dropFirst(digits.count).trimmingCharacters(in: .whitespaces)
        switch unit {
        case "", "s", "sec", "second", "seconds": return number
        case "m", "min", "minute", "minutes": return number * 60
        case "h", "hour", "hours": return number * 3600
        case "d", "day", "days": return number * 86_400
        default: return nil
        }
    }

    static func priority(_ value: JobPriority) -> String { value.name }

    /// Colour, on a terminal only.
    enum Colour: String {
        case red = "31", green = "32", yellow = "33", bold = "1", dim = "2"
    }

    static var colourful: Bool { standardOutput.isTerminal && ProcessInfo.processInfo.environment["NO_COLOR"] == nil }

    static func paint(_ text: String, _ colour: Colour) -> String {
        colourful ? "\u{1B}[\(colour.rawValue)m\(text)\u{1B}[0m" : text
    }

    /// The colour a job state is shown in.
    static func state(_ state: String, width: Int = 0) -> String {
        let padded = width > 0 ? state.padding(to: width) : state
        switch state {
        case "failed": return paint(padded, .red)
        case "deferred", "held", "waiting": return paint(padded, .yellow)
        case "active": return paint(padded, .green)
        default: return padded
        }
    }

    /// A text bar of `width` for a fraction, on a terminal; empty in a pipe.
    static func bar(_ fraction: Double, width: Int = 20) -> String {
        guard colourful else { return "" }
        let filled = Int((max(0, min(1, fraction)) * Double(width)).rounded())
        return "[" + String(repeating: "#", count: filled) + String(repeating: ".", count: width - filled) + "] "
    }

    static func right(_ text: String, _ width: Int) -> String {
        text.count >= width ? text : String(repeating: " ", count: width - text.count) + text
    }
}
