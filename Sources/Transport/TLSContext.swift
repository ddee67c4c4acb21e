internal import COpenSSL
internal import CShims

#if canImport(Glibc)
    import Glibc
#endif

/// Where a site's TLS material lives: its certificate chain and key (issued by the consortium CA),
/// the CA certificate it trusts peers by, and optionally a CRL.
public struct TLSConfiguration: Sendable, Equatable {
    public var certificateChain: String
    public var privateKey: String
    public var trustedCA: String
    public var revocationList: String?
    /// Which reading of these files this is (`TLSMaterial.reload` counts up): the same paths
    /// with new contents are new material, and clients made with the earlier reading are
    /// dropped rather than reused.
    public var generation = 0

    public init(certificateChain: String, privateKey: String, trustedCA: String, revocationList: String? = nil) {
        self.certificateChain = certificateChain
        self.privateKey = privateKey
        self.trustedCA = trustedCA
        self.revocationList = revocationList
    }
}

/// A TLS or certificate failure, with OpenSSL's whole error queue in words.
public struct TLSError: Error, CustomStringConvertible {
    public var message: String
    public init(_ message: String) { self.message = message }
    public var description: String { message }

    /// `what`, followed by every error OpenSSL queued (the queue is emptied).
    static func drain(_ what: String) -> TLSError {
        var reasons: [String] = []
        while case let code = ERR_get_error(), code != 0 {
            var buffer = [CChar](repeating: 0, count: 256)
            ERR_error_string_n(code, &buffer, buffer.count)
            reasons.append(String(decoding: buffer.prefix { $0 != 0 }.map { UInt8(bitPattern: $0) }, as: UTF8.self))
        }
        return TLSError(reasons.isEmpty ? what : what + ": " + reasons.joined(separator: "; "))
    }
}

/// One OpenSSL SSL_CTX, owned: the settings every connection of a server (or client) shares.
///
/// Security choices, each deliberate: TLS 1.2 at least (1.3 preferred, negotiated by OpenSSL);
/// no compression or renegotiation; ciphers restricted to forward-secret AEAD suites for TLS 1.2;
/// peers verified against the consortium CA only (not the system's store); a server demands a
/// client certificate (mutual TLS) and refuses the handshake without one.
public final class TLSContext: @unchecked Sendable {
    /// OpaquePointer to SSL_CTX; freed in deinit. SSL_CTX is safe to share between threads once
    /// configured (OpenSSL 3 documentation, "Threads").
    let context: OpaquePointer

    public enum Role: Sendable { case server, client }

    public init(_ configuration: TLSConfiguration, role: Role) throws(TLSError) {
        guard let ctx = SSL_CTX_new(role == .server ? TLS_server_method() : TLS_client_method()) else {
            throw TLSError.drain("Cannot create a TLS context")
        }
        context = ctx
        guard consort_SSL_CTX_set_min_proto_version(ctx, TLS1_2_VERSION) == 1 else {
            throw TLSError.drain("Cannot require TLS 1.2")
        }
        _ = SSL_CTX_set_options(ctx, CONSORT_SSL_OP_NO_COMPRESSION | CONSORT_SSL_OP_NO_RENEGOTIATION)
        guard SSL_CTX_set_cipher_list(ctx, "ECDHE+AESGCM:ECDHE+CHACHA20:!aNULL:!MD5:!RC4") == 1 else {
            throw TLSError.drain("Cannot set the TLS 1.2 cipher list")
        }
        guard SSL_CTX_use_certificate_chain_file(ctx, configuration.certificateChain) == 1 else {
            throw TLSError.drain("Cannot load the certificate chain \(configuration.certificateChain)")
        }
        guard SSL_CTX_use_PrivateKey_file(ctx, configuration.privateKey, SSL_FILETYPE_PEM) == 1 else {
            throw TLSError.drain("Cannot load the private key \(configuration.privateKey)")
        }
        guard SSL_CTX_check_private_key(ctx) == 1 else {
            throw TLSError.drain("The private key \(configuration.privateKey) does not match the certificate \(configuration.certificateChain)")
        }
        guard SSL_CTX_load_verify_locations(ctx, configuration.trustedCA, nil) == 1 else {
            throw TLSError.drain("Cannot load the consortium CA \(configuration.trustedCA)")
        }
        if role == .server {
            // Tell clients which CA to pick their certificate from.
            if let names = SSL_load_client_CA_file(configuration.trustedCA) { SSL_CTX_set_client_CA_list(ctx, names) }
            // A client resuming a session (curl does, on a new connection) must find the context
            // its verified certificate was stored under; without one OpenSSL refuses the handshake
            // ("session id context uninitialized").
            let contextID = Array("consort".utf8)
            _ = SSL_CTX_set_session_id_context(ctx, contextID, UInt32(contextID.count))
            // A STOW-RS body arrives as a stream of 16 KiB records: read ahead into a 256 KiB
            // buffer, so one recv brings many records instead of a system call each. (Safe here:
            // connections are read by blocking SSL_read only, never by polling the socket.)
            consort_SSL_CTX_set_read_ahead(ctx, 1)
            SSL_CTX_set_default_read_buffer_len(ctx, 256 * 1024)
        }
        if let crl = configuration.revocationList {
            try Self.loadRevocationList(crl, into: ctx)
        }
        // Verify the peer; a server refuses a client that presents no certificate.
        let mode = SSL_VERIFY_PEER | (role == .server ? SSL_VERIFY_FAIL_IF_NO_PEER_CERT : 0)
        SSL_CTX_set_verify(ctx, mode, nil)
    }

