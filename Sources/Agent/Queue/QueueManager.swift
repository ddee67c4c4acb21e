import Foundation
import Platform
import Spool

/// The spool's one queue manager (after Postfix's qmgr): the owner of every job's transitions,
/// whatever its kind. One loop reads the jobs due, ranks them per peer with `JobScheduler`
/// (urgent before normal before bulk, deadlines first, windows respected), asks the peer's
/// circuit (`Peers`), and starts each on a worker; the kind's executor does the work and reports
/// a `JobOutcome`; `JobLifecycle` decides what follows, and this applies it.
///
/// Lanes: a job that talks to a peer (push, deliver, fetch) takes one of that peer's
/// connections, plus one kept for urgent work, so an urgent instance never waits behind a bulk
/// transfer; pushes and fetches to one peer share its circuit. Planning jobs (prefetch, gather)
/// ask the coordinator, `planners` at a time.
///
/// Every time is the injected `Clock`'s; attempts run on the `JobRunner`'s threads. With a
/// `ManualClock` and an `InlineRunner`, `pass()` is the whole manager in one call: the unit
/// tests drive it so, in milliseconds.
final class QueueManager: Service, @unchecked Sendable {
    struct Executors {
        var push: any JobExecutor
        var plan: any JobExecutor
        var fetch: any JobExecutor
    }

    let store: AgentStore
    let peers: Peers
    let clock: any Clock
    private let executors: Executors
    private let policy: RetryPolicy
    private let telemetry: Telemetry?
    private let log: Logger
    private let runner: any JobRunner
    /// Planning jobs at once (each a few calls to the coordinator).
    let planners: Int
    private let lock = NSCondition()
    private var loop: WakeableLoop?
    private var stopping = false
    private var activeWorkers = 0
    private var planning = 0
    /// Jobs being carried, by id: the job as it was started, its workers, and whether they should
    /// stop after their request (it was deferred, held or dropped).
    private var running: [Int64: (job: AgentStore.Job, workers: Int, halted: Bool)] = [:]
    private var generator = SystemRandomNumberGenerator()
    private var lastWatch = -Double.infinity
    private var lastSweep = -Double.infinity
    private var lastResultWatch = -Double.infinity

    init(
        store: AgentStore, peers: Peers, executors: Executors, policy: RetryPolicy, clock: any Clock, telemetry: Telemetry?, log: Logger,
        runner: any JobRunner = ThreadRunner(), planners: Int = 3
    ) {
        self.store = store
        self.peers = peers
        self.executors = executors
        self.policy = policy
        self.clock = clock
        self.telemetry = telemetry
        self.log = log
        self.runner = runner
        self.planners = planners
        peers.circuitClosed = { [weak self] in self?.nudge() }
    }

    // MARK: - Lifecycle

    let name = "queue manager"

    func stop(within seconds: Double) -> Bool { stop(deadline: seconds) }

    func start() {
        // A test-only fault: the loop hangs after this many seconds, as a deadlock would (the
        // watchdog test shows that a stuck loop stops the systemd watchdog pings).
        let hangAfter = ProcessInfo.processInfo.environment["CONSORT_TEST_HANG_DISPATCH_AFTER"].flatMap(Double.init)
        let startedAt = MonotonicClock.now
        let loop = WakeableLoop(name: "consort-dispatch", interval: 0.25) { [self] in
            if let hangAfter, MonotonicClock.now - startedAt > hangAfter {
                log.warning("CONSORT_TEST_HANG_DISPATCH_AFTER is set: the dispatcher hangs now (a test's fault)")
                while true { Thread.sleep(forTimeInterval: 3600) }
            }
            telemetry?.beat("dispatch")
            // A spool that cannot be read is tried again in a second, not at every nudge.
            return pass() ? nil : 1
        }
        lock.withLock { self.loop = loop }
        loop.start()
    }

    /// Something changed (a job queued, a peer back): look now rather than at the next turn.
    func nudge() { lock.withLock { loop }?.nudge() }

