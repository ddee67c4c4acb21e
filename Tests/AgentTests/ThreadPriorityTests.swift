import Foundation
import Platform
import Testing

@testable import Agent

/// Bulk work gives way to urgent work: a bulk worker's thread takes a smaller share of the CPU
/// for good, and its data goes to the disk in the idle I/O class only while it moves data, the
/// class it had put back after (its database commits must not wait at idle).
@Suite("Thread priority")
struct ThreadPriorityTests {
    /// Runs `body` on a thread of its own (what it changes stays there) and waits for it.
    func onAThread(_ body: @escaping @Sendable () -> [String]) -> [String] {
        final class Box: @unchecked Sendable { var value: [String] = [] }
        let box = Box(), done = DispatchSemaphore(value: 0)
        Thread {
            box.value = body()
            done.signal()
        }.start()
        done.wait()
        return box.value
    }

    @Test func aBulkThreadYieldsTheCPUAndMovesDataAtIdleThenGoesBack() {
        let seen = onAThread {
            let nice = ThreadPriority.niceness
            let before = ThreadPriority.ioClass
            let yielded = ThreadPriority.yieldCPU(bulk: true)
            ThreadPriority.yieldCPU(bulk: true)  // a connection's next request: no further
            ThreadPriority.yieldCPU(bulk: false)  // nor back
            let during = ThreadPriority.idleIO { ThreadPriority.ioClass }
            return ["\(ThreadPriority.niceness - nice)", "\(min(19, nice + 10) - nice)", "\(yielded)", before, during, ThreadPriority.ioClass]
        }
        // +10, or up to 19 for a test run already niced; idle while moving data; then the class
        // it had (none set, or best effort where a kernel reports that for none).
        #expect(seen.count == 6 && seen[0] == seen[1] && seen[2] == "true" && seen[4] == "idle" && seen[5] == seen[3], "\(seen)")
        #expect(["default", "best-effort"].contains(seen[3]), "\(seen)")
        // The caller's thread is not touched by another's.
        #expect(ThreadPriority.ioClass == "default")
    }

    /// A lowered thread about to hold the lock urgent work also takes comes back to the
    /// process's priority for that long, then goes back down; a thread never lowered is left
    /// alone. Coming back needs RLIMIT_NICE headroom or CAP_SYS_NICE (this suite's CI runs as
    /// root; elsewhere the thread stays lowered, as the agent then says at start).
    /// Whether this process may bring a lowered thread back to its own niceness, worked out
    /// apart from the code under test: root, or RLIMIT_NICE headroom down to the process's
    /// niceness (a ceiling of 20 - rlim_cur).
    static var mayComeBack: Bool {
        if geteuid() == 0 { return true }
        var limit = rlimit()
        guard getrlimit(__rlimit_resource_t(__RLIMIT_NICE.rawValue), &limit) == 0 else { return false }
        errno = 0
        let process = getpriority(__priority_which_t(PRIO_PROCESS.rawValue), id_t(getpid()))
        return limit.rlim_cur == rlim_t.max || 20 - Int(limit.rlim_cur) <= Int(process)
    }

    @Test func aLoweredThreadHoldsALockAtFullPriorityThenGoesBack() {
        let can = ThreadPriority.abilities()
        // Outside a sandbox this machine lets a thread lower its CPU and I/O priority, and the
        // probe agrees with the process's limits on coming back.
        #expect(can.lower && can.idleIO, "\(can)")
        #expect(can.comeBack == Self.mayComeBack, "\(can)")
        let seen = onAThread {
            let nice = ThreadPriority.niceness
            let untouched = ThreadPriority.atFullPriority { ThreadPriority.niceness }
            ThreadPriority.yieldCPU(bulk: true)
            let lowered = ThreadPriority.niceness
            let inside = ThreadPriority.atFullPriority { ThreadPriority.niceness }
            let nested = ThreadPriority.atFullPriority { ThreadPriority.atFullPriority { ThreadPriority.niceness } }
            return ["\(nice)", "\(untouched)", "\(lowered)", "\(inside)", "\(nested)", "\(ThreadPriority.niceness)"]
        }
        #expect(seen.count == 6, "\(seen)")
        guard seen.count == 6 else { return }
        #expect(seen[1] == seen[0], "a thread never lowered is left alone: \(seen)")
        #expect(seen[2] != seen[0] || seen[0] == "19", "lowered: \(seen)")
        #expect(seen[3] == (Self.mayComeBack ? seen[0] : seen[2]), "inside: \(seen), may come back: \(Self.mayComeBack)")
        #expect(seen[4] == seen[3], "nested: \(seen)")
        #expect(seen[5] == seen[2], "lowered again after: \(seen)")
    }

    /// A thread started by a lowered thread inherits its niceness without having lowered
    /// itself; it comes back up for a lock all the same.
    @Test func aThreadBornLoweredComesBackForALockToo() {
        let seen = onAThread {
            let nice = ThreadPriority.niceness
            ThreadPriority.yieldCPU(bulk: false)
            final class Child: @unchecked Sendable { var seen: [Int] = [] }
            let child = Child(), done = DispatchSemaphore(value: 0)
            Thread {
                child.seen = [ThreadPriority.niceness, ThreadPriority.atFullPriority { ThreadPriority.niceness }, ThreadPriority.niceness]
                done.signal()
            }.start()
            done.wait()
            return ["\(nice)"] + child.seen.map { "\($0)" }
        }
        #expect(seen.count == 4, "\(seen)")
        guard seen.count == 4 else { return }
        #expect(seen[1] != seen[0] || seen[0] == "19", "born lowered: \(seen)")
        #expect(seen[2] == (Self.mayComeBack ? seen[0] : seen[1]) && seen[3] == seen[1], "\(seen), may come back: \(Self.mayComeBack)")
    }

    /// The agent's inventory does it for every transaction: a bulk worker's commit (and a bulk
    /// request's record of what it stored) runs at the process's priority.
    @Test func theInventoryLockIsHeldAtFullPriority() throws {
        let path = SpoolCountsTests.scratch()
        defer { SpoolCountsTests.remove(path) }
        let store = try AgentStore(path: path)
        final class Box: @unchecked Sendable { var seen: [Int] = []; var error: (any Error)? }
        let box = Box(), done = DispatchSemaphore(value: 0)
        Thread {
            let nice = ThreadPriority.niceness
            ThreadPriority.yieldCPU(bulk: true)
            do {
                let writing = try store.write { ThreadPriority.niceness }
                let reading = try store.read { ThreadPriority.niceness }
                box.seen = [nice, ThreadPriority.niceness, writing, reading]
            } catch { box.error = error }
            done.signal()
        }.start()
        done.wait()
        #expect(box.error == nil && box.seen.count == 4, "\(box.seen) \(String(describing: box.error))")
        guard box.seen.count == 4 else { return }
        let expected = Self.mayComeBack ? box.seen[0] : box.seen[1]
        #expect(box.seen[2] == expected && box.seen[3] == expected, "\(box.seen), may come back: \(Self.mayComeBack)")
    }

    @Test func aNormalThreadYieldsLess() {
        let seen = onAThread {
            let nice = ThreadPriority.niceness
            ThreadPriority.yieldCPU(bulk: false)
            return ["\(ThreadPriority.niceness - nice)", "\(min(19, nice + 5) - nice)"]
        }
        #expect(seen.count == 2 && seen[0] == seen[1], "\(seen)")
    }
}
