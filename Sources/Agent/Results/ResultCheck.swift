import DICOM

/// Results back (issue 29): whether an object a peer (an AI service) sends into this trust is a
/// result for a study this trust sent it — decided from the object's header and what the spool
/// remembers having sent, nothing else. A pure function: the receiver asks it for each instance
/// a peer stores, and places what it accepts as sent (it is this trust's own study and patient)
/// or refuses the instance with 0xA900 and the reason.
///
/// Accepted: a result kind (a report, a segmentation, a presentation state, a key object
/// selection, a secondary capture, an encapsulated PDF, a parametric map, an RT structure set)
/// in a study this trust sent to that peer, or referring to one in its evidence; naming the
/// same patient as the study does here. A result that names another patient is refused, never
/// moved to the study's patient: a service that mixes up patients must be seen, not corrected.
public enum ResultCheck {
    /// What this trust sent a peer of one study, as the spool remembers it, with the patient as
    /// this trust holds the study.
    public struct SentStudy: Sendable, Equatable {
        public var study: String
        public var patientID: String?
        public var issuer: String?
        /// The rule that sent it, and its purpose (for the audit line).
        public var rule: String
        public var purpose: String
        /// Sent de-identified: the Study Instance UID the peer knows it by (the study's own
        /// under the Retain UIDs option), and the options it went under (`DeidentificationChoice`
        /// text). nil: sent with identity.
        public var atPeer: String?
        public var deidentifyOptions = ""

        public init(study: String, patientID: String?, issuer: String?, rule: String, purpose: String, atPeer: String? = nil, deidentifyOptions: String = "") {
            self.study = study
            self.patientID = patientID
            self.issuer = issuer
            self.rule = rule
            self.purpose = purpose
            self.atPeer = atPeer
            self.deidentifyOptions = deidentifyOptions
        }

        public var deidentified: Bool { atPeer != nil }
    }

    /// How a result refers to the study it answers.
    public enum Reference: String, Sendable, Equatable {
        /// Its Study Instance UID is the study's (IHE AI Results: results go in the source study).
        case sameStudy = "same study"
        /// It names the study in its evidence (Current Requested Procedure Evidence, Pertinent
        /// Other Evidence, Referenced Study, Studies Containing Other Referenced Instances).
        case evidence
    }

    public enum Verdict: Sendable, Equatable {
        case accepted(SentStudy, Reference)
        /// A result for a study sent de-identified, as the peer knows it (no patient, the
        /// study's UIDs at the peer): accepted, to be put back into the trust's identity
        /// (`Reidentification`) before it is placed.
        case reidentify(SentStudy, Reference)
        case refused(String)
    }

    /// SOP classes a result may be (PS3.4 Annex B), by root: the UID itself or one under it.
    static let resultClasses: [(root: String, name: String)] = [
        ("1.2.840.10008.5.1.4.1.1.88", "structured reports and key object selections"),
        ("1.2.840.10008.5.1.4.1.1.66.4", "segmentations"),
        ("1.2.840.10008.5.1.4.1.1.66.5", "surface segmentations"),
        ("1.2.840.10008.5.1.4.1.1.11", "presentation states"),
        ("1.2.840.10008.5.1.4.1.1.7", "secondary captures"),
        ("1.2.840.10008.5.1.4.1.1.104", "encapsulated documents (PDF)"),
        ("1.2.840.10008.5.1.4.1.1.30", "parametric maps"),
        ("1.2.840.10008.5.1.4.1.1.481.3", "RT structure sets"),
    ]

    static func isResultClass(_ uid: String) -> Bool {
        resultClasses.contains { uid == $0.root || uid.hasPrefix($0.root + ".") }
    }

    /// The evidence sequences whose items name a study by (0020,000D).
    static let evidenceSequences = [
        Tag(0x0040, 0xA375),  // Current Requested Procedure Evidence Sequence (SR, KOS)
        Tag(0x0040, 0xA385),  // Pertinent Other Evidence Sequence
        Tag(0x0008, 0x1200),  // Studies Containing Other Referenced Instances Sequence
    ]
    /// Referenced Study Sequence: each item names a study by its Referenced SOP Instance UID.
    static let referencedStudySequence = Tag(0x0008, 0x1110)
    static let referencedSOPInstanceUID = Tag(0x0008, 0x1155)
    static let issuerOfPatientID = Tag(0x0010, 0x0021)

