import DICOM
import Routing

/// Under which identity a study from another trust is placed at this trust (issue 25): the pure
/// rule, from the study's own identifiers, this trust's settings and the registry's answer. No
/// I/O here (`IdentityBook` asks the coordinator); every branch is a unit test.
///
/// Never a guess: the local number is the one the registry knows this trust gave the patient
/// (from this trust's own announcements), found by the study's validated NHS number only — never
/// by name or birth date. A study with no valid NHS number, no Patient ID, a patient in an
/// identity conflict, or identifiers that disagree with the registry's, is held for a person.
public enum IdentityDecision {
    /// What the registry said about this trust's own identifiers for the NHS number.
    public enum RegistryAnswer: Sendable, Equatable {
        /// This trust's own identifiers for the patient (none: never seen here).
        case identifiers([NHSIdentity.Identifier])
        /// The patient is in an identity conflict held for a person at the coordinator.
        case conflict(String)
        /// No answer (the coordinator unreachable, or answering an error).
        case unavailable(String)
    }

    /// The outcome, with a line for the log and the audit trail.
    public enum Outcome: Sendable, Equatable {
        /// As sent: `identity keep`, no coordinator, or a study already in this trust's identity.
        case asSent(why: String)
        /// In this trust's identity: Patient ID and its issuer replaced, the sender's kept.
        case rewrite(IdentityRewrite)
        /// Held aside, not placed under any identity, until it can be (or a person decides).
        case hold(Hold)
    }

    public struct Hold: Sendable, Equatable {
        public enum Kind: String, Sendable, CaseIterable {
            /// This trust has no number for the patient yet (`unknown-patient hold`).
            case unknownPatient = "unknown patient"
            /// The registry holds a conflict about the patient, or the study's identifiers
            /// disagree with the registry's: a person decides.
            case conflict
            /// The study itself: no Patient ID, no valid NHS number.
            case badInput = "bad input"
            /// No answer from the coordinator: tried again.
            case unavailable = "coordinator unavailable"
        }
        public var kind: Kind
        public var reason: String
        /// Released without a person once the registry answers differently (the others need a
        /// person to change something: the file, or the conflict at the coordinator).
        public var waitsForRegistry: Bool { kind == .unknownPatient || kind == .unavailable }
    }

    /// The study's identifiers, as its header says.
    public struct Study: Sendable, Equatable {
        public var patientID: String?
        public var issuer: String?
        public var nhs: NHSIdentity.Resolution
        public var otherIDs: [NHSIdentity.Identifier]

        public init(patientID: String?, issuer: String?, nhs: NHSIdentity.Resolution, otherIDs: [NHSIdentity.Identifier] = []) {
            self.patientID = patientID
            self.issuer = issuer
            self.nhs = nhs
            self.otherIDs = otherIDs
        }
    }

    /// This trust's settings.
    public struct Settings: Sendable, Equatable {
        public var trust: String
        public var unknownPatient: AgentConfiguration.UnknownPatient
        public init(trust: String, unknownPatient: AgentConfiguration.UnknownPatient) {
            self.trust = trust
            self.unknownPatient = unknownPatient
        }
    }

    /// The issuer named with an NHS number in Other Patient IDs Sequence.
    public static let nhsIssuer = "NHS"

    /// The NHS number to ask the registry about, or the hold that a study without one gets.
    public static func nhsNumber(of study: Study) -> Result<NHSNumber, HoldFailure> {
        guard let id = study.patientID?.trimmingCharacters(in: .whitespaces), !id.isEmpty else {
            return .failure(HoldFailure(Hold(kind: .badInput, reason: "it has no Patient ID")))
        }
        switch study.nhs {
        case .valid(let number): return .success(number)
        case .invalid(let text):
            return .failure(HoldFailure(Hold(kind: .badInput, reason: "its NHS number \"\(text)\" fails the Modulus 11 check")))
        case .absent:
            return .failure(HoldFailure(Hold(kind: .badInput, reason: "it carries no NHS number (Patient ID \(id) cannot be matched to this trust's patient without one)")))
        }
    }

    public struct HoldFailure: Error, Equatable {
        public var hold: Hold
        init(_ hold: Hold) { self.hold = hold }
    }

    /// The decision for a study from `sender`, whose NHS number is `nhs`, given the registry's
    /// answer. `force`: a person released it (`consort identity release`): a patient this trust
    /// has no number for is placed under the NHS number, whatever `unknown-patient` says; a
    /// conflict or bad input stays held (a person resolves those where they are).
    public static func decide(
        _ study: Study, nhs: NHSNumber, sender: String, answer: RegistryAnswer, settings: Settings, force: Bool = false
    ) -> Outcome {
        let patientID = (study.patientID ?? "").trimmingCharacters(in: .whitespaces)
        let issuer = study.issuer?.trimmingCharacters(in: .whitespaces).nilIfEmpty
        let identifiers: [NHSIdentity.Identifier]
        switch answer {
        case .conflict(let why):
            return .hold(Hold(kind: .conflict, reason: "the registry holds an identity conflict about NHS number \(nhs.digits): \(why)"))
        case .unavailable(let why):
            return .hold(Hold(kind: .unavailable, reason: "this trust's number for NHS number \(nhs.digits) cannot be asked for: \(why)"))
        case .identifiers(let list):
            identifiers = list
        }
        let own = identifiers.map { PatientIdentifier(id: $0.id, issuer: $0.issuer?.nilIfEmpty ?? settings.trust) }
        // Already in this trust's identity (a study of this trust's own, come back; a copy sent
        // twice): placed as it is. One that claims this trust as its issuer with a number the
        // registry does not know for the patient disagrees with the registry: held.
        if issuer == settings.trust || own.contains(where: { $0.issuer == issuer && issuer != nil }) {
            if own.contains(PatientIdentifier(id: patientID, issuer: issuer ?? settings.trust)) {
                return .asSent(why: "already in this trust's identity (\(patientID), \(issuer ?? settings.trust))")
            }
            let known = own.isEmpty ? "none" : own.map(\.description).joined(separator: ", ")
            return .hold(Hold(
                kind: .conflict,
                reason: "it names this trust's own issuer with Patient ID \(patientID), but the registry knows this trust's number(s) for NHS number \(nhs.digits) as: \(known)"))
        }
        let additional = [PatientIdentifier(id: nhs.digits, issuer: nhsIssuer)]
        func rewrite(to local: PatientIdentifier, also: [PatientIdentifier]) -> Outcome {
            .rewrite(IdentityRewrite(local: local, senderIssuer: issuer ?? sender, additionalIdentifiers: also, accessionNumberIssuer: sender))
        }
        switch own.count {
        case 1:
            return rewrite(to: own[0], also: additional)
        case 0:
            if case .nhsNumber(let nhsIssuer) = settings.unknownPatient {
                return rewrite(to: PatientIdentifier(id: nhs.digits, issuer: nhsIssuer), also: [])
            }
            if force { return rewrite(to: PatientIdentifier(id: nhs.digits, issuer: nhsIssuer), also: []) }
            return .hold(Hold(kind: .unknownPatient, reason: "this trust has no number for NHS number \(nhs.digits) yet (unknown-patient hold)"))
        default:
            // Two numbers for one patient at this trust (a merge not yet reflected): which one
            // its PACS files under is a person's choice, never ours.
            return .hold(Hold(
                kind: .conflict,
                reason: "this trust has \(own.count) numbers for NHS number \(nhs.digits) (\(own.map(\.description).joined(separator: ", "))): a person chooses"))
        }
    }
}

extension String {
    var nilIfEmpty: String? { isEmpty ? nil : self }
}