    deinit { SSL_CTX_free(context) }

    private static func loadRevocationList(_ path: String, into ctx: OpaquePointer) throws(TLSError) {
        guard let file = fopen(path, "r") else { throw TLSError("Cannot open the CRL \(path): \(String(cString: strerror(errno)))") }
        defer { fclose(file) }
        guard let crl = PEM_read_X509_CRL(file, nil, nil, nil) else { throw TLSError.drain("Cannot read the CRL \(path)") }
        defer { X509_CRL_free(crl) }
        let store = SSL_CTX_get_cert_store(ctx)
        guard X509_STORE_add_crl(store, crl) == 1 else { throw TLSError.drain("Cannot use the CRL \(path)") }
        // Check the leaf and every CA in the chain against the CRLs loaded.
        X509_STORE_set_flags(store, UInt(X509_V_FLAG_CRL_CHECK | X509_V_FLAG_CRL_CHECK_ALL))
    }
}

/// Who is at the other end of a TLS connection, from the certificate it proved it holds:
/// never from a header, a URL or a body. A consortium site's trust code is its certificate's
/// Common Name (e.g. CN=UHSX); the DNS names are kept for logs.
public struct PeerIdentity: Sendable, Equatable, CustomStringConvertible {
    public var commonName: String
    public var dnsNames: [String]
    /// Certificate's notAfter, as OpenSSL prints it, for expiry warnings in logs.
    public var expires: String?

    public var description: String { commonName }

    /// The identity of a verified peer on `ssl` (an SSL*), or nil if there is none.
    static func of(_ ssl: OpaquePointer) -> PeerIdentity? {
        guard let cert = SSL_get1_peer_certificate(ssl) else { return nil }
        defer { X509_free(cert) }
        var buffer = [CChar](repeating: 0, count: 256)
        guard X509_NAME_get_text_by_NID(X509_get_subject_name(cert), NID_commonName, &buffer, Int32(buffer.count)) > 0 else {
            return nil
        }
        let cn = String(decoding: buffer.prefix { $0 != 0 }.map { UInt8(bitPattern: $0) }, as: UTF8.self)
        var dns: [String] = []
        if let raw = X509_get_ext_d2i(cert, NID_subject_alt_name, nil, nil) {
            let names = OpaquePointer(raw)
            defer { GENERAL_NAMES_free(names) }
            for i in 0..<consort_sk_GENERAL_NAME_num(names) {
                guard let name = consort_sk_GENERAL_NAME_value(names, i), name.pointee.type == GEN_DNS,
                    let string = name.pointee.d.dNSName
                else { continue }
                dns.append(String(decoding: UnsafeBufferPointer(start: ASN1_STRING_get0_data(string), count: Int(ASN1_STRING_length(string))), as: UTF8.self))
            }
        }
        return PeerIdentity(commonName: cn, dnsNames: dns, expires: nil)
    }
}
