import DIMSE
import Exchange
import Foundation
import Platform
import Routing
import Transport

/// The DIMSE C-STORE and C-ECHO SCP (`dimse ADDRESS:PORT { aet AET }`): who may associate is the
/// `dimse-peer` lines (calling AE title and the connection's address both checked; the hosts
/// resolved at start), and what it receives goes into the intake (`DIMSEIntake`), which is
/// watched like an archive folder.
extension AgentDaemon {
    func startDIMSE() throws {
        guard let listener = configuration.dimse else { return }
        let dimseLog = log.named("dimse")
        let callers = Self.callers(configuration.dimsePeers, log: dimseLog)
        dimseNames.value = Self.names(configuration.dimsePeers)
        dimseDestinations.value = Self.destinations(configuration.dimsePeers)
        let intake = try DIMSEIntake(
            folder: configuration.dimseIntakeFolder, audit: audit, names: dimseNames, log: dimseLog)
        var policy = AcceptorPolicy(aeTitle: listener.aeTitle, callers: callers, maximumLength: UInt32(listener.maximumPDU), acceptsStorage: true)
        let queryUnavailable = configuration.queryRetrieveUnavailable
        policy.acceptsQuery = queryUnavailable == nil
        var server = DIMSEServer.Configuration(host: listener.host, port: listener.port, policy: policy)
        server.maximumAssociations = listener.associations
        server.timeout = listener.timeoutSeconds
        server.idleTimeout = listener.idleSeconds
        let material = tls
        if listener.tls {
            // The receiver's context, reloaded with it on SIGHUP (a revoked caller's CRL too).
            server.tls = { material.serverContext }
        }
        if let why = queryUnavailable {
            if configuration.dimsePeers.contains(where: \.mayQuery) { dimseLog.warning("query/retrieve is not offered: \(why)") }
        } else {
            // C-FIND and C-MOVE: the consortium's studies of a patient, for the dimse-peers
            // marked { query }.
            let client = try configuration.coordinator.map { url in
                try CoordinatorClient(bases: configuration.coordinators, tls: url.hasPrefix("https://") ? material.configuration : nil, totalTimeout: 10)
            }
            queryCoordinator = client
            let query = ConsortiumQuery(
                store: store, coordinator: client, identityBook: identityBook, audit: audit, trust: configuration.trust, aeTitle: listener.aeTitle,
                names: dimseNames, log: log.named("query"))
            let queue = self.queue
            query.mover = ConsortiumMove(
                store: store, coordinator: client, audit: audit, trust: configuration.trust, aeTitle: listener.aeTitle, destinations: dimseDestinations,
                tls: { try TLSContext(material.configuration, role: .client) }, log: log.named("move"), nudge: { queue.nudge() },
                patience: listener.moveWaitSeconds, timeout: listener.timeoutSeconds)
            server.query = query
        }
        let scp = DIMSEServer(server, sink: intake, log: dimseLog)
        try scp.start()
        dimse = scp
        dimseIntake = intake
        dimseLog.info("C-STORE SCP listening", ["address": "\(listener.host):\(scp.port)", "aet": listener.aeTitle, "tls": listener.tls ? "yes" : "no", "peers": configuration.dimsePeers.map(\.name).joined(separator: ","), "intake": configuration.dimseIntakeFolder])
    }

    /// Who may associate: each dimse-peer's AE title from the addresses its host resolves to now,
    /// and whether it may query.
    static func callers(_ peers: [AgentConfiguration.DIMSEPeer], log: Logger) -> [AcceptorPolicy.Caller] {
        peers.map { peer in
            let addresses = DIMSEServer.addresses(of: peer.host)
            if addresses.isEmpty { log.error("a dimse-peer's host does not resolve: its associations will be rejected", ["peer": peer.name, "host": peer.host]) }
            return AcceptorPolicy.Caller(aeTitle: peer.aeTitle, addresses: addresses, mayQuery: peer.mayQuery)
        }
    }

    /// SIGHUP: the dimse-peer lines again (their hosts resolved again). The listener, its AE
    /// title and limits need a restart.
    func reloadDIMSEPeers(_ fresh: AgentConfiguration) {
        guard let dimse else { return }
        let dimseLog = log.named("dimse")
        dimse.replaceCallers(Self.callers(fresh.dimsePeers, log: dimseLog))
        dimseNames.value = Self.names(fresh.dimsePeers)
        dimseDestinations.value = Self.destinations(fresh.dimsePeers)
        dimseLog.info("dimse peers re-read", ["peers": fresh.dimsePeers.map(\.name).joined(separator: ",")])
        if fresh.dimse.map(Self.withoutPlace) != configuration.dimse.map(Self.withoutPlace) {
            dimseLog.warning("the dimse line changed: it takes effect at the next start")
        }
    }

    /// The dimse-peer names by calling AE title, for the audit log.
    static func names(_ peers: [AgentConfiguration.DIMSEPeer]) -> [String: String] {
        Dictionary(peers.map { ($0.aeTitle, $0.name) }, uniquingKeysWith: { first, _ in first })
    }

    /// Each dimse-peer's own SCP by AE title: where a C-MOVE to it sends.
    static func destinations(_ peers: [AgentConfiguration.DIMSEPeer]) -> [String: ConsortiumMove.Destination] {
        Dictionary(peers.map { ($0.aeTitle, ConsortiumMove.Destination(name: $0.name, host: $0.host, port: $0.port, tls: $0.tls)) }, uniquingKeysWith: { first, _ in first })
    }

    /// A listener's settings, wherever in the file they were written.
    static func withoutPlace(_ listener: AgentConfiguration.DIMSEListener) -> AgentConfiguration.DIMSEListener {
        var listener = listener
        listener.location = SourceLocation(file: "", line: 0, column: 0)
        return listener
    }

    /// The folders watched as archive folders: the `watch` lines, and the DIMSE intake.
    var watchRoots: [(path: String, pollSeconds: Double?)] {
        configuration.watches.map { ($0.path, $0.pollSeconds) } + (configuration.dimse != nil ? [(configuration.dimseIntakeFolder, nil)] : [])
    }
}
