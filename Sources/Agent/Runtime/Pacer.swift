import Foundation
import Platform
import Spool

/// A destination's `bandwidth` cap, shared by every connection to it: the `PacingBook` under a
/// lock, on the monotonic clock. A sender calls `consume` with each block it reads, at its job's
/// priority, and sleeps until the book lets the block go (urgent work never waits for bulk
/// work's debt; bulk yields the link to urgent blocks, and waits for everyone's).
final class Pacer: @unchecked Sendable {
    private var book: PacingBook
    private let lock = NSLock()
    /// A yielding block looks again this often at most: a higher priority may book more while it
    /// sleeps.
    static let recheck = 0.002

    init(bytesPerSecond: Int) {
        book = PacingBook(bytesPerSecond: bytesPerSecond)
    }

    func consume(_ bytes: Int, priority: JobPriority) {
        let charge = lock.withLock { book.charge(bytes, priority: priority, now: MonotonicClock.now) }
        while true {
            let (wait, own) = lock.withLock {
                let now = MonotonicClock.now
                return (book.wait(charge, now: now), book.ownWait(charge, now: now))
            }
            if wait <= 0 { break }
            // Its own book's wait whole; yielding to higher priorities a little at a time.
            Thread.sleep(forTimeInterval: own > 0 ? own : min(wait, Self.recheck))
        }
        lock.withLock { book.went(charge, now: MonotonicClock.now) }
    }
}
