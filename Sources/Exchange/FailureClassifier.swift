import DICOMweb
import Spool
import Transport

/// What became of one instance sent with STOW-RS: delivered, or a failure of a class.
public enum DeliveryClass: Sendable, Hashable, CustomStringConvertible {
    /// The peer has the instance (stored now, or already held).
    case delivered
    case failed(FailureClass)

    public var failure: FailureClass? {
        if case .failed(let failure) = self { return failure }
        return nil
    }

    public var description: String { failure?.rawValue ?? "delivered" }
}

/// The one place every answer from the other side becomes what the caller does next (STYLE 10):
/// an HTTP status, a STOW-RS failure reason, a libcurl code, a WADO-RS answer, a coordinator
/// answer. The agent's queue, `consort send` and `consort fetch` all ask it, so none calls
/// "refused" what another retries. (There were five tables, and they disagreed: curl codes 16,
/// 35 and 92 were "refused" for `consort send` and retried by the agent.)
public enum FailureClassifier {
    // MARK: - HTTP statuses

    /// A status other than 2xx from a peer's DICOMweb service or the coordinator.
    /// - transient: 408 Request Timeout, 425 Too Early, 429 Too Many Requests (come back later),
    ///   and 5xx but 501 and 505 (the server is unwell; it may recover).
    /// - configuration: 401, 403 (the caller is not a member, names no purpose or one no
    ///   agreement allows: the rules or a certificate need a person), 421 Misdirected Request.
    /// - refused: every other 4xx, 501 Not Implemented, 505: waiting will not change them.
    public static func failure(httpStatus status: Int) -> FailureClass {
        switch status {
        case 408, 425, 429: return .transient
        case 401, 403, 421: return .configuration
        case 501, 505: return .refused
        case 500..<600: return .transient
        default: return .refused
        }
    }

    /// A STOW-RS request's status, before its body: what each instance the body does not
    /// mention became.
    public static func delivery(httpStatus status: Int) -> DeliveryClass {
        (200..<300).contains(status) ? .delivered : .failed(failure(httpStatus: status))
    }

    // MARK: - STOW-RS failure reasons

    /// FailureReason 0x0111, Duplicate SOP Instance: some servers' way of saying they hold it.
    public static let duplicateInstance: UInt16 = 0x0111

    /// A STOW-RS FailureReason (00081197), PS3.4 Annex C status codes as PS3.18 uses them.
    public static func delivery(failureReason reason: UInt16) -> DeliveryClass {
        switch reason {
        case duplicateInstance: return .delivered  // the peer already holds it
        case 0x0110: return .failed(.transient)  // Processing failure
        case 0xA700...0xA7FF: return .failed(.transient)  // Refused: out of resources
        default: return .failed(.refused)  // not understood, not matching its SOP class, unknown: a person looks
        }
    }

    /// What each sent instance became, from the status and the parsed body. Instances the body
    /// does not mention take the status's class (a 200 with an empty body: delivered; a 503:
    /// transient); but a 2xx that reports some instances and not others did not store the
    /// silent ones (Orthanc answers 200 after dropping an unparseable part): try them again.
    public static func outcomes(status: Int, response: StowResponse, sent sopInstanceUIDs: [String]) -> [String: DeliveryClass] {
        var result: [String: DeliveryClass] = [:]
        let byStatus = delivery(httpStatus: status)
        for uid in sopInstanceUIDs { result[uid] = byStatus }
        if (200..<300).contains(status) || status == 409 {
            for stored in response.stored where result[stored.sopInstanceUID] != nil { result[stored.sopInstanceUID] = .delivered }
            for failed in response.failed where result[failed.sopInstanceUID] != nil {
                result[failed.sopInstanceUID] = delivery(failureReason: failed.reason)
            }
            if !response.stored.isEmpty || !response.failed.isEmpty {
                let mentioned = Set(response.stored.map(\.sopInstanceUID) + response.failed.map(\.sopInstanceUID))
                for uid in sopInstanceUIDs where !mentioned.contains(uid) { result[uid] = .failed(.transient) }
            }
        }
        return result
    }

    // MARK: - The transport (libcurl)

    /// Words in a TLS handshake error (CURLE_SSL_CONNECT_ERROR, 35) that show a certificate
    /// fault rather than a broken connection. OpenSSL reports the peer's TLS alerts as e.g.
    /// "tlsv1 alert unknown ca", "sslv3 alert bad certificate", "sslv3 alert certificate
    /// expired", "sslv3 alert certificate revoked", "tlsv13 alert certificate required".
    /// Compared in lower case.
    static let certificateWords = ["alert unknown ca", "certificate", "bad certificate", "certificate expired", "certificate revoked"]

