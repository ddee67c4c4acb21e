/// What a recorded result did to a `PeerCircuit`: worth one log line and a status update. `nil`
/// from the recording functions means nothing changed that an operator needs to hear about.
public enum CircuitChange: Sendable, Hashable {
    /// Too many consecutive failures: no new attempts to the peer until `until`.
    case opened(until: Double)
    /// The probe failed: closed to new attempts again, until a later `until` than last time.
    case reopened(until: Double)
    /// An attempt succeeded while the circuit was open or probing: the peer is back.
    case closed
}
