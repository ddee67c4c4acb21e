import ArchiveWatch
import Audit
import DICOM
import DICOMweb
import Deidentification
import Exchange
import Foundation
import HTTP
import Platform
import Routing
import Spool
import Transport

/// `consort agent`: started in order — inventory and spool, rules, the receiver (listening),
/// the watchers and the catch-up scan, the queue manager — and stopped in reverse on SIGTERM:
/// no new work taken, transfers in flight finish their batch (bounded), interrupted jobs are
/// queued again for the next start. SIGHUP reloads the rules (a set with errors is refused and
/// the old one kept), re-reads the peers, local targets and free-space threshold from the
/// configuration file (and the dimse-peer lines), and the TLS material — certificate, key, CA and CRL — for the receiver
/// and every client (files that do not load are refused and the material in force stays).
/// The folders and the listening address need a restart.
public final class AgentDaemon: @unchecked Sendable {
    public let configuration: AgentConfiguration
    let log: Logger
    let store: AgentStore
    let rules: RuleBook
    let ingest: Ingest
    /// The spool's queue manager: every job's transitions, pushes, plans and fetches alike.
    let queue: QueueManager
    /// The agent's clock: what the spool stamps and windows are read by.
    let clock: any Clock = SystemClock()
    public let telemetry: Telemetry
    /// The agent's hash-chained audit log (STATE/audit.log): sends, receives, fetches,
    /// retrieves served, lookups, operator actions.
    let audit: AuditLog
    let coordinator: CoordinatorClient?
    /// This trust's numbers for patients, from the coordinator (nil: no coordinator, or
    /// `identity keep`: studies from other trusts are placed as sent).
    let identityBook: IdentityBook?
    /// Looks at studies held for their identity again (`AgentDaemon+Identity`).
    let identityReleaser: WakeableLoop
    /// The certificate, key, CA and CRL in force, for the receiver and every client.
    let tls: TLSMaterial
    /// When the expiry of the TLS material was last warned of in the log (daily).
    var expiryWarned = 0.0
    var announcer: Announcer?
    var listWatcher: ListWatcher?
    /// The receiver (its TLS context is replaced on reload: `AgentDaemon+TrustBoundary`).
    var server: HTTPServer?
    var admin: AdminServer?
    var metricsServer: HTTPServer?
    /// The DIMSE C-STORE SCP (`dimse` in the configuration; `AgentDaemon+DIMSE`).
    var dimse: DIMSEServer?
    var dimseIntake: DIMSEIntake?
    /// The query/retrieve SCP's own coordinator client: a PACS's C-FIND does not wait behind
    /// an announcement in flight on the announcer's.
    var queryCoordinator: CoordinatorClient?
    /// The dimse-peers' names by calling AE title (the intake's and the query's audit lines),
    /// and their own SCPs (where a C-MOVE sends): replaced on SIGHUP.
    let dimseNames = LockedValue<[String: String]>([:])
    let dimseDestinations = LockedValue<[String: ConsortiumMove.Destination]>([:])
    /// flock on `state/agent.lock`: one agent per state folder.
    private var stateFolderLock: Int32 = -1
    private var claim: StagingClaim?
    /// The daemon's loops, started in order and stopped in reverse, joined within the stop's
    /// deadline: the watchers, the stability loop, the announcer, the list watcher, the queue.
    let services = ServiceGroup()
    let stopping = LockedFlag()
    /// The free-space threshold in force (SIGHUP re-reads it).
    let freeSpaceThreshold: LockedValue<Double>
    /// Studies whose stable rules are checked: the distinct quiet periods of the rule set.
    var quietPeriods: [Int] = []
    public let started = Date()
    /// What this process may do with its threads' priorities, found once at start (a service
    /// sandbox may forbid it): `consort status` shows it, and flags it when urgent work cannot
    /// be ranked above bulk work.
    let priorities = ThreadPriority.abilities()
    var rulesLoaded = Date()
    var lastReloadRefused: String?
    /// Why the last reload of the TLS material was refused (nil once one succeeds): a CRL that
    /// did not load leaves a revoked trust trusted, so `consort status` names it.
    var lastTLSReloadRefused: String?
    let stateLock = NSLock()
    /// The stability loop (`nudgeStability` wakes it).
    let stability: WakeableLoop
    let rescans = NSLock()
    /// Examined catch-up batches (of 500 files) that may wait for the recorder, and so the most
    /// one of its transactions holds: 4 is 2,000 files, recorded in about 30 ms of CPU here, the
    /// longest the writer's lock is then held from live work (an urgent instance received). With
    /// as many being recorded, a few MB of facts.
    static let recordQueueBatches = 4
    var rescansRunning = Set<String>(), rescansAgain = Set<String>()

