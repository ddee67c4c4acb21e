import Foundation

/// The main loop of a daemon (`consort agent`, `consort coordinator`) under systemd
/// (Type=notify): READY=1 with a status line, the status kept current, WATCHDOG=1 at half of
/// $WATCHDOG_USEC only while the daemon's own loops run, RELOADING=1 / READY=1 around SIGHUP,
/// STOPPING=1 when a stop is asked for. Returns the signal that asked.
public enum ServiceLoop {
    public static func run(
        signals: SignalWatcher, log: Logger, summary: () -> String, hungLoops: (Double) -> [String] = { _ in [] }, reload: () -> Void
    ) -> Int32 {
        let notifier = ServiceNotifier(environment: ProcessInfo.processInfo.environment)
        notifier.send("READY=1", "STATUS=" + summary())
        let period = notifier.watchdogPeriod ?? 5
        var lastPing = -Double.infinity, lastStatus = MonotonicClock.now
        var withheld = false
        while true {
            let now = MonotonicClock.now
            if notifier.watchdogPeriod != nil, now - lastPing >= period {
                // A stuck loop withholds the ping: systemd then restarts the daemon (nothing is
                // lost: its state is durable and interrupted work resumes).
                let hung = hungLoops(max(10, period * 3))
                if hung.isEmpty {
                    notifier.send("WATCHDOG=1")
                    if withheld { log.info("the daemon's loops run again; watchdog pings resume") }
                    withheld = false
                } else if !withheld {
                    log.error("NOT pinging the systemd watchdog: a loop of the daemon is stuck; systemd will restart it", ["loops": hung.joined(separator: ",")])
                    withheld = true
                }
                lastPing = now
            }
            if now - lastStatus >= 5 {
                notifier.status(summary())
                lastStatus = now
            }
            let wait = notifier.watchdogPeriod.map { max(0.05, min(5, $0 - (MonotonicClock.now - lastPing))) } ?? 5
            switch signals.next(timeout: wait) {
            case .stop(let signal)?:
                notifier.send("STOPPING=1", "STATUS=stopping")
                return signal
            case .reload?:
                notifier.send("RELOADING=1", "STATUS=reloading")
                reload()
                notifier.send("READY=1", "STATUS=" + summary())
            case nil:
                continue
            }
        }
    }
}
