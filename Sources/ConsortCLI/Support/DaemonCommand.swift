import CommandSupport
import ConfigurationText
import Platform

#if canImport(Glibc)
    import Glibc
#endif

/// How `consort agent` and `consort coordinator` run their daemon, written once: a configuration
/// with errors is reported and nothing starts (exit 1); a daemon that cannot start is logged
/// (exit 1); a started one says it is ready on stdout, then lives in `ServiceLoop` (systemd's
/// READY, STATUS, WATCHDOG, RELOADING, STOPPING) until SIGTERM or SIGINT, and is stopped.
/// The signal watcher is armed by the caller, first of all, so a stop that arrives while the
/// configuration is read or the daemon starts waits for the loop instead of killing the process.
enum DaemonCommand {
    /// What the loop needs of a started daemon.
    struct Running {
        /// The port it listens on (for the ready line: `--config` may say port 0).
        var port: UInt16
        var summary: () -> String
        /// Its loops stuck longer than the seconds given (the watchdog is withheld for them).
        var hungLoops: (Double) -> [String] = { _ in [] }
        var reload: () -> Void
        var stop: () -> Void
    }

    /// `ready` is the start of the ready line ("consort agent: RSCH ready"); the listening
    /// address follows it.
    static func run<Configuration>(
        _ name: String, file: String, signals: SignalWatcher, parsed: ConfigurationOutcome<Configuration>,
        listenHost: (Configuration) -> String, ready: (Configuration) -> String, start: (Configuration, Logger) throws -> Running
    ) -> ExitCode {
        guard let configuration = parsed.configuration else {
            standardError.line(parsed.report())
            standardError.line("consort \(name): \(file) has errors; not started")
            return .someFailed
        }
        let log = Logger(name)
        let daemon: Running
        do {
            daemon = try start(configuration, log)
        } catch {
            log.error("cannot start", ["config": file, "error": "\(error)"])
            return .someFailed
        }
        standardOutput.line("\(ready(configuration)), listening on \(listenHost(configuration)):\(daemon.port)")
        standardOutput.flush()
        let stop = ServiceLoop.run(signals: signals, log: log, summary: daemon.summary, hungLoops: daemon.hungLoops, reload: daemon.reload)
        log.info("\(stop == SIGINT ? "SIGINT" : "SIGTERM"): stopping")
        daemon.stop()
        return .success
    }
}
