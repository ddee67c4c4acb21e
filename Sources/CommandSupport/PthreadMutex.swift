import Platform

#if canImport(Glibc)
    import Glibc
#endif

/// The CLI's name for Platform's monotonic clock (one clock for the project).
public func monotonicSeconds() -> Double { MonotonicClock.now }

/// A pthread mutex, for the little shared state the commands have.
public final class PthreadMutex: @unchecked Sendable {
    private var mutex = pthread_mutex_t()
    public init() { pthread_mutex_init(&mutex, nil) }
    deinit { pthread_mutex_destroy(&mutex) }
    public func locked<T>(_ body: () throws -> T) rethrows -> T {
        pthread_mutex_lock(&mutex)
        defer { pthread_mutex_unlock(&mutex) }
        return try body()
    }
}
