/// What the coordinator knows of how far each member's announcements have come, so that a
/// lookup can say which trusts may still hold studies the registry has not heard of yet.
///
/// A prefetch plans from the registry's answer: "the three newest CTs within three years" is
/// only right if every trust's CTs are in it. They may not be: after the coordinator was down,
/// each agent announces what it stored meanwhile at its next retry (up to 15 s apart); after a
/// registry was lost, each agent announces its whole inventory again, which takes minutes at a
/// large trust. A CI run once fetched one trust's 900-day-old prior because another trust's
/// 730-day one was announced a few seconds later. So every announcement carries how many
/// studies the agent still has to announce after it (`pending`), idle agents announce an
/// empty batch every 15 s, and a lookup names the members that are still catching up:
///
/// - a member heard in the last `silence` seconds with studies still pending;
/// - a member not heard since this coordinator started, during its first `grace` seconds
///   (an agent is heard within 15 s: its heartbeat, or its longest pause between retries).
///
/// A member silent for longer is not waited for: its agent is down or cannot reach us, and its
/// earlier studies are in the registry; a prefetch must not wait on a trust that may be down
/// for hours. Kept in memory, per coordinator process: it describes this process's view since
/// it started, which is exactly the gap it is about. (Two coordinators on one PostgreSQL each
/// know the agents that talk to them; the other members look silent after `grace`.)
///
/// A value with no I/O and no clock of its own: the service owns one under its lock and passes
/// the monotonic time in.
public struct AnnouncementProgress: Sendable {
    public static let grace = 45.0
    public static let silence = 90.0

    /// A member still catching up, and why, in words for a log or a person.
    public struct Lagging: Equatable, Sendable {
        public var trust: String
        /// Studies it said it still had to announce; nil when it has not been heard.
        public var pending: Int?
        public var reason: String
    }

    let started: Double
    private var heard: [String: (at: Double, pending: Int)] = [:]

    public init(started: Double) { self.started = started }

    /// An announcement (or a heartbeat) from `trust`, with the studies it has left to announce.
    public mutating func heard(from trust: String, pending: Int, at now: Double) {
        heard[trust] = (now, max(0, pending))
    }

    /// The members (of `members`) whose studies may be missing from the registry now.
    public func lagging(_ members: [String], at now: Double) -> [Lagging] {
        members.sorted().compactMap { trust in
            if let last = heard[trust] {
                guard last.pending > 0, now - last.at <= Self.silence else { return nil }
                return Lagging(trust: trust, pending: last.pending, reason: "\(trust) has \(last.pending) stud\(last.pending == 1 ? "y" : "ies") still to announce")
            }
            guard now - started < Self.grace else { return nil }
            return Lagging(trust: trust, pending: nil, reason: "\(trust) has not announced since the coordinator started \(Int(now - started)) s ago")
        }
    }

    /// Each member's last reported backlog (heard in the last `silence` seconds), for metrics.
    public func pending(at now: Double) -> [String: Int] {
        heard.filter { now - $0.value.at <= Self.silence }.mapValues(\.pending)
    }
}
