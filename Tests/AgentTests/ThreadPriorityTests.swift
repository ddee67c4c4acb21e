import Foundation
import Platform
import Testing

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

    @Test func aNormalThreadYieldsLess() {
        let seen = onAThread {
            let nice = ThreadPriority.niceness
            ThreadPriority.yieldCPU(bulk: false)
            return ["\(ThreadPriority.niceness - nice)", "\(min(19, nice + 5) - nice)"]
        }
        #expect(seen.count == 2 && seen[0] == seen[1], "\(seen)")
    }
}