    public init(configuration: AgentConfiguration, log: Logger) throws {
        self.configuration = configuration
        self.log = log
        freeSpaceThreshold = LockedValue(configuration.freeSpacePercent)
        for folder in [configuration.state, configuration.inbound] {
            try FileManager.default.createDirectory(atPath: folder, withIntermediateDirectories: true)
        }
        stateFolderLock = try Self.lockStateFolder(configuration.state)
        store = try AgentStore(path: configuration.databasePath)
        rules = try RuleBook(path: configuration.rules)
        ingest = Ingest(store: store, rules: rules, trust: configuration.trust, log: log.named("watcher"), clock: clock)
        telemetry = Telemetry(
            roots: configuration.watches.map { ($0.path, $0.pollSeconds.map { "poll \(Int($0)) s" } ?? "inotify") }
                + (configuration.dimse != nil ? [(configuration.dimseIntakeFolder, "dimse")] : []))
        audit = try AuditLog(path: configuration.state + "/audit.log")
        tls = try TLSMaterial(Self.tlsPaths(configuration), expectedName: configuration.trust, now: clock.now)
        if let url = configuration.coordinator {
            coordinator = try CoordinatorClient(bases: configuration.coordinators, tls: url.hasPrefix("https://") ? tls.configuration : nil)
        } else {
            coordinator = nil
        }
        if let url = configuration.coordinator, configuration.identity == .reconcile {
            identityBook = try IdentityBook(
                settings: IdentityDecision.Settings(trust: configuration.trust, unknownPatient: configuration.unknownPatient), coordinators: configuration.coordinators,
                tls: tls.configuration, audit: audit, clock: clock, log: log.named("identity"))
        } else {
            identityBook = nil
        }
        quietPeriods = Self.quietPeriods(rules.current)
        queue = Self.queueManager(
            configuration: configuration, store: store, rules: rules, coordinator: coordinator, tls: tls, audit: audit, telemetry: telemetry, clock: clock,
            hooks: hooks, log: log)
        let hooks = self.hooks
        stability = WakeableLoop(name: "consort-stability", interval: 1) { [hooks] in
            hooks.daemon?.stabilityTurn()
            return nil
        }
        identityReleaser = WakeableLoop(name: "consort-identity", interval: Self.identityRecheck) { [hooks] in hooks.daemon?.identityTurn() }
        hooks.daemon = self
    }

    /// What the executors ask of the daemon once it is running (record what a fetch placed, nudge
    /// the announcer): reached through this, since they are made before the daemon is whole.
    final class Hooks: @unchecked Sendable {
        weak var daemon: AgentDaemon?
    }
    private let hooks = Hooks()

    /// The queue manager and its three executors (push, plan, fetch), over one set of peers.
    static func queueManager(
        configuration: AgentConfiguration, store: AgentStore, rules: RuleBook, coordinator: CoordinatorClient?, tls: TLSMaterial, audit: AuditLog,
        telemetry: Telemetry, clock: any Clock, hooks: Hooks, log: Logger
    ) -> QueueManager {
        let spoolLog = log.named("spool"), fetchLog = log.named("fetch")
        let policy = Self.policy(configuration)
        let peers = Peers(targets: Self.targets(configuration, tls: tls.configuration), circuitThreshold: configuration.circuitAfter, policy: policy, clock: clock, log: spoolLog)
        let push = PushExecutor(store: store, peers: peers, clock: clock, telemetry: telemetry, log: spoolLog)
        push.audit = audit
        push.trust = configuration.trust
        do {
            push.deidentifier = try Deidentifier(key: Self.deidentificationKey(in: configuration.state, making: true))
            Self.removeDeidentifiedFolder(in: configuration.state)
            let trust = configuration.trust
            push.requiresDeidentification = { destination, purpose in rules.current.requiresDeidentification(from: trust, to: destination, purpose: purpose) }
            push.agreementName = { destination, purpose in rules.current.agreement(from: trust, to: destination, purpose: purpose)?.name }
        } catch {
            push.deidentifier = nil
            spoolLog.error("de-identification is not available: pushes whose rule says deidentified will not be sent", ["error": "\(error)"])
        }
        push.sendsFinalManifest = { name in
            guard let rule = rules.current.rules.first(where: { $0.name == name }), case .studyStable = rule.trigger else { return false }
            return true
        }
        let plan = PlanExecutor(
            store: store, coordinator: coordinator, trust: configuration.trust, audit: audit, clock: clock, log: fetchLog,
            announceNow: { _ = try? hooks.daemon?.announcer?.announceOnce() })
        let fetch = FetchExecutor(
            store: store, peers: peers, inbound: configuration.inbound, trust: configuration.trust, audit: audit, clock: clock, log: fetchLog,
            record: { ingest, origin, why in try hooks.daemon?.recordArrived(ingest, origin: origin, why: why) },
            placement: { origin, header in hooks.daemon?.identityBook?.placement(sender: origin, header: header) ?? .asSent },
            announced: { hooks.daemon?.announcer?.nudge() })
        return QueueManager(
            store: store, peers: peers, executors: .init(push: push, plan: plan, fetch: fetch), policy: policy, clock: clock, telemetry: telemetry, log: spoolLog)
    }

