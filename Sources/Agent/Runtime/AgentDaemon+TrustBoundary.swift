import Audit
import Exchange
import Foundation
import HTTP
import Routing
import Transport

/// The agent's side of the trust boundary: who may ask its receiver for what (`PartyAccess`),
/// the TLS material reloaded on SIGHUP, and the warnings while it runs out.
extension AgentDaemon {
    /// The certificate, key, CA and CRL again, from `paths` (the configuration's, or those in
    /// force when it has errors): the receiver's new handshakes, the coordinator client and (by
    /// the caller) every peer's clients take the new material; files that do not load are
    /// refused and the material in force stays.
    func reloadTLS(_ paths: TLSConfiguration?) {
        let now = clock.now
        do {
            let material = try tls.reload(paths, now: now)
            server?.replaceTLS(tls.serverContext)
            telemetry.tlsReloaded(ok: true)
            stateLock.withLock { lastTLSReloadRefused = nil }
            log.info("TLS material reloaded: new connections use it; requests in flight finish", [
                "certificate": material.certificateChain, "crl": material.revocationList ?? "(none)", "generation": material.generation,
            ])
            if let coordinator, coordinator.base.hasPrefix("https://") {
                do { try coordinator.replaceTLS(material) } catch {
                    // Only a client that cannot be made (curl itself failing): the files loaded.
                    log.error("the coordinator client keeps its earlier TLS material: a new one could not be made", ["error": "\(error)"])
                }
            }
            if let queryCoordinator, queryCoordinator.base.hasPrefix("https://") {
                do { try queryCoordinator.replaceTLS(material) } catch {
                    log.error("the query/retrieve SCP's coordinator client keeps its earlier TLS material: a new one could not be made", ["error": "\(error)"])
                }
            }
            do { try identityBook?.replaceTLS(material) } catch {
                log.error("the identity lookups keep their earlier TLS material: a new client could not be made", ["error": "\(error)"])
            }
            warnOfExpiry(now: now)
        } catch {
            telemetry.tlsReloaded(ok: false)
            stateLock.withLock { lastTLSReloadRefused = "\(error)" }
            log.error("TLS material NOT reloaded: the files do not load; the material in force stays", ["error": "\(error)"])
        }
    }

    /// A warning in the log, at start, after a reload and then daily, while the certificate, the
    /// CA or the CRL is within 14 days of expiring or past it: the consortium stops that day.
    func warnOfExpiry(now: Double) {
        let expiry = tls.expires
        let warnings = expiry.warnings(at: now)
        guard !warnings.isEmpty else { return }
        stateLock.withLock { expiryWarned = now }
        for warning in warnings {
            let expires = expiry.items.first { $0.name == warning.item }?.expires ?? now
            log.error(warning.message, ["item": warning.item, "expires": Self.isoDate(expires)])
        }
    }

    static func isoDate(_ epoch: Double) -> String {
        var seconds = time_t(epoch)
        var parts = tm()
        gmtime_r(&seconds, &parts)
        var buffer = [CChar](repeating: 0, count: 32)
        strftime(&buffer, buffer.count, "%Y-%m-%dT%H:%M:%SZ", &parts)
        return String(decoding: buffer.prefix { $0 != 0 }.map { UInt8(bitPattern: $0) }, as: UTF8.self)
    }

    /// Why a request to the receiver is refused (403: counted, audited with the caller's
    /// certificate name, logged), or nil to go on. STOW-RS and manifests store; QIDO-RS searches;
    /// WADO-RS retrieves.
    func refusal(of request: ServerRequest) -> HTTPError? {
        let path = request.head.target.split(separator: "?", maxSplits: 1).first.map(String.init) ?? ""
        let act: PartyAccess.Act
        let operation = DICOMwebService.operation(method: request.head.method, path: path)
        switch operation {
        case .searchStudies: act = .search
        case .listInstances: act = .listInstances
        case .store: act = .store
        case .retrieve: act = .retrieve
        // The study manifest (a PUT) comes before a push; anything else is refused below as a
        // retrieve would be: only a member with imaging due to it gets as far as a 404.
        case .notServed: act = request.head.method == "PUT" ? .store : .retrieve
        }
        let caller = request.peer?.commonName
        let purpose = request.head.value(ConsortField.purpose)
        let ruleSet = rules.current
        var refusal = PartyAccess.decide(act, caller: caller, purpose: purpose, site: configuration.trust, rules: ruleSet)
        // A peer that may send results back stores results (STOW-RS) and nothing else: a study
        // manifest (what a sending trust says it will deliver) would hold or fire this trust's
        // stable rules, and its answer says which instances are here.
        if refusal == nil, operation != .store, let caller, ruleSet.member(caller)?.isTrust == false { refusal = .peer(caller) }
        guard let refusal else { return nil }
        telemetry.refused(refusal.label)
        let who = caller ?? "(no certificate) \(request.remoteAddress)"
        try? audit.record(AuditEntry(who: who, action: "refused", why: purpose, detail: "\(act.rawValue) \(request.head.method) \(path.prefix(200)): \(refusal)"))
        log.named("receiver").warning("request refused", ["who": who, "act": act.rawValue, "reason": refusal.label, "purpose": purpose ?? "(none)", "request": request.id])
        return HTTPError(403, "Refused: \(refusal)")
    }
}
