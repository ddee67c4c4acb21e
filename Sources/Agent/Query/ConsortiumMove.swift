import Audit
import DICOM
import DIMSE
import DICOMweb
import Exchange
import Foundation
import Platform
import Spool
import Transport

/// C-MOVE at the agent: the studies asked for, sent by C-STORE to the move destination (a
/// `dimse-peer`), in this trust's identity (issue 27).
///
/// A study held here is sent at once. One held only by another trust is fetched first by the
/// prefetch path — a `fetch` job in the spool (WADO-RS over mutual TLS from a trust that holds
/// it, audited, purpose direct-care, checked against the patient, placed in this trust's
/// identity; it survives a restart and is retried with backoff) — while the requester is told
/// the move is pending; once the study is here it is sent. A holder that does not answer in
/// `patience` seconds: the study's instances are reported failed sub-operations (the fetch goes
/// on in the spool, so a later move finds the study here). Sub-operations are sent on one
/// association to the destination, a pending response after each instance.
final class ConsortiumMove: @unchecked Sendable {
    let store: AgentStore
    let coordinator: CoordinatorClient?
    let audit: AuditLog
    /// Where a fetch places what it brings (`inbound/<Study>/<SOP>.dcm`): watched while a move
    /// waits, so that each instance goes on as it lands.
    let inbound: String
    let trust: String
    /// This SCP's AE title: the calling AE of the sub-operations.
    let aeTitle: String
    /// Where each dimse-peer's own SCP is, by AE title (SIGHUP replaces them).
    let destinations: LockedValue<[String: (name: String, host: String, port: UInt16)]>
    let tls: (@Sendable () -> TLSContext?)
    let log: Logger
    /// The spool should look at its queue now (a fetch was queued).
    let nudge: @Sendable () -> Void
    /// How long a move waits for a fetch before it reports the study's instances failed.
    let patience: Double
    let timeout: Double

    init(
        store: AgentStore, coordinator: CoordinatorClient?, audit: AuditLog, inbound: String, trust: String, aeTitle: String,
        destinations: LockedValue<[String: (name: String, host: String, port: UInt16)]>, tls: @escaping @Sendable () -> TLSContext?, log: Logger,
        nudge: @escaping @Sendable () -> Void, patience: Double, timeout: Double
    ) {
        self.store = store
        self.coordinator = coordinator
        self.audit = audit
        self.inbound = inbound
        self.trust = trust
        self.aeTitle = aeTitle
        self.destinations = destinations
        self.tls = tls
        self.log = log
        self.nudge = nudge
        self.patience = patience
        self.timeout = timeout
    }

    static let rule = "dimse-move"