    /// Stops taking jobs; lets workers end the request they are making, up to `deadline`
    /// seconds; jobs left active queue again (they resume from what was acknowledged). True
    /// when every worker and the loop ended in time.
    @discardableResult
    func stop(deadline: Double) -> Bool {
        let end = MonotonicClock.now + deadline
        let loop: WakeableLoop? = lock.withLock {
            stopping = true
            lock.broadcast()
            return self.loop
        }
        loop?.stop()
        lock.lock()
        while activeWorkers > 0 && MonotonicClock.now < end { _ = lock.wait(until: Date().addingTimeInterval(0.05)) }
        let left = activeWorkers
        lock.unlock()
        let joined = loop?.join(within: max(0, end - MonotonicClock.now)) ?? true
        if left > 0 { log.warning("stopping with transfers still in flight; they resume at the next start", ["workers": left]) }
        _ = try? store.requeueInterrupted()
        return left == 0 && joined
    }

    var isStopping: Bool { lock.withLock { stopping } }

    /// No worker running.
    var isIdle: Bool { lock.withLock { activeWorkers == 0 } }

    func isHalted(_ id: Int64) -> Bool { lock.withLock { running[id]?.halted ?? false } }

    /// Workers carrying these jobs stop after their request in flight (held or dropped by an
    /// operator).
    func halt(_ ids: [Int64]) {
        lock.withLock { for id in ids { running[id]?.halted = true } }
    }

    /// Counts a worker out of its job if others still carry it (see `Worker.leaveToOthers`).
    func countOut(_ id: Int64) -> Bool {
        lock.withLock {
            guard var entry = running[id], entry.workers > 1 else { return false }
            entry.workers -= 1
            running[id] = entry
            return true
        }
    }

    // MARK: - One look at the spool

    /// Watches deadlines and ages, queues orphans again, starts what may start, and adds workers
    /// to large pushes. False when the spool could not be read (logged; the next pass tries
    /// again).
    @discardableResult
    func pass() -> Bool {
        let now = clock.now
        do {
            try watchDeadlinesAndAge(now: now)
            try watchResults(now: now)
            sweepOrphans(now: now)
            try dispatch(now: now)
            try reinforce()
            return true
        } catch {
            log.error("cannot read the spool; trying again shortly", ["error": error])
            return false
        }
    }

    private func dispatch(now: Double) throws {
        let minute = clock.minuteOfDay(at: now)
        let busy = lock.withLock { Set(running.keys) }
        // A job some worker still carries (a deferred job whose halted workers end their
        // request) is not started twice.
        let jobs = try store.runnableJobs(now: now).filter { !busy.contains($0.id) }
        guard !jobs.isEmpty else { return }
        var lanes: [String: [AgentStore.Job]] = [:]
        var plans: [AgentStore.Job] = []
        for job in jobs {
            if job.kind.usesPeer { lanes[job.destination, default: []].append(job) } else { plans.append(job) }
        }
        if !plans.isEmpty {
            let free = lock.withLock { planners - planning }
            for id in JobScheduler.next(from: plans.map(Self.queued), peer: "", now: now, minuteOfDay: minute, freeConnections: free, urgentOnly: false) {
                if let job = plans.first(where: { $0.id == id }) { begin(job, lane: nil, reserved: false, now: now) }
            }
        }
        for (name, list) in lanes.sorted(by: { $0.key < $1.key }) {
            guard let slots = peers.freeSlots(name) else {
                for job in list { unaddressed(job, now: now) }
                continue
            }
            let queued = list.map(Self.queued)
            var chosen = JobScheduler.next(from: queued, peer: name, now: now, minuteOfDay: minute, freeConnections: slots.connections, urgentOnly: false)
            var urgent: Int64?
            if slots.urgent {
                urgent = JobScheduler.next(from: queued, peer: name, now: now, minuteOfDay: minute, freeConnections: 1, urgentOnly: true).first { !chosen.contains($0) }
            }
            let wanted = chosen.count + (urgent == nil ? 0 : 1)
            let (allowed, probe) = peers.allowed(name, starting: wanted, now: now)
            guard allowed > 0 else { continue }
            // Half-open: one start only, the probe (the urgent one, if any).
            if allowed < wanted || probe { chosen = urgent == nil ? Array(chosen.prefix(1)) : [] }
            if let urgent, let job = list.first(where: { $0.id == urgent }) { begin(job, lane: name, reserved: true, probe: probe, now: now) }
            for id in chosen {
                if let job = list.first(where: { $0.id == id }) { begin(job, lane: name, reserved: false, probe: probe, now: now) }
            }
        }
    }

