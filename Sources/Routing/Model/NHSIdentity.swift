/// Where a study's NHS number is, among the identifiers a trust's headers carry, and whether it
/// is a valid one. Nothing here ever matches on names or birth dates: an NHS number is read from
/// an identifier whose issuer says it is one (or where the configuration says a trust puts it),
/// and is used only if its Modulus 11 check digit is right.
public enum NHSIdentity {
    /// The issuer values that mean "an NHS number" (IssuerOfPatientID, or an item's issuer).
    public static let issuers: Set<String> = ["NHS", "2.16.840.1.113883.2.1.4.1"]

    /// A per-trust exception (`nhs-number ESHT from OtherPatientIDsSequence`).
    public enum Source: String, Sendable {
        /// PatientID, whatever its issuer says.
        case patientID = "PatientID"
        /// An OtherPatientIDsSequence item whose issuer is the NHS.
        case otherPatientIDs = "OtherPatientIDsSequence"
        /// The first value of OtherPatientIDs (0010,1000): the attribute (retired by the
        /// standard, still written by many PACS) where some trusts keep the NHS number, with no
        /// issuer to say so — so only where a trust's exception names it.
        case otherPatientIDValues = "OtherPatientIDs"
    }

    public struct Identifier: Sendable, Equatable {
        public var id: String
        public var issuer: String?
        public init(id: String, issuer: String?) {
            self.id = id
            self.issuer = issuer
        }
    }

    public enum Resolution: Sendable, Equatable {
        case valid(NHSNumber)
        /// A value where the NHS number should be, that is not a valid one.
        case invalid(String)
        /// No NHS number where this trust puts it.
        case absent
    }

    /// The default: PatientID when IssuerOfPatientID is the NHS, else an OtherPatientIDsSequence
    /// item with the NHS issuer. With an exception, only the place it names.
    public static func resolve(patient: Identifier?, others: [Identifier], otherPatientIDs: [String] = [], source: Source?) -> Resolution {
        func isNHS(_ issuer: String?) -> Bool { issuer.map { issuers.contains($0.trimmingCharacters(in: .whitespaces)) } ?? false }
        var candidate: String?
        switch source {
        case .patientID?:
            candidate = patient?.id
        case .otherPatientIDs?:
            candidate = others.first { isNHS($0.issuer) }?.id
        case .otherPatientIDValues?:
            candidate = otherPatientIDs.first
        case nil:
            if let patient, isNHS(patient.issuer) { candidate = patient.id } else { candidate = others.first { isNHS($0.issuer) }?.id }
        }
        guard let text = candidate?.trimmingCharacters(in: .whitespaces), !text.isEmpty else { return .absent }
        return NHSNumber(text).map { .valid($0) } ?? .invalid(text)
    }
}