    /// Two agents on one state folder would both send every job: the second refuses to start.
    static func lockStateFolder(_ state: String) throws -> Int32 {
        let path = state + "/agent.lock"
        let fd = open(path, O_RDWR | O_CREAT | O_CLOEXEC, 0o640)
        guard fd >= 0 else { throw PlatformError("cannot open \(path)", errno: errno) }
        guard flock(fd, LOCK_EX | LOCK_NB) == 0 else {
            close(fd)
            throw PlatformError("another agent is running with the state folder \(state) (it holds \(path)); one agent per state folder", errno: EWOULDBLOCK)
        }
        return fd
    }

    static func policy(_ c: AgentConfiguration) -> RetryPolicy {
        RetryPolicy(minimumDelay: c.retryMinimumSeconds, maximumDelay: max(c.retryMinimumSeconds, c.retryMaximumSeconds), maximumAge: c.maximumAgeSeconds)
    }

    static func tlsPaths(_ c: AgentConfiguration) -> TLSConfiguration {
        TLSConfiguration(certificateChain: c.certificate, privateKey: c.key, trustedCA: c.ca, revocationList: c.crl)
    }

    static func targets(_ c: AgentConfiguration, tls: TLSConfiguration) -> [PeerTarget] {
        return c.peers.map { PeerTarget(name: $0.name, url: $0.url, tls: $0.url.hasPrefix("https://") ? tls : nil, connections: $0.connections, bandwidth: $0.bandwidth, batch: $0.batch, isLocal: false) }
            + c.locals.map { local in
                PeerTarget(
                    name: local.name, url: local.url, tls: local.url.hasPrefix("https://") || local.tls ? tls : nil, connections: local.connections, bandwidth: nil, batch: nil,
                    isLocal: true, dimse: local.dimse.map { ($0, local.callingAET ?? String("CONSORT_\(c.trust)".prefix(16)), local.timeout) })
            }
    }

    static func quietPeriods(_ set: RuleSet) -> [Int] {
        Array(Set(set.rules.compactMap { rule -> Int? in if case .studyStable(let q) = rule.trigger { return q } else { return nil } })).sorted()
    }

    // MARK: - Start and stop

    /// Starts everything; returns once the agent is listening and watching (ready).
    public func start() throws {
        let requeued = try store.requeueInterrupted()
        if requeued > 0 { log.info("jobs interrupted by the last stop resume from what the peers acknowledged", ["jobs": requeued]) }
        try startReceiver()
        try startAdmin()
        try startMetrics()
        try startWatchers()
        try startDIMSE()
        try services.start(stability)
        try startCoordination()
        if identityBook != nil { try services.start(identityReleaser) }
        try services.start(queue)
        reportPriorities()
        warnOfExpiry(now: clock.now)
        log.info("ready", ["trust": configuration.trust, "listening": "\(configuration.listenHost):\(server?.port ?? 0)", "watching": configuration.watches.map(\.path).joined(separator: ","), "inbound": configuration.inbound])
    }

    public var port: UInt16 { server?.port ?? 0 }

    /// Stops in reverse order within about `deadline` seconds.
    public func stop(deadline: Double = 10) {
        stopping.set()
        log.info("stopping: no new work; transfers in flight finish their batch", ["deadline": "\(Int(deadline)) s"])
        dimse?.stop(deadline: 2)
        server?.stop(deadline: deadline / 2)
        let late = services.stop(within: deadline / 2)
        if !late.isEmpty { log.warning("stopping: parts still running when their time ran out", ["parts": late.joined(separator: ",")]) }
        admin?.stop()
        metricsServer?.stop(deadline: 1)
        withExtendedLifetime(claim) {}
        log.info("stopped")
    }

