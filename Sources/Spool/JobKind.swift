/// What a job in the spool does. The raw values are what the spool database stores (part of its
/// on-disk format, and the words `consort queue` prints): they never change; a new kind gets a
/// new word.
public enum JobKind: String, Sendable, Hashable, CaseIterable, CustomStringConvertible {
    /// A study's instances to a peer trust (STOW-RS), fired by a `push` rule.
    case push
    /// A study's instances to a local target (the site's own PACS), fired by a `deliver` rule.
    case deliver
    /// Ask the coordinator where a patient's earlier studies are, and queue a `fetch` for each
    /// prior the rule wants (`prefetch priors`).
    case prefetch
    /// The same for every study of an MDT list's patient within the period (`gather`).
    case gather
    /// Retrieve one study from the trust that holds it (WADO-RS).
    case fetch

    /// The word the spool stores; nil for a word this version does not know (a spool written by
    /// a newer version: its jobs are left alone, never run).
    public init?(stored: String) { self.init(rawValue: stored) }

    /// Sends instances to its destination: paced, batched, acknowledged instance by instance.
    public var sendsInstances: Bool { self == .push || self == .deliver }

    /// Talks to a peer (its destination names one): takes one of the peer's connections, and
    /// waits while the peer's circuit is open. A push and a fetch to one peer share its circuit:
    /// a peer that is down for pushes is down for fetches.
    public var usesPeer: Bool { self != .prefetch && self != .gather }

    /// Plans other jobs by asking the coordinator (prefetch, gather).
    public var plans: Bool { !usesPeer }

    public var description: String { rawValue }
}

/// Where a job is in its life. The raw values are stored in the spool (on-disk format, and the
/// words of `consort queue --state`): they never change.
///
/// queued → active → done | failed; active → deferred → active …; any unfinished state → held
/// (an operator, or an identity conflict for a person) → queued on release; → dropped by an
/// operator.
public enum JobState: String, Sendable, Hashable, CaseIterable, CustomStringConvertible {
    case queued
    case active
    case deferred
    case held
    case done
    case failed
    case dropped

    public var description: String { rawValue }
}
