import DIMSE

#if canImport(Glibc)
    import Glibc
#endif

/// A DIMSE association over TCP, as the requester: connects with a deadline, and moves the PDUs
/// a pure exchange (`EchoRequester`) asks for, every read under the deadline (the ARTIM timer's
/// job, PS3.8 §9.1.5: a peer that stalls mid-PDU ends the association, never the caller's
/// thread). TLS for DIMSE comes with the C-STORE SCP (issue 26).
public enum DIMSEAssociation {
    public struct Failure: Error, CustomStringConvertible {
        public let description: String
        init(_ description: String) { self.description = description }
    }

    /// C-ECHO `called`@`host`:`port` as `calling`; the status (0: success). Every step within
    /// `timeout` seconds.
    public static func echo(host: String, port: UInt16, called: String, calling: String, timeout: Double, maximumLength: UInt32 = 65_536) throws -> UInt16 {
        let fd = try connect(host: host, port: port, timeout: timeout)
        defer { close(fd) }
        var exchange = EchoRequester(calledAE: called, callingAE: calling, maximumLength: maximumLength)
        var reader = PDUReader(maximumLength: Int(maximumLength))
        try send([exchange.opening], on: fd, timeout: timeout)
        while true {
            let pdu = try next(&reader, on: fd, timeout: timeout)
            switch try exchange.receive(pdu) {
            case .send(let pdus): try send(pdus, on: fd, timeout: timeout)
            case .finished(let status): return status
            }
        }
    }

    static func send(_ pdus: [PDU], on fd: Int32, timeout: Double) throws {
        for pdu in pdus {
            let bytes = pdu.encoded()
            var offset = 0
            while offset < bytes.count {
                try wait(fd, for: Int16(POLLOUT), timeout: timeout, doing: "sending")
                let n = bytes[offset...].withUnsafeBytes { Glibc.send(fd, $0.baseAddress, $0.count, Int32(MSG_NOSIGNAL)) }
                if n < 0 {
                    if errno == EINTR || errno == EAGAIN { continue }
                    throw Failure("the connection failed while sending: \(String(cString: strerror(errno)))")
                }
                offset += n
            }
        }
    }

    static func next(_ reader: inout PDUReader, on fd: Int32, timeout: Double) throws -> PDU {
        var buffer = [UInt8](repeating: 0, count: 64 * 1024)
        while true {
            if let pdu = try reader.next() { return pdu }
            try wait(fd, for: Int16(POLLIN), timeout: timeout, doing: "waiting for the peer")
            let n = buffer.withUnsafeMutableBytes { recv(fd, $0.baseAddress, $0.count, 0) }
            if n < 0 {
                if errno == EINTR || errno == EAGAIN { continue }
                throw Failure("the connection failed while reading: \(String(cString: strerror(errno)))")
            }
            if n == 0 { throw Failure("the peer closed the connection" + (reader.pending > 0 ? " in the middle of a PDU" : "")) }
            reader.append(buffer[0..<n])
            // Acknowledged at once, not after the delayed-ACK timer: a peer with Nagle on
            // (DCMTK writes a PDU's header and its body apart) otherwise holds the body 40 ms.
            // Linux clears the flag after use, so it is set after every read.
            var one: Int32 = 1
            setsockopt(fd, Int32(IPPROTO_TCP), TCP_QUICKACK, &one, socklen_t(MemoryLayout<Int32>.size))
        }
    }

    static func wait(_ fd: Int32, for events: Int16, timeout: Double, doing what: String) throws {
        var entry = pollfd(fd: fd, events: events, revents: 0)
        while true {
            let ready = poll(&entry, 1, Int32(max(1, timeout * 1000)))
            if ready > 0 { return }
            if ready == 0 { throw Failure("no answer within \(timeout) s while \(what)") }
            if errno != EINTR { throw Failure("poll failed: \(String(cString: strerror(errno)))") }
        }
    }

    static func connect(host: String, port: UInt16, timeout: Double) throws -> Int32 {
        var hints = addrinfo()
        hints.ai_socktype = Int32(SOCK_STREAM.rawValue)
        var list: UnsafeMutablePointer<addrinfo>?
        let status = getaddrinfo(host, String(port), &hints, &list)
        guard status == 0, let first = list else { throw Failure("cannot resolve \(host): \(String(cString: gai_strerror(status)))") }
        defer { freeaddrinfo(list) }
        var lastError = "no address"
        var entry: UnsafeMutablePointer<addrinfo>? = first
        while let address = entry {
            entry = address.pointee.ai_next
            let fd = socket(address.pointee.ai_family, address.pointee.ai_socktype | Int32(SOCK_CLOEXEC.rawValue) | Int32(SOCK_NONBLOCK.rawValue), address.pointee.ai_protocol)
            guard fd >= 0 else { continue }
            if Glibc.connect(fd, address.pointee.ai_addr, address.pointee.ai_addrlen) != 0 && errno != EINPROGRESS {
                lastError = String(cString: strerror(errno))
                close(fd)
                continue
            }
            do {
                try wait(fd, for: Int16(POLLOUT), timeout: timeout, doing: "connecting")
            } catch {
                lastError = "\(error)"
                close(fd)
                continue
            }
            var code: Int32 = 0
            var size = socklen_t(MemoryLayout<Int32>.size)
            getsockopt(fd, SOL_SOCKET, SO_ERROR, &code, &size)
            guard code == 0 else {
                lastError = String(cString: strerror(code))
                close(fd)
                continue
            }
            // Each PDU goes whole in one send and the peer answers it: without this, a small
            // PDU after another waits for the peer's delayed ACK (40 ms a C-ECHO on loopback).
            var one: Int32 = 1
            setsockopt(fd, Int32(IPPROTO_TCP), TCP_NODELAY, &one, socklen_t(MemoryLayout<Int32>.size))
            return fd
        }
        throw Failure("cannot connect to \(host):\(port): \(lastError)")
    }
}
