import DIMSE
import Foundation
import Platform

#if canImport(Glibc)
    import Glibc
#endif

/// Where a C-STORE's data set goes: the SCP's caller (the agent's intake) opens an instance for
/// each request and is handed its data set's fragments as they arrive.
public protocol DIMSEStoreSink: Sendable {
    /// A place for the data set of `request`, from `peer` (the calling AE title and address).
    /// A thrown `DIMSEStoreRefusal` answers the request with its status (its data set is read
    /// and dropped); any other error, 0xA700 (out of resources).
    func begin(_ request: StoreRequest, from peer: DIMSEServer.Peer) throws -> any DIMSEIncomingInstance
}

/// One instance being received. `write` is called with each fragment in order, then either
/// `finish` (the data set is whole: keep it, durably, and say with which status) or `discard`
/// (the association broke, or a write failed: nothing of it may be left).
public protocol DIMSEIncomingInstance: AnyObject {
    func write(_ fragment: [UInt8]) throws
    /// The C-STORE status to answer (PS3.4 B.2.3): 0x0000 only once the instance is durable.
    func finish() -> (status: UInt16, detail: String)
    func discard()
}

/// What answers C-FIND and C-MOVE at the SCP (the agent's consortium-wide query and retrieve).
/// Identifiers come and go encoded in the request's transfer syntax; the service decodes them.
public protocol DIMSEQueryService: Sendable {
    /// A C-FIND's matches, each an identifier, or a refusal.
    func find(_ request: QueryRequest, identifier: [UInt8], from peer: DIMSEServer.Peer) -> DIMSEFindAnswer
    /// Carries out a C-MOVE; `progress` sends a pending response with the counts so far and
    /// says whether the requester is still there (false: stop, the association is gone).
    func move(_ request: QueryRequest, identifier: [UInt8], from peer: DIMSEServer.Peer, progress: (SubOperations) -> Bool) -> DIMSEMoveOutcome
}

public enum DIMSEFindAnswer: Sendable {
    case matches([[UInt8]])
    case refused(status: UInt16, why: String)
}

/// A C-MOVE's final response: its status (0 all sent; 0xB000 some failed; a failure), the
/// counts, words for the requester, and the identifier listing the instances that failed.
public struct DIMSEMoveOutcome: Sendable {
    public var status: UInt16
    public var subOperations: SubOperations
    public var comment: String?
    public var failedIdentifier: [UInt8]?
    public init(status: UInt16, subOperations: SubOperations, comment: String? = nil, failedIdentifier: [UInt8]? = nil) {
        self.status = status
        self.subOperations = subOperations
        self.comment = comment
        self.failedIdentifier = failedIdentifier
    }
}

/// A C-STORE answered with a failure status, and why (for the log; the peer gets the status).
public struct DIMSEStoreRefusal: Error, CustomStringConvertible {
    public let status: UInt16
    public let description: String
    public init(status: UInt16, _ description: String) {
        self.status = status
        self.description = description
    }
}

/// A DIMSE C-ECHO and C-STORE SCP over TCP: a listener thread, a thread per association, the
/// protocol in `Acceptor` (pure), the data sets into a `DIMSEStoreSink`.
///
/// Limits, each explicit: the largest PDU taken (`AcceptorPolicy.maximumLength`), associations
/// at once (`maximumAssociations`: one more is read, under a 2 s deadline, and rejected,
/// transient, local limit exceeded; past twice the limit a connection is closed unread), contexts an association (`AcceptorPolicy.maximumContexts`), a deadline on every
/// PDU once its first byte came or while an association is being asked for (`timeout`: the
/// ARTIM timer's job, PS3.8 §9.1.5 — a peer that stalls mid-PDU is aborted, its instance
/// dropped), and `idleTimeout` between messages. A connection cut, aborted or timed out in the
/// middle of an instance leaves nothing of it (`discard`), and no success was sent for it.
public final class DIMSEServer: @unchecked Sendable {
    public struct Configuration: Sendable {
        public var host: String
        public var port: UInt16
        public var policy: AcceptorPolicy
        public var maximumAssociations = 8
        public var timeout = 30.0
        public var idleTimeout = 120.0
        /// DICOM TLS (PS3.15 B.9): the server context in force (it is replaced on reload, so it
        /// is asked for at each connection); nil: plain TCP.
        public var tls: (@Sendable () -> TLSContext)?
        /// C-FIND and C-MOVE (with `policy.acceptsQuery`).
        public var query: (any DIMSEQueryService)?

