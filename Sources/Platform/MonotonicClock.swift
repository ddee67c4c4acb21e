#if canImport(Glibc)
    import Glibc
#endif

/// Seconds on CLOCK_MONOTONIC: for deadlines and durations, which must not jump when an
/// operator or NTP sets the wall clock.
public enum MonotonicClock {
    public static var now: Double {
        var time = timespec()
        clock_gettime(CLOCK_MONOTONIC, &time)
        return Double(time.tv_sec) + Double(time.tv_nsec) / 1e9
    }
}
