#if canImport(Glibc)
    import Glibc
#endif

/// systemd's notify protocol, spoken directly (no libsystemd): one datagram of `KEY=value`
/// lines to the Unix socket named by `$NOTIFY_SOCKET` (a path, or `@name` in the abstract
/// namespace). `READY=1` once the service works, `STATUS=` a line `systemctl status` shows,
/// `RELOADING=1` / `READY=1` around a reload, `STOPPING=1`, and `WATCHDOG=1` at least every
/// `$WATCHDOG_USEC` microseconds while healthy: systemd restarts a service that stops pinging.
///
/// Without `$NOTIFY_SOCKET` (run by hand, or by the tests) every call does nothing.
public final class ServiceNotifier: @unchecked Sendable {
    private let fd: Int32
    private let address: [UInt8]
    /// How often to ping the watchdog (half its timeout), nil when no watchdog is set for us.
    public let watchdogPeriod: Double?

    /// Reads `NOTIFY_SOCKET`, `WATCHDOG_USEC` and `WATCHDOG_PID` from the environment.
    public init(environment: [String: String]) {
        var period: Double?
        if let text = environment["WATCHDOG_USEC"], let usec = Double(text), usec > 0 {
            // WATCHDOG_PID, when set, names the process the watchdog is for: not us, no pings.
            if environment["WATCHDOG_PID"].map({ Int32($0) == getpid() }) ?? true { period = usec / 2_000_000 }
        }
        watchdogPeriod = period
        guard let path = environment["NOTIFY_SOCKET"], !path.isEmpty, path.hasPrefix("/") || path.hasPrefix("@") else {
            fd = -1
            address = []
            return
        }
        var bytes = Array(path.utf8)
        if bytes[0] == UInt8(ascii: "@") { bytes[0] = 0 }  // the abstract namespace
        address = bytes
        fd = socket(AF_UNIX, Int32(SOCK_DGRAM.rawValue) | Int32(SOCK_CLOEXEC.rawValue), 0)
    }

    deinit { if fd >= 0 { close(fd) } }

    /// Whether a service manager listens (`$NOTIFY_SOCKET` was set and usable).
    public var isActive: Bool { fd >= 0 }

    /// Sends the lines in one datagram; false if it could not be sent (never fatal: systemd
    /// then sees the service as not ready, or restarts it on the watchdog, which is right).
    /// Never blocks: a listener that stops reading fills its queue (10 datagrams by default),
    /// and a blocking send would then hang the very loop that pings the watchdog.
    @discardableResult
    public func send(_ lines: String...) -> Bool {
        guard fd >= 0 else { return false }
        var message = Array(lines.joined(separator: "\n").utf8)
        var target = sockaddr_un()
        target.sun_family = sa_family_t(AF_UNIX)
        let capacity = MemoryLayout.size(ofValue: target.sun_path)
        guard address.count < capacity else { return false }
        withUnsafeMutableBytes(of: &target.sun_path) { $0.copyBytes(from: address) }
        // An abstract name's length is exact (no terminating zero); a path's includes it.
        let length = MemoryLayout<sa_family_t>.size + address.count + (address.first == 0 ? 0 : 1)
        let sent = message.withUnsafeMutableBytes { body in
            withUnsafePointer(to: &target) {
                $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { sendto(fd, body.baseAddress, body.count, Int32(MSG_NOSIGNAL | MSG_DONTWAIT), $0, socklen_t(length)) }
            }
        }
        return sent == message.count
    }

    /// A `STATUS=` line: one line, no newlines.
    public func status(_ text: String) {
        send("STATUS=" + text.split(whereSeparator: \.isNewline).joined(separator: " "))
    }
}
