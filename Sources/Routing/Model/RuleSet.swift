import Deidentification
import DICOM
import Spool

/// A loaded, checked rule set: the consortium's members and groups, its data-sharing agreements,
/// and the routing rules. Immutable; a reload builds a new one (see `RuleBook`).
public struct RuleSet: Sendable {
    public var members: [Member] = []
    public var groups: [Group] = []
    public var agreements: [Agreement] = []
    public var rules: [Rule] = []
    /// The text of each file, for rendering diagnostics.
    public var sources: [String: String] = [:]

    public init() {}

    public func member(_ code: String) -> Member? { members.first { $0.code == code } }

    /// `push to origin`: the trust the study came from, decided per study when the rule fires.
    public static let studyOriginName = "origin"

    /// Peer codes a name stands for: a member itself, or a group's members (recursively), each
    /// once, in the order written. A group that includes itself (directly or through another
    /// group) is expanded once and the cycle ignored here; the checker reports it as an error,
    /// so a rule set with a cycle never loads — but expansion must not recurse forever on the
    /// way to that diagnostic (the rules fuzzer found exactly that stack overflow).
    public func expand(_ name: String) -> [String]? {
        var visited: Set<String> = []
        return expand(name, visited: &visited)
    }

    private func expand(_ name: String, visited: inout Set<String>) -> [String]? {
        if member(name) != nil { return [name] }
        if name == "any-member" || name == "all-members" { return members.filter(\.isTrust).map(\.code) }
        guard let group = groups.first(where: { $0.name == name }) else { return nil }
        guard visited.insert(name).inserted else { return [] }
        var out: [String] = []
        for m in group.members {
            for code in expand(m, visited: &visited) ?? [] where !out.contains(code) { out.append(code) }
        }
        return out
    }

    /// The chain of group names through which `name` includes itself, e.g. `["a", "b", "a"]`,
    /// or nil if its expansion has no cycle.
    public func groupCycle(from name: String) -> [String]? {
        func walk(_ current: String, _ path: [String]) -> [String]? {
            guard let group = groups.first(where: { $0.name == current }) else { return nil }
            for m in group.members {
                if m == name { return path + [m] }
                if path.contains(m) { continue }  // a cycle not through `name`; reported for its own group
                if let found = walk(m, path + [m]) { return found }
            }
            return nil
        }
        return walk(name, [name])
    }

    /// Whether an agreement lets imaging flow from `source` to `destination` for `purpose`.
    public func permits(from source: String, to destination: String, purpose: String) -> Bool {
        agreements.contains { $0.permits(from: source, to: destination, purpose: purpose, in: self) }
    }

    /// Whether an agreement that lets imaging flow from `source` to `destination` for `purpose`
    /// requires it de-identified: then only a `deidentified` push may send it.
    public func requiresDeidentification(from source: String, to destination: String, purpose: String) -> Bool {
        agreements.contains { $0.requiresDeidentification && $0.permits(from: source, to: destination, purpose: purpose, in: self) }
    }

    /// The agreement a flow goes under, for the audit line: one that requires de-identification
    /// first (the one that decides how it goes), else the first that allows it.
    public func agreement(from source: String, to destination: String, purpose: String) -> Agreement? {
        let allowing = agreements.filter { $0.permits(from: source, to: destination, purpose: purpose, in: self) }
        return allowing.first(where: \.requiresDeidentification) ?? allowing.first
    }

    /// Whether `peer` may send results back to `site`: an agreement with `results back` lets
    /// `site` send imaging to `peer` — for `purpose` when one is named, for any of the
    /// agreement's purposes when not (a third-party service does not name Consort's purposes).
    public func resultsBack(to site: String, from peer: String, purpose: String?) -> Bool {
        agreements.contains { agreement in
            guard agreement.resultsBack else { return false }
            let purposes = purpose.map { [$0] } ?? agreement.purposes
            return purposes.contains { agreement.permits(from: site, to: peer, purpose: $0, in: self) }
        }
    }
}

/// A consortium member: a trust, or another kind of peer (an AI node, a regional archive).
public struct Member: Sendable, Hashable {
    public var code: String
    public var name: String
    public var roles: [String]
    /// Trusts hold and share patients' imaging; other peers only receive what is sent to them.
    public var isTrust: Bool
    public var location: SourceLocation
}

/// A named set of members (or other groups), e.g. `cancer-centres`.
public struct Group: Sendable, Hashable {
    public var name: String
    public var members: [String]
    public var location: SourceLocation
}

/// A data-sharing agreement: who may send imaging to whom, for which purposes.
public struct Agreement: Sendable, Hashable {
    public var name: String
    public var purposes: [String]
    /// Members or groups imaging may come from, and go to. `between X, Y` fills both.
    public var from: [String]
    public var to: [String]
    public var location: SourceLocation
    /// `results back`: the receiving side (an AI service, say) may send back objects that refer
    /// to a study it was sent under this agreement — a report, a segmentation, a presentation
    /// state — into the sending trust. Nothing else ever comes back from a peer.
    public var resultsBack = false
    /// `requires deidentification`: imaging may flow under this agreement only de-identified
    /// (PS3.15 Annex E): a push must say `deidentified`.
    public var requiresDeidentification = false