        public init(host: String, port: UInt16, policy: AcceptorPolicy) {
            self.host = host
            self.port = port
            self.policy = policy
        }
    }

    /// Who is on the other end of an association.
    public struct Peer: Sendable {
        public var aeTitle: String
        public var address: String
    }

    /// Counts since the start, for metrics, and the last of each outcome, for `consort status`.
    public struct Counters: Sendable {
        public var associations = 0
        public var rejected = 0
        public var aborted = 0
        public var echoes = 0
        /// C-STORE answers by status (0: success).
        public var stores: [UInt16: Int] = [:]
        public var storedBytes: Int64 = 0
        /// C-FIND and C-MOVE requests answered, by final status.
        public var finds: [UInt16: Int] = [:]
        public var moves: [UInt16: Int] = [:]
        public var lastStored: Event?
        public var lastRefused: Event?
        public var lastRejected: Event?
        /// When associations were rejected, the last hour's (at most 1,000): a modality sending
        /// under an AE title nobody listed loses its studies until a person sees it.
        public var rejections: [Double] = []

        mutating func recordRejection(_ event: Event) {
            rejected += 1
            lastRejected = event
            rejections.removeAll { $0 < event.time - 3600 }
            if rejections.count < 1000 { rejections.append(event.time) }
        }

        /// Rejections within the hour before `now`.
        public func rejections(before now: Double) -> Int { rejections.filter { $0 > now - 3600 }.count }
    }

    /// One outcome, for the operator: when (wall clock), who, and what.
    public struct Event: Sendable {
        public var time: Double
        public var calling: String
        public var address: String
        public var detail: String
    }

    public let configuration: Configuration
    fileprivate let sink: any DIMSEStoreSink
    fileprivate let log: Logger
    private let lock = NSCondition()
    private var listener: Int32 = -1
    private var active = 0
    private var stopping = false
    private var open = Set<Int32>()
    private var counts = Counters()
    /// Who may associate now (`replaceCallers`): read when an association begins.
    private var callers: [AcceptorPolicy.Caller]?
    public private(set) var port: UInt16 = 0

    public init(_ configuration: Configuration, sink: any DIMSEStoreSink, log: Logger) {
        self.configuration = configuration
        self.sink = sink
        self.log = log
        callers = configuration.policy.callers
    }

    /// Who may associate from now on (the associations open keep theirs): a reload of the
    /// `dimse-peer` lines.
    public func replaceCallers(_ callers: [AcceptorPolicy.Caller]?) { lock.withLock { self.callers = callers } }

    public var counters: Counters { lock.withLock { counts } }
    public var activeAssociations: Int { lock.withLock { active } }

    /// Binds and starts accepting; returns once the port is listening.
    public func start() throws {
        signal(SIGPIPE, SIG_IGN)
        let (fd, bound) = try ListeningSocket.open(host: configuration.host, port: configuration.port, backlog: 64)
        port = bound
        listener = fd
        let thread = Thread { [self] in acceptLoop() }
        thread.name = "consort-dimse-accept"
        thread.start()
    }

    /// Stops accepting and ends the associations open (an instance in the middle is dropped,
    /// never answered success), waiting up to `deadline` seconds for their threads.
    public func stop(deadline: Double = 5) {
        lock.withLock { stopping = true }
        if listener >= 0 { Glibc.shutdown(listener, Int32(SHUT_RDWR)) }
        lock.lock()
        for fd in open { Glibc.shutdown(fd, Int32(SHUT_RDWR)) }
        let until = Date().addingTimeInterval(deadline)
        while active > 0 && lock.wait(until: until) {}
        lock.unlock()
    }

    private func acceptLoop() {
        ListeningSocket.acceptLoop(listener, stopping: { lock.withLock { stopping } }, log: { log.warning($0) }) { fd, remote, _ in
            // Past the limit, a connection is read only for its request, to reject it with the
            // reason (under a short deadline); past twice the limit, closed at once: a flood of
            // connections costs a bounded number of threads.
            let (busy, flood): (Bool, Bool) = lock.withLock {
                if active >= 2 * configuration.maximumAssociations + 8 { return (true, true) }
                let over = active >= configuration.maximumAssociations
                active += 1
                open.insert(fd)
                return (over, false)
            }
            if flood {
                close(fd)
                count { $0.rejected += 1 }
                return
            }
            let connection = Connection(descriptor: fd, remote: remote)
            let thread = Thread { [self] in
                serve(connection, busy: busy)
                lock.withLock {
                    open.remove(fd)
                    active -= 1
                    lock.broadcast()
                }
                // The connection closes its socket when it goes, here.
            }
            thread.name = "consort-dimse"
            thread.start()
        }
    }

