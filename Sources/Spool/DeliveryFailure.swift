/// Why a delivery attempt failed: its class (what to do next) and a reason a sysadmin
/// understands, e.g. "transient: could not connect to the peer (curl error 7: Failed to
/// connect to pacs.example.nhs.uk port 443: Connection refused)".
public struct DeliveryFailure: Sendable, Hashable, CustomStringConvertible {
    public var `class`: FailureClass
    public var reason: String

    public init(class: FailureClass, reason: String) {
        self.class = `class`
        self.reason = reason
    }

    /// A transport failure reported by libcurl: `curlCode` is the `CURLcode`, `message` the
    /// error buffer's text (or `curl_easy_strerror`). The class is
    /// `classify(curlCode:message:)`'s; the reason says what happened in words, then curl's.
    public init(curlCode: Int, message: String) {
        self.class = Self.classify(curlCode: curlCode, message: message)
        let detail = message.isEmpty ? "curl error \(curlCode)" : "curl error \(curlCode): \(message)"
        if let summary = Self.summary(curlCode: curlCode) {
            reason = "\(summary) (\(detail))"
        } else {
            reason = detail
        }
    }

    public var description: String { "\(self.class.rawValue): \(reason)" }

    /// Words in a TLS handshake error (CURLE_SSL_CONNECT_ERROR, 35) that show a certificate
    /// fault rather than a broken connection. OpenSSL reports the peer's TLS alerts as e.g.
    /// "tlsv1 alert unknown ca", "sslv3 alert bad certificate", "sslv3 alert certificate
    /// expired", "sslv3 alert certificate revoked", "tlsv13 alert certificate required" (the
    /// peer wants our certificate); "certificate" covers all but the first. Compared in lower
    /// case.
    static let certificateWords = ["alert unknown ca", "certificate", "bad certificate", "certificate expired", "certificate revoked"]

    /// The class of a libcurl failure (codes from curl.h; libcurl-errors(3)).
    ///
    /// - configuration: 58 CURLE_SSL_CERTPROBLEM (our client certificate or key is unusable),
    ///   59 CURLE_SSL_CIPHER (no cipher both sides accept), 60 CURLE_PEER_FAILED_VERIFICATION
    ///   (the peer's certificate did not verify: unknown CA, expired, revoked, wrong name),
    ///   77 CURLE_SSL_CACERT_BADFILE and 82 CURLE_SSL_CRL_BADFILE (our CA bundle or CRL file
    ///   cannot be read), 83 CURLE_SSL_ISSUER_ERROR (issuer check failed), 90
    ///   CURLE_SSL_PINNEDPUBKEYNOTMATCH (the peer's key is not the pinned one), 91
    ///   CURLE_SSL_INVALIDCERTSTATUS (OCSP status not good). Each persists until a person
    ///   changes a certificate or a trust store; retrying cannot fix it and the peer may be up.
    /// - 35 CURLE_SSL_CONNECT_ERROR is configuration when `message` names a certificate fault
    ///   (`certificateWords`: typically the peer's alert refusing our certificate), else
    ///   transient (a reset or truncated handshake: the peer restarting, a middlebox).
    /// - transient: 6 CURLE_COULDNT_RESOLVE_HOST (DNS can recover), 7 CURLE_COULDNT_CONNECT
    ///   (refused or unreachable: the peer is down or restarting), 16 CURLE_HTTP2 and 92
    ///   CURLE_HTTP2_STREAM (HTTP/2 framing or a reset stream, e.g. the server going away),
    ///   18 CURLE_PARTIAL_FILE (the response ended early), 28 CURLE_OPERATION_TIMEDOUT,
    ///   52 CURLE_GOT_NOTHING (closed without answering), 55 CURLE_SEND_ERROR and
    ///   56 CURLE_RECV_ERROR (the connection broke mid-transfer).
    /// - permanent: everything else (a malformed URL, an unsupported protocol, our own read
    ///   callback failing, codes this table does not know): waiting will not change it, so a
    ///   person should look.
    public static func classify(curlCode: Int, message: String) -> FailureClass {
        switch curlCode {
        case 58, 59, 60, 77, 82, 83, 90, 91:
            return .configuration
        case 35:
            let text = message.lowercased()
            return certificateWords.contains { text.contains($0) } ? .configuration : .transient
        case 6, 7, 16, 18, 28, 52, 55, 56, 92:
            return .transient
        default:
            return .permanent
        }
    }

    /// What a libcurl code means, in words for the operator; nil for codes without one.
    static func summary(curlCode: Int) -> String? {
        switch curlCode {
        case 6: return "could not resolve the peer's host name"
        case 7: return "could not connect to the peer"
        case 16: return "HTTP/2 framing error"
        case 18: return "the response ended early"
        case 28: return "timed out"
        case 35: return "the TLS handshake failed"
        case 52: return "the peer closed the connection without answering"
        case 55: return "sending to the peer failed"
        case 56: return "receiving from the peer failed"
        case 58: return "our client certificate or key cannot be used"
        case 59: return "no TLS cipher both sides accept"
        case 60: return "the peer's certificate did not verify"
        case 77: return "our CA certificate file cannot be read"
        case 82: return "our certificate revocation list cannot be read"
        case 83: return "the peer's certificate issuer check failed"
        case 90: return "the peer's public key does not match the pinned key"
        case 91: return "the peer's certificate status (OCSP) is not good"
        case 92: return "the peer reset the HTTP/2 stream"
        default: return nil
        }
    }
}
