import Audit
import DICOM
import DICOMweb
import Deidentification
import Foundation

/// Results back (issue 29), the daemon's side. A peer (an AI service) whose agreement says
/// `results back` may store into this trust (`PartyAccess`); each object it sends is checked
/// against what this trust sent it (`ResultCheck`): a result is placed as sent — it is in this
/// trust's own study, under its own patient — recorded in the inventory like anything received
/// (so `deliver to local PACS` rules take it to the PACS), and counted; anything else is refused
/// with 0xA900 and the reason, audited, and counted.
extension AgentDaemon {
    /// The re-identifications one request has made, by the study and how the result refers to
    /// it: a request's many instances of one result study read the original's headers once.
    final class Reidentifications: @unchecked Sendable {
        private let lock = NSLock()
        private var made: [String: StowIngest.DataSetTransform] = [:]

        func transform(for key: String, _ make: () throws -> StowIngest.DataSetTransform) rethrows -> StowIngest.DataSetTransform {
            if let known = lock.withLock({ made[key] }) { return known }
            let transform = try make()
            lock.withLock { made[key] = transform }
            return transform
        }
    }

    /// How an object from the peer `sender` is placed: as sent when it is a result for a study
    /// this trust sent that peer, re-identified when that study went de-identified, refused
    /// otherwise. `made`: the request's re-identifications so far.
    func resultPlacement(sender: String, header: DataSet, made: Reidentifications = Reidentifications()) -> StowIngest.Placement {
        let verdict: ResultCheck.Verdict
        do {
            verdict = try checkResult(header, from: sender)
        } catch {
            // The spool could not be read: not a refusal of the object, a reason to send again.
            log.named("receiver").error("cannot check a result against what was sent; the peer is asked to send it again", ["peer": sender, "error": "\(error)"])
            return .refuse(reason: 0xA700, why: "the result cannot be checked now; send it again")
        }
        let why: String
        switch verdict {
        case .accepted: return .asSent
        case .reidentify(let sent, let reference):
            do {
                return .transform(try made.transform(for: "\(sent.study)\u{1}\(reference.rawValue)\u{1}\(sent.deidentifyOptions)") {
                    try reidentification(of: sent, reference: reference, from: sender)
                })
            } catch {
                log.named("receiver").error("cannot prepare a result's re-identification; the peer is asked to send it again", ["peer": sender, "study": sent.study, "error": "\(error)"])
                return .refuse(reason: 0xA700, why: "the result cannot be re-identified now; send it again")
            }
        case .refused(let reason): why = reason
        }
        let sop = header.string(.sopInstanceUID) ?? "?"
        let study = header.string(.studyInstanceUID) ?? "?"
        log.named("receiver").warning("result refused", ["peer": sender, "instance": sop, "study": study, "reason": why])
        try? store.recordRefusedResults(1, from: sender)
        try? audit.record(AuditEntry(
            who: sender, action: "refused", patient: header.string(.patientID), study: study, why: "results back",
            detail: "result \(sop) refused: \(why)"))
        return .refuse(reason: StowResponse.notPermitted, why: "not a result for a study \(configuration.trust) sent to \(sender): \(why)")
    }

    /// `reidentified`: the header is the one placed here after re-identification.
    func checkResult(_ header: DataSet, from sender: String, reidentified: Bool = false) throws -> ResultCheck.Verdict {
        let trust = configuration.trust, ruleSet = rules.current
        return try ResultCheck.decide(
            header, from: sender, trust: trust, sent: { try store.sentStudies($0, to: sender) },
            resultsBack: { ruleSet.resultsBack(to: trust, from: sender, purpose: $0) },
            heldHere: { try store.holdsStudy($0, apartFromResultsOf: sender) }, reidentified: reidentified)
    }

