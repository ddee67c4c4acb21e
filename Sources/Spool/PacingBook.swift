/// A bandwidth cap shared by every job to one destination, that ranks as the queue does: a token
/// bucket kept as one book per priority. Bytes charged at a priority are entered at once in its
/// own book and in the book of every lower priority; in the books of the higher priorities only
/// once they have gone (their wait is over). So urgent bytes never wait behind the debt that bulk
/// has run up — only behind bytes really sent in the last burst — while bulk waits behind
/// everything charged: bulk yields. (One shared bucket made an urgent instance pay for bulk's
/// debt: 32 ms p50 and up to 50 ms p99 behind a capped bulk study, against 6 ms alone.) Every
/// byte sent is in every book by the time it goes, so the destination gets no more than the cap
/// over time.
///
/// Pure and clock-free like `PeerCircuit`: the caller passes the time and sleeps as told.
public struct PacingBook: Sendable {
    public let bytesPerSecond: Double
    /// A quarter second's worth may go at once after a quiet spell: a burst cannot exceed the
    /// cap by much.
    public var burstSeconds = 0.25
    /// Per priority, the (monotonic) time by which everything entered in its book has gone at
    /// the capped rate.
    private var booked: [Double]
    /// Bytes of the lower priorities charged but not yet gone: (when they go, their time on the
    /// link, their priority). At most a block per sender waiting.
    private var pending: [(at: Double, cost: Double, priority: JobPriority)] = []

    public init(bytesPerSecond: Int) {
        self.bytesPerSecond = Double(max(1, bytesPerSecond))
        booked = Array(repeating: -Double.infinity, count: JobPriority.allCases.count)
    }

    /// Enters `bytes` about to be sent at `priority` at time `now`; returns how long the sender
    /// waits first (0: at once).
    public mutating func charge(_ bytes: Int, priority: JobPriority, now: Double) -> Double {
        // Lower-priority bytes that have gone since: now they count for the higher books too.
        let gone = pending.filter { $0.at <= now }
        if !gone.isEmpty {
            pending.removeAll { $0.at <= now }
            for entry in gone {
                for level in JobPriority.allCases where level < entry.priority { enter(entry.cost, at: entry.at, in: level) }
            }
        }
        let cost = Double(max(0, bytes)) / bytesPerSecond
        for level in JobPriority.allCases where level >= priority { enter(cost, at: now, in: level) }
        let wait = max(0, booked[priority.rawValue] - now)
        if priority != JobPriority.allCases.first { pending.append((now + wait, cost, priority)) }
        return wait
    }

    private mutating func enter(_ cost: Double, at time: Double, in level: JobPriority) {
        // Unused time is not saved up beyond the burst.
        booked[level.rawValue] = max(booked[level.rawValue], time - burstSeconds) + cost
    }
}
