import Audit
import DICOM
import DICOMweb
import Exchange
import Foundation
import Platform
import Spool
import Transport

/// The spool's queue manager: the one owner of job transitions (queued → active → done, failed
/// or deferred). A dispatcher thread picks runnable jobs per destination — urgent before normal
/// before bulk, windows respected, a peer whose circuit is open left alone — and hands each to a
/// worker thread of that destination; each destination has `connections` workers plus one
/// reserved for urgent jobs, so an urgent instance never waits behind a bulk transfer. A worker
/// sends a job's pending instances in batches (STOW-RS, `StowSender`), records each answer
/// durably, and finishes the job when nothing is pending; a transient failure defers the job
/// with backoff (`RetryPolicy`), a configuration fault (certificates) defers it long and is
/// logged as an error, a refused instance fails for good with the peer's reason.
final class Delivery: @unchecked Sendable {
    struct Target: Sendable {
        let name: String
        let url: String
        var tls: TLSConfiguration?
        let connections: Int
        let bandwidth: Int?
        /// Instances a request, when the configuration sets it.
        let batch: Int?
        /// A peer trust, or a local target (the site's PACS).
        let isLocal: Bool
    }

    /// One destination's workers and state.
    final class Destination: @unchecked Sendable {
        /// Changed only under the queue manager's lock, by a reload of the TLS material.
        var target: Target
        var circuit: PeerCircuit
        var busy = 0
        var urgentBusy = false
        var lastSuccess: Double?
        var lastError: String?
        var configurationFault = false
        let pacer: Pacer?
        /// Clients (curl handles with their kept-alive TLS connections) not in use: a worker takes
        /// one and gives it back, so a job that starts does not pay for a new TLS handshake.
        /// Kept by the priority of the work they carried: the receiving agent's thread for a
        /// connection yields the CPU for good once it carries normal or bulk work, so urgent
        /// work never reuses such a connection. The reserved urgent connection keeps its own.
        var idleClients: [JobPriority: [HTTPClient]] = [:]
        var urgentClient: HTTPClient?
        /// Whether the peer takes study manifests: nil until it has been asked; false for a
        /// plain DICOMweb peer (it answered 404), which then just gets STOW-RS.
        var takesManifests: Bool?
        init(_ target: Target, threshold: Int) {
            self.target = target
            circuit = PeerCircuit(threshold: threshold)
            pacer = target.bandwidth.map { Pacer(bytesPerSecond: $0) }
        }
    }

    let store: AgentStore
    let log: Logger
    let policy: RetryPolicy
    let telemetry: Telemetry
    /// Each finished job is audited (set once, before start).
    var audit: AuditLog?
    var trust = ""
    private let lock = NSCondition()
    private var destinations: [String: Destination] = [:]
    private var running = false
    private var stopping = false
    private var nudged = false
    private var activeWorkers = 0
    private var generator = SystemRandomNumberGenerator()
    /// Instances per request: small for urgent jobs (latency), larger otherwise (throughput).
    /// An urgent request is no larger than what a Consort receiver makes durable by each file's
    /// own fsync, so that it never waits for a syncfs of the receiver's filesystem.
    let urgentBatch = StowIngest.ownFsyncAtMost
    let normalBatch = 50
    let batchBytes = 16 << 20
    private var lastWatch = 0.0
    private var lastSweep = 0.0
    /// Jobs being sent, by id: the job as it was started, its workers, the instances they have in
    /// flight (so that two workers of one job never send the same instance), and whether its
    /// workers should stop after their batch (a failure deferred it).
    private var sending: [Int64: (job: AgentStore.Job, workers: Int, claimed: Set<String>, halted: Bool)] = [:]
    /// Jobs whose manifest the peer took, with how many instances it listed.
    private var manifestListed: [Int64: Int] = [:]
    /// Whether a rule's jobs send a final manifest: rules fired by `on study-stable` (the study
    /// is whole here). Set by the daemon from the current rules.
    var sendsFinalManifest: @Sendable (String) -> Bool = { _ in false }

    init(store: AgentStore, targets: [Target], policy: RetryPolicy, circuitThreshold: Int, telemetry: Telemetry, log: Logger) {
        self.store = store
        self.policy = policy
        self.telemetry = telemetry
        self.log = log
        for target in targets { destinations[target.name] = Destination(target, threshold: circuitThreshold) }
    }

