import Audit
import Foundation
import Platform
import Routing
import Transport

/// `consort coordinator`: the registry behind the API, over mutual TLS, and (optionally) the
/// metrics on a plain-HTTP address. Started and stopped by the CLI, which also speaks systemd's
/// notify protocol for it.
public final class CoordinatorDaemon: @unchecked Sendable {
    public let configuration: CoordinatorConfiguration
    public let service: CoordinatorService
    let log: Logger
    private var server: HTTPServer?
    private var metricsServer: HTTPServer?
    /// The listener's certificate, key, CA and CRL in force (SIGHUP reloads them).
    let tls: TLSMaterial
    /// When the expiry was last warned of (read by the service loop's thread, written by it
    /// and by a reload on the same thread).
    private let warnedLock = NSLock()
    private var warnedAt = 0.0

    /// `opening`: what a long start is doing, every few seconds (see `SQLRegistry.sqlite`).
    public init(configuration: CoordinatorConfiguration, log: Logger, opening: @escaping (String) -> Void = { _ in }) throws {
        self.configuration = configuration
        self.log = log
        let registry: Registry
        switch configuration.registry {
        case .sqlite(let path): registry = try SQLRegistry.sqlite(path: path, log: log.named("registry"), opening: opening)
        case .postgresql(let conninfo): registry = try SQLRegistry.postgresql(conninfo, log: log.named("registry"), opening: opening)
        }
        let rules = try RuleBook(path: configuration.rules)
        tls = try TLSMaterial(Self.tlsPaths(configuration), now: Date().timeIntervalSince1970)
        service = CoordinatorService(registry: registry, rules: rules, configuration: configuration, audit: try AuditLog(path: configuration.auditPath), log: log)
        service.tls = tls
    }

    static func tlsPaths(_ c: CoordinatorConfiguration) -> TLSConfiguration {
        TLSConfiguration(certificateChain: c.certificate, privateKey: c.key, trustedCA: c.ca, revocationList: c.crl)
    }

    public var port: UInt16 { server?.port ?? 0 }
    public var metricsPort: UInt16 { metricsServer?.port ?? 0 }

    public func start() throws {
        var settings = ServerConfiguration()
        settings.host = configuration.listenHost
        settings.port = configuration.listenPort
        settings.tls = tls.serverContext
        settings.limits.bodyBytes = CoordinatorService.maximumBody
        let service = self.service, apiLog = log.named("api")
        let http = HTTPServer(settings, log: { apiLog.debug($0) }) { request, body in try service.handle(request, body) }
        try http.start()
        server = http
        if let host = configuration.metricsHost {
            var plain = ServerConfiguration()
            plain.host = host
            plain.port = configuration.metricsPort
            plain.maximumConnections = 8
            plain.limits.bodyBytes = 0
            let metrics = HTTPServer(plain) { request, _ in
                switch request.head.target {
                case "/metrics": return service.metrics()
                case "/healthz": return service.health()
                default: return .text(404, "not found: /metrics and /healthz are served here")
                }
            }
            try metrics.start()
            metricsServer = metrics
        }
        warnOfExpiry()
        log.info("ready", ["listening": "\(configuration.listenHost):\(port)", "registry": "\(configuration.registry)", "audit": configuration.auditPath])
    }

    /// One line for systemd's STATUS=.
    public func summary() -> String {
        if Date().timeIntervalSince1970 - warnedLock.withLock({ warnedAt }) >= 86_400 { warnOfExpiry() }
        guard let totals = try? service.registry.totals() else { return "the registry cannot be read" }
        let conflicts = (try? service.registry.conflicts().count) ?? 0
        return "\(totals.patients) patients, \(totals.studies) studies, \(totals.locations) holdings; \(conflicts) identity conflicts held"
    }

    public func reload() {
        switch service.rules.reload() {
        case .reloaded: log.info("rules reloaded: the members", ["members": service.rules.current.members.map(\.code).joined(separator: ",")])
        case .refused(let outcome): log.error("rules NOT reloaded: the new set has errors; the members in force stay", ["first": outcome.errors.first?.description ?? ""])
        }
        // The TLS files again (a revoked trust's CRL, a rotated certificate), at the paths the
        // configuration names now, or those in force when it has errors.
        do {
            let paths = CoordinatorConfigurationParser.parse(file: configuration.file).configuration.map(Self.tlsPaths)
            let material = try tls.reload(paths, now: Date().timeIntervalSince1970)
            server?.replaceTLS(tls.serverContext)
            service.tlsReloaded(ok: true)
            log.info("TLS material reloaded: new connections use it; requests in flight finish", ["certificate": material.certificateChain, "crl": material.revocationList ?? "(none)"])
        } catch {
            service.tlsReloaded(ok: false)
            log.error("TLS material NOT reloaded: the files do not load; the material in force stays", ["error": "\(error)"])
        }
        warnOfExpiry()
    }

    /// A warning in the log while the certificate, the CA or the CRL is within 14 days of
    /// expiring or past it (at start, after a reload, and daily from the service loop).
    public func warnOfExpiry() {
        let now = Date().timeIntervalSince1970
        warnedLock.withLock { warnedAt = now }
        for warning in tls.expires.warnings(at: now) { log.error(warning.message, ["item": warning.item]) }
    }

    public func stop() {
        server?.stop(deadline: 5)
        metricsServer?.stop(deadline: 1)
        log.info("stopped")
    }
}
