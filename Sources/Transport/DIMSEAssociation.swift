import DIMSE
import Platform

#if canImport(Glibc)
    import Glibc
#endif

/// A DIMSE association over TCP, as the requester: connects with a deadline, and moves the PDUs
/// a pure exchange (`EchoRequester`) asks for, every read under the deadline (the ARTIM timer's
/// job, PS3.8 §9.1.5: a peer that stalls mid-PDU ends the association, never the caller's
/// thread). TLS for DIMSE comes with the C-STORE SCP (issue 26).
public enum DIMSEAssociation {
    public struct Failure: Error, CustomStringConvertible {
        public let description: String
        /// The node's A-ASSOCIATE-RJ, when that is what the failure was.
        public var rejection: AssociateReject?
        /// The TLS handshake failed (a certificate not trusted, not naming the host, revoked):
        /// a configuration fault, not a node that is down.
        public var inHandshake = false
        init(_ description: String, rejection: AssociateReject? = nil) {
            self.description = description
            self.rejection = rejection
        }
    }

    /// C-ECHO `called`@`host`:`port` as `calling`; the status (0: success). Every step within
    /// `timeout` seconds.
    /// With `tls`, DICOM TLS: the node's certificate must chain to the consortium CA and name `host`.
    public static func echo(
        host: String, port: UInt16, called: String, calling: String, timeout: Double, maximumLength: UInt32 = 65_536, tls: TLSContext? = nil
    ) throws -> UInt16 {
        let fd = try openLink(host: host, port: port, timeout: timeout, tls: tls)
        defer { fd.finish() }
        var exchange = EchoRequester(calledAE: called, callingAE: calling, maximumLength: maximumLength)
        var reader = PDUReader(maximumLength: Int(maximumLength))
        try send([exchange.opening], on: fd, timeout: timeout)
        while true {
            let pdu = try next(&reader, on: fd, timeout: timeout)
            switch try exchange.receive(pdu) {
            case .send(let pdus): try send(pdus, on: fd, timeout: timeout)
            case .finished(let status): return status
            }
        }
    }

    static func send(_ pdus: [PDU], on fd: DIMSELink, timeout: Double) throws {
        for pdu in pdus {
            try pdu.encoded().withUnsafeBytes { try fd.send($0, timeout: timeout) }
        }
    }

    /// A connection to the node, with DICOM TLS over it when `tls` is given.
    static func openLink(host: String, port: UInt16, timeout: Double, tls: TLSContext?) throws -> DIMSELink {
        let link = DIMSELink(fd: try connect(host: host, port: port, timeout: timeout))
        if let tls { try link.startTLS(tls, host: host, timeout: timeout) }
        return link
    }

    /// The next whole PDU, within `timeout` seconds for all of it: a peer that trickles a byte
    /// now and then does not keep the association for ever.
    static func next(_ reader: inout PDUReader, on fd: DIMSELink, timeout: Double) throws -> PDU {
        var buffer = [UInt8](repeating: 0, count: 64 * 1024)
        let deadline = MonotonicClock.now + timeout
        while true {
            if let pdu = try reader.next() { return pdu }
            let left = deadline - MonotonicClock.now
            guard left > 0 else { throw Failure("no answer within \(timeout) s while waiting for the peer") }
            let n = try buffer.withUnsafeMutableBytes { try fd.receive(into: $0, timeout: left, reported: timeout) }
            if n == 0 { throw Failure("the peer closed the connection" + (reader.pending > 0 ? " in the middle of a PDU" : "")) }
            reader.append(buffer[0..<n])
            // Acknowledged at once, not after the delayed-ACK timer: a peer with Nagle on
            // (DCMTK writes a PDU's header and its body apart) otherwise holds the body 40 ms.
            // Linux clears the flag after use, so it is set after every read.
            var one: Int32 = 1
            setsockopt(fd.fd, Int32(IPPROTO_TCP), TCP_QUICKACK, &one, socklen_t(MemoryLayout<Int32>.size))
        }
    }

    static func wait(_ fd: Int32, for events: Int16, timeout: Double, doing what: String, reported: Double? = nil) throws {
        var entry = pollfd(fd: fd, events: events, revents: 0)
        while true {
            let ready = poll(&entry, 1, Int32(max(1, timeout * 1000)))
            if ready > 0 { return }
            if ready == 0 { throw Failure("no answer within \(reported ?? timeout) s while \(what)") }
            if errno != EINTR { throw Failure("poll failed: \(String(cString: strerror(errno)))") }
        }
    }