    /// New or changed targets (SIGHUP re-read the peers): kept circuits for names that stay.
    func update(targets: [Target], circuitThreshold: Int) {
        lock.withLock {
            var next: [String: Destination] = [:]
            for target in targets {
                if let existing = destinations[target.name], existing.target.url == target.url, existing.target.connections == target.connections,
                    existing.target.bandwidth == target.bandwidth, existing.target.batch == target.batch
                {
                    if existing.target.tls != target.tls { Self.replace(target.tls, in: existing) }
                    next[target.name] = existing
                } else {
                    next[target.name] = Destination(target, threshold: circuitThreshold)
                }
            }
            destinations = next
        }
    }

    /// New TLS material (SIGHUP) for every destination reached over HTTPS; circuits kept.
    func replaceTLS(_ tls: TLSConfiguration) {
        lock.withLock {
            for destination in destinations.values where destination.target.tls != nil { Self.replace(tls, in: destination) }
        }
    }

    /// A destination's clients made with earlier material are dropped, not reused: their kept
    /// connections were verified against the CA and CRL of then. Workers sending now finish
    /// their request with theirs, and do not give it back (see `work`). Under the lock.
    private static func replace(_ tls: TLSConfiguration?, in destination: Destination) {
        destination.target.tls = tls
        destination.idleClients = [:]
        destination.urgentClient = nil
    }

    func start() {
        lock.withLock { running = true }
        let thread = Thread { [self] in dispatch() }
        thread.name = "consort-dispatch"
        thread.start()
    }

    /// Something changed (a job queued): look now rather than at the next tick.
    func nudge() {
        lock.withLock {
            nudged = true
            lock.broadcast()
        }
    }

    /// Stops taking jobs; lets workers finish the batch they are sending, up to `deadline`
    /// seconds; jobs left active are queued again (they resume from what was acknowledged).
    func stop(deadline: Double) {
        lock.withLock {
            stopping = true
            lock.broadcast()
        }
        let end = MonotonicClock.now + deadline
        lock.lock()
        while activeWorkers > 0 && MonotonicClock.now < end { _ = lock.wait(until: Date().addingTimeInterval(0.05)) }
        let left = activeWorkers
        lock.unlock()
        if left > 0 { log.warning("stopping with transfers still in flight; they resume at the next start", ["workers": left]) }
        _ = try? store.requeueInterrupted()
    }

    struct PeerStatus: Sendable {
        var name: String, url: String, isLocal: Bool, circuit: String, circuitClosed: Bool, busy: Int, lastSuccess: Double?, lastError: String?,
            configurationFault: Bool
        /// Reachable as far as this agent knows: its circuit is closed and no certificate fault.
        var reachable: Bool { circuitClosed && !configurationFault }
    }

    var status: [PeerStatus] {
        let now = Date().timeIntervalSince1970
        return lock.withLock {
            destinations.values.sorted { $0.target.name < $1.target.name }.map {
                var closed = false
                var circuit = $0.circuit.description
                switch $0.circuit.state {
                case .closed: closed = true
                case .open(let until) where until.isFinite:
                    circuit = "open after \($0.circuit.consecutiveFailures) failures; next probe in \(max(0, Int((until - now).rounded(.up)))) s"
                default: break
                }
                return PeerStatus(
                    name: $0.target.name, url: $0.target.url, isLocal: $0.target.isLocal, circuit: circuit, circuitClosed: closed,
                    busy: $0.busy + ($0.urgentBusy ? 1 : 0), lastSuccess: $0.lastSuccess, lastError: $0.lastError, configurationFault: $0.configurationFault)
            }
        }
    }

    /// The destinations' addresses and TLS settings, by name (fetch jobs retrieve from peers).
    var targetsByName: [String: Target] {
        lock.withLock { destinations.mapValues(\.target) }
    }

    // MARK: - Operator actions

    /// Workers sending these jobs stop after their batch in flight (held or dropped by an operator).
    func halt(_ ids: [Int64]) {
        lock.withLock {
            for id in ids { sending[id]?.halted = true }
        }
    }

    /// An operator's retry of a peer: an open circuit lets one probe through now. False if the
    /// destination is unknown.
    @discardableResult
    func probeNow(_ peer: String) -> Bool {
        let known: Bool = lock.withLock {
            guard let destination = destinations[peer] else { return false }
            _ = destination.circuit.forceProbe()
            destination.configurationFault = false
            return true
        }
        nudge()
        return known
    }

