internal import COpenSSL
internal import Durability
import Foundation

#if canImport(Glibc)
    import Glibc
#endif

/// A consortium's certificate authority in a folder, made with OpenSSL's library (no openssl
/// command line, no flags to remember): `ca.pem` and `ca.key` (0600), the certificates it issued
/// (`issued.tsv`: serial, name, not-after), those it revoked (`revoked.tsv`) and the CRL
/// (`crl.pem`, written again at each revocation, for the agents' `crl` setting).
///
/// Keys are EC P-256, created with mode 0600 from the start (never readable by others, even for
/// an instant); every file is written under a temporary name and renamed into place.
public struct CertificateAuthority {
    public let folder: String
    public var certificatePath: String { folder + "/ca.pem" }
    public var keyPath: String { folder + "/ca.key" }
    public var crlPath: String { folder + "/crl.pem" }
    var issuedPath: String { folder + "/issued.tsv" }
    var revokedPath: String { folder + "/revoked.tsv" }

    public init(folder: String) { self.folder = folder }

    public var exists: Bool { FileManager.default.fileExists(atPath: certificatePath) && FileManager.default.fileExists(atPath: keyPath) }

    /// Creates the CA (refuses to overwrite one).
    public static func create(in folder: String, name: String, days: Int = 3650) throws -> CertificateAuthority {
        let ca = CertificateAuthority(folder: folder)
        guard !ca.exists else { throw PKIError("\(folder) already holds a CA (ca.pem, ca.key); not overwritten") }
        try FileManager.default.createDirectory(atPath: folder, withIntermediateDirectories: true, attributes: [.posixPermissions: 0o700])
        let key = try Key.generate()
        let certificate = try Certificate.make(
            commonName: name, subjectAlternativeNames: nil, serial: Self.randomSerial(), days: days, key: key, isCA: true, issuer: nil)
        try key.write(to: ca.keyPath)
        try certificate.write(to: ca.certificatePath)
        try ca.writeCRL()
        return ca
    }

    /// Issues a site's certificate: CN = `name` (a trust's code, which the agents take as its
    /// identity), SANs for its host names and addresses, for TLS server and client use.
    public func issue(_ name: String, hosts: [String], days: Int = 825, into out: String) throws -> (certificate: String, key: String) {
        guard exists else { throw PKIError("no CA in \(folder): make one with consort pki init-ca \(folder)") }
        let issuer = try (certificate: Certificate.read(certificatePath), key: Key.read(keyPath))
        try FileManager.default.createDirectory(atPath: out, withIntermediateDirectories: true)
        let key = try Key.generate()
        let serial = Self.randomSerial()
        let sans = hosts.map { host in host.allSatisfy({ $0.isNumber || $0 == "." || $0 == ":" }) ? "IP:\(host)" : "DNS:\(host)" }.joined(separator: ",")
        let certificate = try Certificate.make(commonName: name, subjectAlternativeNames: sans.isEmpty ? nil : sans, serial: serial, days: days, key: key, isCA: false, issuer: issuer)
        let base = out + "/" + name.lowercased()
        try key.write(to: base + ".key")
        try certificate.write(to: base + ".pem")
        let line = "\(serial)\t\(name)\t\(Int(Date().timeIntervalSince1970) + days * 86_400)\n"
        try Self.append(line, to: issuedPath)
        return (base + ".pem", base + ".key")
    }

    /// Revokes every certificate issued to `name` not yet revoked, and writes the CRL again.
    /// Returns the serials revoked.
    public func revoke(_ name: String) throws -> [String] {
        let issued = Self.lines(issuedPath).filter { $0.count >= 2 && $0[1] == name }.map { $0[0] }
        let already = Set(Self.lines(revokedPath).map { $0[0] })
        let serials = issued.filter { !already.contains($0) }
        guard !serials.isEmpty else { throw PKIError("no certificate issued to \(name) is left to revoke (issued: \(issued.count))") }
        for serial in serials { try Self.append("\(serial)\t\(name)\t\(Int(Date().timeIntervalSince1970))\n", to: revokedPath) }
        try writeCRL()
        return serials
    }

