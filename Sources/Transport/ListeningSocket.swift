#if canImport(Glibc)
    import Glibc
#endif

/// The TCP listening socket and accept of both servers (HTTP and DIMSE): IPv4, closed on exec,
/// SO_REUSEADDR, and the peer's address in text.
enum ListeningSocket {
    /// A socket listening on `host`:`port` (0: one the kernel chooses), and the port it got.
    static func open(host: String, port: UInt16, backlog: Int32) throws(ConnectionError) -> (descriptor: Int32, port: UInt16) {
        let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue) | Int32(SOCK_CLOEXEC.rawValue), 0)
        guard fd >= 0 else { throw ConnectionError(kind: .io, message: "Cannot create a socket: \(String(cString: strerror(errno)))") }
        var one: Int32 = 1
        setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, socklen_t(MemoryLayout<Int32>.size))
        var address = sockaddr_in()
        address.sin_family = sa_family_t(AF_INET)
        address.sin_port = port.bigEndian
        guard inet_pton(AF_INET, host, &address.sin_addr) == 1 else {
            close(fd)
            throw ConnectionError(kind: .io, message: "\(host) is not an IPv4 address")
        }
        let bound = withUnsafePointer(to: &address) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { bind(fd, $0, socklen_t(MemoryLayout<sockaddr_in>.size)) }
        }
        guard bound == 0, listen(fd, backlog) == 0 else {
            let reason = String(cString: strerror(errno))
            close(fd)
            throw ConnectionError(kind: .io, message: "Cannot listen on \(host):\(port): \(reason)")
        }
        var actual = sockaddr_in()
        var length = socklen_t(MemoryLayout<sockaddr_in>.size)
        _ = withUnsafeMutablePointer(to: &actual) { $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { getsockname(fd, $0, &length) } }
        return (fd, UInt16(bigEndian: actual.sin_port))
    }

    /// The next connection (closed on exec) and the peer's address and port; nil with errno set
    /// when accept failed.
    static func accept(_ listener: Int32) -> (descriptor: Int32, address: String, port: UInt16)? {
        var address = sockaddr_in()
        var length = socklen_t(MemoryLayout<sockaddr_in>.size)
        let fd = withUnsafeMutablePointer(to: &address) { $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { Glibc.accept(listener, $0, &length) } }
        guard fd >= 0 else { return nil }
        _ = fcntl(fd, F_SETFD, FD_CLOEXEC)
        var text = [CChar](repeating: 0, count: 64)
        inet_ntop(AF_INET, &address.sin_addr, &text, socklen_t(text.count))
        return (fd, String(decoding: text.prefix { $0 != 0 }.map { UInt8(bitPattern: $0) }, as: UTF8.self), UInt16(bigEndian: address.sin_port))
    }

    /// Accepts until the listener is shut down (`stopping` then says so) or fails for good, and
    /// hands each connection to `handle`; closes the listener at the end. Out of file
    /// descriptors, it waits 100 ms and tries again (said through `log`).
    static func acceptLoop(_ listener: Int32, stopping: () -> Bool, log: (String) -> Void, handle: (_ descriptor: Int32, _ address: String, _ port: UInt16) -> Void) {
        while true {
            guard let (fd, address, port) = accept(listener) else {
                if errno == EINTR || errno == ECONNABORTED { continue }
                if stopping() { break }
                if errno == EMFILE || errno == ENFILE {
                    log("accept: out of file descriptors; waiting 100 ms")
                    usleep(100_000)
                    continue
                }
                break
            }
            handle(fd, address, port)
        }
        close(listener)
    }
}