    // MARK: - Study manifests

    /// Sends the job's manifest (every instance of the study it delivers, with its size and
    /// SHA-256) when the job comes from a study-stable rule and the peer is an agent that takes
    /// manifests. Never stops the push: without a manifest the receiver keeps its quiet timer.
    private func sendManifest(_ job: AgentStore.Job, to destination: Destination, with client: HTTPClient) {
        let target = lock.withLock { destination.target }
        guard job.kind == "push", !target.isLocal, sendsFinalManifest(job.rule), lock.withLock({ destination.takesManifests }) != false else { return }
        let manifest: StudyManifest
        do {
            // What the job delivers: an instance refused (by the peer, or cut here) will not
            // come, and listing it would leave the study open at the peer for ever.
            let files = try store.instances(ofJob: job.id, limit: StudyManifest.maximumInstances).filter { $0.state != "refused" }.map { ($0.sop, $0.path, Int($0.size)) }
            // Hashed once per instance, kept in the inventory (a received one was hashed as it
            // arrived): a retry, or the same study to another peer, reads no file again.
            let known = try store.hashes(ofJob: job.id)
            manifest = try StudyManifest.make(study: job.study, final: true, files: files, known: known)
            try store.recordHashes(manifest.instances.filter { known[$0.sop] == nil }.map { ($0.sop, $0.sha256) })
        } catch {
            log.warning("no manifest for the job: sending without one", ["job": job.id, "study": job.study, "destination": target.name, "error": error])
            return
        }
        switch manifest.send(to: target.url, with: client, headers: [(ConsortField.purpose, job.purpose)]) {
        case .taken(let held):
            lock.withLock {
                destination.takesManifests = true
                manifestListed[job.id] = manifest.instances.count
            }
            log.info("manifest sent", ["job": job.id, "study": job.study, "destination": target.name, "instances": manifest.instances.count, "held_there": held])
        case .notSpoken:
            lock.withLock { destination.takesManifests = false }
            log.info("the destination does not take study manifests (a plain DICOMweb peer): STOW-RS only", ["destination": target.name])
        case .failed(let reason):
            log.warning("manifest not taken: sending without one", ["job": job.id, "study": job.study, "destination": target.name, "reason": reason])
        }
    }

    // MARK: - Fetches from a peer share its circuit

    /// What a fetch learnt about the peer it fetched from.
    enum FetchEvidence {
        /// The peer answered (any HTTP status below 500): it is up.
        case answered
        /// No answer, a broken one, or a 5xx: the peer or the path is unwell.
        case unwell(String)
        /// The fetch never reached the peer (held since it was picked, no address, a local fault).
        case noContact
    }

    /// Whether a fetch from `peer` may start now. A peer is one circuit for both directions: a
    /// peer that is down for pushes is down for fetches, and a prefetch does not hammer a peer
    /// the pushes have given up on. Half-open: this fetch is the probe, and must end with
    /// `fetchEnded`. An unknown peer: yes (the fetch reports the missing address itself).
    func mayFetch(from peer: String, now: Double) -> Bool {
        lock.withLock { destinations[peer].map { $0.circuit.mayStart(now: now) } ?? true }
    }

    func fetchEnded(from peer: String, _ evidence: FetchEvidence, now: Double) {
        var change: CircuitChange?
        lock.withLock {
            guard let destination = destinations[peer] else { return }
            switch evidence {
            case .answered:
                change = destination.circuit.recordSuccess()
                destination.lastSuccess = now
            case .unwell(let reason):
                destination.lastError = reason
                change = destination.circuit.recordFailure(now: now, policy: policy, using: &generator)
            case .noContact:
                destination.circuit.probeAbandoned()
            }
        }
        if let change {
            logCircuit(change, destination: peer, now: now, cause: "a fetch from it")
            // Closed again: the pushes that waited for this peer may go now.
            if case .closed = change { nudge() }
        }
    }

    // MARK: - Dispatching