    static func connect(host: String, port: UInt16, timeout: Double) throws -> Int32 {
        var hints = addrinfo()
        hints.ai_socktype = Int32(SOCK_STREAM.rawValue)
        var list: UnsafeMutablePointer<addrinfo>?
        let status = getaddrinfo(host, String(port), &hints, &list)
        guard status == 0, let first = list else { throw Failure("cannot resolve \(host): \(String(cString: gai_strerror(status)))") }
        defer { freeaddrinfo(list) }
        var lastError = "no address"
        var entry: UnsafeMutablePointer<addrinfo>? = first
        while let address = entry {
            entry = address.pointee.ai_next
            let fd = socket(address.pointee.ai_family, address.pointee.ai_socktype | Int32(SOCK_CLOEXEC.rawValue) | Int32(SOCK_NONBLOCK.rawValue), address.pointee.ai_protocol)
            guard fd >= 0 else { continue }
            if Glibc.connect(fd, address.pointee.ai_addr, address.pointee.ai_addrlen) != 0 && errno != EINPROGRESS {
                lastError = String(cString: strerror(errno))
                close(fd)
                continue
            }
            do {
                try wait(fd, for: Int16(POLLOUT), timeout: timeout, doing: "connecting")
            } catch {
                lastError = "\(error)"
                close(fd)
                continue
            }
            var code: Int32 = 0
            var size = socklen_t(MemoryLayout<Int32>.size)
            getsockopt(fd, SOL_SOCKET, SO_ERROR, &code, &size)
            guard code == 0 else {
                lastError = String(cString: strerror(code))
                close(fd)
                continue
            }
            // Each PDU goes whole in one send and the peer answers it: without this, a small
            // PDU after another waits for the peer's delayed ACK (40 ms a C-ECHO on loopback).
            var one: Int32 = 1
            setsockopt(fd, Int32(IPPROTO_TCP), TCP_NODELAY, &one, socklen_t(MemoryLayout<Int32>.size))
            return fd
        }
        throw Failure("cannot connect to \(host):\(port): \(lastError)")
    }
}

// MARK: - C-STORE as the requester

extension DIMSEAssociation {
    /// One file to store: its SOP class and instance, the transfer syntax it is stored in, and
    /// where its data set starts (after the File Meta Information).
    public struct StoreItem: Sendable {
        public var path: String
        public var sopClass: String
        public var sopInstance: String
        public var transferSyntax: String
        public var dataSetOffset: Int
        public var size: Int
        /// Another transfer syntax the data set can be sent in, proposed in a presentation context
        /// of its own beside the stored one's and used only when the node refuses the stored one
        /// (a PACS that takes explicit VR only); `convert` makes the data set in it.
        public var alternative: String?
        public var convert: (@Sendable (String) throws -> [DataSetPiece])?

        public init(
            path: String, sopClass: String, sopInstance: String, transferSyntax: String, dataSetOffset: Int, size: Int,
            alternative: String? = nil, convert: (@Sendable (String) throws -> [DataSetPiece])? = nil
        ) {
            self.path = path
            self.sopClass = sopClass
            self.sopInstance = sopInstance
            self.transferSyntax = transferSyntax
            self.dataSetOffset = dataSetOffset
            self.size = size
            self.alternative = alternative
            self.convert = convert
        }
    }

    /// A part of a data set to send: bytes made for it, or a range of its file as it is.
    public enum DataSetPiece: Sendable, Equatable {
        case bytes([UInt8])
        case file(offset: Int, count: Int)
    }

    /// What became of one file.
    public struct StoreResult: Sendable {
        public var item: StoreItem
        /// The node's status, or nil when the instance was not sent (its SOP class or transfer
        /// syntax not accepted).
        public var status: UInt16?
        public var reason: String
    }

