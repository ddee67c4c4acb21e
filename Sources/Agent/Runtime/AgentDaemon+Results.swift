import Audit
import DICOM
import DICOMweb
import Foundation

/// Results back (issue 29), the daemon's side. A peer (an AI service) whose agreement says
/// `results back` may store into this trust (`PartyAccess`); each object it sends is checked
/// against what this trust sent it (`ResultCheck`): a result is placed as sent — it is in this
/// trust's own study, under its own patient — recorded in the inventory like anything received
/// (so `deliver to local PACS` rules take it to the PACS), and counted; anything else is refused
/// with 0xA900 and the reason, audited, and counted.
extension AgentDaemon {
    /// How an object from the peer `sender` is placed: as sent when it is a result for a study
    /// this trust sent that peer, refused otherwise.
    func resultPlacement(sender: String, header: DataSet) -> StowIngest.Placement {
        let verdict: ResultCheck.Verdict
        do {
            verdict = try checkResult(header, from: sender)
        } catch {
            // The spool could not be read: not a refusal of the object, a reason to send again.
            log.named("receiver").error("cannot check a result against what was sent; the peer is asked to send it again", ["peer": sender, "error": "\(error)"])
            return .refuse(reason: 0xA700, why: "the result cannot be checked now; send it again")
        }
        guard case .refused(let why) = verdict else { return .asSent }
        let sop = header.string(.sopInstanceUID) ?? "?"
        let study = header.string(.studyInstanceUID) ?? "?"
        log.named("receiver").warning("result refused", ["peer": sender, "instance": sop, "study": study, "reason": why])
        try? store.recordRefusedResults(1, from: sender)
        try? audit.record(AuditEntry(
            who: sender, action: "refused", patient: header.string(.patientID), study: study, why: "results back",
            detail: "result \(sop) refused: \(why)"))
        return .refuse(reason: StowResponse.notPermitted, why: "not a result for a study \(configuration.trust) sent to \(sender): \(why)")
    }

    func checkResult(_ header: DataSet, from sender: String) throws -> ResultCheck.Verdict {
        let trust = configuration.trust, ruleSet = rules.current
        return try ResultCheck.decide(
            header, from: sender, trust: trust, sent: { try store.sentStudies($0, to: sender) },
            resultsBack: { ruleSet.resultsBack(to: trust, from: sender, purpose: $0) }, heldHere: { try store.holdsStudy($0) })
    }

    /// The results a peer's request placed: recorded (the push jobs they answer marked
    /// answered, an overdue alarm cleared) and audited, a line for each study they answer.
    func recordResults(_ ingest: StowIngest, from peer: String) throws {
        let now = clock.now
        var results: [(sop: String, study: String, original: String)] = []
        var answered: [String: (instances: Int, classes: Set<String>, reference: ResultCheck.Reference, sent: ResultCheck.SentStudy)] = [:]
        for instance in ingest.placed where !instance.held {
            guard case .accepted(let sent, let reference) = try checkResult(instance.header, from: peer) else { continue }
            results.append((instance.sopInstanceUID, instance.studyInstanceUID, sent.study))
            answered[sent.study, default: (0, [], reference, sent)].instances += 1
            answered[sent.study]?.classes.insert(instance.sopClassUID)
        }
        guard !results.isEmpty else { return }
        let late = try store.recordResults(results, from: peer, now: now)
        for (study, answer) in answered.sorted(by: { $0.key < $1.key }) {
            try audit.record(AuditEntry(
                who: peer, action: "result", patient: answer.sent.patientID, study: study, why: answer.sent.purpose,
                detail: "\(answer.instances) result instance\(answer.instances == 1 ? "" : "s") (\(answer.classes.sorted().joined(separator: ", "))) "
                    + "for the study sent by rule \"\(answer.sent.rule)\", referred to by \(answer.reference.rawValue)"))
            log.named("receiver").info("result back", ["peer": peer, "study": study, "instances": answer.instances, "reference": answer.reference.rawValue])
        }
        for job in late {
            log.named("receiver").info("a result came after its alarm: the alarm is cleared", ["job": job.id, "study": job.study, "peer": peer, "rule": job.rule])
        }
    }
}