    private func dispatch() {
        // A test-only fault: the dispatcher hangs after this many seconds, as a deadlock would
        // (the watchdog test shows that a stuck loop stops the systemd watchdog pings).
        let hangAfter = ProcessInfo.processInfo.environment["CONSORT_TEST_HANG_DISPATCH_AFTER"].flatMap(Double.init)
        let startedAt = MonotonicClock.now
        while true {
            if let hangAfter, MonotonicClock.now - startedAt > hangAfter {
                log.warning("CONSORT_TEST_HANG_DISPATCH_AFTER is set: the dispatcher hangs now (a test's fault)")
                while true { Thread.sleep(forTimeInterval: 3600) }
            }
            lock.lock()
            if !nudged && !stopping { _ = lock.wait(until: Date().addingTimeInterval(0.25)) }
            nudged = false
            let done = stopping
            lock.unlock()
            if done { return }
            telemetry.beat("dispatch")
            do {
                try dispatchOnce()
            } catch {
                log.error("cannot read the spool; trying again shortly", ["error": error])
                Thread.sleep(forTimeInterval: 1)
            }
        }
    }

    private func dispatchOnce() throws {
        let now = Date().timeIntervalSince1970
        let minute = Self.minuteOfDay(now)
        try watchDeadlinesAndAge(now: now)
        defer { try? reinforce(now: now) }
        // A job left active with no worker sending it (a bookkeeping failure, a store error at
        // the wrong moment) queues again rather than waiting for a restart.
        if now - lastSweep >= 5 {
            lastSweep = now
            let orphans = lock.withLock { () -> [Int64] in
                ((try? store.activeJobIDs()) ?? []).filter { sending[$0] == nil }
            }
            for id in orphans where (try? store.requeue(job: id)) == true {
                log.warning("an active job with no worker queued again", ["job": id])
            }
        }
        let jobs = try store.runnableJobs(now: now)
        guard !jobs.isEmpty else { return }
        var byDestination: [String: [AgentStore.Job]] = [:]
        for job in jobs { byDestination[job.destination, default: []].append(job) }
        for (name, list) in byDestination {
            lock.lock()
            guard let destination = destinations[name] else {
                lock.unlock()
                for job in list {
                    try store.postpone(job: job.id, until: now + policy.maximumDelay, reason: "no address for \(name): add a peer or local line to the configuration (a configuration fault)")
                    log.error("job has no destination address", ["job": job.id, "destination": name, "study": job.study])
                }
                continue
            }
            var starts: [(AgentStore.Job, Bool)] = []
            // Jobs some worker is still sending (a deferred job whose halted workers finish
            // their batch) are not started twice.
            let queued = list.filter { sending[$0.id] == nil }.map { job in
                QueuedJob(
                    id: job.id, peer: name, priority: JobPriority(rawValue: job.priority) ?? .normal, created: job.created,
                    nextAttempt: job.state == "queued" ? min(job.nextAttempt, now) : job.nextAttempt, deadline: job.deadline,
                    window: job.window.flatMap(Spool.TimeWindow.init), held: false)
            }
            let free = max(0, destination.target.connections - destination.busy)
            var chosen = JobScheduler.next(from: queued, peer: name, now: now, minuteOfDay: minute, freeConnections: free, urgentOnly: false)
            var urgent: Int64?
            if !destination.urgentBusy {
                urgent = JobScheduler.next(from: queued, peer: name, now: now, minuteOfDay: minute, freeConnections: 1, urgentOnly: true)
                    .first { !chosen.contains($0) }
            }
            // The circuit is asked only when something would start (asking moves an open circuit
            // whose time has come to half-open); half-open, one job only: the probe.
            if (!chosen.isEmpty || urgent != nil), destination.circuit.mayStart(now: now) {
                if case .halfOpen = destination.circuit.state {
                    if urgent != nil { chosen = [] } else { chosen = Array(chosen.prefix(1)) }
                }
                if let urgent {
                    starts.append((list.first { $0.id == urgent }!, true))
                    destination.urgentBusy = true
                }
                for id in chosen where id != urgent {
                    starts.append((list.first { $0.id == id }!, false))
                    destination.busy += 1
                }
                activeWorkers += starts.count
                for (job, _) in starts { sending[job.id] = (job, 1, [], false) }
            }
            lock.unlock()
            for (job, reserved) in starts {
                do {
                    // An operator may have held or dropped it since it was read: not started.
                    guard try store.start(job: job.id, now: now) else {
                        lock.withLock {
                            sending[job.id] = nil
                            destination.circuit.probeAbandoned()
                        }
                        release(destination, reserved: reserved)
                        continue
                    }
                } catch {
                    log.error("cannot mark a job active", ["job": job.id, "error": error])
                    lock.withLock { sending[job.id] = nil }
                    release(destination, reserved: reserved)
                    continue
                }
                let thread = Thread { [self] in work(job, at: destination, reserved: reserved, first: true) }
                thread.name = "consort-send-\(name)"
                thread.start()
            }
        }
    }

