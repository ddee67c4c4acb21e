import CommandSupport
import Foundation

#if canImport(Glibc)
    import Glibc
#endif

/// A program run as a child with its output in files, waited for with wait4(2) so that its peak
/// memory comes back with its exit status. (Foundation's Process reaps its children itself and
/// keeps their resource usage; benchmarks need it.)
final class ChildProcess {
    let pid: pid_t
    let command: String

    struct Exit {
        var status: Int32
        /// Peak resident set size, KiB (ru_maxrss).
        var peakKiB: Int
        /// It did not end within the time given (`wait(within:)`) and was killed.
        var timedOut = false
        var succeeded: Bool { status == 0 && !timedOut }
    }

    struct Failure: Error, CustomStringConvertible {
        var description: String
    }

    /// Starts `path` with `arguments`; standard output and error go to the files named (created
    /// or truncated), standard input is /dev/null.
    init(_ path: String, _ arguments: [String], stdout: String, stderr: String) throws(Failure) {
        command = ([path] + arguments).joined(separator: " ")
        var actions = posix_spawn_file_actions_t()
        posix_spawn_file_actions_init(&actions)
        defer { posix_spawn_file_actions_destroy(&actions) }
        posix_spawn_file_actions_addopen(&actions, 0, "/dev/null", O_RDONLY, 0)
        posix_spawn_file_actions_addopen(&actions, 1, stdout, O_WRONLY | O_CREAT | O_TRUNC, 0o644)
        posix_spawn_file_actions_addopen(&actions, 2, stderr, O_WRONLY | O_CREAT | O_TRUNC, 0o644)
        let argv: [UnsafeMutablePointer<CChar>?] = ([path] + arguments).map { strdup($0) } + [nil]
        defer { for pointer in argv { free(pointer) } }
        // A clean start for signals: no signal blocked, the usual ones at their defaults. A
        // child inherits its parent's mask, and a parent that waits for signals with sigwait
        // (the agent, a test runner) has them blocked: its child would then ignore SIGTERM.
        var attributes = posix_spawnattr_t()
        posix_spawnattr_init(&attributes)
        defer { posix_spawnattr_destroy(&attributes) }
        var none = sigset_t(), defaults = sigset_t()
        sigemptyset(&none)
        sigemptyset(&defaults)
        for number in [SIGTERM, SIGINT, SIGHUP, SIGPIPE, SIGQUIT, SIGUSR1, SIGUSR2] { sigaddset(&defaults, number) }
        posix_spawnattr_setsigmask(&attributes, &none)
        posix_spawnattr_setsigdefault(&attributes, &defaults)
        posix_spawnattr_setflags(&attributes, Int16(POSIX_SPAWN_SETSIGMASK | POSIX_SPAWN_SETSIGDEF))
        var child: pid_t = 0
        let code = posix_spawn(&child, path, &actions, &attributes, argv, environ)
        guard code == 0 else { throw Failure(description: "Cannot start \(path): \(String(cString: strerror(code)))") }
        pid = child
    }

    /// Waits for the child to end.
    func wait() -> Exit {
        var status: Int32 = 0
        var usage = rusage()
        while wait4(pid, &status, 0, &usage) < 0 && errno == EINTR {}
        // WIFEXITED / WEXITSTATUS, spelled out (the macros do not come through to Swift).
        let exited = status & 0x7F == 0
        return Exit(status: exited ? (status >> 8) & 0xFF : 128 + (status & 0x7F), peakKiB: usage.ru_maxrss)
    }

    /// Waits for the child to end, at most `seconds`; a child still running then is killed
    /// (SIGKILL) and reaped, and its exit says so. One child that hangs fails a benchmark
    /// rather than hanging it (and the test suite that runs it).
    func wait(within seconds: Double) -> Exit {
        let deadline = monotonicSeconds() + seconds
        while isRunning && monotonicSeconds() < deadline { usleep(10_000) }
        let timedOut = isRunning
        if timedOut { signal(SIGKILL) }
        var exit = wait()
        exit.timedOut = timedOut
        return exit
    }

    /// The same bound without polling, for a child whose run is being timed: a watchdog kills it
    /// (SIGKILL) if it has not ended after `seconds`, and the wait returns the moment it ends
    /// (`wait(within:)` looks every 10 ms, which would add up to that to the time measured).
    func wait(killingAfter seconds: Double) -> Exit {
        final class Fired: @unchecked Sendable {
            let lock = NSLock()
            var fired = false
        }
        let fired = Fired(), pid = pid
        let watchdog = DispatchWorkItem {
            fired.lock.withLock { fired.fired = true }
            kill(pid, SIGKILL)
        }
        DispatchQueue.global().asyncAfter(deadline: .now() + seconds, execute: watchdog)
        var exit = wait()
        // Cancelled microseconds after the reaping: a kill in that gap could only reach a pid the
        // kernel handed out again within them.
        watchdog.cancel()
        exit.timedOut = fired.lock.withLock { fired.fired }
        return exit
    }

    /// SIGTERM, then `wait(within:)`: an agent that does not stop in time is killed.
    func stop(within seconds: Double) -> Exit {
        signal(SIGTERM)
        return wait(within: seconds)
    }

    /// Peak resident set size so far (VmHWM), KiB, while the child runs.
    var peakKiBSoFar: Int {
        guard let text = try? String(contentsOfFile: "/proc/\(pid)/status", encoding: .utf8),
            let line = text.split(separator: "\n").first(where: { $0.hasPrefix("VmHWM:") })
        else { return 0 }
        return Int(line.split(separator: " ", omittingEmptySubsequences: true).dropFirst().first ?? "") ?? 0
    }

    func signal(_ number: Int32) { kill(pid, number) }

    /// Whether the child still runs (it is not reaped: `wait()` still gives its status).
    var isRunning: Bool {
        // The state letter in /proc/PID/stat (after the name in parentheses): Z once it exited.
        guard let text = try? String(contentsOfFile: "/proc/\(pid)/stat", encoding: .utf8), let close = text.lastIndex(of: ")") else { return false }
        return text[text.index(after: close)...].trimmingCharacters(in: .whitespaces).first != "Z"
    }

    /// The path of the program running now (to start another consort).
    static var ownExecutable: String {
        var buffer = [CChar](repeating: 0, count: Int(PATH_MAX) + 1)
        let count = readlink("/proc/self/exe", &buffer, buffer.count - 1)
        return count > 0 ? String(decoding: buffer[0..<count].map { UInt8(bitPattern: $0) }, as: UTF8.self) : CommandLine.arguments[0]
    }

    /// The first executable called `name` on PATH.
    static func find(_ name: String) -> String? {
        let path = ProcessInfo.processInfo.environment["PATH"] ?? "/usr/bin:/bin"
        return path.split(separator: ":").map { "\($0)/\(name)" }.first { access($0, X_OK) == 0 }
    }
}
