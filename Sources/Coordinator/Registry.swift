import Foundation
import Routing

/// What a trust announces it holds of one study (a `POST /v1/holdings` item).
public struct Holding: Sendable {
    public var study: String
    public var patient: NHSIdentity.Identifier?
    public var otherIDs: [NHSIdentity.Identifier] = []
    /// OtherPatientIDs (0010,1000), its values in order (`otherPatientIDValues` on the wire).
    public var otherPatientIDValues: [String] = []
    /// The NHS number as the agent read it (used when the identifiers above do not give one).
    public var nhs: String?
    public var sex: String?
    public var birthDate: String?
    public var date: String?
    public var modalities: [String] = []
    public var bodyPart: String?
    public var description: String?
    public var accession: String?
    public var instances = 0
    public var bytes: Int64 = 0
    public var complete = true
    /// The trust this holding is a copy of (`origin` on the wire), nil for the trust's own
    /// study: a correction or withdrawal there is what the copy's holders hear of.
    public var origin: String?

    public init(study: String) { self.study = study }
}

/// Where a study is held.
public struct Location: Sendable {
    public var trust: String
    public var complete: Bool
    public var instances: Int
    public var since: Double
}

/// A study as the registry knows it, with every trust holding it.
public struct StudyRecord: Sendable {
    public var uid: String
    public var nhs: String?
    public var date: String?
    public var modalities: [String]
    public var bodyPart: String?
    public var description: String?
    public var accession: String?
    public var instances: Int
    public var bytes: Int64
    public var locations: [Location]
    /// An identity conflict involves it: held for a person, never used for prefetch.
    public var conflicted: Bool
}

/// An identity conflict, held for a person (`consort coordinator conflicts`).
public struct IdentityConflict: Sendable {
    public var id: Int64
    /// local-id (one local identifier, two NHS numbers), study (one study, two patients),
    /// demographics (one NHS number, different sex or birth date at two trusts).
    public var kind: String
    /// What the two sides share: the local identifier, the study, or the NHS number.
    public var key: String
    public var first: String
    public var second: String
    public var firstFrom: String
    public var secondFrom: String
    public var created: Double
}

/// An identifier that should have been an NHS number and is not a valid one.
public struct IdentityError: Sendable {
    public var trust: String
    public var study: String
    public var value: String
    public var created: Double
}

public struct AnnounceOutcome: Sendable {
    public var recorded = 0
    public var conflicts: [String] = []
    public var invalid: [String] = []
    /// How many studies the registry holds for the trust after this batch: an agent that has
    /// announced more knows the registry lost them, and announces everything again.
    public var trustStudies = 0
    /// Studies the registry did not hold before this batch.
    public var newStudies = 0
}

/// The registry behind the coordinator: one narrow interface, implemented on SQLite (embedded)
/// and PostgreSQL (a coordinator that must survive the loss of its machine). Every method is
/// one transaction; announcing the same batch twice changes nothing.
public protocol Registry: AnyObject, Sendable {
    func announce(trust: String, holdings: [(Holding, NHSIdentity.Resolution)], now: Double) throws -> AnnounceOutcome
    func withdraw(trust: String, studies: [String]) throws -> Int
    /// A patient's studies, newest first, each with its locations; and the open conflicts about
    /// the patient (when there are any, the studies must not be used for prefetch).
    func patientStudies(nhs: String) throws -> (studies: [StudyRecord], conflicts: [IdentityConflict])
    func study(uid: String) throws -> StudyRecord?
    /// The local identifiers `trust` itself has announced for the patient (the PatientID of its
    /// own studies, with its issuer), oldest first; and the open conflicts about the patient.
    /// Never another trust's.
    func identity(trust: String, nhs: String) throws -> (identifiers: [NHSIdentity.Identifier], conflicts: [IdentityConflict])
    func conflicts() throws -> [IdentityConflict]
    /// Studies `trust` holds a copy of (it is not their origin) that their origin has since put
    /// in question: announced again under another patient (a study conflict), or withdrawn
    /// while others still hold them. The copies need a person (issue 25: corrections follow).
    func attention(trust: String) throws -> [CopyAttention]
    func identityErrors() throws -> [IdentityError]
    func studyCount(trust: String) throws -> Int
    func totals() throws -> (patients: Int, studies: Int, locations: Int)
}

public struct RegistryError: Error, CustomStringConvertible {
    public let description: String
    public init(_ description: String) { self.description = description }
}

/// A copy that needs a person, because its origin corrected or withdrew the study.
public struct CopyAttention: Sendable, Equatable {
    public enum Kind: String, Sendable {
        /// The origin announced the study again under another NHS number.
        case identityChanged = "identity changed at origin"
        /// The origin withdrew the study (deleted it) while this trust holds a copy.
        case withdrawnAtOrigin = "withdrawn at origin"
    }
    public var study: String
    public var origin: String
    public var kind: Kind
    public var detail: String
    public var since: Double

    public init(study: String, origin: String, kind: Kind, detail: String, since: Double) {
        self.study = study
        self.origin = origin
        self.kind = kind
        self.detail = detail
        self.since = since
    }
}