    private static func queued(_ job: AgentStore.Job) -> QueuedJob {
        QueuedJob(
            id: job.id, peer: job.kind.usesPeer ? job.destination : "", priority: job.priority, created: job.created, nextAttempt: job.nextAttempt,
            deadline: job.deadline, window: job.window, held: job.state == .held)
    }

    /// A job for a name the configuration does not know: it waits long, loudly; it runs once the
    /// configuration names it (SIGHUP).
    private func unaddressed(_ job: AgentStore.Job, now: Double) {
        let line = job.kind == .fetch ? "a peer line" : "a peer or local line"
        try? store.postpone(job: job.id, until: now + policy.maximumDelay, reason: "no address for \(job.destination): add \(line) to the configuration (a configuration fault)")
        log.error("job has no destination address", ["job": job.id, "kind": job.kind.rawValue, "destination": job.destination, "study": job.study])
    }

    /// Takes a connection of the job's peer, marks the job active (durable before anything is
    /// sent) and starts its first worker.
    /// `probe`: the one start a half-open circuit allowed; if it ends without reaching the peer,
    /// the next start probes (only the probe may say so: another job's worker ending without
    /// contact says nothing about a probe in flight).
    private func begin(_ job: AgentStore.Job, lane: String?, reserved: Bool, probe: Bool = false, now: Double) {
        var peer: Peers.Peer?
        if let lane {
            guard let taken = peers.take(lane, reserved: reserved) else { return unaddressed(job, now: now) }
            peer = taken
        }
        let go: Bool = lock.withLock {
            guard !stopping, running[job.id] == nil else { return false }
            running[job.id] = (job, 1, false)
            activeWorkers += 1
            if peer == nil { planning += 1 }
            return true
        }
        guard go else {
            if let peer {
                if probe { peers.abandoned(peer) }
                peers.release(peer, reserved: reserved)
            }
            return
        }
        var started = false
        do {
            // An operator may have held or dropped it since it was read: not started.
            started = try store.start(job: job.id, now: now)
        } catch {
            log.error("cannot mark a job active", ["job": job.id, "error": error])
        }
        guard started else {
            if let peer, probe { peers.abandoned(peer) }
            lock.withLock { running[job.id] = nil }
            release(peer, reserved: reserved)
            return
        }
        let worker = makeWorker(job, first: true, reserved: reserved, peer: peer, probe: probe)
        runner.run("consort-\(job.kind.rawValue)-\(job.destination)") { [self] in work(worker) }
    }

    /// A push with more to send than its workers hold gets a connection its peer has spare: a
    /// large study uses every connection of its peer.
    private func reinforce() throws {
        let candidates: [(AgentStore.Job, Int)] = lock.withLock {
            guard !stopping else { return [] }
            return running.values.filter { $0.job.kind.sendsInstances && !$0.halted }.map { ($0.job, $0.workers) }
        }
        for (job, workers) in candidates {
            guard let target = peers.target(job.destination), workers < target.connections,
                executors.push.wantsAnotherWorker(job, workers: workers), let peer = peers.takeSpare(job.destination)
            else { continue }
            let added: Bool = lock.withLock {
                guard !stopping, var entry = running[job.id], !entry.halted else { return false }
                entry.workers += 1
                running[job.id] = entry
                activeWorkers += 1
                return true
            }
            guard added else {
                peers.release(peer, reserved: false)
                continue
            }
            let worker = makeWorker(job, first: false, reserved: false, peer: peer, probe: false)
            runner.run("consort-\(job.kind.rawValue)-\(job.destination)") { [self] in work(worker) }
        }
    }

