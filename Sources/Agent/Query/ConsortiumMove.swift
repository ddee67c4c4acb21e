import Audit
import DICOM
import DICOMweb
import DIMSE
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
/// it, audited, purpose direct-care, each instance checked against the patient, the study placed
/// in this trust's identity; it survives a restart and is retried with backoff) — while the
/// requester hears every few seconds that the move is pending; it is sent once the fetch is done,
/// never while its verdict on the patient is still open. A holder that does not answer within
/// `patience` seconds: the study's instances are reported failed sub-operations (the fetch goes
/// on in the spool, so a later move finds the study here). Sub-operations go on one association
/// to the destination (DICOM TLS when its dimse-peer line says `tls`), a pending response after
/// each instance. Audited before anything is sent (no audit, no move) and again with the outcome.
final class ConsortiumMove: @unchecked Sendable {
    /// Where a dimse-peer's own SCP is.
    struct Destination: Sendable {
        var name: String
        var host: String
        var port: UInt16
        var tls: Bool
    }

    let store: AgentStore
    let coordinator: CoordinatorClient?
    let audit: AuditLog
    let trust: String
    /// This SCP's AE title: the calling AE of the sub-operations.
    let aeTitle: String
    /// The dimse-peers by AE title (SIGHUP replaces them).
    let destinations: LockedValue<[String: Destination]>
    /// The trust's client context, for a destination that speaks DICOM TLS.
    let tls: @Sendable () throws -> TLSContext
    let log: Logger
    /// The spool should look at its queue now (a fetch was queued).
    let nudge: @Sendable () -> Void
    /// How long a move waits for a fetch before it reports the study's instances failed.
    let patience: Double
    let timeout: Double

