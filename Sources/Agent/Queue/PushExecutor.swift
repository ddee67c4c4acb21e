import Audit
import DICOM
import DICOMweb
import Deidentification
import Exchange
import Foundation
import Platform
import Spool
import Transport

/// Sends a push's or a delivery's instances to its destination: in batches (STOW-RS,
/// `StowSender`), each answer recorded durably as it comes, so a crash or a cut connection
/// resumes from what was acknowledged. A job tried before first asks the peer what it already
/// holds; a job from a study-stable rule first sends the study's manifest. Several workers may
/// carry one large job: each claims its batch, so no instance goes twice at once.
///
/// What an attempt comes to is reported, never decided here: a refused instance is recorded and
/// the job goes on without it; a failure of the exchange is `.failed` with its class
/// (`FailureClassifier`), and the queue manager defers the job by it.
final class PushExecutor: JobExecutor, @unchecked Sendable {
    let store: AgentStore
    let peers: Peers
    let clock: any Clock
    let telemetry: Telemetry?
    let log: Logger
    /// Each finished job is audited (set once, before start).
    var audit: AuditLog?
    var trust = ""
    /// Whether a rule's jobs send a final manifest: rules fired by `on study-stable` (the study
    /// is whole here). Set by the daemon from the current rules.
    var sendsFinalManifest: @Sendable (String) -> Bool = { _ in false }
    /// De-identification (issue 29), for pushes whose rule says `deidentified`: the trust's
    /// keyed de-identifier (set once, before start). Without it such a job fails rather than
    /// send identity.
    var deidentifier: Deidentifier?
    /// Whether the rules in force require de-identification for a destination and purpose
    /// (from this trust): asked again at every batch, so that a job queued before its agreement
    /// required it, or a worker started before a reload, never sends identity.
    var requiresDeidentification: @Sendable (_ destination: String, _ purpose: String) -> Bool = { _, _ in false }

    /// The name of the agreement a push goes under (for the audit line of a de-identification).
    var agreementName: @Sendable (_ destination: String, _ purpose: String) -> String? = { _, _ in nil }

    func mustDeidentify(_ job: AgentStore.Job) -> Bool {
        job.kind == .push && (job.deidentify || requiresDeidentification(job.destination, job.purpose))
    }
    /// Instances per request: small for urgent jobs (latency), larger otherwise (throughput).
    /// An urgent request is no larger than what a Consort receiver makes durable by each file's
    /// own fsync, so that it never waits for a syncfs of the receiver's filesystem.
    let urgentBatch = StowIngest.ownFsyncAtMost
    let normalBatch = 50
    let batchBytes = 16 << 20
    private let lock = NSLock()
    /// The instances each job's workers have in flight (two workers of one job never send the
    /// same instance), and the jobs whose manifest the peer took, with how many instances it listed.
    private var claimed: [Int64: Set<String>] = [:]
    private var manifestListed: [Int64: Int] = [:]
    /// The UID each de-identified job's peer knows its study by, once recorded (the job a
    /// worker holds was read before: not written again for every batch).
    private var studyAtPeerRecorded: [Int64: String] = [:]

    init(store: AgentStore, peers: Peers, clock: any Clock, telemetry: Telemetry?, log: Logger) {
        self.store = store
        self.peers = peers
        self.clock = clock
        self.telemetry = telemetry
        self.log = log
    }

    private func batchSize(_ job: AgentStore.Job, _ target: PeerTarget) -> Int {
        target.batch ?? (job.priority == .urgent ? urgentBatch : normalBatch)
    }

    func wantsAnotherWorker(_ job: AgentStore.Job, workers: Int) -> Bool {
        guard let target = peers.target(job.destination), let pending = try? store.pendingCount(job: job.id) else { return false }
        let inFlight = lock.withLock { claimed[job.id]?.count ?? 0 }
        return pending - inFlight > batchSize(job, target)
    }

