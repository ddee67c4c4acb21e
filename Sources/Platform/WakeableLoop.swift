import Foundation

/// A thread that runs `body` again and again: at least every `interval` seconds, at once when
/// nudged (something changed), until stopped — the one shape of the daemons' loops (the queue
/// manager, the announcer, the stability tick, the list watcher).
///
/// `body` returns how long to rest before the next turn at most (nil: `interval`). A nudge
/// during a turn is not lost: the next turn starts at once. `stop` asks; `join` waits, bounded,
/// for the thread to end its turn and return, so a stop can be ordered and timed (`ServiceGroup`).
public final class WakeableLoop: @unchecked Sendable {
    public let name: String
    private let interval: Double
    private let body: @Sendable () -> Double?
    private let condition = NSCondition()
    private var nudged = false
    private var stopping = false
    private var running = false
    private var finished = false

    public init(name: String, interval: Double, body: @escaping @Sendable () -> Double?) {
        self.name = name
        self.interval = interval
        self.body = body
    }

    /// Starts the thread (once; a second call does nothing).
    public func start() {
        let go: Bool = condition.withLock {
            guard !running, !stopping else { return false }
            running = true
            return true
        }
        guard go else { return }
        let thread = Thread { [self] in
            var rest = 0.0
            while true {
                condition.lock()
                if !nudged && !stopping && rest > 0 { _ = condition.wait(until: Date().addingTimeInterval(rest)) }
                nudged = false
                let done = stopping
                condition.unlock()
                if done { break }
                rest = body() ?? interval
            }
            condition.withLock {
                finished = true
                condition.broadcast()
            }
        }
        thread.name = name
        thread.start()
    }

    /// Something changed: turn now rather than at the end of the rest.
    public func nudge() {
        condition.withLock {
            nudged = true
            condition.broadcast()
        }
    }

    /// Asks the loop to end after its current turn.
    public func stop() {
        condition.withLock {
            stopping = true
            condition.broadcast()
        }
    }

    /// Waits until the loop has ended, at most `seconds`; true when it has (or never started).
    @discardableResult
    public func join(within seconds: Double) -> Bool {
        let end = Date().addingTimeInterval(max(0, seconds))
        return condition.withLock {
            while running && !finished {
                if !condition.wait(until: end) { return finished }
            }
            return true
        }
    }
}
