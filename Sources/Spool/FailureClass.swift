/// What the caller does after a failed exchange (STYLE 10: classify errors by what the caller
/// does next). Every answer — an HTTP status, a STOW-RS failure reason, a libcurl code, a
/// WADO-RS or a coordinator answer — is classified in one place, `FailureClassifier` in
/// Exchange, for the agent, `consort send` and `consort fetch` alike.
public enum FailureClass: String, Sendable, Hashable, CaseIterable {
    /// The peer or the path is unwell: defer with backoff, and count it against the peer's
    /// circuit breaker.
    case transient
    /// The peer refused it, and retrying will not change that (an instance rejected, a study it
    /// does not hold): a person looks.
    case refused
    /// A certificate, agreement or membership fault: the peer refused our certificate or we
    /// refused theirs (unknown CA, expired, revoked, wrong name), or it refused us as caller (no
    /// agreement, not a member), or our own configuration names something wrong (a bad URL).
    /// The peer is not "down" and the job is not at fault; nothing changes until someone fixes a
    /// certificate, a trust store or the rules, so the peer's jobs wait (slowly, never in a tight
    /// loop) and an operator is told.
    case configuration
    /// Our own side failed: a file that vanished or cannot be read, a disk that is full. Not
    /// evidence against the peer: no circuit counts it.
    case local
}
