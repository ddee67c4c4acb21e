internal import COpenSSL
import Foundation

#if canImport(Glibc)
    import Glibc
#endif

/// When a site's TLS material runs out, in seconds since the epoch: its own certificate's
/// notAfter, the soonest notAfter of the CA file's certificates, and the CRL's nextUpdate.
/// Read from the files themselves, for `consort status`, `/metrics` and the daily warning: the
/// consortium stops the day one of these passes, so a person must hear of it weeks before.
public struct TLSExpiry: Sendable, Equatable {
    public var certificate: Double
    public var ca: Double
    /// nil when no CRL is configured, or the CRL names no next update.
    public var crl: Double?

    /// Within this of expiring, a person is needed (`consort status` exits 1).
    public static let warningSeconds: Double = 14 * 86_400

    /// The items, named as the operator sees them, with their expiry (the CRL's only if set).
    public var items: [(name: String, expires: Double)] {
        [("certificate", certificate), ("ca", ca)] + (crl.map { [("crl", $0)] } ?? [])
    }

    /// The items expired or within `warningSeconds` of it at `now`, soonest first.
    public func needingAttention(at now: Double) -> [(name: String, expires: Double)] {
        items.filter { $0.expires - now < Self.warningSeconds }.sorted { $0.expires < $1.expires }
    }

    /// An item as an operator reads it.
    public static func words(_ name: String) -> String {
        switch name {
        case "certificate": return "this trust's certificate"
        case "ca": return "the consortium CA certificate"
        default: return "the CRL"
        }
    }

    /// "expires in 3.0 days", or "EXPIRED 2 days ago" (whole days gone).
    public static func when(_ expires: Double, now: Double) -> String {
        let days = (expires - now) / 86_400
        return days < 0 ? "EXPIRED \(Int((-days).rounded(.down))) days ago" : String(format: "expires in %.1f days", days)
    }

    /// The log lines a daemon writes (at start, after a reload, daily) for the items expired or
    /// within `warningSeconds`: what runs out, when, and what to do.
    public func warnings(at now: Double) -> [(item: String, message: String)] {
        needingAttention(at: now).map { item in
            let what = Self.words(item.name) + (item.name == "crl" ? " (its next update)" : "")
            return (item.name, "\(what) \(Self.when(item.expires, now: now)): renew it and send SIGHUP; past it, handshakes with every peer fail")
        }
    }

    public static func read(_ configuration: TLSConfiguration) throws(TLSError) -> TLSExpiry {
        let certificate = try notAfter(of: configuration.certificateChain, soonestOfAll: false)
        let ca = try notAfter(of: configuration.trustedCA, soonestOfAll: true)
        var crl: Double?
        if let path = configuration.revocationList { crl = try nextUpdate(ofCRL: path) }
        return TLSExpiry(certificate: certificate, ca: ca, crl: crl)
    }

    /// The notAfter of a PEM file's first certificate, or the soonest of all of them (a CA file
    /// may hold the old and the new CA while the consortium moves from one to the other).
    static func notAfter(of path: String, soonestOfAll: Bool) throws(TLSError) -> Double {
        guard let bio = BIO_new_file(path, "r") else { throw TLSError.drain("Cannot open \(path)") }
        defer { BIO_free(bio) }
        var soonest: Double?
        while let cert = PEM_read_bio_X509(bio, nil, nil, nil) {
            defer { X509_free(cert) }
            let expires = try epoch(X509_get0_notAfter(cert), what: "\(path): a certificate's notAfter")
            soonest = min(soonest ?? expires, expires)
            if !soonestOfAll { break }
        }
        ERR_clear_error()  // the read past the last certificate queues "no start line"
        guard let soonest else { throw TLSError("\(path) holds no PEM certificate") }
        return soonest
    }

    static func nextUpdate(ofCRL path: String) throws(TLSError) -> Double? {
        guard let bio = BIO_new_file(path, "r") else { throw TLSError.drain("Cannot open the CRL \(path)") }
        defer { BIO_free(bio) }
        guard let crl = PEM_read_bio_X509_CRL(bio, nil, nil, nil) else { throw TLSError.drain("Cannot read the CRL \(path)") }
        defer { X509_CRL_free(crl) }
        guard let next = X509_CRL_get0_nextUpdate(crl) else { return nil }
        return try epoch(next, what: "\(path): the CRL's next update")
    }

    private static func epoch(_ time: UnsafePointer<ASN1_TIME>?, what: String) throws(TLSError) -> Double {
        var parts = tm()
        guard let time, ASN1_TIME_to_tm(time, &parts) == 1 else { throw TLSError.drain("Cannot read \(what)") }
        return Double(timegm(&parts))
    }
}

/// A daemon's TLS material in force: the configuration its clients connect with and the context
/// its server hands new connections, replaced together by `reload()` (SIGHUP) once the files on
/// disk load whole. Files that do not load (a key that does not match its certificate, an
/// unreadable CRL) are refused and the material in force stays, as a rules reload does.
public final class TLSMaterial: @unchecked Sendable {
    private let lock = NSLock()
    private var current: TLSConfiguration
    private var context: TLSContext
    private var expiry: TLSExpiry
    private var loaded: Double

    /// The Common Name the certificate must carry (an agent's trust), or nil for any.
    public let expectedName: String?

    /// Loads the files once; throws what is wrong with them.
    public init(_ configuration: TLSConfiguration, expectedName: String? = nil, now: Double) throws(TLSError) {
        var configuration = configuration
        configuration.generation = 0
        self.expectedName = expectedName
        try Self.checkName(configuration, expectedName)
        context = try TLSContext(configuration, role: .server)
        // The client side reads the same files through curl; building its context here finds a
        // problem at start, not at the first transfer.
        _ = try TLSContext(configuration, role: .client)
        expiry = try TLSExpiry.read(configuration)
        current = configuration
        loaded = now
    }

    /// What clients connect with now (its `generation` changes at each reload, so that pooled
    /// connections made with the earlier material are not reused).
    public var configuration: TLSConfiguration { lock.withLock { current } }
    /// The server context new handshakes use now.
    public var serverContext: TLSContext { lock.withLock { context } }
    public var expires: TLSExpiry { lock.withLock { expiry } }
    /// When the material in force was loaded (seconds since the epoch).
    public var loadedAt: Double { lock.withLock { loaded } }

    /// Reads the files again — at `paths` when given (the configuration may name new ones),
    /// else at the paths in force; on success the new material is in force and returned.
    @discardableResult
    public func reload(_ paths: TLSConfiguration? = nil, now: Double) throws(TLSError) -> TLSConfiguration {
        let previous = configuration
        var next = paths ?? previous
        next.generation = previous.generation + 1
        try Self.checkName(next, expectedName)
        let server = try TLSContext(next, role: .server)
        _ = try TLSContext(next, role: .client)
        let dates = try TLSExpiry.read(next)
        lock.withLock {
            current = next
            context = server
            expiry = dates
            loaded = now
        }
        return next
    }

    /// A site's identity is its certificate's Common Name: another site's certificate copied in
    /// by mistake (a rotation gone wrong) would have this one speak as that one.
    private static func checkName(_ configuration: TLSConfiguration, _ expected: String?) throws(TLSError) {
        guard let expected else { return }
        let name = try CertificateFile.summary(of: configuration.certificateChain).commonName
        guard name == expected else {
            throw TLSError("the certificate \(configuration.certificateChain) is for \(name), not for this trust (\(expected)): a site's identity is its certificate's Common Name")
        }
    }
}