    /// A failed exchange as the client saw it: its curl code and words; a body source or sink
    /// that threw is our own side failing.
    public static func failure(_ error: HTTPClientError) -> FailureClass {
        error.callbackError != nil ? .local : failure(curlCode: error.code, message: error.message)
    }

    /// The class of a libcurl failure (codes from curl.h; libcurl-errors(3)).
    ///
    /// - transient: 6 CURLE_COULDNT_RESOLVE_HOST (DNS can recover), 7 CURLE_COULDNT_CONNECT
    ///   (refused or unreachable: the peer is down or restarting), 16 CURLE_HTTP2 and 92
    ///   CURLE_HTTP2_STREAM (HTTP/2 framing or a reset stream, e.g. the server going away),
    ///   18 CURLE_PARTIAL_FILE (the response ended early), 28 CURLE_OPERATION_TIMEDOUT,
    ///   52 CURLE_GOT_NOTHING (closed without answering), 55 CURLE_SEND_ERROR and
    ///   56 CURLE_RECV_ERROR (the connection broke mid-transfer); 35 CURLE_SSL_CONNECT_ERROR
    ///   unless its words name a certificate (a reset or truncated handshake: the peer
    ///   restarting, a middlebox).
    /// - configuration: 35 naming a certificate (the peer's alert refusing ours), 58
    ///   CURLE_SSL_CERTPROBLEM (our client certificate or key is unusable), 59 CURLE_SSL_CIPHER,
    ///   60 CURLE_PEER_FAILED_VERIFICATION (unknown CA, expired, revoked, wrong name), 77
    ///   CURLE_SSL_CACERT_BADFILE and 82 CURLE_SSL_CRL_BADFILE (our CA or CRL file cannot be
    ///   read), 83 CURLE_SSL_ISSUER_ERROR, 90 CURLE_SSL_PINNEDPUBKEYNOTMATCH, 91
    ///   CURLE_SSL_INVALIDCERTSTATUS; and 1 CURLE_UNSUPPORTED_PROTOCOL, 3 CURLE_URL_MALFORMAT
    ///   (the configured address is wrong). Each persists until a person changes something;
    ///   the peer may be up.
    /// - local: 23 CURLE_WRITE_ERROR and 26 CURLE_READ_ERROR (our own sink or source failed: a
    ///   disk, a file), 27 CURLE_OUT_OF_MEMORY.
    /// - refused: everything else, codes this table does not know: waiting will not change them,
    ///   so a person looks.
    public static func failure(curlCode: Int, message: String) -> FailureClass {
        switch curlCode {
        case 6, 7, 16, 18, 28, 52, 55, 56, 92:
            return .transient
        case 35:
            let text = message.lowercased()
            return certificateWords.contains { text.contains($0) } ? .configuration : .transient
        case 1, 3, 58, 59, 60, 77, 82, 83, 90, 91:
            return .configuration
        case 23, 26, 27:
            return .local
        default:
            return .refused
        }
    }

    /// What a libcurl code means, in words for the operator; nil for codes without one.
    public static func summary(curlCode: Int) -> String? {
        switch curlCode {
        case 1: return "the address's protocol is not https or http"
        case 3: return "the address is not a valid URL"
        case 6: return "could not resolve the peer's host name"
        case 7: return "could not connect to the peer"
        case 16: return "HTTP/2 framing error"
        case 18: return "the response ended early"
        case 23: return "our side could not keep what was received"
        case 26: return "our side could not read what it sends"
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

    // MARK: - WADO-RS and the coordinator

    /// A WADO-RS retrieve's status other than 200: as any HTTP status, but 404 is the source not
    /// holding the study (any more) — refused by that source; another holder may have it.
    public static func failure(wadoStatus status: Int) -> FailureClass {
        status == 404 ? .refused : failure(httpStatus: status)
    }

    /// A coordinator's answer other than 2xx (nil: it could not be reached). 404 to a study
    /// lookup is its announcement still on its way: transient. (A 409 — an identity conflict —
    /// is not a failure to classify but a patient held for a person; the caller handles it.)
    public static func failure(coordinatorStatus status: Int?) -> FailureClass {
        guard let status else { return .transient }
        return status == 404 ? .transient : failure(httpStatus: status)
    }
}
