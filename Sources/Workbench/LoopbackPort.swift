import Foundation
#if canImport(Glibc)
import Glibc
#endif

/// A loopback port for a process this one is about to start (the demo's sites, the benchmarks',
/// the tests'), chosen below the kernel's ephemeral range. A port the kernel hands out for
/// `bind(0)` comes from the same range as the local ports of outgoing connections: between
/// choosing it and the child binding it, any connection made meanwhile may take it ("Address
/// already in use", seen in the test suite). Below the range no outgoing connection lands;
/// the port is checked free when chosen, and never handed out twice by one process.
public enum LoopbackPort {
    private static let lock = NSLock()
    nonisolated(unsafe) private static var handedOut = Set<Int>()

    public static func free() -> Int {
        let low = ephemeralLow()
        if low > 12_000 {
            for _ in 0..<200 {
                let candidate = Int.random(in: 10_000..<low)
                let fresh = lock.withLock { handedOut.insert(candidate).inserted }
                if fresh, bindable(candidate) { return candidate }
            }
        }
        return kernelChosen()
    }

    /// The first port of the kernel's ephemeral range (32768 unless configured otherwise).
    static func ephemeralLow() -> Int {
        guard let text = try? String(contentsOfFile: "/proc/sys/net/ipv4/ip_local_port_range", encoding: .utf8),
            let first = text.split(whereSeparator: { $0 == " " || $0 == "\t" || $0 == "\n" }).first, let low = Int(first)
        else { return 32_768 }
        return low
    }

    static func bindable(_ port: Int) -> Bool { bound(port) != nil }

    static func kernelChosen() -> Int { bound(0) ?? 0 }

    /// Binds a socket to 127.0.0.1:`port` (0: the kernel chooses), closes it, and says which
    /// port it had; nil if the bind failed.
    private static func bound(_ port: Int) -> Int? {
        let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
        guard fd >= 0 else { return nil }
        defer { close(fd) }
        var address = sockaddr_in()
        address.sin_family = sa_family_t(AF_INET)
        address.sin_addr.s_addr = inet_addr("127.0.0.1")
        address.sin_port = in_port_t(UInt16(port).bigEndian)
        var length = socklen_t(MemoryLayout<sockaddr_in>.size)
        guard withUnsafePointer(to: &address, { $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { bind(fd, $0, length) } }) == 0,
            withUnsafeMutablePointer(to: &address, { $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { getsockname(fd, $0, &length) } }) == 0
        else { return nil }
        return Int(UInt16(bigEndian: address.sin_port))
    }
}
