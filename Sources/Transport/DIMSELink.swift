internal import COpenSSL
import Platform

#if canImport(Glibc)
    import Glibc
#endif

/// An association's byte stream as the requester sees it: plain TCP, or DICOM TLS over it
/// (PS3.15 Annex B.1: TLS 1.2 or later, both sides presenting certificates, here the trust's and
/// the consortium CA's), on a non-blocking socket, every wait under the step's deadline. Owns the
/// socket and the SSL object; closes both.
final class DIMSELink {
    let fd: Int32
    private var ssl: OpaquePointer?
    /// A TLS call failed for good: no close_notify is attempted (OpenSSL would queue another
    /// error on this thread, and the next connection's first call would read it as its own).
    private var broken = false

    init(fd: Int32) { self.fd = fd }

    deinit {
        if let ssl { SSL_free(ssl) }
        close(fd)
    }

    /// The TLS handshake as client: the node's certificate must chain to the context's CA and
    /// name `host` (as the trust's peers' certificates name theirs).
    func startTLS(_ context: TLSContext, host: String, timeout: Double) throws {
        guard let ssl = SSL_new(context.context) else { throw DIMSEAssociation.Failure(TLSError.drain("cannot start TLS").message) }
        self.ssl = ssl
        SSL_set_fd(ssl, fd)
        guard SSL_set1_host(ssl, host) == 1 else { throw DIMSEAssociation.Failure(TLSError.drain("cannot ask TLS to check the name \(host)").message) }
        let deadline = MonotonicClock.now + timeout
        while true {
            // SSL_get_error reads the thread's error queue: it must hold this call's errors only.
            ERR_clear_error()
            let result = SSL_connect(ssl)
            if result == 1 { return }
            let error = SSL_get_error(ssl, result)
            let left = deadline - MonotonicClock.now
            if (error == SSL_ERROR_WANT_READ || error == SSL_ERROR_WANT_WRITE) && left > 0 {
                try DIMSEAssociation.wait(fd, for: Int16(error == SSL_ERROR_WANT_READ ? POLLIN : POLLOUT), timeout: left, doing: "the TLS handshake", reported: timeout)
                continue
            }
            broken = true
            var reason = TLSError.drain("the TLS handshake failed").message
            let verify = SSL_get_verify_result(ssl)
            if verify != X509_V_OK, let text = X509_verify_cert_error_string(verify) { reason += " (the node's certificate: \(String(cString: text)))" }
            if left <= 0 { reason += " (no answer within \(timeout) s)" }
            var failure = DIMSEAssociation.Failure(reason)
            // A fault of certificates or protocol (ours or the node's) is configuration; a
            // connection reset or cut in the handshake is a node restarting, and transient.
            failure.inHandshake = left > 0 && (error == SSL_ERROR_SSL || verify != X509_V_OK)
            throw failure
        }
    }

    /// All of `bytes`, each wait for room within `timeout`.
    func send(_ bytes: UnsafeRawBufferPointer, timeout: Double) throws {
        var offset = 0
        while offset < bytes.count {
            if let ssl {
                var written = 0
                ERR_clear_error()
                if SSL_write_ex(ssl, bytes.baseAddress! + offset, bytes.count - offset, &written) == 1 {
                    offset += written
                    continue
                }
                let error = SSL_get_error(ssl, 0)
                if error == SSL_ERROR_WANT_WRITE || error == SSL_ERROR_WANT_READ {
                    try DIMSEAssociation.wait(fd, for: Int16(error == SSL_ERROR_WANT_READ ? POLLIN : POLLOUT), timeout: timeout, doing: "sending")
                    continue
                }
                if error == SSL_ERROR_SYSCALL && errno == EINTR { continue }
                broken = true
                throw DIMSEAssociation.Failure(TLSError.drain("the connection failed while sending (TLS)").message)
            }
            try DIMSEAssociation.wait(fd, for: Int16(POLLOUT), timeout: timeout, doing: "sending")
            let n = Glibc.send(fd, bytes.baseAddress! + offset, bytes.count - offset, Int32(MSG_NOSIGNAL))
            if n < 0 {
                if errno == EINTR || errno == EAGAIN { continue }
                throw DIMSEAssociation.Failure("the connection failed while sending: \(String(cString: strerror(errno)))")
            }
            offset += n
        }
    }

    /// What has arrived, into `buffer` (waiting up to `timeout` for something); 0 when the node
    /// closed the connection.
    func receive(into buffer: UnsafeMutableRawBufferPointer, timeout: Double, reported: Double) throws -> Int {
        let deadline = MonotonicClock.now + timeout
        while true {
            if let ssl {
                var got = 0
                ERR_clear_error()
                if SSL_read_ex(ssl, buffer.baseAddress, buffer.count, &got) == 1 { return got }
                let error = SSL_get_error(ssl, 0)
                if error == SSL_ERROR_ZERO_RETURN { return 0 }
                if error != SSL_ERROR_WANT_READ && error != SSL_ERROR_WANT_WRITE && !(error == SSL_ERROR_SYSCALL && errno == EINTR) { broken = true }
                if error == SSL_ERROR_WANT_READ || error == SSL_ERROR_WANT_WRITE {
                    let left = deadline - MonotonicClock.now
                    guard left > 0 else { throw DIMSEAssociation.Failure("no answer within \(reported) s while waiting for the peer") }
                    try DIMSEAssociation.wait(fd, for: Int16(error == SSL_ERROR_WANT_READ ? POLLIN : POLLOUT), timeout: left, doing: "waiting for the peer", reported: reported)
                    continue
                }
                if error == SSL_ERROR_SYSCALL && errno == EINTR { continue }
                if error == SSL_ERROR_SYSCALL && ERR_peek_error() == 0 { return 0 }  // closed without close_notify
                throw DIMSEAssociation.Failure(TLSError.drain("the connection failed while reading (TLS)").message)
            }
            try DIMSEAssociation.wait(fd, for: Int16(POLLIN), timeout: max(0.001, deadline - MonotonicClock.now), doing: "waiting for the peer", reported: reported)
            let n = recv(fd, buffer.baseAddress, buffer.count, 0)
            if n >= 0 { return n }
            if errno == EINTR || errno == EAGAIN { continue }
            throw DIMSEAssociation.Failure("the connection failed while reading: \(String(cString: strerror(errno)))")
        }
    }

    /// A TLS goodbye (close_notify), when TLS; the socket closes in deinit.
    func finish() {
        if let ssl, !broken {
            ERR_clear_error()
            SSL_shutdown(ssl)
        }
        // Nothing of this connection's left for the thread's next one to read as its own.
        ERR_clear_error()
    }
}