    /// How a result for a study sent de-identified is put back into the trust's identity: the
    /// mapping made again from what the trust holds of the original study (its UIDs under the
    /// key and the options the study went under, its frames of reference from a file of each
    /// series), the patient and study from its first file. Audited when it is placed.
    func reidentification(of sent: ResultCheck.SentStudy, reference: ResultCheck.Reference, from sender: String) throws -> StowIngest.DataSetTransform {
        // The mapping the push to this peer used: the peer's own, under the push's options.
        let deidentifier = try Deidentifier(key: Self.deidentificationKey(in: configuration.state)).forDestination(sender)
            .choosing(DeidentificationChoice(text: sent.deidentifyOptions))
        let (uids, files) = try store.seriesOfStudy(sent.study)
        guard let first = files.first else { throw KeyProblem("study \(sent.study) has no instance here") }
        var options = ReadOptions.wholeStructure
        options.bulkDataThreshold = 4096
        let identity = try DICOMFile.read(path: first, options: options).dataSet
        var frames: Set<String> = []
        for file in files.prefix(200) {
            let header = file == first ? identity : try DICOMFile.read(path: file, options: options).dataSet
            if let frame = header.string(Tag(0x0020, 0x0052)) { frames.insert(frame) }
        }
        let mapping = Reidentification(
            originals: Reidentification.originals(of: [sent.study] + uids + frames.sorted(), under: deidentifier), identity: identity,
            restoresStudy: reference == .sameStudy)
        return StowIngest.DataSetTransform(name: "re-identification from \(sent.atPeer ?? sent.study) to study \(sent.study)") { data in
            try mapping.apply(data)
        }
    }

    /// The results a peer's request placed, with the studies they answer: decided before the
    /// inventory records the request (a result's own new study, recorded, would be "another
    /// study held here").
    struct PlacedResults {
        var results: [(sop: String, study: String, original: String)] = []
        var answered: [String: (instances: Int, classes: Set<String>, reference: ResultCheck.Reference, sent: ResultCheck.SentStudy)] = [:]
        var reidentified: [String: (instances: Int, from: String)] = [:]
    }

    func placedResults(_ ingest: StowIngest, from peer: String) throws -> PlacedResults {
        var placed = PlacedResults()
        for instance in ingest.placed where !instance.held {
            // A re-identified result is checked as placed: in the trust's own study and patient.
            let reidentified = instance.transformed != nil
            guard case .accepted(let sent, let reference) = try checkResult(instance.header, from: peer, reidentified: reidentified) else { continue }
            placed.results.append((instance.sopInstanceUID, instance.studyInstanceUID, sent.study))
            placed.answered[sent.study, default: (0, [], reference, sent)].instances += 1
            placed.answered[sent.study]?.classes.insert(instance.sopClassUID)
            if reidentified, let atPeer = instance.sentStudyInstanceUID {
                placed.reidentified[sent.study, default: (0, atPeer)].instances += 1
            }
        }
        return placed
    }

    /// The results a peer's request placed: recorded (the push jobs they answer marked
    /// answered, an overdue alarm cleared) and audited, a line for each study they answer.
    func recordResults(_ placed: PlacedResults, from peer: String) throws {
        let now = clock.now
        let (results, answered, reidentified) = (placed.results, placed.answered, placed.reidentified)
        guard !results.isEmpty else { return }
        let late = try store.recordResults(results, from: peer, now: now)
        for (study, answer) in answered.sorted(by: { $0.key < $1.key }) {
            try audit.record(AuditEntry(
                who: peer, action: "result", patient: answer.sent.patientID, study: study, why: answer.sent.purpose,
                detail: "\(answer.instances) result instance\(answer.instances == 1 ? "" : "s") (\(answer.classes.sorted().joined(separator: ", "))) "
                    + "for the study sent by rule \"\(answer.sent.rule)\", referred to by \(answer.reference.rawValue)"))
            log.named("receiver").info("result back", ["peer": peer, "study": study, "instances": answer.instances, "reference": answer.reference.rawValue])
        }
        // Every re-identification recorded: which study, which mapping (the UID the peer knew it
        // by; never the key), for which agreement (the purpose).
        let ruleSet = rules.current
        for (study, count) in reidentified.sorted(by: { $0.key < $1.key }) {
            let sent = answered[study]?.sent
            let agreement = sent.flatMap { ruleSet.agreement(from: configuration.trust, to: peer, purpose: $0.purpose)?.name }
            try audit.record(AuditEntry(
                who: configuration.trust, action: "reidentify", patient: sent?.patientID, study: study, why: sent?.purpose ?? "results back",
                detail: "\(count.instances) result instance\(count.instances == 1 ? "" : "s") from \(peer) re-identified from study \(count.from) "
                    + "(the keyed mapping of \(peer) for the push by rule \"\(sent?.rule ?? "?")\"\(agreement.map { " under agreement \"\($0)\"" } ?? ""), "
                    + "\(DeidentificationChoice(text: sent?.deidentifyOptions ?? "")))"))
            log.named("receiver").info("result re-identified", ["peer": peer, "study": study, "from": count.from, "instances": count.instances])
        }
        for job in late {
            log.named("receiver").info("a result came after its alarm: the alarm is cleared", ["job": job.id, "study": job.study, "peer": peer, "rule": job.rule])
        }
    }
}