    /// The CRL: every revoked serial, signed by the CA, valid for 30 days (publish it again
    /// before then: `consort pki crl`).
    public func writeCRL(days: Int = 30) throws {
        let issuer = try (certificate: Certificate.read(certificatePath), key: Key.read(keyPath))
        guard let crl = X509_CRL_new() else { throw PKIError.openSSL("cannot make a CRL") }
        defer { X509_CRL_free(crl) }
        X509_CRL_set_version(crl, 1)
        X509_CRL_set_issuer_name(crl, X509_get_subject_name(issuer.certificate.raw))
        let now = ASN1_TIME_new(), next = ASN1_TIME_new()
        defer { ASN1_TIME_free(now); ASN1_TIME_free(next) }
        X509_gmtime_adj(now, 0)
        X509_gmtime_adj(next, Int(days) * 86_400)
        X509_CRL_set1_lastUpdate(crl, now)
        X509_CRL_set1_nextUpdate(crl, next)
        for entry in Self.lines(revokedPath) {
            guard let revoked = X509_REVOKED_new() else { continue }
            let serial = Certificate.serialNumber(entry[0])
            X509_REVOKED_set_serialNumber(revoked, serial)
            ASN1_INTEGER_free(serial)
            let when = ASN1_TIME_new()
            ASN1_TIME_set(when, time_t(Int(entry.count > 2 ? entry[2] : "0") ?? 0))
            X509_REVOKED_set_revocationDate(revoked, when)
            ASN1_TIME_free(when)
            X509_CRL_add0_revoked(crl, revoked)
        }
        X509_CRL_sort(crl)
        guard X509_CRL_sign(crl, issuer.key.raw, EVP_sha256()) > 0 else { throw PKIError.openSSL("cannot sign the CRL") }
        try Files.writeAtomically(to: crlPath, mode: 0o644) { bio in PEM_write_bio_X509_CRL(bio, crl) == 1 }
    }

    /// 63 random bits: serials must not repeat, and need not be sequential.
    static func randomSerial() -> String {
        String(UInt64.random(in: 1...UInt64(Int64.max)))
    }

    static func lines(_ path: String) -> [[String]] {
        ((try? String(contentsOfFile: path, encoding: .utf8)) ?? "").split(separator: "\n").map { $0.split(separator: "\t").map(String.init) }
    }

    static func append(_ line: String, to path: String) throws {
        let fd = open(path, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0o600)
        guard fd >= 0 else { throw PKIError("cannot write \(path): \(String(cString: strerror(errno)))") }
        defer { close(fd) }
        let bytes = Array(line.utf8)
        guard write(fd, bytes, bytes.count) == bytes.count, fsync(fd) == 0 else { throw PKIError("cannot write \(path): \(String(cString: strerror(errno)))") }
    }
}

public struct PKIError: Error, CustomStringConvertible {
    public let description: String
    public init(_ description: String) { self.description = description }

    /// With OpenSSL's own reason for the last failure.
    static func openSSL(_ what: String) -> PKIError {
        var buffer = [CChar](repeating: 0, count: 256)
        ERR_error_string_n(ERR_get_error(), &buffer, buffer.count)
        return PKIError("\(what): \(String(cString: buffer))")
    }
}

/// An EC P-256 private key.
final class Key {
    let raw: OpaquePointer
    init(_ raw: OpaquePointer) { self.raw = raw }
    deinit { EVP_PKEY_free(raw) }

    static func generate() throws -> Key {
        guard let context = EVP_PKEY_CTX_new_id(EVP_PKEY_EC, nil) else { throw PKIError.openSSL("cannot make a key context") }
        defer { EVP_PKEY_CTX_free(context) }
        var key: OpaquePointer?
        guard EVP_PKEY_keygen_init(context) > 0, EVP_PKEY_CTX_set_ec_paramgen_curve_nid(context, NID_X9_62_prime256v1) > 0,
            EVP_PKEY_keygen(context, &key) > 0, let key
        else { throw PKIError.openSSL("cannot generate an EC P-256 key") }
        return Key(key)
    }

    static func read(_ path: String) throws -> Key {
        guard let bio = BIO_new_file(path, "r") else { throw PKIError("cannot read \(path)") }
        defer { BIO_free(bio) }
        guard let key = PEM_read_bio_PrivateKey(bio, nil, nil, nil) else { throw PKIError.openSSL("\(path) is not a PEM private key") }
        return Key(key)
    }

    /// Written with mode 0600 from its creation.
    func write(to path: String) throws {
        try Files.writeAtomically(to: path, mode: 0o600) { bio in PEM_write_bio_PrivateKey(bio, raw, nil, nil, 0, nil, nil) == 1 }
    }
}

/// An X.509 certificate.
final class Certificate {
    let raw: OpaquePointer
    init(_ raw: OpaquePointer) { self.raw = raw }
    deinit { X509_free(raw) }