    init(
        store: AgentStore, coordinator: CoordinatorClient?, audit: AuditLog, trust: String, aeTitle: String,
        destinations: LockedValue<[String: Destination]>, tls: @escaping @Sendable () throws -> TLSContext, log: Logger,
        nudge: @escaping @Sendable () -> Void, patience: Double, timeout: Double
    ) {
        self.store = store
        self.coordinator = coordinator
        self.audit = audit
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

    /// A move's counts, kept as whole numbers (a move may be more than 65,535 instances) and
    /// told to the requester clamped to the 16 bits the protocol has.
    final class Tally {
        var remaining = 0, completed = 0, failed = 0, warning = 0
        var failedUIDs: [String] = []
        var comments: [String] = []
        /// Studies that could not be sent at all, their instances unknown.
        var missing = 0

        var subOperations: SubOperations {
            SubOperations(
                remaining: UInt16(clamping: max(0, remaining)), completed: UInt16(clamping: completed), failed: UInt16(clamping: failed), warning: UInt16(clamping: warning))
        }
    }

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
        let context: TLSContext?
        do { context = destination.tls ? try tls() : nil } catch {
            log.error("C-MOVE: cannot set up DICOM TLS for the destination (a configuration fault here): nothing sent", ["destination": destinationAE, "error": error])
            return refused(QueryRetrieve.subOperationsImpossible, "cannot set up TLS to \(destinationAE)")
        }
        let tally = Tally()
        func audited(_ study: String, nhs: String?, _ detail: String) -> Bool {
            do {
                try audit.record(AuditEntry(who: who, action: "move", nhs: nhs, study: study, why: ConsortiumQuery.purpose, detail: "C-MOVE from \(peer.aeTitle)@\(peer.address) to \(destinationAE): " + detail))
                return true
            } catch {
                log.error("AUDIT: cannot record a move; nothing of it is sent", ["study": study, "error": error])
                tally.comments.append("the move cannot be audited here")
                return false
            }
        }
        var alive = true
        /// Sub-operations: these files to the destination on one association, a pending response
        /// after each instance.
        func send(_ paths: [String]) {
            var items: [DIMSEAssociation.StoreItem] = []
            for path in paths {
                do { items.append(try DIMSESender.item(path: path)) } catch {
                    tally.remaining -= 1
                    tally.failed += 1
                    tally.comments.append("\(error)")
                }
            }
            guard !items.isEmpty else { return }
            do {
                let (results, broken) = try withoutActuallyEscaping(progress) { progress in
                    try DIMSEAssociation.store(
                        items, host: destination.host, port: destination.port, called: destinationAE, calling: aeTitle, timeout: timeout, tls: context,
                        moveOriginator: (peer.aeTitle, request.messageID)
                    ) { result in
                        tally.remaining -= 1
                        switch result.status.map(Command.outcome(ofStoreStatus:)) {
                        case .success?: tally.completed += 1
                        case .warning?: tally.warning += 1
                        default:
                            tally.failed += 1
                            tally.failedUIDs.append(result.item.sopInstance)
                        }
                        if alive { alive = progress(tally.subOperations) }
                    }
                }
                if let broken {
                    let unsent = items.dropFirst(results.count)
                    tally.failedUIDs += unsent.map(\.sopInstance)
                    tally.failed += unsent.count
                    tally.remaining -= unsent.count
                    tally.comments.append("the association with \(destinationAE) failed: \(broken)")
                }
            } catch {
                tally.failedUIDs += items.map(\.sopInstance)
                tally.failed += items.count
                tally.remaining -= items.count
                tally.comments.append("cannot associate with \(destinationAE) at \(destination.host):\(destination.port): \(error)")
            }
        }

        for study in studies {
            switch arrange(study, tally: tally, progress: progress) {
            case .here(var paths, let nhs, let shortfall):
                if !series.isEmpty { paths = paths.filter { path in series.contains((try? DICOMFile.read(path: path).dataSet.string(.seriesInstanceUID)) ?? nil ?? "") } }
                // Fewer here than the study has (some refused or held when fetched): not all of it.
                if shortfall > 0 && series.isEmpty {
                    tally.failed += shortfall
                    tally.comments.append("\(shortfall) of study \(study)'s instances are not here")
                }
                guard !paths.isEmpty else {
                    if series.isEmpty && shortfall == 0 { tally.missing += 1 }
                    continue
                }
                guard audited(study, nhs: nhs, "\(paths.count) instances to send") else {
                    tally.missing += 1
                    continue
                }
                tally.remaining += paths.count
                guard progress(tally.subOperations) else {
                    alive = false
                    break
                }
                send(paths)
            case .notHere(let expected, let nhs, let why):
                if expected > 0 { tally.failed += expected } else { tally.missing += 1 }
                tally.comments.append(why)
                _ = audited(study, nhs: nhs, "not sent: \(why)")
            case .gone:
                alive = false
            }
            if !alive { break }
        }
        tally.remaining = 0
        let s = tally.subOperations
        // PS3.4 C.4.2.1.5: nothing sent and something not: unable to perform the sub-operations;
        // some sent and some failed or warned: B000; all sent: success.
        let status: UInt16
        if !alive {
            status = QueryRetrieve.cancelled
        } else if tally.completed + tally.warning == 0 && (tally.failed > 0 || tally.missing > 0) {
            status = QueryRetrieve.subOperationsImpossible
        } else if tally.failed > 0 || tally.warning > 0 || tally.missing > 0 {
            status = QueryRetrieve.subOperationsWithFailures
        } else {
            status = 0
        }
        var failedIdentifier: [UInt8]?
        if status != 0 {
            var list = DataSet()
            let tag = DataDictionary.tag(forKeyword: "FailedSOPInstanceUIDList")!
            list.set(tally.failedUIDs.isEmpty ? DataElement(tag: tag, vr: .UI, length: 0, value: .bytes([])) : DICOMWriter.textElement(tag, .UI, tally.failedUIDs.joined(separator: "\\")))
            failedIdentifier = try? DICOMWriter.encodeDataSet(list, explicitVR: request.transferSyntax == TransferSyntax.explicitVRLittleEndian)
        }
        let comment = tally.comments.isEmpty ? nil : tally.comments.joined(separator: "; ")
        let outcome = "\(s.completed) sent, \(s.failed) failed, \(s.warning) with a warning" + (alive ? "" : ", the requester went away") + (comment.map { "; " + $0 } ?? "")
        for study in studies { _ = audited(study, nhs: nil, "done: " + outcome) }
        return DIMSEMoveOutcome(status: status, subOperations: s, comment: comment.map { String($0.prefix(64)) }, failedIdentifier: failedIdentifier)
    }

