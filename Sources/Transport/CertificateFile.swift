internal import COpenSSL

/// What a site's own certificate file says, read before anything is served: `consort config
/// check` compares its Common Name with the configured trust, and warns before it expires.
public enum CertificateFile {
    public struct Summary: Sendable {
        public var commonName: String
        /// Seconds from now until it expires (negative: expired).
        public var secondsLeft: Int64
    }

    /// The first certificate of a PEM file (a chain starts with the site's own).
    public static func summary(of path: String) throws(TLSError) -> Summary {
        guard let bio = BIO_new_file(path, "r") else { throw TLSError.drain("Cannot open \(path)") }
        defer { BIO_free(bio) }
        guard let cert = PEM_read_bio_X509(bio, nil, nil, nil) else { throw TLSError.drain("\(path) holds no PEM certificate") }
        defer { X509_free(cert) }
        var buffer = [CChar](repeating: 0, count: 256)
        guard X509_NAME_get_text_by_NID(X509_get_subject_name(cert), NID_commonName, &buffer, Int32(buffer.count)) > 0 else {
            throw TLSError("\(path): the certificate has no Common Name")
        }
        let name = String(decoding: buffer.prefix { $0 != 0 }.map { UInt8(bitPattern: $0) }, as: UTF8.self)
        var days: Int32 = 0, seconds: Int32 = 0
        // From now (nil) to notAfter.
        _ = ASN1_TIME_diff(&days, &seconds, nil, X509_get0_notAfter(cert))
        return Summary(commonName: name, secondsLeft: Int64(days) * 86_400 + Int64(seconds))
    }
}