    /// SIGHUP: the rules again (refused if they have errors: the old set stays), the TLS material
    /// again (likewise), the peers again.
    public func reload() {
        switch rules.reload() {
        case .reloaded(let warnings):
            stateLock.withLock {
                rulesLoaded = Date()
                lastReloadRefused = nil
                quietPeriods = Self.quietPeriods(rules.current)
            }
            telemetry.reloaded(ok: true)
            log.info("rules reloaded", ["rules": rules.current.rules.count, "warnings": warnings.count])
        case .refused(let outcome):
            stateLock.withLock { lastReloadRefused = outcome.errors.first?.description ?? "errors" }
            telemetry.reloaded(ok: false)
            log.error("rules NOT reloaded: the new set has errors; the rules in force stay", ["errors": outcome.errors.count, "first": outcome.errors.first?.description ?? ""])
        }
        let parsed = ConfigurationParser.parse(file: configuration.file)
        // The TLS files again (a revoked trust's CRL, a rotated certificate): from the paths the
        // file names now, or the ones in force when it has errors.
        reloadTLS(parsed.configuration.map(Self.tlsPaths))
        if let fresh = parsed.configuration {
            queue.peers.update(targets: Self.targets(fresh, tls: tls.configuration), circuitThreshold: fresh.circuitAfter)
            freeSpaceThreshold.value = fresh.freeSpacePercent
            reloadDIMSEPeers(fresh)
            log.info("peers re-read", ["peers": fresh.peers.map(\.name).joined(separator: ","), "local": fresh.locals.map(\.name).joined(separator: ",")])
        } else {
            queue.peers.replaceTLS(tls.configuration)
            log.error("configuration NOT re-read: it has errors; the peers in force stay", ["first": parsed.errors.first?.description ?? ""])
        }
    }

    // MARK: - The coordinator: announcing, prefetch, gather

    /// The announcer (what this site holds, to the coordinator) and the MDT list watcher.
    private func startCoordination() throws {
        if let coordinator {
            let announcer = Announcer(store: store, client: coordinator, trust: configuration.trust, audit: audit, clock: clock, log: log.named("coordinator"))
            let releaser = identityReleaser
            announcer.afterAnnouncing = { releaser.nudge() }
            try services.start(announcer)
            self.announcer = announcer
        }
        if let lists = configuration.lists {
            let queue = self.queue
            let watcher = ListWatcher(folder: lists, store: store, rules: rules, trust: configuration.trust, clock: clock, log: log.named("lists")) { queue.nudge() }
            try services.start(watcher)
            listWatcher = watcher
        }
    }

    // MARK: - Receiving