    func move(_ request: QueryRequest, identifier: [UInt8], from peer: DIMSEServer.Peer, progress: (SubOperations) -> Bool) -> DIMSEMoveOutcome {
        func refused(_ status: UInt16, _ why: String) -> DIMSEMoveOutcome {
            log.warning("C-MOVE refused", ["calling": peer.aeTitle, "destination": request.moveDestination ?? "", "why": why])
            return DIMSEMoveOutcome(status: status, subOperations: SubOperations(), comment: why)
        }
        let keys: DataSet
        do { keys = try ConsortiumQuery.decode(identifier, request) } catch {
            return refused(QueryRetrieve.identifierDoesNotMatch, "the identifier cannot be read: \(error)")
        }
        let level = keys.string(DataDictionary.tag(forKeyword: "QueryRetrieveLevel")!)?.uppercased() ?? ""
        guard level == "STUDY" || level == "SERIES" else { return refused(QueryRetrieve.identifierDoesNotMatch, "level \(level): this node moves studies, and series of a study") }
        let studies = (keys.string(.studyInstanceUID) ?? "").split(separator: "\\").map { $0.trimmingCharacters(in: .whitespaces) }.filter { !$0.isEmpty }
        guard !studies.isEmpty, studies.allSatisfy({ UID.isValid($0) }) else { return refused(QueryRetrieve.identifierDoesNotMatch, "a C-MOVE names the studies it moves by Study Instance UID") }
        let series = Set((keys.string(.seriesInstanceUID) ?? "").split(separator: "\\").map { $0.trimmingCharacters(in: .whitespaces) }.filter { !$0.isEmpty })
        guard level == "STUDY" || (studies.count == 1 && !series.isEmpty) else { return refused(QueryRetrieve.identifierDoesNotMatch, "a SERIES move names one study and its series") }
        guard let destinationAE = request.moveDestination, let destination = destinations.value[destinationAE] else {
            return refused(QueryRetrieve.moveDestinationUnknown, "move destination \(request.moveDestination ?? "") is no dimse-peer of this agent")
        }
        let who = destinations.value[peer.aeTitle]?.name ?? peer.aeTitle

        let tally = Tally()
        var failedUIDs: [String] = []
        var comments: [String] = []
        var alive = true
        var sentPaths = Set<String>()
        /// Sub-operations: these files to the destination on one association, a pending response
        /// after each instance. False when the requester has gone.
        func send(_ paths: [String]) -> Bool {
            let fresh = paths.filter { !sentPaths.contains($0) }
            guard !fresh.isEmpty else { return alive }
            sentPaths.formUnion(fresh)
            var items: [DIMSEAssociation.StoreItem] = []
            for path in fresh {
                do { items.append(try DIMSESender.item(path: path)) } catch {
                    tally.counts.remaining &-= 1
                    tally.counts.failed += 1
                    comments.append("\(error)")
                }
            }
            guard !items.isEmpty else { return alive }
            do {
                let (results, broken) = try withoutActuallyEscaping(progress) { progress in
                    try DIMSEAssociation.store(
                        items, host: destination.host, port: destination.port, called: destinationAE, calling: aeTitle, timeout: timeout, tls: tls()
                    ) { result in
                        tally.counts.remaining &-= 1
                        switch result.status.map(Command.outcome(ofStoreStatus:)) {
                        case .success?: tally.counts.completed += 1
                        case .warning?: tally.counts.warning += 1
                        default:
                            tally.counts.failed += 1
                            failedUIDs.append(result.item.sopInstance)
                        }
                        if alive { alive = progress(tally.counts) }
                    }
                }
                if let broken {
                    let unsent = items.dropFirst(results.count)
                    failedUIDs += unsent.map(\.sopInstance)
                    tally.counts.failed += UInt16(clamping: unsent.count)
                    tally.counts.remaining &-= UInt16(clamping: unsent.count)
                    comments.append("the association with \(destinationAE) failed: \(broken)")
                }
            } catch {
                failedUIDs += items.map(\.sopInstance)
                tally.counts.failed += UInt16(clamping: items.count)
                tally.counts.remaining &-= UInt16(clamping: items.count)
                comments.append("cannot associate with \(destinationAE) at \(destination.host):\(destination.port): \(error)")
            }
            return alive
        }
        // Each study: sent from here, or sent as its fetch places it.
        for study in studies {
            switch arrange(study, streaming: series.isEmpty, tally: tally, progress: progress, send: send) {
            case .here(let paths):
                var chosen = paths.filter { !sentPaths.contains($0) }
                if !series.isEmpty { chosen = chosen.filter { path in (try? DICOMFile.read(path: path).dataSet.string(.seriesInstanceUID)).map { series.contains($0 ?? "") } ?? false } }
                guard !chosen.isEmpty else { continue }
                tally.counts.remaining &+= UInt16(clamping: chosen.count)
                guard progress(tally.counts), send(chosen) else { return DIMSEMoveOutcome(status: QueryRetrieve.cancelled, subOperations: tally.counts, comment: "the requester went away") }
            case .notHere(let expected, let why):
                tally.counts.failed &+= UInt16(clamping: max(expected, 0))
                comments.append(why)
            case .gone:
                return DIMSEMoveOutcome(status: QueryRetrieve.cancelled, subOperations: tally.counts, comment: "the requester went away")
            }
        }
        tally.counts.remaining = 0
        let status: UInt16 = tally.counts.failed == 0 ? 0 : (tally.counts.completed + tally.counts.warning == 0 ? QueryRetrieve.subOperationsImpossible : QueryRetrieve.subOperationsWithFailures)
        var failedIdentifier: [UInt8]?
        if !failedUIDs.isEmpty {
            var list = DataSet()
            list.set(DICOMWriter.textElement(DataDictionary.tag(forKeyword: "FailedSOPInstanceUIDList")!, .UI, failedUIDs.joined(separator: "\\")))
            failedIdentifier = try? DICOMWriter.encodeDataSet(list, explicitVR: request.transferSyntax == TransferSyntax.explicitVRLittleEndian)
        }
        let comment = comments.isEmpty ? nil : comments.joined(separator: "; ")
        for study in studies {
            try? audit.record(AuditEntry(
                who: who, action: "move", study: study, why: ConsortiumQuery.purpose,
                detail: "C-MOVE from \(peer.aeTitle)@\(peer.address) to \(destinationAE): \(tally.counts.completed) sent, \(tally.counts.failed) failed, \(tally.counts.warning) with a warning" + (comment.map { "; " + $0 } ?? "")))
        }
        return DIMSEMoveOutcome(status: status, subOperations: tally.counts, comment: comment.map { String($0.prefix(64)) }, failedIdentifier: failedIdentifier)
    }