    func execute(_ job: AgentStore.Job, _ worker: Worker) -> JobOutcome {
        let priority = job.priority
        // A normal or bulk job's worker leaves the CPU to urgent work first (this thread does
        // only this job, and ends with it), and reads a bulk study's files in the idle I/O
        // class; the receiver is told the priority and does the same.
        if priority != .urgent { ThreadPriority.yieldCPU(bulk: priority == .bulk) }
        guard let peer = worker.peer else { return .failed(.local, reason: "no connection of \(job.destination) taken for the job") }
        if peers.target(of: peer).dimse != nil {
            if mustDeidentify(job) { return .failed(.configuration, reason: "a de-identified push goes by DICOMweb; \(job.destination) is a DIMSE node") }
            return executeByDIMSE(job, worker, peer: peer)
        }
        var target = peers.target(of: peer)
        var client: HTTPClient
        do {
            client = try peers.client(peer, priority: priority, reserved: worker.reserved)
        } catch {
            // Our own TLS material: not the peer's fault.
            return .failed(.local, reason: "cannot set up TLS for \(target.name) (a configuration fault here): \(error)")
        }
        defer { peers.giveBack(client, to: peer, priority: priority, reserved: worker.reserved) }
        let headers = [(ConsortField.purpose, job.purpose)]
        // A job tried before (a retry, or a restart after a crash) asks the peer what it already
        // holds of the study and sends only the rest. (A peer that cannot say gets everything
        // not acknowledged; its receiver keeps one copy of each.)
        // (Not for a de-identified push: the question would name the study's own UID.)
        if job.attempts > 0, worker.first, !mustDeidentify(job), let held = HeldInstances.ask(target.url, study: job.study, with: client, headers: headers), !held.isEmpty {
            let pendingNow = (try? store.pending(job: job.id, limit: 1_000_000)) ?? []
            let already = pendingNow.map(\.sop).filter { held.contains($0) }
            if !already.isEmpty {
                let now = clock.now
                try? store.recordAnswers(job: job.id, acknowledged: already, refused: [], attempt: (now, now, 0, "\(already.count) already at the peer"))
                log.info("resuming: the peer already holds part of the study", ["job": job.id, "study": job.study, "destination": target.name, "held": already.count, "left": pendingNow.count - already.count])
            }
        }
        // A Consort peer first hears the whole of what a study-stable job delivers (see
        // StudyManifest): it then knows when the study is complete.
        // (Not for a de-identified push: a manifest lists the instances' own UIDs and hashes.)
        if worker.first && !mustDeidentify(job) { sendManifest(job, to: target, with: client) }
        let pace = peer.pacer.map { pacer in { (bytes: Int) in pacer.consume(bytes, priority: priority) } }
        return sendBatches(job, worker) {
            // New TLS material (SIGHUP) since this worker began: its next batch goes over a new
            // connection with it, not over the one verified under the old CA and CRL.
            let current = peers.target(of: peer)
            if current.tls != client.options.tls {
                do {
                    client = try HTTPClient(.init(tls: current.tls))
                } catch {
                    return .stop(.failed(.local, reason: "cannot set up a client with the reloaded TLS material (a configuration fault here): \(error)"))
                }
                target = current
            }
            return .go(target, client) { [client, target] outgoing in
                StowSender.deliver(
                    outgoing, to: target.url, with: client, headers: [(ConsortField.priority, priority.description), (ConsortField.purpose, job.purpose)], pace: pace)
            }
        }
    }

    /// A delivery to a local PACS that takes C-STORE (`local NAME dimse AET@HOST:PORT`): batch
    /// by batch, one association each (`DIMSESender`), answers recorded as for STOW-RS. No
    /// manifest and no asking what the node holds first: DIMSE has neither, and a PACS keeps one
    /// copy of an instance stored twice.
    private func executeByDIMSE(_ job: AgentStore.Job, _ worker: Worker, peer: Peers.Peer) -> JobOutcome {
        sendBatches(job, worker) {
            let target = peers.target(of: peer)
            guard let dimse = target.dimse else { return .stop(.failed(.configuration, reason: "\(target.name) is no longer a DIMSE target (configuration re-read)")) }
            return .go(target, nil) { outgoing in DIMSESender.deliver(outgoing, to: dimse.node, calling: dimse.calling, timeout: dimse.timeout, tls: target.tls) }
        }
    }

    /// How the next batch goes: to this target (with the client a finished job's manifest goes
    /// by, if any), carried by this; or this attempt ends.
    private enum Carrier {
        case go(PeerTarget, HTTPClient?, ([OutgoingInstance]) -> [InstanceOutcome])
        case stop(JobOutcome)
    }