    private func startReceiver() throws {
        let c = configuration
        claim = try StagingClaim(folder: c.stagingFolder)
        if let removed = claim?.removed, removed > 0 { log.info("removed unfinished staged parts an earlier run left (none was acknowledged)", ["parts": removed]) }
        var server = ServerConfiguration()
        server.host = c.listenHost
        server.port = c.listenPort
        server.tls = tls.serverContext
        let receiverLog = log.named("receiver")
        var service = DICOMwebService(store: c.inbound, baseURL: "https://\(c.listenHost):\(c.listenPort)", log: { receiverLog.info($0) })
        let state = c.state, inbound = c.inbound, threshold = freeSpaceThreshold
        let store = self.store
        service.admit = { [self] request in
            let minimum = threshold.value
            // Only trusts the rules know, for a purpose an agreement allows (`PartyAccess`).
            if let refusal = refusal(of: request) { return refusal }
            if request.head.method == "POST" {
                for folder in [inbound, state] {
                    if let free = Self.freePercent(folder), free < minimum {
                        receiverLog.error("refusing incoming transfers: the disk is nearly full", ["folder": folder, "free": String(format: "%.1f %%", free), "threshold": "\(minimum) %"])
                        return HTTPError(503, "This agent's disk is nearly full; send again later")
                    }
                }
            }
            return nil
        }
        service.stored = { [self] received, ingest in try self.recordReceived(received, ingest) }
        service.heldElsewhere = { sop in try? store.path(ofInstance: sop) }
        // A study from another trust is placed in this trust's identity, or held (issue 25); an
        // object from a peer is a result for a study this trust sent it, or refused (issue 29).
        // A trust's instances, without identity on delivery, are placed as sent: no hook, so
        // they are written around the page cache (`StowIngest`).
        let book = identityBook
        service.placement = { [self] sender in
            if let member = rules.current.member(sender), !member.isTrust {
                let made = Reidentifications()
                return { header in self.resultPlacement(sender: sender, header: header, made: made) }
            }
            guard let book else { return nil }
            return { header in book.placement(sender: sender, header: header) }
        }
        service.instancesOf = { study in (try? store.instances(ofStudy: study).map(\.sop)) ?? [] }
        // WADO-RS serves what the inventory holds (the archive and what was received), to a
        // member whose purpose an agreement allows; each retrieve audited.
        // A file gone from disk (a PACS consumed its import) is forgotten here, and a study with
        // nothing left answered 404 — not 500, which the requester would count against us.
        service.filesOf = { [self] study in servable(study) }
        let audit = self.audit
        // (The caller and its purpose were checked by `admit`.)
        service.authorizeRetrieve = { request, study, count in
            let peer = request.peer?.commonName ?? "?"
            let purpose = request.head.value(ConsortField.purpose) ?? ""
            let facts = try? store.study(study)
            var nhs: String?
            if let facts, case .valid(let number) = Announcer.nhs(facts.facts) { nhs = number.digits }
            do {
                try audit.record(AuditEntry(who: peer, action: "retrieve", nhs: nhs, patient: facts?.facts.patientID, study: study, why: purpose, detail: "\(count) instances served"))
            } catch {
                return HTTPError(503, "The retrieve cannot be audited now; try again later")
            }
            return nil
        }
        let ready = service
        let http = HTTPServer(server, log: { receiverLog.info($0) }) { [self] request, body in
            if let study = Self.manifestStudy(request) { return try receiveManifest(request, body, study: study) }
            return try ready.handle(request, body)
        }
        try http.start()
        self.server = http
    }

    /// `PUT …/consort/v1/studies/{study}/manifest`: the study a manifest is for.
    static func manifestStudy(_ request: ServerRequest) -> String? {
        guard request.head.method == "PUT" else { return nil }
        let path = request.head.target.split(separator: "?", maxSplits: 1).first.map(String.init) ?? ""
        let parts = path.split(separator: "/").map(String.init)
        guard parts.count >= 5, Array(parts.suffix(5).prefix(3)) == ["consort", "v1", "studies"], parts.last == "manifest" else { return nil }
        return parts[parts.count - 2]
    }

    /// A sending agent's manifest of a study (see `StudyManifest`): kept, and answered with how
    /// much of it is here already. From members only, like everything this server takes.
    private func receiveManifest(_ request: ServerRequest, _ body: RequestBody, study: String) throws -> ServerResponse {
        func answer(_ status: Int, _ value: JSON) -> ServerResponse {
            ServerResponse(status: status, headers: [("Content-Type", "application/json")], body: value.bytes() + [UInt8(ascii: "\n")])
        }
        if let refusal = refusal(of: request) { return answer(refusal.status, .object([("error", .string(refusal.message))])) }
        let sender = request.peer?.commonName ?? "?"

        guard UID.isValid(study) else { return answer(400, .object([("error", .string("not a valid Study Instance UID: \(study.prefix(80))"))])) }
        let bytes: [UInt8]
        do { bytes = try body.collect(limit: StudyManifest.maximumBody) } catch {
            return answer(413, .object([("error", .string("a manifest is at most \(StudyManifest.maximumBody >> 20) MB"))]))
        }
        switch StudyManifest.parse(bytes, study: study) {
        case .failure(let problem):
            log.named("receiver").warning("manifest refused", ["peer": sender, "study": study, "problem": problem.description])
            return answer(400, .object([("error", .string("not a study manifest: \(problem)"))]))
        case .success(let manifest):
            let held = try store.recordManifest(
                study: study, sender: sender, final: manifest.final, instances: manifest.instances.map { ($0.sop, $0.size, $0.sha256) }, now: clock.now)
            log.named("receiver").info("manifest", ["peer": sender, "study": study, "instances": manifest.instances.count, "held": held, "final": manifest.final])
            nudgeStability()
            return answer(200, .object([("study", .string(study)), ("listed", .int(Int64(manifest.instances.count))), ("held", .int(Int64(held)))]))
        }
    }

