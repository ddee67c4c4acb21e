import Foundation
import Spool

/// Carries out one kind of job (push, plan, fetch): does the work of one attempt and reports
/// what it came to. It writes what is particular to its kind (instances acknowledged, fetches
/// planned, instances placed); the queue manager applies the rest (`JobLifecycle`): deferral,
/// failure, hold, the peer's circuit.
protocol JobExecutor: AnyObject, Sendable {
    func execute(_ job: AgentStore.Job, _ worker: Worker) -> JobOutcome
    /// Whether one more worker would help a job that `workers` workers are carrying now (a
    /// large study, with connections of its peer free). The queue manager asks; false by default.
    func wantsAnotherWorker(_ job: AgentStore.Job, workers: Int) -> Bool
}

extension JobExecutor {
    func wantsAnotherWorker(_ job: AgentStore.Job, workers: Int) -> Bool { false }
}

/// How an attempt runs: on a thread of its own (the daemon), or at once on the caller's (the
/// queue manager's unit tests, which then run in milliseconds and in a known order).
protocol JobRunner: Sendable {
    func run(_ name: String, _ body: @escaping @Sendable () -> Void)
}

struct ThreadRunner: JobRunner {
    func run(_ name: String, _ body: @escaping @Sendable () -> Void) {
        let thread = Thread(block: body)
        thread.name = name
        thread.start()
    }
}

struct InlineRunner: JobRunner {
    func run(_ name: String, _ body: @escaping @Sendable () -> Void) { body() }
}

/// One worker's view of the job it carries, while it runs: whether to stop after its batch, and
/// the way to tell the queue manager what the peer said.
final class Worker: @unchecked Sendable {
    let job: AgentStore.Job
    /// The worker the queue manager started (not one added for a large study): it alone asks
    /// what the peer holds and sends the manifest.
    let first: Bool
    /// On the peer's connection kept for urgent work.
    let reserved: Bool
    /// The peer whose connection this worker holds (nil for a plan): released, answered and
    /// given its client back as it was taken, whatever a reload did since.
    let peer: Peers.Peer?
    /// The one attempt a half-open circuit let through.
    let isProbe: Bool
    private let lock = NSLock()
    private var contactedPeer = false
    private var leftJob = false
    fileprivate let manager: QueueManager

    fileprivate init(job: AgentStore.Job, first: Bool, reserved: Bool, peer: Peers.Peer?, probe: Bool, manager: QueueManager) {
        isProbe = probe
        self.job = job
        self.first = first
        self.reserved = reserved
        self.peer = peer
        self.manager = manager
    }

    /// The agent is stopping: end after the request in flight.
    var isStopping: Bool { manager.isStopping }

    /// Another worker of this job failed and deferred it, or an operator held or dropped it: end
    /// after the request in flight.
    var isHalted: Bool { manager.isHalted(job.id) }

    /// The peer answered: its circuit closes (a probe succeeded), and this worker is known to
    /// have reached it (a failure after that backs off as a first one: the job made progress).
    func peerAnswered(by cause: String) {
        lock.withLock { contactedPeer = true }
        if let peer { manager.peers.answered(peer, now: manager.clock.now, by: cause) }
    }

    /// Leaves the job to its other workers when there are others (counted out now, under the
    /// manager's lock, so that two workers cannot both leave it to the other). False when this is
    /// the job's last worker: it must finish the job.
    func leaveToOthers() -> Bool {
        let left = manager.countOut(job.id)
        if left { lock.withLock { leftJob = true } }
        return left
    }

    var contacted: Bool { lock.withLock { contactedPeer } }
    var left: Bool { lock.withLock { leftJob } }
}

extension QueueManager {
    func makeWorker(_ job: AgentStore.Job, first: Bool, reserved: Bool, peer: Peers.Peer?, probe: Bool) -> Worker {
        Worker(job: job, first: first, reserved: reserved, peer: peer, probe: probe, manager: self)
    }
}
