internal import COpenSSL

#if canImport(Glibc)
    import Glibc
#endif

/// A connection's failure, worded for the log: who, what, why.
public struct ConnectionError: Error, CustomStringConvertible {
    public enum Kind: Sendable { case closed, timedOut, tls, io }
    public var kind: Kind
    public var message: String
    public var description: String { message }
}

/// One accepted connection, plain TCP or TLS over it: blocking reads and writes with timeouts,
/// on the thread that owns it. Owns the socket and the SSL object; closes both.
///
/// `@unchecked Sendable`: the accept loop hands each connection to exactly one new thread and
/// never touches it again; that thread is its only user.
final class Connection: @unchecked Sendable {
    let descriptor: Int32
    let remote: String
    private var ssl: OpaquePointer?
    private(set) var peer: PeerIdentity?

    init(descriptor: Int32, remote: String) {
        self.descriptor = descriptor
        self.remote = remote
        var one: Int32 = 1
        // Small writes (a 100 Continue, a response head) must not wait for Nagle's algorithm.
        setsockopt(descriptor, Int32(IPPROTO_TCP), TCP_NODELAY, &one, socklen_t(MemoryLayout<Int32>.size))
    }

    deinit {
        if let ssl { SSL_free(ssl) }
        close(descriptor)
    }

    /// The read timeout last set, so that a body read in thousands of pieces does not cost a
    /// system call per piece to set the same value again.
    private var readTimeout: Double?

    /// Sets how long one read may wait (SO_RCVTIMEO); 0 or less means at once.
    func setReadTimeout(_ seconds: Double) {
        guard seconds != readTimeout else { return }
        readTimeout = seconds
        var tv = timeval(tv_sec: Int(max(0.001, seconds)), tv_usec: Int((max(0.001, seconds).truncatingRemainder(dividingBy: 1)) * 1_000_000))
        setsockopt(descriptor, SOL_SOCKET, SO_RCVTIMEO, &tv, socklen_t(MemoryLayout<timeval>.size))
    }

    func setWriteTimeout(_ seconds: Double) {
        var tv = timeval(tv_sec: Int(seconds), tv_usec: Int(seconds.truncatingRemainder(dividingBy: 1) * 1_000_000))
        setsockopt(descriptor, SOL_SOCKET, SO_SNDTIMEO, &tv, socklen_t(MemoryLayout<timeval>.size))
    }

    /// The TLS handshake, as server; the peer's certificate is verified by the context's rules.
    func acceptTLS(_ context: TLSContext) throws(ConnectionError) {
        guard let ssl = SSL_new(context.context) else { throw ConnectionError(kind: .tls, message: TLSError.drain("Cannot start TLS").message) }
        self.ssl = ssl
        SSL_set_fd(ssl, descriptor)
        let result = SSL_accept(ssl)
        if result != 1 {
            let verify = SSL_get_verify_result(ssl)
            var reason = TLSError.drain("TLS handshake failed").message
            if verify != X509_V_OK, let text = X509_verify_cert_error_string(verify) {
                reason += " (certificate: \(String(cString: text)))"
            }
            if errno == EAGAIN || errno == EWOULDBLOCK { reason += " (timed out)" }
            throw ConnectionError(kind: .tls, message: "TLS handshake with \(remote) refused: \(reason)")
        }
        peer = PeerIdentity.of(ssl)
    }

    /// Reads what is available (at most `buffer.count`); 0 when the peer closed.
    func read(into buffer: UnsafeMutableRawBufferPointer) throws(ConnectionError) -> Int {
        if let ssl {
            var got = 0
            while true {
                let ok = SSL_read_ex(ssl, buffer.baseAddress, buffer.count, &got)
                if ok == 1 { return got }
                let error = SSL_get_error(ssl, 0)
                if error == SSL_ERROR_ZERO_RETURN { return 0 }
                if error == SSL_ERROR_SYSCALL && errno == EINTR { continue }
                if error == SSL_ERROR_WANT_READ || errno == EAGAIN || errno == EWOULDBLOCK {
                    throw ConnectionError(kind: .timedOut, message: "\(remote) sent nothing in time")
                }
                if error == SSL_ERROR_SYSCALL && ERR_peek_error() == 0 { return 0 }  // closed without close_notify
                throw ConnectionError(kind: .tls, message: TLSError.drain("TLS read from \(remote) failed").message)
            }
        }
        while true {
            let n = recv(descriptor, buffer.baseAddress, buffer.count, 0)
            if n >= 0 { return n }
            if errno == EINTR { continue }
            if errno == EAGAIN || errno == EWOULDBLOCK { throw ConnectionError(kind: .timedOut, message: "\(remote) sent nothing in time") }
            if errno == ECONNRESET { return 0 }
            throw ConnectionError(kind: .io, message: "Reading from \(remote) failed: \(String(cString: strerror(errno)))")
        }
    }

    /// Writes all of `bytes`.
    func write(_ bytes: some Collection<UInt8>) throws(ConnectionError) {
        let array = Array(bytes)
        var failure: ConnectionError?
        array.withUnsafeBytes { raw in
            do throws(ConnectionError) { try write(raw) } catch { failure = error }
        }
        if let failure { throw failure }
    }

    /// Writes all of `raw` (no copy: streamed bodies go out from their read buffer).
    func write(_ raw: UnsafeRawBufferPointer) throws(ConnectionError) {
        var sent = 0
        while sent < raw.count {
            if let ssl {
                var written = 0
                if SSL_write_ex(ssl, raw.baseAddress! + sent, raw.count - sent, &written) == 1 {
                    sent += written
                    continue
                }
                if SSL_get_error(ssl, 0) == SSL_ERROR_SYSCALL && errno == EINTR { continue }
                throw ConnectionError(kind: .io, message: TLSError.drain("TLS write to \(remote) failed").message)
            }
            // MSG_NOSIGNAL: a peer that went away is an error here, not a SIGPIPE.
            let n = send(descriptor, raw.baseAddress! + sent, raw.count - sent, Int32(MSG_NOSIGNAL))
            if n < 0 {
                if errno == EINTR { continue }
                throw ConnectionError(
                    kind: errno == EAGAIN ? .timedOut : .io, message: "Writing to \(remote) failed: \(String(cString: strerror(errno)))")
            }
            sent += n
        }
    }

    /// Says goodbye properly on TLS (close_notify), then the socket closes in deinit.
    func shutdown() {
        if let ssl { SSL_shutdown(ssl) }
        Glibc.shutdown(descriptor, Int32(SHUT_RDWR))
    }
}
