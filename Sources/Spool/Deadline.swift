/// Deadlines set by rules ("deliver within 120 s of acquisition"), measured. Pure: times are
/// seconds on the caller's clock.
public enum Deadline {
    /// How many seconds late a job is, or nil when it is not late (or has no deadline).
    ///
    /// Delivered: `deliveredAt − deadline` when positive (delivery exactly at the deadline is on
    /// time). Not yet delivered: `now − deadline` when positive — late already, and growing.
    public static func missedBy(deadline: Double?, deliveredAt: Double?, now: Double) -> Double? {
        guard let deadline else { return nil }
        let lateness = (deliveredAt ?? now) - deadline
        return lateness > 0 ? lateness : nil
    }
}