    /// Connections left over at a destination go to jobs already being sent that have more to
    /// send than their workers hold: a large study uses every connection of its peer.
    private func reinforce(now: Double) throws {
        let candidates: [(Destination, AgentStore.Job, Int)] = lock.withLock {
            sending.values.compactMap { entry in
                guard !entry.halted, let destination = destinations[entry.job.destination], case .closed = destination.circuit.state,
                    destination.busy < destination.target.connections, entry.workers < destination.target.connections
                else { return nil }
                return (destination, entry.job, entry.claimed.count)
            }
        }
        for (destination, job, claimed) in candidates {
            let unclaimed = try store.pendingCount(job: job.id) - claimed
            let batch = lock.withLock { destination.target.batch } ?? (job.priority == 0 ? urgentBatch : normalBatch)
            guard unclaimed > batch else { continue }
            let started: Bool = lock.withLock {
                guard !stopping, destination.busy < destination.target.connections, var entry = sending[job.id], !entry.halted else { return false }
                entry.workers += 1
                sending[job.id] = entry
                destination.busy += 1
                activeWorkers += 1
                return true
            }
            guard started else { continue }
            let thread = Thread { [self] in work(job, at: destination, reserved: false, first: false) }
            thread.name = "consort-send-\(job.destination)"
            thread.start()
        }
    }

    /// The deadline alarm, and the maximum age: a job never silently dropped.
    private func watchDeadlinesAndAge(now: Double) throws {
        // Once a second is often enough for an alarm counted in seconds.
        guard now - lastWatch >= 1 else { return }
        lastWatch = now
        for job in try store.unfinishedJobHeads() {
            if let deadline = job.deadline, now > deadline, job.deadlineMissed == nil {
                if try store.markDeadlineMissed(job: job.id, by: now - deadline) {
                    telemetry.deadlineMissed(job.destination)
                    let job = try store.job(job.id) ?? job
                    log.error(
                        "DEADLINE MISSED: the study is not at the destination in time",
                        ["job": job.id, "study": job.study, "destination": job.destination, "rule": job.rule, "late": String(format: "%.1f s", now - deadline),
                         "sent": "\(job.acknowledged)/\(job.total)"])
                }
            }
            if policy.isTooOld(created: job.created, now: now), job.state != "active" {
                try store.fail(job: job.id, reason: "older than max-age (\(Int(policy.maximumAge)) s); last error: \(job.lastError ?? "none")", now: now)
                log.error("job failed: past its maximum age", ["job": job.id, "study": job.study, "destination": job.destination, "last_error": job.lastError ?? "none"])
            }
        }
    }

    private func release(_ destination: Destination, reserved: Bool) {
        lock.withLock {
            if reserved { destination.urgentBusy = false } else { destination.busy -= 1 }
            activeWorkers -= 1
            nudged = true
            lock.broadcast()
        }
    }

    // MARK: - Sending