    static func read(_ path: String) throws -> Certificate {
        guard let bio = BIO_new_file(path, "r") else { throw PKIError("cannot read \(path)") }
        defer { BIO_free(bio) }
        guard let certificate = PEM_read_bio_X509(bio, nil, nil, nil) else { throw PKIError.openSSL("\(path) is not a PEM certificate") }
        return Certificate(certificate)
    }

    static func serialNumber(_ decimal: String) -> UnsafeMutablePointer<ASN1_INTEGER>? {
        var bignum: OpaquePointer?
        _ = BN_dec2bn(&bignum, decimal)
        defer { BN_free(bignum) }
        return BN_to_ASN1_INTEGER(bignum, nil)
    }

    static func make(
        commonName: String, subjectAlternativeNames: String?, serial: String, days: Int, key: Key, isCA: Bool, issuer: (certificate: Certificate, key: Key)?
    ) throws -> Certificate {
        guard let x509 = X509_new() else { throw PKIError.openSSL("cannot make a certificate") }
        let certificate = Certificate(x509)
        X509_set_version(x509, 2)
        let number = serialNumber(serial)
        X509_set_serialNumber(x509, number)
        ASN1_INTEGER_free(number)
        X509_gmtime_adj(X509_getm_notBefore(x509), -300)  // five minutes of clock skew between sites
        X509_gmtime_adj(X509_getm_notAfter(x509), days * 86_400)
        X509_set_pubkey(x509, key.raw)
        let name = X509_get_subject_name(x509)
        _ = commonName.withCString { value in
            value.withMemoryRebound(to: UInt8.self, capacity: commonName.utf8.count + 1) { X509_NAME_add_entry_by_txt(name, "CN", MBSTRING_UTF8, $0, -1, -1, 0) }
        }
        X509_set_issuer_name(x509, issuer.map { X509_get_subject_name($0.certificate.raw) } ?? name)
        var context = X509V3_CTX()
        X509V3_set_ctx(&context, issuer?.certificate.raw ?? x509, x509, nil, nil, 0)
        var extensions: [(Int32, String)] = [(NID_subject_key_identifier, "hash"), (NID_authority_key_identifier, "keyid:always")]
        if isCA {
            extensions += [(NID_basic_constraints, "critical,CA:TRUE,pathlen:0"), (NID_key_usage, "critical,keyCertSign,cRLSign")]
        } else {
            extensions += [(NID_basic_constraints, "critical,CA:FALSE"), (NID_key_usage, "critical,digitalSignature,keyAgreement"), (NID_ext_key_usage, "serverAuth,clientAuth")]
            if let subjectAlternativeNames { extensions.append((NID_subject_alt_name, subjectAlternativeNames)) }
        }
        for (nid, value) in extensions {
            guard let ext = X509V3_EXT_conf_nid(nil, &context, nid, value) else { throw PKIError.openSSL("cannot make the extension \(value)") }
            X509_add_ext(x509, ext, -1)
            X509_EXTENSION_free(ext)
        }
        guard X509_sign(x509, (issuer?.key ?? key).raw, EVP_sha256()) > 0 else { throw PKIError.openSSL("cannot sign the certificate") }
        return certificate
    }

    func write(to path: String) throws {
        try Files.writeAtomically(to: path, mode: 0o644) { bio in PEM_write_bio_X509(bio, raw) == 1 }
    }
}

enum Files {
    /// Writes through a BIO into a temporary file given `mode` (keys 0600: mkstemp makes the file
    /// 0600 from its creation, so a key is never readable by others, even for an instant), then
    /// fsyncs, renames into place and fsyncs the folder (`DurableFile`): a CRL published and then
    /// lost to a power cut would leave the old one in place, a revocation undone.
    static func writeAtomically(to path: String, mode: mode_t, _ body: (OpaquePointer) -> Bool) throws {
        do {
            try DurableFile.write(to: path, mode: mode) { descriptor in
                // BIO_NOCLOSE (0): the descriptor stays DurableFile's to fsync and close.
                guard let bio = BIO_new_fd(descriptor, 0) else { throw PKIError.openSSL("cannot write \(path)") }
                defer { BIO_free(bio) }
                guard body(bio), BIO_ctrl(bio, BIO_CTRL_FLUSH, 0, nil) == 1 else {  // BIO_flush is a macro
                    throw PKIError.openSSL("cannot write \(path)")
                }
            }
        } catch let error as DurableFileError {
            throw PKIError("cannot write \(path): \(error)")
        }
    }
}
