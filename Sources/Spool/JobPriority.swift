/// How soon a job should go: `urgent` before `normal` before `bulk`.
///
/// The order is the order of the cases: `JobPriority.urgent < .normal < .bulk`, so sorting jobs
/// ascending puts urgent work first. The raw values are what the spool database stores; they are
/// part of its on-disk format and never change (new priorities get new numbers).
public enum JobPriority: Int, Sendable, Hashable, Comparable, CaseIterable, CustomStringConvertible {
    case urgent = 0
    case normal = 1
    case bulk = 2

    /// The priority the rule language and the CLI spell `name` ("urgent", "normal", "bulk",
    /// exactly, lower case); nil for anything else.
    public init?(name: String) {
        switch name {
        case "urgent": self = .urgent
        case "normal": self = .normal
        case "bulk": self = .bulk
        default: return nil
        }
    }

    /// The spelling `init(name:)` accepts.
    public var name: String {
        switch self {
        case .urgent: return "urgent"
        case .normal: return "normal"
        case .bulk: return "bulk"
        }
    }

    public var description: String { name }

    public static func < (a: JobPriority, b: JobPriority) -> Bool { a.rawValue < b.rawValue }
}