    /// One association, from its request to its release, abort or deadline: reads under the
    /// deadlines, the acceptor's events carried out by a `Session`.
    private func serve(_ connection: Connection, busy: Bool) {
        let remote = connection.remote
        let timeout = busy ? min(configuration.timeout, 2) : configuration.timeout
        if let tls = configuration.tls {
            // The handshake under the ARTIM deadline too.
            connection.setReadTimeout(timeout)
            connection.setWriteTimeout(timeout)
            do { try connection.acceptTLS(tls()) } catch {
                count { $0.rejected += 1 }
                log.warning("TLS handshake refused", ["peer": remote, "error": "\(error)"])
                return
            }
        }
        var policy = configuration.policy
        policy.callers = lock.withLock { callers }
        var session = Session(server: self, connection: connection, acceptor: Acceptor(policy: policy, peerAddress: remote, busy: busy))
        // Whatever ends the association, an instance not finished leaves nothing behind.
        defer { session.instance?.discard() }
        var buffer = [UInt8](repeating: 0, count: 64 * 1024)
        var pduStarted = MonotonicClock.now
        var one: Int32 = 1
        while !session.acceptor.closed {
            while let events = session.acceptor.next() {
                for event in events { guard session.handle(event) else { return } }
                pduStarted = MonotonicClock.now
            }
            let acceptor = session.acceptor
            if acceptor.closed { break }
            // The deadline: a PDU begun (or the association request, or the next PDU of a data
            // set) must be whole within `timeout`; between messages, the idle timeout.
            let midPDU = acceptor.pendingBytes > 0 || !acceptor.isAssociated || acceptor.inStore
            let limit = midPDU ? timeout : configuration.idleTimeout
            let left = pduStarted + limit - MonotonicClock.now
            let n: Int
            do {
                guard left > 0 else { throw ConnectionError(kind: .timedOut, message: "") }
                connection.setReadTimeout(min(left, 3600))
                n = try buffer.withUnsafeMutableBytes { try connection.read(into: $0) }
            } catch let error as ConnectionError where error.kind == .timedOut {
                let what = acceptor.pendingBytes > 0 ? "in the middle of a PDU" : acceptor.isAssociated ? (acceptor.inStore ? "in the middle of a data set" : "idle") : "before the association request"
                session.ended("association aborted: no PDU within \(Self.seconds(limit)) \(what)")
                connection.setWriteTimeout(1)
                try? connection.write(PDU.abort(AssociateAbort(source: 2, reason: 0)).encoded())
                return
            } catch {
                session.ended("association ended: \(error)")
                return
            }
            if n == 0 {
                if acceptor.isAssociated || acceptor.pendingBytes > 0 { session.ended("connection closed without a release") }
                return
            }
            if acceptor.pendingBytes == 0 && !acceptor.inStore { pduStarted = MonotonicClock.now }
            session.acceptor.append(buffer[0..<n])
            setsockopt(connection.descriptor, Int32(IPPROTO_TCP), TCP_QUICKACK, &one, socklen_t(MemoryLayout<Int32>.size))
        }
    }

    /// One association's state beside its acceptor: the instance being received (or why it is
    /// refused), and what carrying out each event takes — sending, the sink, the log, counts.
    private struct Session {
        let server: DIMSEServer
        let connection: Connection
        var acceptor: Acceptor
        var instance: (any DIMSEIncomingInstance)?
        var failure: DIMSEStoreRefusal?
        var current: StoreRequest?
        var bytes = 0
        var started = 0.0

        init(server: DIMSEServer, connection: Connection, acceptor: Acceptor) {
            self.server = server
            self.connection = connection
            self.acceptor = acceptor
        }

        var remote: String { connection.remote }

        var log: Logger { server.log }
        var fields: KeyValuePairs<String, Any> { ["peer": remote, "calling": acceptor.callingAE] }

        /// An association ended by the connection (a deadline, a cut, a send that failed).
        func ended(_ message: String) {
            server.count { $0.aborted += 1 }
            log.warning(message + (instance != nil || failure != nil || acceptor.inStore ? "; the instance being received is dropped" : ""), fields)
        }

