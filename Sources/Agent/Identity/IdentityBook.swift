import Audit
import DICOM
import DICOMweb
import Exchange
import Foundation
import Platform
import Routing
import Transport

/// This trust's own numbers for patients, asked of the coordinator by NHS number
/// (`GET /v1/patients/{nhs}/identity`) and kept a short while, and the decision each instance
/// from another trust gets (`IdentityDecision`), for the receiver and the fetcher.
///
/// Why a cache: a study is hundreds of instances, each asking as it is placed; one question a
/// patient a minute is plenty. Why short: a trust that registers the patient (and announces a
/// study) should see its next delivery reconciled. An answer with no number is kept for less,
/// and a failure only briefly, so that a coordinator restarting does not make a request wait on
/// it for every instance. Every question the coordinator is asked is audited here (the
/// coordinator audits its side too).
public final class IdentityBook: @unchecked Sendable {
    public let settings: IdentityDecision.Settings
    private let client: CoordinatorClient
    /// nil: `consort rules explain`, which may not write the agent's log (the coordinator audits
    /// the question on its side, with its purpose).
    private let audit: AuditLog?
    private let clock: any Clock
    private let log: Logger
    private let lock = NSLock()
    private var cache: [String: (answer: IdentityDecision.RegistryAnswer, until: Double)] = [:]
    /// Studies whose conflict has been logged at error level (once each, not per instance).
    private var shouted: Set<String> = []

    /// Why the coordinator is asked (its audit records it).
    public var purpose = "identity reconciliation"

    /// How long an answer is used: with a number, with none, and a failure.
    public static let knownLife = 60.0
    public static let unknownLife = 10.0
    public static let failureLife = 5.0
    /// At most this many patients are kept; beyond, the cache is emptied (a burst of distinct
    /// patients costs questions, never memory).
    public static let capacity = 10_000

    public init(settings: IdentityDecision.Settings, coordinators: [String], tls: TLSConfiguration?, audit: AuditLog?, clock: any Clock, log: Logger) throws {
        self.settings = settings
        // Its own client, with a short limit: it is asked while a peer's request waits.
        client = try CoordinatorClient(bases: coordinators, tls: coordinators.first?.hasPrefix("https://") == true ? tls : nil, totalTimeout: 5)
        self.audit = audit
        self.clock = clock
        self.log = log
    }

    /// New TLS material (SIGHUP).
    public func replaceTLS(_ material: TLSConfiguration) throws {
        if client.base.hasPrefix("https://") { try client.replaceTLS(material) }
    }

    /// The registry's answer for `nhs`: from the cache, unless `fresh`.
    public func answer(for nhs: NHSNumber, fresh: Bool = false) -> IdentityDecision.RegistryAnswer {
        let now = clock.now
        if !fresh, let kept = lock.withLock({ cache[nhs.digits] }), kept.until > now { return kept.answer }
        let answer = ask(nhs)
        let life: Double
        switch answer {
        case .identifiers(let list): life = list.isEmpty ? Self.unknownLife : Self.knownLife
        case .conflict: life = Self.unknownLife
        case .unavailable: life = Self.failureLife
        }
        lock.withLock {
            if cache.count >= Self.capacity { cache.removeAll() }
            cache[nhs.digits] = (answer, now + life)
        }
        return answer
    }

    /// Forgets what was asked about `nhs` (this trust has just announced the patient).
    public func forget(_ nhs: String) { _ = lock.withLock { cache.removeValue(forKey: nhs) } }

    private func ask(_ nhs: NHSNumber) -> IdentityDecision.RegistryAnswer {
        let answer: IdentityDecision.RegistryAnswer
        do {
            let object = try client.call("GET", "/v1/patients/\(nhs.digits)/identity", purpose: purpose)
            let items = object["identifiers"] as? [[String: Any]] ?? []
            answer = .identifiers(items.compactMap { item in
                (item["id"] as? String).map { NHSIdentity.Identifier(id: $0, issuer: item["issuer"] as? String) }
            })
        } catch let failure as CoordinatorClient.Failure where failure.status == 409 {
            let kinds = (failure.answer["conflicts"] as? [[String: Any]] ?? []).compactMap { $0["kind"] as? String }
            answer = .conflict(kinds.isEmpty ? failure.message : "conflict of kind \(kinds.joined(separator: ", ")) held at the coordinator")
        } catch {
            answer = .unavailable("\(error)")
        }
        let detail: String
        switch answer {
        case .identifiers(let list): detail = "identity: \(list.count) of this trust's numbers"
        case .conflict(let why): detail = "identity: conflict (\(why))"
        case .unavailable(let why): detail = "identity: no answer (\(why))"
        }
        do {
            try audit?.record(AuditEntry(who: settings.trust, action: "identity-lookup", nhs: nhs.digits, why: "identity reconciliation", detail: detail), durable: false)
        } catch {
            log.error("AUDIT: cannot record an identity lookup", ["nhs": nhs.digits, "error": error])
        }
        return answer
    }

    /// The study's identifiers as its header gives them.
    public static func study(of header: DataSet) -> IdentityDecision.Study {
        let facts = Ingest.facts(of: header, study: "")
        return IdentityDecision.Study(
            patientID: facts.patientID, issuer: facts.patientIssuer, nhs: Announcer.nhs(facts),
            otherIDs: facts.otherIDs.map { NHSIdentity.Identifier(id: $0.id, issuer: $0.issuer) })
    }

    /// The decision for a study from `sender` (`fresh`: the registry asked again, not the
    /// cache; `force`: a person released it).
    public func decide(_ study: IdentityDecision.Study, sender: String, fresh: Bool = false, force: Bool = false) -> (IdentityDecision.Outcome, nhs: String?) {
        switch IdentityDecision.nhsNumber(of: study) {
        case .failure(let failure):
            return (.hold(failure.hold), nil)
        case .success(let nhs):
            let outcome = IdentityDecision.decide(study, nhs: nhs, sender: sender, answer: answer(for: nhs, fresh: fresh), settings: settings, force: force)
            return (outcome, nhs.digits)
        }
    }

    /// The receiver's and the fetcher's hook (`StowIngest.placement`): each instance of a study
    /// from `sender`, as it is placed.
    public func placement(sender: String, header: DataSet) -> StowIngest.Placement {
        let (outcome, nhs) = decide(Self.study(of: header), sender: sender)
        switch outcome {
        case .asSent:
            return .asSent
        case .rewrite(let rewrite):
            return .rewrite(rewrite)
        case .hold(let hold):
            let study = header.string(.studyInstanceUID) ?? "?"
            if lock.withLock({ shouted.insert(study).inserted }) {
                if shouted.count > Self.capacity { lock.withLock { shouted.removeAll() } }
                // A conflict or a bad study needs a person: an error; a patient not yet known
                // here is routine.
                if hold.waitsForRegistry {
                    log.warning("study held: waiting for identity", ["study": study, "from": sender, "nhs": nhs ?? "none", "reason": hold.reason])
                } else {
                    log.error("STUDY HELD FOR A PERSON: its identity cannot be settled", ["study": study, "from": sender, "nhs": nhs ?? "none", "reason": hold.reason])
                }
            }
            return .hold(reason: "\(hold.kind.rawValue): \(hold.reason)")
        }
    }
}
