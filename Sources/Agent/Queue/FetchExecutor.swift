import Audit
import DICOM
import DICOMweb
import Exchange
import Foundation
import Platform
import Routing
import Spool
import Transport

/// Retrieves a study by WADO-RS from the trust holding it: each instance checked whole and
/// stored in `inbound` as `<Study>/<SOP>.dcm`, recorded in the inventory with its origin,
/// audited; the announcer then tells the coordinator this site holds it too. Patient safety: an
/// instance that names another patient than the one the study was fetched for is refused before
/// it is placed, and the job is held for a person.
final class FetchExecutor: JobExecutor, @unchecked Sendable {
    let store: AgentStore
    let peers: Peers
    let inbound: String
    let trust: String
    let audit: AuditLog
    let clock: any Clock
    let log: Logger
    /// Records what a retrieval placed (in `inbound`, or held for its identity) with its origin
    /// and the fetch's purpose.
    let record: @Sendable (StowIngest, String, String) throws -> Void
    /// How each instance is placed, given the trust it came from (`StowIngest.placement`).
    let placement: @Sendable (String, DataSet) -> StowIngest.Placement
    /// A study arrived: the announcer should tell the coordinator.
    let announced: @Sendable () -> Void

    init(
        store: AgentStore, peers: Peers, inbound: String, trust: String, audit: AuditLog, clock: any Clock, log: Logger,
        record: @escaping @Sendable (StowIngest, String, String) throws -> Void,
        placement: @escaping @Sendable (String, DataSet) -> StowIngest.Placement = { _, _ in .asSent }, announced: @escaping @Sendable () -> Void
    ) {
        self.placement = placement
        self.store = store
        self.peers = peers
        self.inbound = inbound
        self.trust = trust
        self.audit = audit
        self.clock = clock
        self.log = log
        self.record = record
        self.announced = announced
    }

    func execute(_ job: AgentStore.Job, _ worker: Worker) -> JobOutcome {
        guard let taken = worker.peer else { return .failed(.local, reason: "no connection of \(job.destination) taken for the job") }
        let peer = peers.target(of: taken)
        // Patient safety: what arrives is checked against the patient the fetch is for; a fetch
        // that cannot say who that is fetches nothing unchecked.
        let expected: String
        do {
            guard let nhs = try store.search(ofJob: job.id)?.nhs else {
                return .heldForAPerson(reason: "the fetch does not name the patient it is for: nothing is fetched unchecked")
            }
            expected = nhs
        } catch {
            return .failed(.local, reason: "cannot read the fetch's patient from the spool: \(error)")
        }
        let outcome: WadoRetrieval.Outcome
        let client: HTTPClient
        do {
            // A kept client of the peer's (its TLS connection alive), given back after.
            client = try peers.client(taken, priority: job.priority, reserved: worker.reserved)
        } catch {
            return .failed(.local, reason: "cannot set up TLS for \(peer.name) (a configuration fault here): \(error)")
        }
        defer { peers.giveBack(client, to: taken, priority: job.priority, reserved: worker.reserved) }
        do {
            let retrieval = try WadoRetrieval(out: inbound, study: job.study, base: peer.url)
            let store = self.store
            retrieval.heldElsewhere = { sop in try? store.path(ofInstance: sop) }
            retrieval.headers = [(ConsortField.purpose, job.purpose)]
            let placement = self.placement, holder = job.destination
            retrieval.placement = { header in placement(holder, header) }
            retrieval.admitInstance = { header in
                // Every place a trust may keep it (the holder's own exception is the
                // coordinator's to know): any valid NHS number that is not the patient's.
                let facts = Ingest.facts(of: header, study: job.study)
                var named: [NHSNumber] = []
                if case .valid(let number) = Announcer.nhs(facts) { named.append(number) }
                if let first = facts.otherPatientIDValues.first, let number = NHSNumber(first) { named.append(number) }
                guard let other = named.first(where: { $0.digits != expected }) else { return nil }
                return "PATIENT MISMATCH: names NHS number \(other.digits), not \(expected), the patient it was fetched for"
            }
            outcome = try retrieval.run(with: client)
        } catch let failure as HTTPClientError where failure.callbackError == nil {
            // By the class of the failure, as a push's: refused, reset, timed out count against
            // the peer; our own side failing does not.
            return .failed(FailureClassifier.failure(failure), reason: "\(failure)")
        } catch {
            // A local fault (the inbound folder full or unwritable, a broken answer's part): not
            // evidence that the peer is down.
            return .failed(.local, reason: "\(error)")
        }
        if outcome.status < 500 { worker.peerAnswered(by: "a fetch from it") }
        do {
            // An instance the patient check did not admit: typed, never found in a log.
            if let ingest = outcome.ingest, let mismatch = ingest.results.lazy.compactMap({ result -> String? in
                if case .notAdmitted(_, let why) = result { return why } else { return nil }
            }).first {
                // Held and audited whatever happens to the rest: the instances of the right
                // patient placed before the mismatch are recorded if they can be (they are
                // whole, and this site may need them), but a failure there never unholds it.
                do {
                    try audit.record(AuditEntry(who: trust, action: "refused", nhs: expected, study: job.study, why: "\(job.purpose) (rule \(job.rule))", detail: mismatch))
                } catch {
                    log.error("AUDIT: cannot record a refused patient mismatch", ["job": job.id, "study": job.study, "error": error])
                }
                if !ingest.placed.isEmpty {
                    do { try record(ingest, job.destination, job.purpose) } catch {
                        log.error("cannot record the instances placed before a patient mismatch", ["job": job.id, "study": job.study, "error": error])
                    }
                }
                return .heldForAPerson(reason: "identity conflict: the study from \(job.destination) is not all the patient's: \(mismatch)")
            }
            switch outcome.status {
            case 200:
                guard let ingest = outcome.ingest, let response = outcome.response else { return .failed(.transient, reason: "an empty answer from \(job.destination)") }
                if !response.failed.isEmpty && ingest.placed.isEmpty {
                    return .givenUp(reason: "every instance from \(job.destination) was refused: \(ingest.log.first ?? "")")
                }
                try record(ingest, job.destination, job.purpose)
                try store.finishFetch(job: job.id, instances: ingest.placed.map { ($0.sopInstanceUID, $0.path, $0.size) }, now: clock.now)
                let facts = ingest.placed.first.map { Ingest.facts(of: $0.header, study: job.study) }
                var nhs: String?
                if let facts, case .valid(let number) = Announcer.nhs(facts) { nhs = number.digits }
                try audit.record(AuditEntry(
                    who: trust, action: "fetch", nhs: nhs, patient: facts?.patientID, study: job.study, why: "\(job.purpose) (rule \(job.rule))",
                    detail: "\(ingest.placed.count) instances from \(job.destination); \(response.failed.count) refused"))
                log.info("fetched", ["job": job.id, "study": job.study, "from": job.destination, "instances": ingest.placed.count, "refused": response.failed.count])
                announced()
                return .finished
            case 404:
                return .givenUp(reason: "\(job.destination) does not hold the study (any more)")
            default:
                let reason = "\(job.destination) answered \(outcome.status): \(outcome.errorText)"
                switch FailureClassifier.failure(wadoStatus: outcome.status) {
                case .configuration: return .failed(.configuration, reason: reason + " (an agreement, membership or certificate fault)")
                case .transient: return .failed(.transient, reason: reason)
                case .refused, .local: return .givenUp(reason: reason)
                }
            }
        } catch {
            return .failed(.local, reason: "\(error)")
        }
    }
}
