internal import CSystem

#if canImport(Glibc)
    import Glibc
#endif

/// The signals a long-running command answers — SIGTERM and SIGINT (stop), SIGHUP (reload) —
/// caught from the moment `arm()` returns, so that none is ever lost.
///
/// Why not a Dispatch signal source: it has to be paired with `signal(SIG_IGN)` to stop the
/// default action, and a signal landing between the two is discarded (issue 9: a receiver that
/// systemd stopped right after start ignored SIGTERM and ran until SIGKILL). Here a C handler
/// (`consort_signals_arm`) is installed with sigaction before anything starts serving, and
/// writes each signal to a pipe; the command reads the pipe when it is ready to act. A signal
/// that arrives while the command is still starting waits in the pipe and is acted on the
/// moment the command looks.
///
/// Arm first, as the first thing a long-running command does, before it opens its listener or
/// says it is ready. One watcher per process.
public final class SignalWatcher: Sendable {
    /// What a signal asks of the command.
    public enum Request: Sendable, Equatable {
        /// SIGTERM (systemd's stop) or SIGINT (Ctrl-C): stop taking work, finish, exit 0.
        case stop(signal: Int32)
        /// SIGHUP: reload what can be reloaded.
        case reload
    }

    private let descriptor: Int32

    private init(descriptor: Int32) { self.descriptor = descriptor }

    /// Installs the handlers for SIGTERM, SIGINT and SIGHUP. Throws only if the kernel refuses
    /// a pipe or a handler (then the command must not start: it could not be stopped cleanly).
    public static func arm() throws(PlatformError) -> SignalWatcher {
        let signals: [Int32] = [SIGTERM, SIGINT, SIGHUP]
        let fd = signals.withUnsafeBufferPointer { consort_signals_arm($0.baseAddress, Int32($0.count)) }
        guard fd >= 0 else { throw PlatformError("Cannot install the signal handlers", errno: errno) }
        return SignalWatcher(descriptor: fd)
    }

    /// The next signal, waiting at most `timeout` seconds (nil: for ever); nil when none came.
    /// A main loop with periodic work (a watchdog ping) passes its period.
    public func next(timeout: Double? = nil) -> Request? {
        let deadline = timeout.map { MonotonicClock.now + $0 }
        while true {
            var byte: UInt8 = 0
            let n = read(descriptor, &byte, 1)
            if n == 1 {
                let number = Int32(byte)
                return number == SIGHUP ? .reload : .stop(signal: number)
            }
            if n < 0 && errno != EAGAIN && errno != EINTR { return nil }
            var waitMilliseconds: Int32 = -1
            if let deadline {
                let left = deadline - MonotonicClock.now
                if left <= 0 { return nil }
                waitMilliseconds = Int32(min(left * 1000, 3_600_000).rounded(.up))
            }
            var poller = pollfd(fd: descriptor, events: Int16(POLLIN), revents: 0)
            _ = poll(&poller, 1, waitMilliseconds)
        }
    }

    /// Waits until a stop is asked for, calling `onReload` for each SIGHUP on the way.
    public func waitForStop(onReload: () -> Void = {}) -> Int32 {
        while true {
            switch next() {
            case .stop(let signal): return signal
            case .reload: onReload()
            case nil: continue
            }
        }
    }
}
