import ConfigurationText
import Foundation

/// `consort backfill`: the rules applied to the archive's history on purpose (a first start
/// indexes history without firing them). The decisions here are pure; the agent reads the
/// studies and headers and writes the jobs (`AgentDaemon+Backfill.swift`).
///
/// What it queues: for each study of local origin dated on or after `since`, what the rules
/// would have queued had its instances just arrived (instance-arrival rules, asked of each
/// instance's header) and had it just become stable (study-stable rules, asked once, for every
/// instance). Every job at bulk priority whatever its rule says, without its deadline (a
/// deadline measures a new study's journey, not history's), in its rule's time window.
/// A study, rule and destination that already has a job gets no second one (the spool keeps one
/// per key). A job that is done but lacks some of the instances the backfill would send — a
/// history study that later got a live instance under an instance-arrival rule: its job holds
/// that instance only — is given the rest and queued again, at bulk priority (`extendable`);
/// one in any other state — queued or running (live work, at its rule's priority), failed
/// (a person must look), held or dropped by an operator — stands as it is.
public enum Backfill {
    /// A job's identity: one job per study, rule and destination (the spool's own key).
    public struct Key: Hashable, Sendable, Comparable {
        public var study: String
        public var rule: String
        public var destination: String
        public static func < (a: Key, b: Key) -> Bool { (a.study, a.rule, a.destination) < (b.study, b.rule, b.destination) }
    }

    /// A job the backfill would queue, with the instances it would send.
    public struct Planned: Sendable {
        public var key: Key
        public var job: AgentStore.NewJob
        public var instances: [(sop: String, path: String, size: Int)]
        /// The done job it adds `instances` to, rather than a new one.
        public var extending: Int64? = nil
    }

    /// A job already there for a key: its id, state and the instances it holds.
    public struct Existing: Sendable {
        public var id: Int64
        public var state: String
        public var sops: Set<String>
        public init(id: Int64, state: String, sops: Set<String>) {
            self.id = id
            self.state = state
            self.sops = sops
        }
    }

    /// The states of a job a backfill adds missing instances to. Only done: its live part is
    /// sent, so what it adds, at bulk priority, delays nothing live.
    public static let extendable: Set<String> = ["done"]

    /// `YYYYMMDD`, a real date: what `--since` takes.
    public static func isDate(_ text: String) -> Bool {
        guard text.count == 8, text.allSatisfy(\.isASCII), let year = Int(text.prefix(4)), let month = Int(text.dropFirst(4).prefix(2)), let day = Int(text.suffix(2)) else {
            return false
        }
        guard text.allSatisfy(\.isNumber), (1...12).contains(month), day >= 1 else { return false }
        let leap = (year % 4 == 0 && year % 100 != 0) || year % 400 == 0
        let days = [31, leap ? 29 : 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31][month - 1]
        return day <= days
    }

    /// Whether a study's StudyDate is on or after `since` (YYYYMMDD). The date as DICOM has it
    /// (PS3.5 §6.2, DA): YYYYMMDD, or the retired YYYY.MM.DD, which is read too. A study
    /// without a readable date is never taken: history nobody can place in time is not
    /// backfilled by a date.
    public static func isOnOrAfter(_ studyDate: String?, since: String) -> Bool {
        guard var date = studyDate?.trimmingCharacters(in: .whitespaces) else { return false }
        if date.count == 10, date.filter({ $0 == "." }).count == 2 { date.removeAll { $0 == "." } }
        guard isDate(date) else { return false }
        return date >= since
    }

    /// The job as a backfill queues it: bulk, no deadline, not held back.
    public static func asBulk(_ job: AgentStore.NewJob) -> AgentStore.NewJob {
        var job = job
        job.priority = .bulk
        job.deadline = nil
        job.notBefore = nil
        return job
    }

    /// Of the planned jobs, those without a job already (`existing`, by key), and those that
    /// add what a done job lacks (`extending` set, only the missing instances); the others,
    /// with the state of the job that stands in their place.
    public static func split(_ planned: [Planned], existing: [Key: Existing]) -> (fresh: [Planned], standing: [(key: Key, state: String)]) {
        var fresh: [Planned] = []
        var standing: [(Key, String)] = []
        for item in planned {
            guard let job = existing[item.key] else {
                fresh.append(item)
                continue
            }
            let missing = item.instances.filter { !job.sops.contains($0.sop) }
            if extendable.contains(job.state), !missing.isEmpty, item.job.kind.sendsInstances {
                var extra = item
                extra.instances = missing
                extra.extending = job.id
                fresh.append(extra)
            } else {
                standing.append((item.key, job.state))
            }
        }
        return (fresh, standing)
    }

    /// Rule names near a mistyped one (case ignored): those within a few edits, or containing
    /// it, or contained in it.
    public static func closeNames(_ name: String, among names: [String]) -> [String] {
        let wanted = name.lowercased()
        return names.filter { candidate in
            let lowered = candidate.lowercased()
            if lowered.contains(wanted) || wanted.contains(lowered) { return true }
            let distance = ConfigurationLexer.editDistance(Array(wanted), Array(lowered))
            return distance <= max(2, lowered.count / 4)
        }
    }
}