    /// The studies a result names, its own first, each once.
    public static func referencedStudies(_ header: DataSet) -> [String] {
        var studies: [String] = []
        func add(_ uid: String?) {
            if let uid, !uid.isEmpty, !studies.contains(uid) { studies.append(uid) }
        }
        add(header.string(.studyInstanceUID))
        for tag in evidenceSequences {
            if case .sequence(let items)? = header[tag]?.value { for item in items.prefix(1000) { add(item.string(.studyInstanceUID)) } }
        }
        if case .sequence(let items)? = header[referencedStudySequence]?.value {
            for item in items.prefix(1000) { add(item.string(referencedSOPInstanceUID)) }
        }
        return studies
    }

    /// The verdict on one object `peer` sent. `sent(study)`: what this trust sent that peer of
    /// the study (every push, some of it acknowledged, of a study still held here), found by
    /// the study's own UID or the one a de-identified push gave it;
    /// `resultsBack(purpose)`: whether an agreement with `results back` covers pushes to that
    /// peer for the purpose; `heldHere(study)`: whether this trust holds a study by that UID
    /// (other than results from this peer). `reidentified`: the header is the one placed here
    /// after re-identification (checked again as it is recorded), not one the peer sent.
    ///
    /// A refusal's reason goes back to the peer: for a study sent de-identified it names only
    /// what the peer was given (the study's UID there), never the study's own UID or patient —
    /// nor does whether a result names the right patient change the answer.
    public static func decide(
        _ header: DataSet, from peer: String, trust: String, sent: (String) throws -> [SentStudy], resultsBack: (String) -> Bool,
        heldHere: (String) throws -> Bool, reidentified: Bool = false
    ) rethrows -> Verdict {
        let classUID = header.string(.sopClassUID) ?? ""
        guard isResultClass(classUID) else {
            return .refused("an object of SOP class \(classUID) is not a result: \(peer) may send back \(resultClasses.map(\.name).joined(separator: ", "))")
        }
        let studies = referencedStudies(header)
        let own = header.string(.studyInstanceUID) ?? ""
        var found: (SentStudy, Reference, named: String)?
        var notCovered: (sent: SentStudy, named: String)?
        for study in studies.prefix(50) {
            let pushes = try sent(study)
            if let covered = pushes.first(where: { resultsBack($0.purpose) }) {
                found = (covered, study == own ? .sameStudy : .evidence, study)
                break
            }
            if notCovered == nil, let first = pushes.first { notCovered = (first, study) }
        }
        guard let (original, reference, named) = found else {
            if let notCovered {
                return .refused(
                    "study \(notCovered.named) went to \(peer) for \(notCovered.sent.purpose) (rule \"\(notCovered.sent.rule)\"), and no agreement for that purpose says results back")
            }
            let others = studies.filter { $0 != own }
            return .refused(
                "it refers to no study \(trust) sent to \(peer): its study \(own)"
                    + (others.isEmpty ? ", and no evidence names another" : "; the evidence names \(others.prefix(5).joined(separator: ", "))"))
        }
        // A result naming the study it answers in its evidence goes in that study or in a new
        // one — never into another study held here (another patient's, perhaps).
        if reference == .evidence, try heldHere(own) {
            return .refused("its own study \(own) is another study held at \(trust), not the one it answers (\(named))")
        }
        let patient = header.string(.patientID) ?? ""
        let issuer = header.string(issuerOfPatientID)
        let expected = original.patientID ?? ""
        let samePatient = patient == expected && !(issuer != nil && original.issuer != nil && issuer != original.issuer)
        // Sent de-identified: the result names the patient as the peer was told (no one), and
        // the study as it was given it; it is put back into the trust's identity. Anything else
        // is not what the peer could have made of what it was sent (and the answer says the
        // same whoever it names: it must not tell a peer whether it guessed a patient).
        if let atPeer = original.atPeer {
            if !reidentified && patient.isEmpty && named == atPeer { return .reidentify(original, reference) }
            if reidentified && named == original.study && samePatient { return .accepted(original, reference) }
            return .refused("study \(atPeer) went to \(peer) de-identified: a result for it names no patient, and names the study by the UID it was sent under")
        }
        // The same patient as the study here, by number (and issuer, where both name one).
        if !samePatient {
            let named = patient.isEmpty ? "no patient" : "patient \(patient)\(issuer.map { " (\($0))" } ?? "")"
            return .refused(
                "it names \(named), but study \(original.study), which \(trust) sent to \(peer), is patient \(expected.isEmpty ? "(none)" : expected)\(original.issuer.map { " (\($0))" } ?? "")")
        }
        return .accepted(original, reference)
    }
}