        func send(_ pdus: [PDU], what: String) -> Bool {
            connection.setWriteTimeout(server.configuration.timeout)
            do {
                for pdu in pdus { try connection.write(pdu.encoded()) }
            } catch {
                ended("association ended: cannot send \(what): \(error)")
                return false
            }
            return true
        }

        /// Carries out one event; false when the association is over for the connection.
        mutating func handle(_ event: AcceptorEvent) -> Bool {
            switch event {
            case .send(let pdus):
                return send(pdus, what: "to the peer")
            case .associated(let calling, let accepted, let proposed):
                server.count { $0.associations += 1 }
                log.info("association accepted", ["peer": remote, "calling": calling, "contexts": "\(accepted) of \(proposed)"])
            case .rejected(let reject, let why):
                server.count { $0.recordRejection(Event(time: Date().timeIntervalSince1970, calling: acceptor.callingAE, address: remote, detail: "\(reject.words) (\(why))")) }
                log.warning("association rejected: \(reject.words)", ["peer": remote, "why": why])
            case .echoed:
                server.count { $0.echoes += 1 }
            case .storeBegan(let request):
                (current, bytes, started, failure) = (request, 0, MonotonicClock.now, nil)
                do {
                    instance = try server.sink.begin(request, from: Peer(aeTitle: acceptor.callingAE, address: remote))
                } catch {
                    failure = error as? DIMSEStoreRefusal ?? DIMSEStoreRefusal(status: 0xA700, "\(error)")
                }
            case .dataSetFragment(let fragment):
                guard failure == nil, let open = instance else { return true }
                bytes += fragment.count
                do { try open.write(fragment) } catch {
                    // The rest of the data set is read and dropped; nothing is kept.
                    open.discard()
                    instance = nil
                    failure = error as? DIMSEStoreRefusal ?? DIMSEStoreRefusal(status: 0xA700, "\(error)")
                }
            case .dataSetEnded:
                return storeEnded()
            case .storeRefused(let request, let status, let why):
                server.count {
                    $0.stores[status, default: 0] += 1
                    $0.lastRefused = Event(time: Date().timeIntervalSince1970, calling: acceptor.callingAE, address: remote, detail: "\(DIMSEServer.hex(status)) \(Command.words(ofStoreStatus: status)): \(why)")
                }
                log.warning("C-STORE refused: \(Command.words(ofStoreStatus: status))", ["peer": remote, "calling": acceptor.callingAE, "sop": request.sopInstance, "why": why])
            case .queryArrived(let request, let identifier):
                return answer(request, identifier)
            case .queryRefused(let request, let status, let why):
                server.count { request.kind == .find ? ($0.finds[status, default: 0] += 1) : ($0.moves[status, default: 0] += 1) }
                log.warning("\(request.kind == .find ? "C-FIND" : "C-MOVE") refused", ["peer": remote, "calling": acceptor.callingAE, "status": DIMSEServer.hex(status), "why": why])
            case .released:
                log.info("association released", fields)
            case .aborted(let why):
                server.count { $0.aborted += 1 }
                log.warning("association aborted" + (instance != nil || failure != nil ? "; the instance being received is dropped" : ""), ["peer": remote, "calling": acceptor.callingAE, "why": why])
            }
            return true
        }

