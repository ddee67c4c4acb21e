import DIMSE
import Foundation
import Platform
import Spool
import Transport

/// A peer trust or a local target (the site's PACS), as the configuration names it.
struct PeerTarget: Sendable {
    let name: String
    let url: String
    var tls: TLSConfiguration?
    /// Connections at once, for pushes and fetches together; one more is kept for urgent work.
    let connections: Int
    let bandwidth: Int?
    /// Instances a request, when the configuration sets it.
    let batch: Int?
    let isLocal: Bool
    /// A local target that takes C-STORE (`local NAME dimse AET@HOST:PORT`): the node, the AE
    /// title called from, and each step's timeout. Nil for DICOMweb.
    var dimse: (node: DIMSENode, calling: String, timeout: Double)? = nil
}

/// Every peer's state, for both directions: its circuit (a peer down for pushes is down for
/// fetches), its connections in use, the clients kept alive for it, its pacing, what it last
/// said. The queue manager asks it what may start; executors take clients from it and say what
/// the peer answered. One lock; nothing here does I/O.
final class Peers: @unchecked Sendable {
    final class Peer: @unchecked Sendable {
        var target: PeerTarget
        var circuit: PeerCircuit
        var busy = 0
        var urgentBusy = false
        var lastSuccess: Double?
        var lastError: String?
        var configurationFault = false
        let pacer: Pacer?
        /// Clients (curl handles with their kept-alive TLS connections) not in use, by the
        /// priority of the work they carried: the receiving agent's thread for a connection
        /// yields the CPU for good once it carries normal or bulk work, so urgent work never
        /// reuses such a connection. The reserved urgent connection keeps its own.
        var idleClients: [JobPriority: [HTTPClient]] = [:]
        var urgentClient: HTTPClient?
        /// Whether the peer takes study manifests: nil until asked; false for a plain DICOMweb
        /// peer (it answered 404), which then just gets STOW-RS.
        var takesManifests: Bool?

        init(_ target: PeerTarget, threshold: Int) {
            self.target = target
            circuit = PeerCircuit(threshold: threshold)
            pacer = target.bandwidth.map { Pacer(bytesPerSecond: $0) }
        }
    }

    private let lock = NSLock()
    private var peers: [String: Peer] = [:]
    private let policy: RetryPolicy
    private let clock: any Clock
    private let log: Logger
    private var generator = SystemRandomNumberGenerator()
    /// Called when a circuit closes (the peer's waiting jobs may go): the queue manager's nudge.
    var circuitClosed: @Sendable () -> Void = {}

    init(targets: [PeerTarget], circuitThreshold: Int, policy: RetryPolicy, clock: any Clock, log: Logger) {
        self.policy = policy
        self.clock = clock
        self.log = log
        for target in targets { peers[target.name] = Peer(target, threshold: circuitThreshold) }
    }

    /// New or changed targets (SIGHUP re-read the peers): circuits kept for names that stay.
    func update(targets: [PeerTarget], circuitThreshold: Int) {
        lock.withLock {
            var next: [String: Peer] = [:]
            for target in targets {
                if let existing = peers[target.name], existing.target.url == target.url, existing.target.connections == target.connections,
                    existing.target.bandwidth == target.bandwidth, existing.target.batch == target.batch
                {
                    if existing.target.tls != target.tls { Self.replace(target.tls, in: existing) }
                    next[target.name] = existing
                } else {
                    next[target.name] = Peer(target, threshold: circuitThreshold)
                }
            }
            peers = next
        }
    }

    /// New TLS material (SIGHUP) for every peer reached over HTTPS; circuits kept.
    func replaceTLS(_ tls: TLSConfiguration) {
        lock.withLock {
            for peer in peers.values where peer.target.tls != nil { Self.replace(tls, in: peer) }
        }
    }

    /// Clients made with earlier material are dropped, not reused: their kept connections were
    /// verified against the CA and CRL of then. Under the lock.
    private static func replace(_ tls: TLSConfiguration?, in peer: Peer) {
        peer.target.tls = tls
        peer.idleClients = [:]
        peer.urgentClient = nil
    }

    /// The peers' addresses and TLS settings, by name.
    var targets: [String: PeerTarget] { lock.withLock { peers.mapValues(\.target) } }

    func target(_ name: String) -> PeerTarget? { lock.withLock { peers[name]?.target } }

    // MARK: - What may start

    /// Free connections of a peer, and whether its reserved urgent connection is free; nil for a
    /// name the configuration does not know.
    func freeSlots(_ name: String) -> (connections: Int, urgent: Bool)? {
        lock.withLock { peers[name].map { (max(0, $0.target.connections - $0.busy), !$0.urgentBusy) } }
    }

    /// Whether `starting` attempts may start now, by the circuit: closed, all of them; an open
    /// circuit whose time has come lets one through, the probe (asked only when something would
    /// start: asking moves such a circuit to half-open). The number allowed, and whether the one
    /// allowed is the probe.
    func allowed(_ name: String, starting: Int, now: Double) -> (count: Int, probe: Bool) {
        lock.withLock {
            guard starting > 0, let peer = peers[name] else { return (0, false) }
            guard peer.circuit.mayStart(now: now) else { return (0, false) }
            if case .halfOpen = peer.circuit.state { return (1, true) }
            return (starting, false)
        }
    }

    /// A connection of the peer taken (`reserved`: the one kept for urgent work): the peer as it
    /// is now, which the worker keeps to its end — a reload (SIGHUP) that changes the peer's
    /// line makes a new one, and the worker's release, answers and client go back to the one it
    /// took, never to the new one's counts or circuit. Nil for a name the configuration does not
    /// know.
    func take(_ name: String, reserved: Bool) -> Peer? {
        lock.withLock {
            guard let peer = peers[name] else { return nil }
            if reserved { peer.urgentBusy = true } else { peer.busy += 1 }
            return peer
        }
    }