    /// Received instances go into the inventory with their origin (the sender's trust, from its
    /// certificate) and through the rules, in one transaction, before the answer acknowledges them.
    private func recordReceived(_ received: DICOMwebService.Received, _ stow: StowIngest) throws {
        let fromPeer = rules.current.member(received.peer).map { !$0.isTrust } ?? false
        let results = fromPeer ? try placedResults(stow, from: received.peer) : nil
        let recorded = try recordArrived(stow, origin: received.peer, why: received.purpose)
        if let results { try recordResults(results, from: received.peer) }
        telemetry.received(received.peer, instances: recorded.count, bytes: recorded.bytes)
        for (study, count) in recorded.studies {
            try audit.record(AuditEntry(
                who: received.peer, action: "receive", nhs: count.nhs, patient: count.patient, study: study, why: received.purpose, detail: "\(count.instances) instances (request \(received.requestID))"))
        }
    }

    /// Instances placed in `inbound` (received, or fetched) recorded in the inventory with their
    /// origin and run through the rules as received; what was new, by study.
    @discardableResult
    func recordPlaced(_ placed: [StowIngest.PlacedInstance], origin: String) throws -> (count: Int, bytes: Int64, studies: [String: (instances: Int, nhs: String?, patient: String?)]) {
        let now = clock.now
        var batch: [AgentStore.Taken] = []
        let known = try store.origins(of: placed.map(\.sopInstanceUID))
        // Where each study came from, when it is known here already: a report from an AI
        // service on a study received from another trust may go back to that trust (`push to
        // origin`).
        let studyOrigins = try store.studyOrigins(Array(Set(placed.map(\.studyInstanceUID))))
        var studies: [String: (instances: Int, nhs: String?, patient: String?)] = [:]
        for instance in placed {
            if known[instance.sopInstanceUID] != nil { continue }
            let header = instance.header
            let facts = Ingest.facts(of: header, study: instance.studyInstanceUID)
            var item = AgentStore.Taken(
                sop: instance.sopInstanceUID, study: facts, series: header.string(Tag(0x0020, 0x000E)),
                path: instance.path, size: instance.size, mtime: Self.mtime(instance.path), origin: origin, jobs: [])
            let studyOrigin = studyOrigins[instance.studyInstanceUID].map { $0 == "local" ? Origin.local : .received(from: $0) }
            item.jobs = ingest.plan(.instanceArrived, header: header, origin: .received(from: origin), now: now, studyOrigin: studyOrigin)
            // Empty for a rewritten instance: hashed when a manifest first needs it.
            item.sha256 = instance.sha256.isEmpty ? nil : instance.sha256
            item.sentSHA256 = instance.sentSHA256
            batch.append(item)
            var nhs: String?
            if case .valid(let number) = Announcer.nhs(facts) { nhs = number.digits }
            studies[instance.studyInstanceUID, default: (0, nhs, facts.patientID)].instances += 1
        }
        guard !batch.isEmpty else { return (0, 0, [:]) }
        try store.record(taken: batch, problems: [], now: now)
        if batch.contains(where: { !$0.jobs.isEmpty }) { queue.nudge() }
        announcer?.nudge()
        nudgeStability()
        return (batch.count, Int64(batch.reduce(0) { $0 + $1.size }), studies)
    }

    static func mtime(_ path: String) -> Double {
        var info = stat()
        guard stat(path, &info) == 0 else { return 0 }
        return Double(info.st_mtim.tv_sec) + Double(info.st_mtim.tv_nsec) / 1e9
    }

    static func freePercent(_ folder: String) -> Double? {
        var info = statvfs()
        guard statvfs(folder, &info) == 0, info.f_blocks > 0 else { return nil }
        return Double(info.f_bavail) / Double(info.f_blocks) * 100
    }

}

/// A value changed and read from any thread.
final class LockedValue<T: Sendable>: @unchecked Sendable {
    private let lock = NSLock()
    private var stored: T
    init(_ value: T) { stored = value }
    var value: T {
        get { lock.withLock { stored } }
        set { lock.withLock { stored = newValue } }
    }
    /// A change made under one hold of the lock (a get, then a set, would let another thread's
    /// change in between).
    func update<R>(_ body: (inout T) -> R) -> R { lock.withLock { body(&stored) } }
}

/// A flag set once, read from any thread.
final class LockedFlag: @unchecked Sendable {
    private let lock = NSLock()
    private var value = false
    func set() { lock.withLock { value = true } }
    var isSet: Bool { lock.withLock { value } }
}