    /// C-STORE each item to `called`@`host`:`port` as `calling`, on one association: the
    /// presentation contexts proposed from the items' SOP classes and stored transfer syntaxes
    /// (sent as stored; in an item's alternative, converted, only where the node refuses the
    /// stored one), each data set streamed from its file in fragments
    /// the node takes (memory flat in file size), each answer read before the next.
    /// Per-file outcomes are in the results; when the association fails part way, the results
    /// so far come with the failure (which files were stored is never lost), and an A-ABORT is
    /// sent before the connection closes. Throws only when no association was made.
    public static func store(
        _ items: [StoreItem], host: String, port: UInt16, called: String, calling: String, timeout: Double, maximumLength: UInt32 = 65_536,
        tls: TLSContext? = nil, moveOriginator: (ae: String, messageID: UInt16)? = nil, progress: ((StoreResult) -> Void)? = nil
    ) throws -> (results: [StoreResult], failure: String?) {
        // One context per (SOP class, transfer syntax) — the stored one, and the alternative
        // where there is one, in a context of its own so that the node accepts or refuses each
        // (one context offering both would let the node pick the alternative, and every
        // instance be converted that need not be); at most 128 (odd ids 1 ... 255), the
        // alternatives only where there is room.
        var keys: [String] = []
        var contexts: [ProposedContext] = []
        for item in items {
            let key = item.sopClass + "\u{1}" + item.transferSyntax
            guard !keys.contains(key) else { continue }
            guard contexts.count < 128 else { throw Failure("more than 128 SOP class and transfer syntax pairs in one association") }
            keys.append(key)
            contexts.append(ProposedContext(id: UInt8(contexts.count * 2 + 1), abstractSyntax: item.sopClass, transferSyntaxes: [item.transferSyntax]))
        }
        for item in items {
            guard let alternative = item.alternative, item.convert != nil, contexts.count < 128 else { continue }
            let key = item.sopClass + "\u{1}" + alternative
            guard !keys.contains(key) else { continue }
            keys.append(key)
            contexts.append(ProposedContext(id: UInt8(contexts.count * 2 + 1), abstractSyntax: item.sopClass, transferSyntaxes: [alternative]))
        }
        let fd = try openLink(host: host, port: port, timeout: timeout, tls: tls)
        defer { fd.finish() }
        var reader = PDUReader(maximumLength: Int(maximumLength))
        let request = AssociateRequest(
            calledAE: called, callingAE: calling, contexts: contexts,
            userInformation: UserInformation(maximumLength: maximumLength, implementationClassUID: Implementation.classUID, implementationVersionName: Implementation.versionName))
        try send([.associateRequest(request)], on: fd, timeout: timeout)
        let accept: AssociateAccept
        switch try next(&reader, on: fd, timeout: timeout) {
        case .associateAccept(let answer): accept = answer
        case .associateReject(let reject):
            throw Failure("association rejected (\(reject.result == .permanent ? "permanent" : "transient")): \(reject.words)", rejection: reject)
        case .abort(let abort): throw Failure("the node aborted the association (source \(abort.source), reason \(abort.reason))")
        case let other: throw Failure("the node answered the association request with \(other.kind)")
        }
        var results: [StoreResult] = []
        var messageID: UInt16 = 0
        do {
            /// The accepted context for (SOP class, syntax), if the node took it in that syntax.
            func accepted(_ sopClass: String, _ syntax: String) -> AcceptedContext? {
                guard let index = keys.firstIndex(of: sopClass + "\u{1}" + syntax) else { return nil }
                return accept.contexts.first { $0.id == contexts[index].id && $0.result == .acceptance && $0.transferSyntax == syntax }
            }
            func record(_ result: StoreResult) {
                results.append(result)
                progress?(result)
            }
            for item in items {
                // As stored when the node takes that; else the alternative, converted.
                let context: AcceptedContext
                var pieces = [DataSetPiece.file(offset: item.dataSetOffset, count: item.size - item.dataSetOffset)]
                if let stored = accepted(item.sopClass, item.transferSyntax) {
                    context = stored
                } else if let alternative = item.alternative, let convert = item.convert, let other = accepted(item.sopClass, alternative) {
                    do { pieces = try convert(alternative) } catch {
                        record(StoreResult(item: item, status: nil, reason: "cannot convert \(item.path) from \(item.transferSyntax) to \(alternative), the only syntax the node accepts for it: \(error)"))
                        continue
                    }
                    context = other
                } else {
                    let also = item.alternative.map { " or \($0)" } ?? ""
                    record(StoreResult(item: item, status: nil, reason: "the node does not accept \(item.sopClass) in \(item.transferSyntax)\(also)"))
                    continue
                }
                messageID &+= 1
                var command = Command.storeRequest(messageID: messageID, sopClass: item.sopClass, sopInstance: item.sopInstance)
                // A C-MOVE's sub-operation names who asked for the move (PS3.7 §9.1.1.1).
                command.moveOriginatorAE = moveOriginator?.ae
                command.moveOriginatorMessageID = moveOriginator?.messageID
                try send(dataPDUs(contextID: context.id, isCommand: true, command.encoded(), maximumLength: accept.userInformation.maximumLength), on: fd, timeout: timeout)
                try streamDataSet(item, pieces, contextID: context.id, maximumLength: accept.userInformation.maximumLength, on: fd, timeout: timeout)
                let response = try readCommand(&reader, contextID: context.id, on: fd, timeout: timeout)
                guard response.field == .storeResponse, response.respondingTo == messageID else {
                    throw Failure("the node answered C-STORE with \(response.field) for message \(response.respondingTo.map(String.init) ?? "?")")
                }
                let status = response.status ?? 0xFFFF
                record(StoreResult(item: item, status: status, reason: Command.words(ofStoreStatus: status)))
            }
        } catch {
            // The association is broken: say so to the node (A-ABORT, PS3.8 §9.3.8), keep what
            // was answered.
            try? send([.abort(AssociateAbort(source: 0, reason: 0))], on: fd, timeout: min(timeout, 1))
            return (results, "\(error)")
        }
        try send([.releaseRequest], on: fd, timeout: timeout)
        // A node that closes without its release response has still answered every instance.
        if case .releaseResponse? = try? next(&reader, on: fd, timeout: timeout) {}
        return (results, nil)
    }

