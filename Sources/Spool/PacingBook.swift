/// A bandwidth cap shared by every job to one destination, that ranks as the queue does: a token
/// bucket kept as one book per priority.
///
/// - A block charged at a priority is entered at once in its own book and in the book of every
///   lower priority, and in the books of the higher priorities only once it has gone (`went`):
///   urgent bytes never wait behind the debt bulk has run up, only behind bytes really sent in the
///   last burst, and every byte sent is in every book by the time it goes, so the destination
///   gets no more than the cap over time.
/// - A lower priority yields the link: its block waits while a higher priority has bytes of its
///   own booked, and `yieldGap` after them. Without this, bulk blocks already scheduled kept
///   going between an urgent instance's blocks and entered the urgent book as they went: an
///   urgent instance went at a third of the cap (28 ms p50 behind a bulk study to a peer capped
///   at 60 MB/s, against 9 ms for its own bytes).
///
/// Pure and clock-free like `PeerCircuit`: the caller passes the time, sleeps as told and asks
/// again (`wait`) — a yielding block's wait can grow while it sleeps.
public struct PacingBook: Sendable {
    public let bytesPerSecond: Double
    /// A quarter second's worth may go at once after a quiet spell: a burst cannot exceed the
    /// cap by much.
    public var burstSeconds = 0.25
    /// How long after a higher priority's last booked block a lower one still waits: the time
    /// between two blocks of one urgent request (its sender sends one and reads the next), so
    /// that bulk does not slip in between them.
    public var yieldGap = 0.005

    /// A block charged: when it may go by its own book (once its bytes are paid for at the
    /// capped rate, a burst aside). Ask `wait` until it may, then `went`.
    public struct Charge: Sendable, Hashable {
        public let priority: JobPriority
        public let at: Double
        let cost: Double
    }

    /// Per priority, the (monotonic) time by which everything entered in its book has gone at
    /// the capped rate.
    private var booked: [Double]
    /// Per priority, when the last block charged at that priority ends on the link (by its book,
    /// which also holds lower-priority bytes gone before it): what the lower priorities yield to.
    private var ownEnd: [Double]

    public init(bytesPerSecond: Int) {
        self.bytesPerSecond = Double(max(1, bytesPerSecond))
        booked = Array(repeating: -Double.infinity, count: JobPriority.allCases.count)
        ownEnd = booked
    }

    /// Enters `bytes` about to be sent at `priority` at time `now`.
    public mutating func charge(_ bytes: Int, priority: JobPriority, now: Double) -> Charge {
        let cost = Double(max(0, bytes)) / bytesPerSecond
        for level in JobPriority.allCases where level >= priority { enter(cost, at: now, in: level) }
        let end = booked[priority.rawValue]
        ownEnd[priority.rawValue] = max(ownEnd[priority.rawValue], end)
        return Charge(priority: priority, at: end, cost: cost)
    }

    /// Seconds the block still waits at `now` (0: it may go): its own book's time, and for a
    /// lower priority, until every higher priority's own blocks have gone and `yieldGap` more.
    public func wait(_ charge: Charge, now: Double) -> Double {
        var until = charge.at
        for level in JobPriority.allCases where level < charge.priority {
            until = max(until, ownEnd[level.rawValue] + yieldGap)
        }
        return max(0, until - now)
    }

    /// The part of `wait` its own book sets: it cannot shrink, so a sender may sleep it whole
    /// and ask again only about the rest (yielding, which can grow).
    public func ownWait(_ charge: Charge, now: Double) -> Double { max(0, charge.at - now) }

    /// The block goes at `now`: its bytes now count in the books of the higher priorities.
    public mutating func went(_ charge: Charge, now: Double) {
        for level in JobPriority.allCases where level < charge.priority { enter(charge.cost, at: now, in: level) }
    }

    private mutating func enter(_ cost: Double, at time: Double, in level: JobPriority) {
        // Unused time is not saved up beyond the burst.
        booked[level.rawValue] = max(booked[level.rawValue], time - burstSeconds) + cost
    }
}