    enum Arrangement {
        /// The files here, and how many instances the study has that are not (0: all here, or
        /// not known).
        case here([String], nhs: String?, shortfall: Int)
        case notHere(expected: Int, nhs: String?, why: String)
        case gone
    }

    /// The study's files here, fetching it first if another trust holds it (and waiting for the
    /// fetch to be done: its check of every instance against the patient settled).
    func arrange(_ study: String, tally: Tally, progress: (SubOperations) -> Bool) -> Arrangement {
        if let held = try? store.heldStudy(study), let paths = try? store.paths(ofStudy: study), !paths.isEmpty {
            var nhs: String?
            if case .valid(let number) = Announcer.nhs(held.announcement.facts) { nhs = number.digits }
            return .here(paths, nhs: nhs, shortfall: 0)
        }
        guard let coordinator else { return .notHere(expected: 0, nhs: nil, why: "study \(study) is not here and there is no coordinator to find it") }
        let facts: [String: Any]
        do { facts = try coordinator.call("GET", "/v1/studies/\(study)", purpose: ConsortiumQuery.purpose) } catch {
            return .notHere(expected: 0, nhs: nil, why: "study \(study): \(error)")
        }
        let expected = (facts["instances"] as? NSNumber)?.intValue ?? 0
        let nhs = facts["nhs"] as? String
        guard facts["conflict"] as? Bool != true else { return .notHere(expected: expected, nhs: nhs, why: "study \(study) is in an identity conflict held for a person") }
        guard let nhs else { return .notHere(expected: expected, nhs: nil, why: "study \(study) has no valid NHS number: not fetched") }
        let holders = (facts["locations"] as? [[String: Any]] ?? []).filter { $0["trust"] as? String != trust }
        // A complete copy first, then the one held longest.
        guard let holder = (holders.first { $0["complete"] as? Bool == true } ?? holders.first)?["trust"] as? String else {
            return .notHere(expected: expected, nhs: nhs, why: "no trust that may give this one imaging holds study \(study)")
        }
        let job: Int64
        do {
            let fetch = AgentStore.NewJob(kind: .fetch, destination: holder, rule: Self.rule, purpose: ConsortiumQuery.purpose, priority: .urgent, search: .patient(nhs))
            guard let queued = try store.queueFetchForMove(fetch, study: study, now: Date().timeIntervalSince1970) else {
                return .here((try? store.paths(ofStudy: study)) ?? [], nhs: nhs, shortfall: 0)
            }
            job = queued
        } catch {
            return .notHere(expected: expected, nhs: nhs, why: "cannot queue the fetch of study \(study): \(error)")
        }
        log.info("C-MOVE: fetching the study first", ["study": study, "from": holder, "job": job])
        nudge()
        // The requester hears the study's instances as remaining while it comes.
        tally.remaining += expected
        defer { tally.remaining -= expected }
        let until = MonotonicClock.now + patience
        var told = MonotonicClock.now
        var last: (state: String, lastError: String?)?
        while MonotonicClock.now < until {
            last = try? store.jobState(job)
            if last?.state == "done" {
                if let paths = try? store.paths(ofStudy: study), !paths.isEmpty { return .here(paths, nhs: nhs, shortfall: max(0, expected - paths.count)) }
                // Fetched, but not placed: held here for its identity, or refused whole.
                let held = ((try? store.identityHolds()) ?? []).first { $0.study == study }
                return .notHere(expected: expected, nhs: nhs, why: held.map { "study \(study) is waiting for identity here: \($0.reason) (consort identity)" } ?? "study \(study) was fetched but nothing of it was kept")
            }
            if last?.state == "failed" || last?.state == "dropped" || last?.state == "held" { break }
            if MonotonicClock.now - told > 2 {
                guard progress(tally.subOperations) else { return .gone }
                told = MonotonicClock.now
            }
            usleep(50_000)
        }
        let state = last.map { "the fetch from \(holder) is \($0.state)" + ($0.lastError.map { ": \($0)" } ?? "") } ?? "no word of the fetch"
        return .notHere(expected: expected, nhs: nhs, why: "study \(study) not here in \(Int(patience)) s (\(state); it goes on in the spool)")
    }
}
