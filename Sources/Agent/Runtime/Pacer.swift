import Foundation
import Platform

/// A bandwidth cap shared by the connections to one destination: a token bucket refilled at
/// `bytesPerSecond`, holding at most a quarter second's worth, so a burst cannot exceed the cap
/// by much. A sender calls `consume` with each block it reads and sleeps when it is ahead.
final class Pacer: @unchecked Sendable {
    let bytesPerSecond: Double
    private var allowance: Double
    private var last: Double
    private let lock = NSLock()

    init(bytesPerSecond: Int) {
        self.bytesPerSecond = Double(bytesPerSecond)
        allowance = Double(bytesPerSecond) / 4
        last = MonotonicClock.now
    }

    func consume(_ bytes: Int) {
        let wait: Double = lock.withLock {
            let now = MonotonicClock.now
            allowance = min(bytesPerSecond / 4, allowance + (now - last) * bytesPerSecond)
            last = now
            allowance -= Double(bytes)
            return allowance < 0 ? -allowance / bytesPerSecond : 0
        }
        if wait > 0 { Thread.sleep(forTimeInterval: wait) }
    }
}