    func release(_ peer: Peer, reserved: Bool) {
        lock.withLock {
            if reserved { peer.urgentBusy = false } else { peer.busy = max(0, peer.busy - 1) }
        }
    }

    /// A connection for one more worker of a job already running, if the peer has one free and
    /// its circuit is closed.
    func takeSpare(_ name: String) -> Peer? {
        lock.withLock {
            guard let peer = peers[name], case .closed = peer.circuit.state, peer.busy < peer.target.connections else { return nil }
            peer.busy += 1
            return peer
        }
    }

    /// The peer's address and TLS settings as they are now (a reload may change its TLS).
    func target(of peer: Peer) -> PeerTarget { lock.withLock { peer.target } }

    // MARK: - Clients

    /// A client for the peer: a kept one (its TLS connection alive) or a new one.
    func client(_ peer: Peer, priority: JobPriority, reserved: Bool) throws -> HTTPClient {
        let (kept, tls): (HTTPClient?, TLSConfiguration?) = lock.withLock {
            if reserved {
                defer { peer.urgentClient = nil }
                return (peer.urgentClient, peer.target.tls)
            }
            return (peer.idleClients[priority]?.popLast(), peer.target.tls)
        }
        return try kept ?? HTTPClient(.init(tls: tls))
    }

    /// A client back to be kept, unless it was made with TLS material since replaced.
    func giveBack(_ client: HTTPClient, to peer: Peer, priority: JobPriority, reserved: Bool) {
        lock.withLock {
            guard client.options.tls == peer.target.tls else { return }
            if reserved { peer.urgentClient = client } else { peer.idleClients[priority, default: []].append(client) }
        }
    }

    func takesManifests(_ name: String) -> Bool? { lock.withLock { peers[name]?.takesManifests } }

    func setTakesManifests(_ name: String, _ value: Bool) { lock.withLock { peers[name]?.takesManifests = value } }

    // MARK: - What the peer said

    /// The peer answered (a batch acknowledged, a retrieve answered): its circuit closes.
    func answered(_ peer: Peer, now: Double, by cause: String) {
        let (change, name): (CircuitChange?, String) = lock.withLock {
            peer.lastSuccess = now
            peer.configurationFault = false
            return (peer.circuit.recordSuccess(), peer.target.name)
        }
        if let change { logCircuit(change, peer: name, now: now, cause: cause) }
    }

    /// An attempt failed: the reason kept for status; counted by the circuit when it is evidence
    /// against the peer; a configuration fault marked until the next success or an operator's retry.
    func failed(_ peer: Peer, reason: String, againstPeer: Bool, configuration: Bool, now: Double, by cause: String) {
        let (change, name): (CircuitChange?, String) = lock.withLock {
            peer.lastError = reason
            if configuration { peer.configurationFault = true }
            return (againstPeer ? peer.circuit.recordFailure(now: now, policy: policy, using: &generator) : nil, peer.target.name)
        }
        if let change { logCircuit(change, peer: name, now: now, cause: cause) }
    }

    /// An attempt ended without trying the peer: if it was the probe, the next start probes.
    func abandoned(_ peer: Peer) {
        lock.withLock { peer.circuit.probeAbandoned() }
    }

    /// An operator's retry of a peer: an open circuit lets one probe through now. False if the
    /// peer is unknown.
    func probeNow(_ name: String) -> Bool {
        lock.withLock {
            guard let peer = peers[name] else { return false }
            _ = peer.circuit.forceProbe()
            peer.configurationFault = false
            return true
        }
    }

    // MARK: - Status

    struct PeerStatus: Sendable {
        var name: String, url: String, isLocal: Bool, circuit: String, circuitClosed: Bool, busy: Int, lastSuccess: Double?, lastError: String?,
            configurationFault: Bool
        /// Reachable as far as this agent knows: its circuit is closed and no certificate fault.
        var reachable: Bool { circuitClosed && !configurationFault }
    }

    var status: [PeerStatus] {
        let now = clock.now
        return lock.withLock {
            peers.values.sorted { $0.target.name < $1.target.name }.map {
                var closed = false
                var circuit = $0.circuit.description
                switch $0.circuit.state {
                case .closed: closed = true
                case .open(let until) where until.isFinite:
                    circuit = "open after \($0.circuit.consecutiveFailures) failures; next probe in \(max(0, Int((until - now).rounded(.up)))) s"
                default: break
                }
                return PeerStatus(
                    name: $0.target.name, url: $0.target.url, isLocal: $0.target.isLocal, circuit: circuit, circuitClosed: closed,
                    busy: $0.busy + ($0.urgentBusy ? 1 : 0), lastSuccess: $0.lastSuccess, lastError: $0.lastError, configurationFault: $0.configurationFault)
            }
        }
    }

    /// One line for a change of a peer's circuit, in an operator's words: what happens to its
    /// jobs and when the next try is.
    private func logCircuit(_ change: CircuitChange, peer: String, now: Double, cause: String) {
        switch change {
        case .opened(let until):
            log.warning("destination circuit opened: too many failures in a row; its jobs wait, and one probe will test it",
                ["destination": peer, "by": cause, "probe_in": "\(max(0, Int((until - now).rounded(.up)))) s"])
        case .reopened(let until):
            log.warning("destination circuit opened again: the probe failed; its jobs keep waiting for the next one",
                ["destination": peer, "by": cause, "probe_in": "\(max(0, Int((until - now).rounded(.up)))) s"])
        case .closed:
            log.info("destination circuit closed: the destination answers again; its jobs go on", ["destination": peer, "by": cause])
            circuitClosed()
        }
    }
}