    /// `first`: the worker the dispatcher started (not one added by `reinforce`): it alone asks
    /// what the peer holds and sends the manifest. (Counting workers here raced with
    /// `reinforce`, which may add a second before this one looks.)
    private func work(_ job: AgentStore.Job, at destination: Destination, reserved: Bool, first firstWorker: Bool) {
        let priority = JobPriority(rawValue: job.priority) ?? .normal
        var pooled: HTTPClient?
        var left = false  // left the job to its other workers (counted out already)
        var triedPeer = false  // a request reached the circuit's accounting
        defer {
            lock.withLock {
                if let pooled, pooled.options.tls == destination.target.tls {
                    if reserved { destination.urgentClient = pooled } else { destination.idleClients[priority, default: []].append(pooled) }
                }
                if !left, var entry = sending[job.id] {
                    entry.workers -= 1
                    sending[job.id] = entry.workers > 0 ? entry : nil
                }
                if !triedPeer { destination.circuit.probeAbandoned() }
            }
            release(destination, reserved: reserved)
        }
        var target = lock.withLock { destination.target }
        // A normal or bulk job's worker leaves the CPU to urgent work first (this thread does
        // only this job, and ends with it), and reads a bulk study's files in the idle I/O
        // class (below); the receiver is told the priority and does the same.
        if priority != .urgent { ThreadPriority.yieldCPU(bulk: priority == .bulk) }
        var client: HTTPClient
        do {
            let kept: HTTPClient? = lock.withLock {
                if reserved {
                    defer { destination.urgentClient = nil }
                    return destination.urgentClient
                }
                return destination.idleClients[priority]?.popLast()
            }
            client = try kept ?? HTTPClient(.init(tls: target.tls))
        } catch {
            try? store.postpone(job: job.id, until: Date().timeIntervalSince1970 + policy.maximumDelay, reason: "cannot set up TLS: \(error)")
            log.error("cannot set up a client for the destination (a configuration fault)", ["job": job.id, "destination": target.name, "error": error])
            return
        }
        pooled = client
        // A job tried before (a retry, or a restart after a crash) asks the peer what it already
        // holds of the study and sends only the rest. (A peer that cannot say gets everything
        // not acknowledged; its receiver keeps one copy of each.)
        if job.attempts > 0, firstWorker, let held = HeldInstances.ask(target.url, study: job.study, with: client, headers: [(ConsortField.purpose, job.purpose)]), !held.isEmpty {
            let pendingNow = (try? store.pending(job: job.id, limit: 1_000_000)) ?? []
            let already = pendingNow.map(\.sop).filter { held.contains($0) }
            if !already.isEmpty {
                let now = Date().timeIntervalSince1970
                try? store.recordAnswers(job: job.id, acknowledged: already, refused: [], attempt: (now, now, 0, "\(already.count) already at the peer"))
                log.info("resuming: the peer already holds part of the study", ["job": job.id, "study": job.study, "destination": target.name, "held": already.count, "left": pendingNow.count - already.count])
            }
        }
        // A Consort peer first hears the whole of what a study-stable job delivers (see
        // StudyManifest): it then knows when the study is complete.
        if firstWorker { sendManifest(job, to: destination, with: client) }
        let batchSize = target.batch ?? (job.priority == 0 ? urgentBatch : normalBatch)
        var attempts = job.attempts + 1
        while true {
            // New TLS material (SIGHUP) since this worker began: its next batch goes over a new
            // connection with it, not over the one verified under the old CA and CRL.
            let current = lock.withLock { destination.target }
            if current.tls != client.options.tls {
                do {
                    client = try HTTPClient(.init(tls: current.tls))
                } catch {
                    try? store.postpone(job: job.id, until: Date().timeIntervalSince1970 + policy.maximumDelay, reason: "cannot set up TLS: \(error)")
                    log.error("cannot set up a client with the reloaded TLS material (a configuration fault)", ["job": job.id, "destination": current.name, "error": error])
                    return
                }
                pooled = client
                target = current
            }
            if lock.withLock({ stopping }) {
                try? store.postpone(job: job.id, until: Date().timeIntervalSince1970, reason: "the agent stopped; resumes at the next start")
                return
            }
            // Another worker of this job failed and deferred it: stop after our batch.
            if lock.withLock({ sending[job.id]?.halted ?? false }) { return }
            var pending: [AgentStore.PendingInstance]
            // Read and claim under the lock: two workers of one job never take the same instance.
            do {
                pending = try lock.withLock {
                    let alreadyClaimed = sending[job.id]?.claimed ?? []
                    var total = 0
                    let batch = Array(try store.pending(job: job.id, limit: batchSize + alreadyClaimed.count).filter { !alreadyClaimed.contains($0.sop) }
                        .prefix(batchSize)
                        // At most ~16 MB a request (at least one instance): what a crash or a cut
                        // connection makes us send again stays small, and the answers come often.
                        .prefix { instance in
                            defer { total += instance.size }
                            return total == 0 || total + instance.size <= batchBytes
                        })
                    sending[job.id]?.claimed.formUnion(batch.map(\.sop))
                    return batch
                }
            } catch {
                log.error("cannot read a job's instances", ["job": job.id, "error": error])
                try? store.postpone(job: job.id, until: Date().timeIntervalSince1970 + policy.minimumDelay, reason: "\(error)")
                return
            }
            let now = Date().timeIntervalSince1970
            if pending.isEmpty {
                // Others still sending this job's last instances: they finish it. Checked and
                // counted out under one lock, so two workers cannot both leave it to the other.
                let leaving: Bool = lock.withLock {
                    guard var entry = sending[job.id], entry.workers > 1 else { return false }
                    entry.workers -= 1
                    sending[job.id] = entry
                    return true
                }
                if leaving {
                    left = true
                    return
                }
                // Instances joined the job, or were refused, after its manifest went: the peer
                // hears what it will hold.
                if let listed = lock.withLock({ manifestListed[job.id] }), let counts = try? store.job(job.id), counts.total - counts.refused != listed {
                    sendManifest(job, to: destination, with: client)
                }
                let late = Deadline.missedBy(deadline: job.deadline, deliveredAt: now, now: now)
                do {
                    guard let state = try store.finish(job: job.id, now: now, deliveredLate: late) else { continue }
                    lock.withLock { manifestListed[job.id] = nil }
                    let finished = try store.job(job.id)
                    if let audit, let finished {
                        let facts = try? store.study(job.study)
                        var nhs: String?
                        if let facts, case .valid(let number) = Announcer.nhs(facts.facts) { nhs = number.digits }
                        try? audit.record(AuditEntry(
                            who: trust, action: job.kind == "deliver" ? "deliver" : "send", nhs: nhs, patient: facts?.facts.patientID, study: job.study,
                            why: "\(job.purpose) (rule \(job.rule))", detail: "\(finished.acknowledged) of \(finished.total) instances to \(target.name); \(state)"))
                    }
                    if state == "done" {
                        log.info("job done", ["job": job.id, "study": job.study, "destination": target.name, "instances": finished?.total ?? 0, "late": late.map { String(format: "%.1f s", $0) } ?? "no"])
                    } else {
                        log.error("job failed: the destination refused instances", ["job": job.id, "study": job.study, "destination": target.name, "refused": finished?.refused ?? 0, "reason": finished?.lastError ?? ""])
                    }
                } catch {
                    log.error("cannot finish a job", ["job": job.id, "error": error])
                }
                return
            }
            let claim = Set(pending.map(\.sop))
            defer { lock.withLock { sending[job.id]?.claimed.subtract(claim) } }
            // Each file checked whole again before it goes: it was whole when taken, but an
            // archive file can be cut or replaced since (a disk that filled, a re-export).
            var cut: [(String, String)] = []
            var unreadable: String?
            pending.removeAll { instance in
                do {
                    _ = try DICOMFile.verify(path: instance.path)
                    return false
                } catch let error as DICOMError where error.code == .io {
                    // Not the file's fault (too many open files, NFS gone stale): try later.
                    unreadable = "\(error)"
                    return true
                } catch {
                    cut.append((instance.sop, "the file is no longer whole, readable DICOM: \(error)"))
                    return true
                }
            }
            if !cut.isEmpty {
                do {
                    try store.recordAnswers(job: job.id, acknowledged: [], refused: cut, attempt: (now, now, 0, "\(cut.count) not sent: no longer whole"))
                } catch {
                    log.error("cannot record instances that cannot be sent", ["job": job.id, "error": error])
                    try? store.postpone(job: job.id, until: now + policy.minimumDelay, reason: "\(error)")
                    return
                }
                for item in cut { log.error("instance not sent: its file changed since it was taken", ["job": job.id, "sop": item.0, "reason": item.1]) }
            }
            if let unreadable {
                log.warning("an instance's file cannot be read now; the job waits", ["job": job.id, "study": job.study, "reason": unreadable])
                try? store.postpone(job: job.id, until: now + policy.minimumDelay, reason: "cannot read a file: \(unreadable)")
                lock.withLock { sending[job.id]?.halted = true }
                return
            }
            if pending.isEmpty { continue }
            let started = Date().timeIntervalSince1970
            let batch = pending.map { OutgoingInstance(path: $0.path, uid: $0.sop) }
            let send = {
                StowSender.deliver(batch, to: target.url, with: client, headers: [(ConsortField.priority, priority.description), (ConsortField.purpose, job.purpose)], pace: destination.pacer.map { pacer in { pacer.consume($0, priority: priority) } })
            }
            let outcomes = priority == .bulk ? ThreadPriority.idleIO(send) : send()
            let ended = Date().timeIntervalSince1970
            // What each instance became (`FailureClassifier`): delivered; refused by the peer for
            // good (recorded, the job goes on without it); or a failure of the exchange, which
            // defers the job by its class.
            let acknowledged = outcomes.filter { $0.delivery == .delivered }.map(\.instance.uid)
            let refused = outcomes.filter { $0.delivery == .failed(.refused) && $0.transportCode == nil }.map { ($0.instance.uid, $0.reason ?? "refused") }
            let retry = outcomes.filter { $0.delivery != .delivered && !($0.delivery == .failed(.refused) && $0.transportCode == nil) }
            let bytes = pending.filter { acknowledged.contains($0.sop) }.reduce(0) { $0 + $1.size }
            let outcome = retry.isEmpty ? "\(acknowledged.count) stored, \(refused.count) refused" : "failed: \(retry.first?.reason ?? "")"
            do {
                try store.recordAnswers(job: job.id, acknowledged: acknowledged, refused: refused, attempt: (started, ended, bytes, outcome))
            } catch {
                log.error("cannot record the peer's answers; they will be sent again (the peer keeps one copy)", ["job": job.id, "error": error])
                try? store.postpone(job: job.id, until: ended + policy.minimumDelay, reason: "\(error)")
                return
            }
            if !acknowledged.isEmpty { telemetry.sent(target.name, instances: acknowledged.count, bytes: Int64(bytes)) }
            if !refused.isEmpty { telemetry.error(target.name, class: "refused", count: refused.count) }
            for item in refused {
                log.error("instance refused by the destination", ["job": job.id, "study": job.study, "destination": target.name, "sop": item.0, "reason": item.1])
            }
            triedPeer = true
            if retry.isEmpty {
                let change = lock.withLock {
                    destination.lastSuccess = ended
                    destination.configurationFault = false
                    return destination.circuit.recordSuccess()
                }
                if let change {
                    logCircuit(change, destination: target.name, now: ended, cause: "a push to it")
                    nudge()  // the jobs that waited for this destination may go now
                }
                attempts = 0
                continue
            }
            // Why it failed decides what happens next.
            let first = retry[0]
            let failure = first.delivery.failure ?? .transient
            let reason = first.reason ?? "not reported"
            telemetry.error(target.name, class: failure.rawValue)
            let decision = policy.afterFailure(failure, failures: max(1, attempts), using: &generator)
            let delay = decision.delay
            attempts += 1
            var change: CircuitChange?
            lock.withLock {
                sending[job.id]?.halted = true
                destination.lastError = reason
                // Our own side failing (a file gone, a disk) says nothing of the peer.
                if decision.countsAgainstPeer { change = destination.circuit.recordFailure(now: ended, policy: policy, using: &generator) }
                if failure == .configuration { destination.configurationFault = true }
            }
            try? store.postpone(job: job.id, until: ended + delay, reason: (failure == .configuration ? "configuration fault: " : failure == .local ? "local fault: " : "") + reason)
            if failure == .configuration {
                log.error(
                    "CONFIGURATION FAULT with the destination (certificates, membership or agreement): not retried before \(Int(delay)) s",
                    ["job": job.id, "study": job.study, "destination": target.name, "reason": reason])
            } else {
                log.warning("deferred: the destination is not taking instances now", ["job": job.id, "study": job.study, "destination": target.name, "retry_in": String(format: "%.0f s", delay), "reason": reason])
            }
            if let change { logCircuit(change, destination: target.name, now: ended, cause: "a push to it") }
            return
        }
    }

    /// One line for a change of a destination's circuit, in an operator's words: what happens to
    /// its jobs and when the next try is (the raw enum, "opened(until: 1796208292.40)", said
    /// neither).
    private func logCircuit(_ change: CircuitChange, destination: String, now: Double, cause: String) {
        switch change {
        case .opened(let until):
            log.warning("destination circuit opened: too many failures in a row; its jobs wait, and one probe will test it",
                ["destination": destination, "by": cause, "probe_in": "\(max(0, Int((until - now).rounded(.up)))) s"])
        case .reopened(let until):
            log.warning("destination circuit opened again: the probe failed; its jobs keep waiting for the next one",
                ["destination": destination, "by": cause, "probe_in": "\(max(0, Int((until - now).rounded(.up)))) s"])
        case .closed:
            log.info("destination circuit closed: the destination answers again; its jobs go on", ["destination": destination, "by": cause])
        }
    }

    static func minuteOfDay(_ now: Double) -> Int {
        var seconds = time_t(now)
        var parts = tm()
        localtime_r(&seconds, &parts)
        return Int(parts.tm_hour) * 60 + Int(parts.tm_min)
    }
}