        /// A C-FIND or C-MOVE: the service asked, its answers sent — pending ones as they come,
        /// then the final one.
        private mutating func answer(_ request: QueryRequest, _ identifier: [UInt8]) -> Bool {
            let started = MonotonicClock.now
            let peer = Peer(aeTitle: acceptor.callingAE, address: remote)
            let what = request.kind == .find ? "C-FIND" : "C-MOVE"
            guard let service = server.configuration.query else {
                return send(acceptor.queryAnswer(status: QueryRetrieve.unableToProcess, comment: "no query service here"), what: "the \(what) response")
            }
            var final: UInt16
            var detail: String
            switch request.kind {
            case .find:
                switch service.find(request, identifier: identifier, from: peer) {
                case .matches(let matches):
                    for match in matches {
                        guard send(acceptor.queryAnswer(status: QueryRetrieve.pending, identifier: match), what: "a C-FIND match") else { return false }
                    }
                    final = 0
                    detail = "\(matches.count) matches"
                    guard send(acceptor.queryAnswer(status: 0), what: "the C-FIND response") else { return false }
                case .refused(let status, let why):
                    (final, detail) = (status, why)
                    guard send(acceptor.queryAnswer(status: status, comment: why), what: "the C-FIND response") else { return false }
                }
            case .move:
                var alive = true
                let outcome = service.move(request, identifier: identifier, from: peer) { counts in
                    if alive { alive = send(acceptor.queryAnswer(status: QueryRetrieve.pending, subOperations: counts), what: "a C-MOVE pending response") }
                    return alive
                }
                guard alive else { return false }
                final = outcome.status
                let c = outcome.subOperations
                detail = "to \(request.moveDestination ?? "?"): \(c.completed) sent, \(c.failed) failed, \(c.warning) with a warning" + (outcome.comment.map { "; " + $0 } ?? "")
                guard send(acceptor.queryAnswer(status: outcome.status, identifier: outcome.failedIdentifier, subOperations: outcome.subOperations, comment: outcome.comment), what: "the C-MOVE response") else { return false }
            }
            server.count { request.kind == .find ? ($0.finds[final, default: 0] += 1) : ($0.moves[final, default: 0] += 1) }
            let line: KeyValuePairs<String, Any> = [
                "peer": remote, "calling": acceptor.callingAE, "status": DIMSEServer.hex(final), "seconds": String(format: "%.3f", MonotonicClock.now - started), "detail": detail,
            ]
            if final == 0 { log.info("\(what) answered", line) } else { log.warning("\(what) answered with a failure or warning", line) }
            return true
        }

        /// The data set is whole: the sink keeps it (or the refusal stands), and the status is
        /// answered — success only once the sink says the instance is durable.
        private mutating func storeEnded() -> Bool {
            let (status, detail): (UInt16, String)
            if let failure {
                (status, detail) = (failure.status, failure.description)
            } else if let open = instance {
                (status, detail) = open.finish()
            } else {
                (status, detail) = (0xA700, "no place for the instance")
            }
            instance = nil
            failure = nil
            let event = Event(time: Date().timeIntervalSince1970, calling: acceptor.callingAE, address: remote, detail: current?.sopInstance ?? "")
            server.count {
                $0.stores[status, default: 0] += 1
                if status == 0 {
                    $0.storedBytes += Int64(bytes)
                    $0.lastStored = event
                } else {
                    var refused = event
                    refused.detail = "\(DIMSEServer.hex(status)) \(Command.words(ofStoreStatus: status)): \(detail)"
                    $0.lastRefused = refused
                }
            }
            let line: KeyValuePairs<String, Any> = [
                "peer": remote, "calling": acceptor.callingAE, "sop": current?.sopInstance ?? "", "status": DIMSEServer.hex(status), "bytes": bytes,
                "seconds": String(format: "%.3f", MonotonicClock.now - started), "detail": detail,
            ]
            if status == 0 { log.info("C-STORE stored", line) } else { log.warning("C-STORE refused: \(Command.words(ofStoreStatus: status))", line) }
            return send(acceptor.storeFinished(status: status), what: "the C-STORE response")
        }
    }

    /// The IPv4 addresses `host` resolves to now (a literal address is itself): who a
    /// `dimse-peer` line lets in. Empty when it does not resolve.
    public static func addresses(of host: String) -> Set<String> {
        var hints = addrinfo()
        hints.ai_family = AF_INET
        hints.ai_socktype = Int32(SOCK_STREAM.rawValue)
        var list: UnsafeMutablePointer<addrinfo>?
        guard getaddrinfo(host, nil, &hints, &list) == 0 else { return [] }
        defer { freeaddrinfo(list) }
        var found = Set<String>()
        var entry = list
        while let address = entry {
            entry = address.pointee.ai_next
            guard let raw = address.pointee.ai_addr else { continue }
            var text = [CChar](repeating: 0, count: 64)
            raw.withMemoryRebound(to: sockaddr_in.self, capacity: 1) { var a = $0.pointee.sin_addr; _ = inet_ntop(AF_INET, &a, &text, socklen_t(text.count)) }
            found.insert(String(decoding: text.prefix { $0 != 0 }.map { UInt8(bitPattern: $0) }, as: UTF8.self))
        }
        return found
    }

    fileprivate func count(_ change: (inout Counters) -> Void) { lock.withLock { change(&counts) } }

    static func hex(_ status: UInt16) -> String { "0x" + String(format: "%04X", status) }
    static func seconds(_ value: Double) -> String { value == value.rounded() ? "\(Int(value)) s" : "\(value) s" }
}