    /// The data set — its pieces: ranges of its file and bytes made for it — in fragments of what
    /// the node takes, each full but the last (memory flat in file size).
    static func streamDataSet(_ item: StoreItem, _ pieces: [DataSetPiece], contextID: UInt8, maximumLength: UInt32, on fd: DIMSELink, timeout: Double) throws {
        let file = open(item.path, O_RDONLY | O_CLOEXEC)
        guard file >= 0 else { throw Failure("cannot open \(item.path): \(String(cString: strerror(errno)))") }
        defer { close(file) }
        let room = maximumLength == 0 ? 1 << 20 : max(1, min(Int(maximumLength) - 6, 1 << 20))
        var buffer = [UInt8](repeating: 0, count: room)
        var filled = 0
        let total = pieces.reduce(0) { total, piece in
            switch piece {
            case .bytes(let bytes): return total + bytes.count
            case .file(_, let count): return total + count
            }
        }
        var left = total
        func flush() throws {
            left -= filled
            try send([.data([PresentationDataValue(contextID: contextID, isCommand: false, isLast: left == 0, fragment: Array(buffer[0..<filled]))])], on: fd, timeout: timeout)
            filled = 0
        }
        for piece in pieces {
            switch piece {
            case .bytes(let bytes):
                var at = 0
                while at < bytes.count {
                    let take = min(room - filled, bytes.count - at)
                    buffer.replaceSubrange(filled..<(filled + take), with: bytes[at..<(at + take)])
                    filled += take
                    at += take
                    if filled == room { try flush() }
                }
            case .file(var offset, var count):
                while count > 0 {
                    let want = min(room - filled, count)
                    let n = buffer.withUnsafeMutableBytes { pread(file, $0.baseAddress! + filled, want, off_t(offset)) }
                    if n < 0 && errno == EINTR { continue }
                    guard n > 0 else { throw Failure("cannot read \(item.path) at \(offset): " + (n == 0 ? "it is shorter than it was" : String(cString: strerror(errno)))) }
                    filled += n
                    offset += n
                    count -= n
                    if filled == room { try flush() }
                }
            }
        }
        // The last fragment, unless a full one already went marked last (a data set a whole
        // number of fragments long); an empty data set still sends one, marked last.
        if filled > 0 || total == 0 { try flush() }
    }

    /// A whole command from the node (its fragments gathered), on the context given.
    static func readCommand(_ reader: inout PDUReader, contextID: UInt8, on fd: DIMSELink, timeout: Double) throws -> Command {
        var bytes: [UInt8] = []
        while true {
            switch try next(&reader, on: fd, timeout: timeout) {
            case .data(let values):
                for value in values {
                    guard value.contextID == contextID else { throw Failure("the node answered on presentation context \(value.contextID), not \(contextID)") }
                    guard value.isCommand else { throw Failure("the node sent a data set where a response was due") }
                    bytes += value.fragment
                    if value.isLast { return try Command.decode(bytes) }
                }
            case .abort(let abort): throw Failure("the node aborted the association (source \(abort.source), reason \(abort.reason))")
            case let other: throw Failure("the node sent \(other.kind) where a response was due")
            }
        }
    }
}
