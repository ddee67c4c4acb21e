/// What the scheduler needs to know about one job in the spool: a delivery of a study's
/// instances to a peer. Times are seconds on the caller's clock (the same clock as the `now`
/// given to `JobScheduler`).
public struct QueuedJob: Sendable, Hashable {
    /// The spool's identifier; unique, and the last tie-breaker in start order.
    public var id: Int64
    /// The peer trust the job delivers to.
    public var peer: String
    public var priority: JobPriority
    /// When the job was queued.
    public var created: Double
    /// Not started before this time (creation, or the end of its last backoff).
    public var nextAttempt: Double
    /// When the images must be at the peer, if a rule set a deadline.
    public var deadline: Double?
    /// The hours the job may start in, if any.
    public var window: TimeWindow?
    /// Held by an operator or after a permanent failure: never started by the scheduler.
    public var held: Bool

    public init(
        id: Int64, peer: String, priority: JobPriority = .normal, created: Double, nextAttempt: Double,
        deadline: Double? = nil, window: TimeWindow? = nil, held: Bool = false
    ) {
        self.id = id
        self.peer = peer
        self.priority = priority
        self.created = created
        self.nextAttempt = nextAttempt
        self.deadline = deadline
        self.window = window
        self.held = held
    }
}
