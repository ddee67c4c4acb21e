import Foundation
import Platform
import Spool

/// A destination's `bandwidth` cap, shared by every connection to it: the `PacingBook` under a
/// lock, on the monotonic clock. A sender calls `consume` with each block it reads, at its job's
/// priority, and sleeps when that priority is ahead of the cap (urgent work never waits for
/// bulk work's bytes; bulk waits for everyone's).
final class Pacer: @unchecked Sendable {
    private var book: PacingBook
    private let lock = NSLock()

    init(bytesPerSecond: Int) {
        book = PacingBook(bytesPerSecond: bytesPerSecond)
    }

    func consume(_ bytes: Int, priority: JobPriority) {
        let wait = lock.withLock { book.charge(bytes, priority: priority, now: MonotonicClock.now) }
        if wait > 0 { Thread.sleep(forTimeInterval: wait) }
    }
}
