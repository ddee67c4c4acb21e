internal import CSystem

/// How much of the CPU and the disk the calling thread claims, by the work it does, so that an
/// urgent instance does not queue behind a bulk study's transfer for the same two CPUs and the
/// same disk. The agent's sending workers and its receiving connections set it from the job's
/// (or the request's) priority.
public enum ThreadPriority {
    /// A smaller share of the CPU for the calling thread: 5 nicer than the process for normal
    /// work, 10 for bulk (at most 19). Linux lets an unprivileged thread raise its niceness but
    /// not lower it again, so this is for threads that do only such work from then on. False if
    /// the kernel refused.
    @discardableResult
    public static func yieldCPU(bulk: Bool) -> Bool { consort_thread_nicer(bulk ? 10 : 5) == 0 }

    /// `body` with the calling thread in the idle I/O class (its reads and direct writes served
    /// when no other I/O waits), then back to the class it had. Only around bulk data: never
    /// around a lock other work may wait for (a database commit), which would make that work
    /// wait at idle too.
    public static func idleIO<T>(_ body: () throws -> T) rethrows -> T {
        let before = consort_thread_io_priority()
        _ = consort_thread_set_io_priority(CONSORT_IO_PRIORITY_IDLE)
        defer { _ = consort_thread_set_io_priority(max(0, before)) }  // none set, if it could not be read
        return try body()
    }

    /// The calling thread's I/O class as the kernel has it: "idle", "best-effort", "real-time",
    /// or "default" (none set: best effort by its niceness). For diagnostics and tests.
    public static var ioClass: String {
        let value = consort_thread_io_priority()
        guard value >= 0 else { return "unknown" }
        switch value >> 13 {
        case 0: return "default"
        case 1: return "real-time"
        case 2: return "best-effort"
        case 3: return "idle"
        default: return "unknown"
        }
    }

    /// The calling thread's niceness (getpriority on its thread id).
    public static var niceness: Int { Int(consort_thread_niceness()) }
}