    /// A move's counts, shared by the sends and the wait for a fetch (a class: both change it
    /// while one of them is running).
    final class Tally {
        var counts = SubOperations()
    }

    enum Arrangement {
        case here([String])
        case notHere(expected: Int, why: String)
        case gone
    }

    /// The study's files here, fetching it first if another trust holds it.
    /// The study's files here, fetching it first if another trust holds it; while the fetch
    /// runs, each instance it places is handed to `send` as it lands (whole studies of a series
    /// move are sent at the end instead, filtered).
    func arrange(_ study: String, streaming: Bool, tally: Tally, progress: (SubOperations) -> Bool, send: ([String]) -> Bool) -> Arrangement {
        if let paths = try? store.paths(ofStudy: study), !paths.isEmpty, (try? store.heldStudy(study)) != nil { return .here(paths) }
        guard let coordinator else { return .notHere(expected: 0, why: "study \(study) is not here and there is no coordinator to find it") }
        let facts: [String: Any]
        do { facts = try coordinator.call("GET", "/v1/studies/\(study)", purpose: ConsortiumQuery.purpose) } catch {
            return .notHere(expected: 0, why: "study \(study): \(error)")
        }
        let expected = (facts["instances"] as? NSNumber)?.intValue ?? 0
        guard facts["conflict"] as? Bool != true else { return .notHere(expected: expected, why: "study \(study) is in an identity conflict held for a person") }
        guard let nhs = facts["nhs"] as? String else { return .notHere(expected: expected, why: "study \(study) has no valid NHS number: not fetched") }
        let holders = (facts["locations"] as? [[String: Any]] ?? []).filter { $0["trust"] as? String != trust }
        // A complete copy first, then the one held longest.
        guard let holder = (holders.first { $0["complete"] as? Bool == true } ?? holders.first)?["trust"] as? String else {
            return .notHere(expected: expected, why: "no trust that may give this one imaging holds study \(study)")
        }
        let job: Int64
        do {
            let fetch = AgentStore.NewJob(kind: .fetch, destination: holder, rule: Self.rule, purpose: ConsortiumQuery.purpose, priority: .urgent, search: .patient(nhs))
            guard let queued = try store.queueFetchForMove(fetch, study: study, now: Date().timeIntervalSince1970) else {
                return .here((try? store.paths(ofStudy: study)) ?? [])
            }
            job = queued
        } catch {
            return .notHere(expected: expected, why: "cannot queue the fetch of study \(study): \(error)")
        }
        log.info("C-MOVE: fetching the study first", ["study": study, "from": holder, "job": job])
        nudge()
        // The study's instances counted as remaining until each is sent; what lands in inbound
        // goes on at once (a file there is whole: the fetch links it in when it is durable).
        var streamed = 0
        tally.counts.remaining &+= UInt16(clamping: expected)
        defer { tally.counts.remaining &-= UInt16(clamping: max(0, expected - streamed)) }
        let folder = inbound + "/" + study
        let until = MonotonicClock.now + patience
        var told = MonotonicClock.now
        var last: (state: String, lastError: String?)?
        while MonotonicClock.now < until {
            last = try? store.jobState(job)
            if streaming {
                let landed = ((try? FileManager.default.contentsOfDirectory(atPath: folder)) ?? []).filter { $0.hasSuffix(".dcm") }.sorted().map { folder + "/" + $0 }
                if !landed.isEmpty {
                    let before = tally.counts.completed + tally.counts.failed + tally.counts.warning
                    guard send(landed) else { return .gone }
                    streamed += Int(tally.counts.completed + tally.counts.failed + tally.counts.warning - before)
                    told = MonotonicClock.now
                }
            }
            if last?.state == "done", let paths = try? store.paths(ofStudy: study), !paths.isEmpty { return .here(paths) }
            if last?.state == "failed" || last?.state == "dropped" || last?.state == "held" { break }
            // The requester hears from us every few seconds while the study comes.
            if MonotonicClock.now - told > 2 {
                guard progress(tally.counts) else { return .gone }
                told = MonotonicClock.now
            }
            usleep(50_000)
        }
        let state = last.map { "the fetch from \(holder) is \($0.state)" + ($0.lastError.map { ": \($0)" } ?? "") } ?? "no word of the fetch"
        return .notHere(expected: max(0, expected - streamed), why: "study \(study) not here in \(Int(patience)) s (\(state); it goes on in the spool)")
    }
}