    // MARK: - One attempt

    private func executor(_ kind: JobKind) -> any JobExecutor {
        switch kind {
        case .push, .deliver: return executors.push
        case .prefetch, .gather: return executors.plan
        case .fetch: return executors.fetch
        }
    }

    private func work(_ worker: Worker) {
        let job = worker.job
        let outcome = executor(job.kind).execute(job, worker)
        let now = clock.now
        // Failures in a row: a job whose peer answered in this attempt made progress, and backs
        // off as after a first failure; otherwise every start so far counts.
        let failures = worker.contacted ? 1 : job.attempts + 1
        let step = lock.withLock {
            JobLifecycle.step(after: outcome, failures: failures, now: now, policy: policy, using: &generator)
        }
        apply(step, outcome: outcome, to: job, peer: worker.peer, now: now)
        if let peer = worker.peer, worker.isProbe, !worker.contacted, !Self.countsAgainstPeer(step) { peers.abandoned(peer) }
        lock.withLock {
            if !worker.left, var entry = running[job.id] {
                entry.workers -= 1
                running[job.id] = entry.workers > 0 ? entry : nil
            }
        }
        release(worker.peer, reserved: worker.reserved)
    }

    /// What the circuit's log line says did it.
    static func cause(_ kind: JobKind) -> String {
        switch kind {
        case .fetch: return "a fetch from it"
        case .deliver: return "a delivery to it"
        default: return "a push to it"
        }
    }

    private static func countsAgainstPeer(_ step: JobStep) -> Bool {
        if case .retry(_, _, _, let against, _) = step { return against }
        return false
    }

    private func release(_ peer: Peers.Peer?, reserved: Bool) {
        if let peer { peers.release(peer, reserved: reserved) }
        lock.withLock {
            if peer == nil { planning -= 1 }
            activeWorkers -= 1
            lock.broadcast()
        }
        nudge()
    }

    /// What follows an attempt, made durable and said.
    private func apply(_ step: JobStep, outcome: JobOutcome, to job: AgentStore.Job, peer: Peers.Peer?, now: Double) {
        switch step {
        case .none:
            return
        case .retry(let at, let reason, let countsAsTry, let againstPeer, let needsPerson):
            // Its other workers stop after their request: the job waits as a whole.
            lock.withLock { running[job.id]?.halted = true }
            do {
                try store.postpone(job: job.id, until: at, reason: reason, notATry: !countsAsTry)
            } catch {
                log.error("cannot defer a job; it queues again at the next start", ["job": job.id, "error": error])
            }
            var failure: FailureClass?
            if case .failed(let kind, _) = outcome { failure = kind }
            // Our own side failing (a file, the disk, our TLS material) says nothing of the peer:
            // neither its status nor its error counts show it.
            if let peer, let failure, failure != .local {
                peers.failed(peer, reason: reason, againstPeer: againstPeer, configuration: failure == .configuration, now: now, by: Self.cause(job.kind))
                if job.kind.sendsInstances { telemetry?.error(job.destination, class: failure.rawValue) }
            }
            let wait = String(format: "%.0f s", max(0, at - now))
            switch failure {
            case .configuration? where job.kind.usesPeer:
                log.error("CONFIGURATION FAULT with the destination (certificates, membership or agreement): not retried before \(wait)",
                    ["job": job.id, "kind": job.kind.rawValue, "study": job.study, "destination": job.destination, "reason": reason])
            case .configuration?:
                log.error("\(job.kind.rawValue) deferred: CONFIGURATION FAULT; not retried before \(wait)", ["job": job.id, "study": job.study, "reason": reason])
            case .local?:
                log.warning("\(job.kind.rawValue) deferred: a fault on this side (a file, the disk), not the destination's",
                    ["job": job.id, "study": job.study, "destination": job.destination, "retry_in": wait, "reason": reason])
            case nil:
                log.info("\(job.kind.rawValue) waits", ["job": job.id, "study": job.study, "destination": job.destination, "retry_in": wait, "reason": reason])
            case _ where needsPerson:
                log.error("\(job.kind.rawValue) deferred: retrying will not change this; a person should look",
                    ["job": job.id, "study": job.study, "destination": job.destination, "retry_in": wait, "reason": reason])
            case _ where job.kind.sendsInstances:
                log.warning("deferred: the destination is not taking instances now", ["job": job.id, "study": job.study, "destination": job.destination, "retry_in": wait, "reason": reason])
            default:
                log.warning("\(job.kind.rawValue) deferred", ["job": job.id, "study": job.study, "destination": job.destination, "retry_in": wait, "reason": reason])
            }
        case .fail(let reason):
            do {
                try store.fail(job: job.id, reason: reason, now: now)
                log.error("\(job.kind.rawValue) failed", ["job": job.id, "study": job.study, "destination": job.destination, "reason": reason])
            } catch {
                log.error("cannot record a job as failed; it is tried again", ["job": job.id, "reason": reason, "error": error])
            }
        case .hold(let reason):
            lock.withLock { running[job.id]?.halted = true }
            do {
                try store.holdForAPerson(job: job.id, reason: reason)
                log.error("\(job.kind.rawValue) HELD for a person: identity conflict", ["job": job.id, "study": job.study, "destination": job.destination, "reason": reason])
            } catch {
                // Not held: the job stays as it is (active, queued again at the sweep or the next
                // start) and its next attempt meets the same conflict and holds it then.
                log.error("IDENTITY CONFLICT, but the job could not be held; it will be tried and held again", ["job": job.id, "reason": reason, "error": error])
            }
        }
    }

