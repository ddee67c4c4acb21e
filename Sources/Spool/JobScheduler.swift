/// Which queued jobs to start now: a pure function of the queue, the peer, the time and the free
/// connections. No I/O, no clock, no state.
///
/// The caller asks per peer, after asking the peer's `PeerCircuit` (while it probes, pass
/// `freeConnections: 1`), and expires jobs past `RetryPolicy.maximumAge` beforehand.
public enum JobScheduler {
    /// The ids of the jobs for `peer` to start now, in start order, at most `freeConnections`
    /// of them (none when it is 0 or less).
    ///
    /// A job is eligible when it is for `peer`, not held, due (`nextAttempt <= now`), and
    /// inside its window at `minuteOfDay` if it has one. The window applies to whatever job
    /// carries it, whatever its priority: the rule language puts windows on bulk work, and a
    /// rule that puts one on urgent work means it. With `urgentOnly` (the connection reserved
    /// so that an urgent instance never waits behind bulk transfers) only urgent jobs are
    /// eligible.
    ///
    /// Order: priority (urgent first), then earliest deadline (jobs without one after those
    /// with one), then earliest created, then smallest id — a total order, so the answer does
    /// not depend on the order of `jobs`.
    public static func next(
        from jobs: [QueuedJob], peer: String, now: Double, minuteOfDay: Int, freeConnections: Int, urgentOnly: Bool
    ) -> [Int64] {
        guard freeConnections > 0 else { return [] }
        let eligible = jobs.filter { job in
            job.peer == peer && !job.held && job.nextAttempt <= now
                && (job.window?.contains(minuteOfDay: minuteOfDay) ?? true)
                && (!urgentOnly || job.priority == .urgent)
        }
        return eligible.sorted(by: startsBefore).prefix(freeConnections).map(\.id)
    }

    /// The start order: priority, deadline (none last), created, id.
    static func startsBefore(_ a: QueuedJob, _ b: QueuedJob) -> Bool {
        if a.priority != b.priority { return a.priority < b.priority }
        switch (a.deadline, b.deadline) {
        case (let x?, let y?) where x != y: return x < y
        case (.some, nil): return true
        case (nil, .some): return false
        default: break
        }
        if a.created != b.created { return a.created < b.created }
        return a.id < b.id
    }
}
