/// A patient identifier with the authority that issued it (IHE MIMA: an identifier means nothing
/// without its issuer), e.g. ("A555", "ASPH") or ("9434765919", "NHS").
public struct PatientIdentifier: Sendable, Equatable, Hashable, CustomStringConvertible {
    /// The Patient ID (0010,0020) value.
    public var id: String
    /// The Issuer of Patient ID (0010,0021) value.
    public var issuer: String

    public init(id: String, issuer: String) {
        self.id = id
        self.issuer = issuer
    }

    public var description: String { "\(id) (\(issuer))" }
}

/// What a study from another trust becomes when it is placed at the receiving trust (issue 25):
/// the receiving trust's own identifier in Patient ID and Issuer of Patient ID, the sender's
/// identifier and the others (the NHS number) in Other Patient IDs Sequence, and the sending
/// trust named as the issuer of the accession number. `IdentityRewriter` applies it to a file.
public struct IdentityRewrite: Sendable, Equatable {
    /// The receiving trust's own number for the patient and its issuer: the new Patient ID
    /// (0010,0020) and Issuer of Patient ID (0010,0021).
    public var local: PatientIdentifier
    /// The issuer of the source file's Patient ID: the sending trust's namespace. The source's
    /// Patient ID goes into Other Patient IDs Sequence (0010,1002) with this issuer.
    public var senderIssuer: String
    /// Further identifiers for Other Patient IDs Sequence, in order: the NHS number with its
    /// issuer, above all.
    public var additionalIdentifiers: [PatientIdentifier]
    /// The sending trust's Local Namespace Entity ID (0040,0031), for Issuer of Accession Number
    /// Sequence (0008,0051), so that a RIS does not take the accession number for one of its own.
    public var accessionNumberIssuer: String

    public init(
        local: PatientIdentifier, senderIssuer: String, additionalIdentifiers: [PatientIdentifier],
        accessionNumberIssuer: String
    ) {
        self.local = local
        self.senderIssuer = senderIssuer
        self.additionalIdentifiers = additionalIdentifiers
        self.accessionNumberIssuer = accessionNumberIssuer
    }
}

/// What a rewrite did, for the agent's audit line ("from which number to which").
public struct IdentityRewriteOutcome: Sendable, Equatable {
    /// The source's Patient ID, and its Issuer of Patient ID (nil when it had none).
    public var previousPatientID: String
    public var previousIssuer: String?
    /// The items added to Other Patient IDs Sequence (an identifier already there is not repeated).
    public var addedOtherPatientIDs: [PatientIdentifier]
    /// Whether Issuer of Accession Number Sequence was added (there is an accession number and the
    /// source did not name its issuer already).
    public var addedAccessionNumberIssuer: Bool
}
