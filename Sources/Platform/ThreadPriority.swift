internal import CSystem
import Foundation

/// How much of the CPU and the disk the calling thread claims, by the work it does, so that an
/// urgent instance does not queue behind a bulk study's transfer for the same two CPUs and the
/// same disk. The agent's sending workers and its receiving connections set it from the job's
/// (or the request's) priority.
public enum ThreadPriority {
    /// A smaller share of the CPU for the calling thread: 5 nicer than the process for normal
    /// work, 10 for bulk (at most 19). For threads that do only such work from then on: Linux
    /// lets a thread come back up only as far as RLIMIT_NICE allows (`atFullPriority`). False if
    /// the kernel refused (a service whose system call filter denies setpriority).
    @discardableResult
    public static func yieldCPU(bulk: Bool) -> Bool { consort_thread_nicer(bulk ? 10 : 5) == 0 }

    /// `body` at the process's own CPU priority, the thread's lowered one put back after; for
    /// a thread `yieldCPU` lowered, about to hold a lock urgent work may wait for (the agent's
    /// database). Otherwise, on a busy server, a bulk worker pre-empted by everything at
    /// normal priority would hold that lock while an urgent instance waits for it: a priority
    /// inversion. Coming back up needs RLIMIT_NICE headroom (the unit's `LimitNICE=+0`) or
    /// CAP_SYS_NICE; without either, `body` runs lowered, as it would have. A thread level
    /// with its process pays no system call after its first time here.
    public static func atFullPriority<T>(_ body: () throws -> T) rethrows -> T {
        var previous: Int32 = 0
        let raised = consort_thread_unlower(&previous) == 1
        defer { if raised { _ = consort_thread_set_niceness(previous) } }
        return try body()
    }

    /// What this process may do with its threads' priorities, tried for real on a scratch
    /// thread: lower a thread's CPU share, bring it back up for a lock (`atFullPriority`), and
    /// put it in the idle I/O class. A service sandbox may forbid the first and the last (a
    /// system call filter denying setpriority and ioprio_set: systemd's @resources), and lacks
    /// the second without LimitNICE=+0; the agent says so at start.
    public struct Abilities: Sendable, Equatable {
        public var lower: Bool
        public var comeBack: Bool
        public var idleIO: Bool
        /// Why the first thing refused was refused (strerror), or nil.
        public var refusal: String?
    }

    public static func abilities() -> Abilities {
        final class Box: @unchecked Sendable { var value = Abilities(lower: false, comeBack: false, idleIO: false) }
        let box = Box(), done = DispatchSemaphore(value: 0)
        let thread = Thread {
            var abilities = Abilities(lower: false, comeBack: false, idleIO: false)
            abilities.lower = yieldCPU(bulk: true)
            if !abilities.lower { abilities.refusal = String(cString: strerror(errno)) }
            var previous: Int32 = 0
            // 0 (nothing to do) when the process already runs at nice 19: nothing refused.
            abilities.comeBack = abilities.lower && consort_thread_unlower(&previous) != -1
            if abilities.lower && !abilities.comeBack && abilities.refusal == nil { abilities.refusal = String(cString: strerror(errno)) }
            abilities.idleIO = consort_thread_set_io_priority(CONSORT_IO_PRIORITY_IDLE) == 0
            if !abilities.idleIO && abilities.refusal == nil { abilities.refusal = String(cString: strerror(errno)) }
            box.value = abilities
            done.signal()
        }
        thread.start()
        done.wait()
        return box.value
    }

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
