/// The request fields Consort's own parties add to DICOMweb and the coordinator's API.
public enum ConsortField {
    /// Why patient data is asked for or sent (an agreement's purpose: `direct-care`, `mdt` …).
    /// Every request that discloses patient data names one; the answering side refuses a
    /// request without it (never assumes direct care) and records it in its audit log, as the
    /// asking side does in its own.
    public static let purpose = "X-Consort-Purpose"
    /// The sender's priority for the work (`urgent`, `normal`, `bulk`): the receiver yields for
    /// bulk as the sender does.
    public static let priority = "X-Consort-Priority"
}
