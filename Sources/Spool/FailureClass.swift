/// What the spool does after a failed delivery attempt (STYLE 10: classify errors by what the
/// caller does next). HTTP statuses and STOW-RS failure reasons are classified by
/// `DeliveryClassifier` in DICOMweb; transport (libcurl) failures by
/// `DeliveryFailure.classify(curlCode:message:)`.
public enum FailureClass: String, Sendable, Hashable, CaseIterable {
    /// Retrying will not help: hold the job for a person.
    case permanent
    /// The peer or the path is unwell: defer the job with backoff, and count the failure
    /// against the peer's circuit breaker.
    case transient
    /// A TLS or certificate fault: the peer refused our certificate, or we refused theirs
    /// (unknown CA, expired, revoked, wrong name, pinned key mismatch). The peer is not "down"
    /// and the job is not at fault; nothing changes until someone fixes a certificate or a
    /// trust store, so the peer's jobs wait (slowly, never in a tight loop) and an operator is
    /// told.
    case configuration
}