    /// The job's batches, one after another, until it is finished or this attempt ends: claimed
    /// (`claim`), carried (`send`), and the job finished when nothing is left.
    private func sendBatches(_ job: AgentStore.Job, _ worker: Worker, next: () -> Carrier) -> JobOutcome {
        defer { lock.withLock { if claimed[job.id]?.isEmpty ?? false { claimed[job.id] = nil } } }
        while true {
            let target: PeerTarget
            let client: HTTPClient?
            let transmit: ([OutgoingInstance]) -> [InstanceOutcome]
            switch next() {
            case .stop(let outcome): return outcome
            case .go(let t, let c, let x): (target, client, transmit) = (t, c, x)
            }
            if worker.isStopping { return .interrupted }
            // Another worker of this job failed and deferred it, or an operator held it: stop.
            if worker.isHalted { return .leftToOthers }
            let pending: [AgentStore.PendingInstance]
            do {
                pending = try claim(job, size: batchSize(job, target))
            } catch {
                return .failed(.local, reason: "cannot read the job's instances: \(error)")
            }
            if pending.isEmpty {
                // Others still sending this job's last instances: they finish it.
                if worker.leaveToOthers() { return .leftToOthers }
                if let finished = finish(job, target: target, client: client) { return finished }
                continue
            }
            if let outcome = send(pending, of: job, to: target, worker: worker, transmit: transmit) { return outcome }
        }
    }

    /// The job's next batch, read and claimed under the lock: two workers of one job never take
    /// the same instance. At most ~16 MB (at least one instance): what a crash or a cut
    /// connection makes us send again stays small, and the answers come often.
    private func claim(_ job: AgentStore.Job, size: Int) throws -> [AgentStore.PendingInstance] {
        try lock.withLock {
            let alreadyClaimed = claimed[job.id] ?? []
            var total = 0
            let batch = Array(try store.pending(job: job.id, limit: size + alreadyClaimed.count).filter { !alreadyClaimed.contains($0.sop) }
                .prefix(size)
                .prefix { instance in
                    defer { total += instance.size }
                    return total == 0 || total + instance.size <= batchBytes
                })
            claimed[job.id, default: []].formUnion(batch.map(\.sop))
            return batch
        }
    }