    // MARK: - Watches

    /// The deadline alarm, and the maximum age: a job never silently dropped. Once a second is
    /// often enough for an alarm counted in seconds.
    private func watchDeadlinesAndAge(now: Double) throws {
        guard now - lastWatch >= 1 else { return }
        lastWatch = now
        for job in try store.unfinishedJobHeads() {
            if let deadline = job.deadline, now > deadline, job.deadlineMissed == nil {
                if try store.markDeadlineMissed(job: job.id, by: now - deadline) {
                    telemetry?.deadlineMissed(job.destination)
                    let job = try store.job(job.id) ?? job
                    log.error(
                        "DEADLINE MISSED: the study is not at the destination in time",
                        ["job": job.id, "study": job.study, "destination": job.destination, "rule": job.rule, "late": String(format: "%.1f s", now - deadline),
                         "sent": "\(job.acknowledged)/\(job.total)"])
                }
            }
            if policy.isTooOld(created: job.created, now: now), job.state != .active {
                try store.fail(job: job.id, reason: "older than max-age (\(Int(policy.maximumAge)) s); last error: \(job.lastError ?? "none")", now: now)
                log.error("job failed: past its maximum age", ["job": job.id, "kind": job.kind.rawValue, "study": job.study, "destination": job.destination, "last_error": job.lastError ?? "none"])
            }
        }
    }

    /// Results a rule expects (`expect result within`) that have not come in time: an alarm,
    /// once per push, in the log and the metrics (cleared when the result comes late).
    private func watchResults(now: Double) throws {
        guard now - lastResultWatch >= 5 else { return }
        lastResultWatch = now
        for overdue in try store.resultsNewlyOverdue(now: now) where try store.markResultOverdue(job: overdue.job, now: now) {
            log.error(
                "RESULT OVERDUE: the peer has sent no result for a study in the time its rule allows",
                ["job": overdue.job, "study": overdue.study, "peer": overdue.peer, "rule": overdue.rule, "late": String(format: "%.0f s", now - overdue.due)])
        }
    }

    /// A job left active with no worker carrying it (a bookkeeping failure, a store error at the
    /// wrong moment) queues again rather than waiting for a restart.
    private func sweepOrphans(now: Double) {
        guard now - lastSweep >= 5 else { return }
        lastSweep = now
        let orphans = lock.withLock { ((try? store.activeJobIDs()) ?? []).filter { running[$0] == nil } }
        for id in orphans where (try? store.requeue(job: id)) == true {
            log.warning("an active job with no worker queued again", ["job": id])
        }
    }
}
