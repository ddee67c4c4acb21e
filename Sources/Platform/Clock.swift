import Foundation

#if canImport(Glibc)
    import Glibc
#endif

/// The time as the daemons' decisions see it: injected, so that what waits or stamps time can be
/// tested under a clock a test moves (`ManualClock`), in milliseconds, never with sleeps.
///
/// Wall time (seconds since 1970) is what the spool stores and what a rule's window and deadline
/// mean; durations that must not jump when NTP sets the clock use `MonotonicClock`.
public protocol Clock: Sendable {
    /// Seconds since 1970.
    var now: Double { get }
    /// The local minute of the day (0 ..< 1440) at `time`: what a `TimeWindow` is asked with.
    func minuteOfDay(at time: Double) -> Int
}

/// The machine's clock and time zone.
public struct SystemClock: Clock {
    public init() {}
    public var now: Double { Date().timeIntervalSince1970 }
    public func minuteOfDay(at time: Double) -> Int {
        var seconds = time_t(time)
        var parts = tm()
        localtime_r(&seconds, &parts)
        return Int(parts.tm_hour) * 60 + Int(parts.tm_min)
    }
}

/// A clock that moves only when told (tests): its minute of the day is UTC's, so a test's
/// windows do not depend on the machine's time zone.
public final class ManualClock: Clock, @unchecked Sendable {
    private let lock = NSLock()
    private var time: Double

    public init(_ start: Double) { time = start }

    public var now: Double { lock.withLock { time } }

    public func advance(by seconds: Double) { lock.withLock { time += seconds } }

    public func set(_ value: Double) { lock.withLock { time = value } }

    public func minuteOfDay(at time: Double) -> Int {
        let seconds = Int(time.rounded(.down)) % 86_400
        return (seconds < 0 ? seconds + 86_400 : seconds) / 60
    }
}