    /// One batch: each file checked whole again, sent, and every answer recorded. Nil when the
    /// job goes on; an outcome when this attempt ends.
    /// `transmit` carries the batch (STOW-RS or C-STORE) and says what became of each instance.
    private func send(
        _ batch: [AgentStore.PendingInstance], of job: AgentStore.Job, to target: PeerTarget, worker: Worker,
        transmit: ([OutgoingInstance]) -> [InstanceOutcome]
    ) -> JobOutcome? {
        let claim = Set(batch.map(\.sop))
        defer { lock.withLock { claimed[job.id]?.subtract(claim) } }
        let now = clock.now
        var pending = batch
        // Each file checked whole again before it goes: it was whole when taken, but an archive
        // file can be cut or replaced since (a disk that filled, a re-export).
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
                return .failed(.local, reason: "cannot record instances that cannot be sent: \(error)")
            }
            for item in cut { log.error("instance not sent: its file changed since it was taken", ["job": job.id, "sop": item.0, "reason": item.1]) }
        }
        if let unreadable {
            log.warning("an instance's file cannot be read now; the job waits", ["job": job.id, "study": job.study, "reason": unreadable])
            return .failed(.local, reason: "cannot read a file: \(unreadable)")
        }
        if pending.isEmpty { return nil }
        var outgoing = pending.map { OutgoingInstance(path: $0.path, uid: $0.sop) }
        // A de-identified push sends each instance de-identified as it goes, under its new
        // UIDs; the answers are recorded under the instances' own.
        var originalOf: [String: OutgoingInstance] = [:]
        if mustDeidentify(job) {
            switch deidentified(pending, of: job) {
            case .stop(let outcome): return outcome
            case .instances(let instances):
                for (sent, instance) in instances { originalOf[sent.uid] = instance }
                outgoing = instances.map(\.0)
            }
            if outgoing.isEmpty { return nil }
        }
        let started = clock.now
        let sent = job.priority == .bulk ? ThreadPriority.idleIO { transmit(outgoing) } : transmit(outgoing)
        let outcomes = sent.map { outcome -> InstanceOutcome in
            guard let original = originalOf[outcome.instance.uid] else { return outcome }
            var mapped = outcome
            mapped.instance = original
            return mapped
        }
        let ended = clock.now
        // What each instance became (`FailureClassifier`): delivered; refused by the peer for
        // good (recorded, the job goes on without it); or a failure of the exchange, which ends
        // this attempt by its class.
        let acknowledged = outcomes.filter { $0.delivery == .delivered }.map(\.instance.uid)
        let refused = outcomes.filter { $0.delivery == .failed(.refused) && $0.transportCode == nil }.map { ($0.instance.uid, $0.reason ?? "refused") }
        let retry = outcomes.filter { $0.delivery != .delivered && !($0.delivery == .failed(.refused) && $0.transportCode == nil) }
        let bytes = pending.filter { acknowledged.contains($0.sop) }.reduce(0) { $0 + $1.size }
        let summary = retry.isEmpty ? "\(acknowledged.count) stored, \(refused.count) refused" : "failed: \(retry.first?.reason ?? "")"
        do {
            try store.recordAnswers(job: job.id, acknowledged: acknowledged, refused: refused, attempt: (started, ended, bytes, summary))
        } catch {
            return .failed(.local, reason: "cannot record the peer's answers; they will be sent again (the peer keeps one copy): \(error)")
        }
        if !acknowledged.isEmpty { telemetry?.sent(target.name, instances: acknowledged.count, bytes: Int64(bytes)) }
        if !refused.isEmpty { telemetry?.error(target.name, class: "refused", count: refused.count) }
        for item in refused {
            log.error("instance refused by the destination", ["job": job.id, "study": job.study, "destination": target.name, "sop": item.0, "reason": item.1])
        }
        guard let first = retry.first else {
            worker.peerAnswered(by: "a push to it")
            return nil
        }
        return .failed(first.delivery.failure ?? .transient, reason: first.reason ?? "not reported")
    }

    /// Nothing pending: the job is finished (done, or failed for refused instances) and audited.
    /// Nil when instances joined it meanwhile: the worker goes on.
    private func finish(_ job: AgentStore.Job, target: PeerTarget, client: HTTPClient?) -> JobOutcome? {
        // Instances joined the job, or were refused, after its manifest went: the peer hears what
        // it will hold.
        if let client, !mustDeidentify(job), let listed = lock.withLock({ manifestListed[job.id] }), let counts = try? store.job(job.id), counts.total - counts.refused != listed {
            sendManifest(job, to: target, with: client)
        }
        let now = clock.now
        let late = Deadline.missedBy(deadline: job.deadline, deliveredAt: now, now: now)
        do {
            guard let state = try store.finish(job: job.id, now: now, deliveredLate: late) else { return nil }
            // Held or dropped by an operator meanwhile: theirs to decide, nothing to say here.
            guard state == "done" || state == "failed" else { return .leftToOthers }
            lock.withLock {
                manifestListed[job.id] = nil
                studyAtPeerRecorded[job.id] = nil
            }
            let finished = try store.job(job.id)
            if let audit, let finished {
                let facts = try? store.study(job.study)
                var nhs: String?
                if let facts, case .valid(let number) = Announcer.nhs(facts.facts) { nhs = number.digits }
                try? audit.record(AuditEntry(
                    who: trust, action: job.kind == .deliver ? "deliver" : "send", nhs: nhs, patient: facts?.facts.patientID, study: job.study,
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
        return .finished
    }

    // MARK: - Study manifests

    /// Sends the job's manifest (every instance of the study it delivers, with its size and
    /// SHA-256) when the job comes from a study-stable rule and the peer is an agent that takes
    /// manifests. Never stops the push: without a manifest the receiver keeps its quiet timer.
    private func sendManifest(_ job: AgentStore.Job, to target: PeerTarget, with client: HTTPClient) {
        guard job.kind == .push, !target.isLocal, sendsFinalManifest(job.rule), peers.takesManifests(target.name) != false else { return }
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
            peers.setTakesManifests(target.name, true)
            lock.withLock { manifestListed[job.id] = manifest.instances.count }
            log.info("manifest sent", ["job": job.id, "study": job.study, "destination": target.name, "instances": manifest.instances.count, "held_there": held])
        case .notSpoken:
            peers.setTakesManifests(target.name, false)
            log.info("the destination does not take study manifests (a plain DICOMweb peer): STOW-RS only", ["destination": target.name])
        case .failed(let reason):
            log.warning("manifest not taken: sending without one", ["job": job.id, "study": job.study, "destination": target.name, "reason": reason])
        }
    }

    // MARK: - De-identified pushes

    /// The batch de-identified: each instance as the pieces to send (its header de-identified
    /// here, its pixel data a range of its own file, streamed into the request: no copy is
    /// written — writing one per instance, on the disk the receiving side syncs, cost a third of
    /// the throughput), with the instance it stands for; an instance that may not or cannot go
    /// de-identified is recorded refused (it never goes as it is). The failure ends the attempt.
    private enum Deidentified {
        case instances([(OutgoingInstance, OutgoingInstance)])
        case stop(JobOutcome)
    }

    private func deidentified(_ batch: [AgentStore.PendingInstance], of job: AgentStore.Job) -> Deidentified {
        guard let trustKey = deidentifier else {
            return .stop(.failed(.configuration, reason: "this agent cannot de-identify (no key): a de-identified push is not sent"))
        }
        // Under the options the job was queued with (the rule's, then).
        let choice = DeidentificationChoice(text: job.deidentifyOptions)
        // The destination's own mapping (see `Deidentifier.forDestination`).
        let deidentifier = trustKey.forDestination(job.destination).choosing(choice)
        let studyAtPeer = deidentifier.uidAtPeer(job.study)
        var copies: [(OutgoingInstance, OutgoingInstance)] = []
        var refused: [(String, String)] = []
        for instance in batch {
            let pieces: [TransferSyntaxConversion.Piece]
            // The file the pieces are made of, the same before and after: the request checks it
            // is still that file when it reads the pixel data's range.
            let stamp = MultipartFileBody.FileStamp(path: instance.path)
            do {
                pieces = try deidentifier.pieces(instance.path)
                guard stamp != nil, MultipartFileBody.FileStamp(path: instance.path) == stamp else {
                    return .stop(.failed(.local, reason: "\(instance.path) changed while it was being de-identified; it is read again"))
                }
            } catch where error.code == .io {
                return .stop(.failed(.local, reason: "cannot read an instance to de-identify: \(error)"))
            } catch {
                // Burned-in text, an encapsulated document, a big-endian or deflated file:
                // refused with the reason, never sent as it is.
                refused.append((instance.sop, "not sent de-identified: \(error.message)"))
                continue
            }
            let sopAtPeer = deidentifier.uidAtPeer(instance.sop)
            copies.append((OutgoingInstance(path: instance.path, uid: sopAtPeer, pieces: pieces, stamp: stamp), OutgoingInstance(path: instance.path, uid: instance.sop)))
        }
        let now = clock.now
        if !refused.isEmpty {
            do {
                try store.recordAnswers(job: job.id, acknowledged: [], refused: refused, attempt: (now, now, 0, "\(refused.count) not sent: not de-identifiable"))
            } catch {
                return .stop(.failed(.local, reason: "cannot record instances that cannot go de-identified: \(error)"))
            }
            for item in refused { log.error("instance not sent: it cannot go de-identified", ["job": job.id, "sop": item.0, "reason": item.1]) }
        }
        if !copies.isEmpty {
            // The mapping's key never goes into the log: the study, the peer, the agreement's
            // purpose, the profile and its options, and the UID the peer knows the study by do.
            // That UID is kept with the job, for the results that come back under it.
            do {
                if job.deidentifiedStudy != studyAtPeer, lock.withLock({ studyAtPeerRecorded[job.id] != studyAtPeer }) {
                    try store.setDeidentifiedStudy(job: job.id, studyAtPeer)
                    lock.withLock { studyAtPeerRecorded[job.id] = studyAtPeer }
                }
                try audit?.record(AuditEntry(
                    who: trust, action: "deidentify", study: job.study, why: job.purpose,
                    detail: "\(copies.count) instances de-identified for \(job.destination) by rule \"\(job.rule)\""
                        + (agreementName(job.destination, job.purpose).map { " under agreement \"\($0)\"" } ?? "") + ", \(choice) "
                        + "(\(ConfidentialityProfile.tableEdition)); the study is \(studyAtPeer) there"))
            } catch {
                return .stop(.failed(.local, reason: "the de-identification cannot be audited now: \(error)"))
            }
        }
        return .instances(copies)
    }
}
