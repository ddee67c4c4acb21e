import DIMSE
import Foundation
import Transport

/// The DIMSE C-STORE and C-ECHO SCP (`dimse ADDRESS:PORT { aet AET }`): who may associate is the
/// `dimse-peer` lines (calling AE title and the connection's address both checked; the hosts
/// resolved at start), and what it receives goes into the intake (`DIMSEIntake`), which is
/// watched like an archive folder.
extension AgentDaemon {
    func startDIMSE() throws {
        guard let listener = configuration.dimse else { return }
        let dimseLog = log.named("dimse")
        var callers: [AcceptorPolicy.Caller] = []
        for peer in configuration.dimsePeers {
            let addresses = DIMSEServer.addresses(of: peer.host)
            if addresses.isEmpty { dimseLog.error("a dimse-peer's host does not resolve: its associations will be rejected", ["peer": peer.name, "host": peer.host]) }
            callers.append(AcceptorPolicy.Caller(aeTitle: peer.aeTitle, addresses: addresses))
        }
        let intake = try DIMSEIntake(
            folder: configuration.dimseIntakeFolder, audit: audit, names: Dictionary(configuration.dimsePeers.map { ($0.aeTitle, $0.name) }, uniquingKeysWith: { first, _ in first }),
            log: dimseLog)
        var server = DIMSEServer.Configuration(
            host: listener.host, port: listener.port,
            policy: AcceptorPolicy(aeTitle: listener.aeTitle, callers: callers, maximumLength: UInt32(listener.maximumPDU), acceptsStorage: true))
        server.maximumAssociations = listener.associations
        server.timeout = listener.timeoutSeconds
        server.idleTimeout = listener.idleSeconds
        let scp = DIMSEServer(server, sink: intake, log: dimseLog)
        try scp.start()
        dimse = scp
        dimseLog.info("C-STORE SCP listening", ["address": "\(listener.host):\(scp.port)", "aet": listener.aeTitle, "peers": configuration.dimsePeers.map(\.name).joined(separator: ","), "intake": configuration.dimseIntakeFolder])
    }

    /// The folders watched as archive folders: the `watch` lines, and the DIMSE intake.
    var watchRoots: [(path: String, pollSeconds: Double?)] {
        configuration.watches.map { ($0.path, $0.pollSeconds) } + (configuration.dimse != nil ? [(configuration.dimseIntakeFolder, nil)] : [])
    }
}