    func permits(from source: String, to destination: String, purpose: String, in set: RuleSet) -> Bool {
        guard purposes.contains(purpose) else { return false }
        let sources = Set(from.flatMap { set.expand($0) ?? [] })
        let destinations = Set(to.flatMap { set.expand($0) ?? [] })
        return sources.contains(source) && destinations.contains(destination) && source != destination
    }
}

/// What starts a rule.
public enum Trigger: Sendable, Hashable, CustomStringConvertible {
    /// Each instance as it arrives: the first matching instance and every one after it.
    case instanceArrival
    /// A study with no new instance for the quiet period.
    case studyStable(quietSeconds: Int)
    /// A list (an MDT list: NHS numbers, meeting date, host trust) dropped into a folder.
    case listArrival(folder: String, leadSeconds: Int)

    public var description: String {
        switch self {
        case .instanceArrival: return "instance-arrival"
        case .studyStable(let s): return "study-stable after \(formatDuration(s))"
        case .listArrival(let folder, let lead): return "list-arrival in \"\(folder)\", \(formatDuration(lead)) before the meeting"
        }
    }

    var kind: String {
        switch self {
        case .instanceArrival: return "instance-arrival"
        case .studyStable: return "study-stable"
        case .listArrival: return "list-arrival"
        }
    }
}

/// A rule's priority and window are the spool's own types (one of each in the code base): what a
/// rule says is what the queue manager schedules by, never converted through text.
public typealias Priority = JobPriority
public typealias TimeWindow = Spool.TimeWindow

/// How an action is scheduled: its priority, the hours it may run, and any deadline.
public struct Scheduling: Sendable, Hashable {
    public var priority: Priority = .normal
    public var window: TimeWindow?
    /// Seconds from acquisition by which the images must be at the destination (urgent rules).
    public var deadlineSeconds: Int?
    /// `expect result within DURATION` (a push to a peer whose agreement has `results back`):
    /// seconds from the study's delivery by which a result must have come back, or an alarm.
    public var expectResultSeconds: Int?
    /// `deidentified`: the study is sent de-identified (PS3.15 Annex E, the Basic Profile),
    /// its UIDs remapped under the sending trust's key.
    public var deidentified = false
    /// `deidentified with …`: the profile's options the push is de-identified under, and
    /// whether instances that may carry burned-in text go too.
    public var deidentification = DeidentificationChoice()
}

/// One thing a rule does when it fires.
public enum Action: Sendable, Hashable {
    /// Send the study (or, for instance-arrival rules, each instance) to peers.
    case push(to: [String], Scheduling)
    /// Fetch the patient's prior studies from where they are held, to this site.
    case prefetchPriors(PriorQuery, Scheduling)
    /// Hand the study to a local target (the site's PACS, a reporting system).
    case deliver(target: String, Scheduling)
    /// For list rules: gather each listed patient's imaging to the list's host trust (or `to`).
    case gather(PriorQuery, to: String?, Scheduling)

    public var scheduling: Scheduling {
        switch self {
        case .push(_, let s), .prefetchPriors(_, let s), .deliver(_, let s), .gather(_, _, let s): return s
        }
    }
}

/// Which prior studies: from where, which ones, how many, newest first.
public struct PriorQuery: Sendable, Hashable {
    /// Members or groups to fetch from; `["any-member"]` for wherever they are held.
    public var from: [String] = ["any-member"]
    public var sameModality = false
    public var sameBodyPart = false
    /// Only studies from the last this many days (nil: any age).
    public var withinDays: Int?
    /// At most this many studies, newest first (nil: all).
    public var atMost: Int?
}

/// A routing rule as written, checked and ready to evaluate.
public struct Rule: Sendable {
    public var name: String
    public var purpose: String
    public var trigger: Trigger
    /// Sites (members or groups) where the rule runs; nil: every member.
    public var at: [String]?
    public var condition: Condition?
    public var actions: [Action]
    public var location: SourceLocation
    /// Where each action was written, for diagnostics.
    public var actionLocations: [SourceLocation] = []
    /// Where each member or group name was written in the rule, for diagnostics.
    public var nameLocations: [String: SourceLocation] = [:]
}

func formatDuration(_ seconds: Int) -> String {
    if seconds % 86400 == 0 && seconds >= 3 * 86400 { return "\(seconds / 86400) days" }
    if seconds % 3600 == 0 && seconds > 0 { return "\(seconds / 3600) h" }
    if seconds % 60 == 0 && seconds > 0 { return "\(seconds / 60) min" }
    return "\(seconds) s"
}
