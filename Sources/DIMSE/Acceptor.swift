/// Who may associate with an acceptor, what it accepts, and its limits — each explicit.
public struct AcceptorPolicy: Sendable, Equatable {
    /// A calling AE title allowed to associate, and the addresses it may call from (nil: any).
    public struct Caller: Sendable, Equatable {
        public var aeTitle: String
        public var addresses: Set<String>?
        /// It may query and retrieve (C-FIND, C-MOVE), when the acceptor offers them.
        public var mayQuery: Bool
        public init(aeTitle: String, addresses: Set<String>?, mayQuery: Bool = false) {
            self.aeTitle = aeTitle
            self.addresses = addresses
            self.mayQuery = mayQuery
        }
    }

    /// The called AE title this acceptor answers to; any other is rejected (reason 7).
    public var aeTitle: String
    /// nil: anyone may associate; otherwise only these callers, from their addresses.
    public var callers: [Caller]?
    /// The largest P-DATA-TF PDU this side takes (announced in the A-ASSOCIATE-AC, and the
    /// PDU reader's limit: a peer that sends a larger one is aborted before its body is read).
    public var maximumLength: UInt32
    /// Presentation contexts answered in one association; those past it are rejected in their
    /// context (result 2, no reason), the rest work. PS3.8 allows 128 (odd ids 1 ... 255).
    public var maximumContexts: Int
    /// Whether storage SOP classes are accepted (a C-STORE SCP) or Verification only.
    public var acceptsStorage: Bool
    /// The largest command set taken (its fragments gathered): a command is a few hundred bytes.
    public var maximumCommandLength = 65_536
    /// Whether C-FIND and C-MOVE (study root, patient root) are accepted: a query/retrieve SCP,
    /// for the callers that may query (any caller when `callers` is nil).
    public var acceptsQuery = false
    /// The largest C-FIND or C-MOVE identifier taken: a query is a few hundred bytes.
    public var maximumIdentifierLength = 1 << 20

    public init(aeTitle: String, callers: [Caller]?, maximumLength: UInt32, maximumContexts: Int = 128, acceptsStorage: Bool) {
        self.aeTitle = aeTitle
        self.callers = callers
        self.maximumLength = maximumLength
        self.maximumContexts = maximumContexts
        self.acceptsStorage = acceptsStorage
    }
}

/// The storage SOP classes and transfer syntaxes a C-STORE SCP takes.
public enum Storage {
    /// Every storage SOP class of PS3.4 Annex B is under this root (PS3.6 Annex A: images, SR,
    /// RT, waveforms, raw data, encapsulated documents, presentation states).
    public static func isStorageSOPClass(_ uid: String) -> Bool { uid.hasPrefix("1.2.840.10008.5.1.4.1.1.") }

    /// The transfer syntaxes whose data sets the agent's DICOM reader can read the header of: the
    /// uncompressed ones (PS3.5 §A.1 to §A.3), deflated (§A.5), and the encapsulated families
    /// (JPEG, JPEG-LS, JPEG 2000, MPEG, HEVC: 1.2.840.10008.1.2.4.x; RLE: 1.2.840.10008.1.2.5),
    /// whose headers are explicit VR little endian.
    public static func isStorable(transferSyntax uid: String) -> Bool {
        [TransferSyntax.implicitLittle, TransferSyntax.explicitLittle, "1.2.840.10008.1.2.2", "1.2.840.10008.1.2.1.99", "1.2.840.10008.1.2.5"].contains(uid)
            || (uid.hasPrefix("1.2.840.10008.1.2.4.") && uid.dropFirst(20).allSatisfy { $0.isNumber })
    }
}

/// A C-STORE request whose data set is arriving: what the sink needs to write a Part 10 file.
public struct StoreRequest: Sendable, Equatable {
    public var messageID: UInt16
    public var sopClass: String
    public var sopInstance: String
    public var contextID: UInt8
    /// The accepted context's transfer syntax: the data set's encoding.
    public var transferSyntax: String
    public var callingAE: String
}

/// What an acceptor asks its caller to do, in order.
public enum AcceptorEvent: Sendable, Equatable {
    /// Send these PDUs.
    case send([PDU])
    /// The association is accepted (the A-ASSOCIATE-AC is in the `.send` after this): who
    /// called, and how many contexts were accepted of those proposed.
    case associated(callingAE: String, accepted: Int, proposed: Int)
    /// The association is rejected (the A-ASSOCIATE-RJ is in the `.send` after this), and why,
    /// in an operator's words. Said before it is sent, so that the log has it by the time the
    /// peer knows.
    case rejected(AssociateReject, why: String)
    /// A C-ECHO was answered.
    case echoed
    /// A C-STORE's data set begins: the caller opens where it goes.
    case storeBegan(StoreRequest)
    /// A piece of its data set, as it came: the caller writes it out (nothing is gathered here).
    case dataSetFragment([UInt8])
    /// The data set is whole: the caller makes it durable, then answers with `storeFinished`.
    case dataSetEnded
    /// A C-STORE refused before its data set was read (the response is in a `.send` before this).
    case storeRefused(StoreRequest, status: UInt16, why: String)
    /// A C-FIND's or C-MOVE's identifier is whole: the caller answers it with `queryAnswer`,
    /// pending answers first, then one final (nothing else is read meanwhile).
    case queryArrived(QueryRequest, identifier: [UInt8])
    /// A C-FIND or C-MOVE refused before it was asked (the response is in a `.send` before this).
    case queryRefused(QueryRequest, status: UInt16, why: String)
    /// Released in good order: close the connection.
    case released
    /// The association is over by an abort (sent, in the `.send` after this, or received): close
    /// the connection and drop any instance begun.
    case aborted(why: String)
}

/// The acceptor's side of an association (C-ECHO SCP, and C-STORE SCP when the policy accepts
/// storage): a pure state machine, bytes or PDUs in, events out, so that the protocol is tested
/// without sockets and the transport only moves bytes under deadlines and writes files.
///
/// Who may associate is explicit (`AcceptorPolicy`): the called AE must be this one (else
/// A-ASSOCIATE-RJ reason 7), the calling AE one of the callers (else reason 3), calling from
/// one of its addresses (else reason 3 too: that title is not recognised from there). Each
/// presentation context is answered on its own (PS3.8 §9.3.3.2): an abstract syntax not
/// supported rejects that context, the others work. A data set is handed out fragment by
/// fragment as it arrives. Anything malformed, over a limit or out of turn ends the
/// association with an A-ABORT (PS3.8 §9.3.8), never a crash.
public struct Acceptor: Sendable {
    public let policy: AcceptorPolicy
    /// The address the connection comes from (nil: not checked).
    public let peerAddress: String?
    /// Too many associations already: the request is rejected, transient (source 3, reason 2).
    public let busy: Bool
    public private(set) var closed = false
    /// The contexts accepted: id → (abstract syntax, transfer syntax).
    public private(set) var contexts: [UInt8: (abstractSyntax: String, transferSyntax: String)] = [:]
    public private(set) var callingAE = ""
    private var reader: PDUReader
    private var state = State.awaitingRequest
    private var peerMaximum: UInt32 = 0
    private var command: [UInt8] = []

    private enum State: Sendable {
        case awaitingRequest, idle
        /// Receiving a C-STORE's data set; `refusal`: the status it will be answered with,
        /// its fragments dropped (nil: handed out).
        case dataSet(StoreRequest, refusal: (status: UInt16, why: String)?)
        case awaitingResponse(StoreRequest)
        /// Gathering a C-FIND's or C-MOVE's identifier; `refusal` as for a data set.
        case identifier(QueryRequest, [UInt8], refusal: (status: UInt16, why: String)?)
        /// The caller is answering a query (pending responses, then the final one).
        case answering(QueryRequest)
        case over
    }

    public init(policy: AcceptorPolicy, peerAddress: String?, busy: Bool = false) {
        self.policy = policy
        self.peerAddress = peerAddress
        self.busy = busy
        reader = PDUReader(maximumLength: Int(policy.maximumLength == 0 ? UInt32(1 << 24) : policy.maximumLength))
    }

    /// Whether an association is in place (the A-ASSOCIATE-AC sent, not yet over).
    public var isAssociated: Bool {
        switch state {
        case .awaitingRequest, .over: return false
        default: return true
        }
    }

    /// Bytes held of a PDU not yet whole (the transport's deadline runs while there are any).
    public var pendingBytes: Int { reader.pending }

    /// Whether a C-STORE's data set is being received or awaits its answer.
    public var inStore: Bool {
        switch state {
        case .dataSet, .awaitingResponse: return true
        default: return false
        }
    }

    /// Bytes read from the connection.
    public mutating func append(_ bytes: some Sequence<UInt8>) { reader.append(bytes) }

    /// The events of the next whole PDU held, or nil until one is whole. A PDU over the limit
    /// or malformed aborts (reason 6, invalid PDU parameter value; 1 for an unknown PDU type).
    public mutating func next() -> [AcceptorEvent]? {
        guard !closed else { return nil }
        if case .awaitingResponse = state { return nil }
        if case .answering = state { return nil }
        do {
            guard let pdu = try reader.next() else { return nil }
            return receive(pdu)
        } catch {
            return abort(reason: 6, why: "\(error)")
        }
    }

    /// What to do with one PDU.
    public mutating func receive(_ pdu: PDU) -> [AcceptorEvent] {
        guard !closed else { return [] }
        switch (state, pdu) {
        case (.awaitingRequest, .associateRequest(let request)):
            return associate(request)
        case (.idle, .data(let values)), (.dataSet, .data(let values)), (.identifier, .data(let values)):
            var events: [AcceptorEvent] = []
            for value in values {
                let more = data(value)
                events += more
                if closed { break }
            }
            return events
        case (.idle, .releaseRequest):
            closed = true
            state = .over
            return [.send([.releaseResponse]), .released]
        case (_, .abort(let abort)):
            closed = true
            state = .over
            return [.aborted(why: "the peer aborted the association (source \(abort.source), reason \(abort.reason))")]
        default:
            return abort(reason: 2, why: "\(pdu.kind) out of turn")
        }
    }

    /// A response to the query being answered (`queryArrived`): pending (0xFF00, 0xFF01) with a
    /// C-FIND match or a C-MOVE's counts, the query still open; any other status is the final
    /// response, and the association is free again. `identifier`: the data set sent after the
    /// command (a match, or a C-MOVE's Failed SOP Instance UID List), in the context's syntax.
    public mutating func queryAnswer(status: UInt16, identifier: [UInt8]? = nil, subOperations: SubOperations? = nil, comment: String? = nil) -> [PDU] {
        guard case .answering(let request) = state else { return [] }
        let pending = status == 0xFF00 || status == 0xFF01
        if !pending { state = .idle }
        let command = Command.queryResponse(to: request, status: status, identifier: identifier != nil, subOperations: subOperations, comment: comment)
        var pdus = dataPDUs(contextID: request.contextID, isCommand: true, command.encoded(), maximumLength: peerMaximum)
        if let identifier { pdus += dataPDUs(contextID: request.contextID, isCommand: false, identifier, maximumLength: peerMaximum) }
        return pdus
    }

    /// Whether a query is being answered.
    public var isAnswering: Bool {
        if case .answering = state { return true }
        return false
    }

    /// The answer to the C-STORE whose data set ended (`dataSetEnded`), with the status the
    /// caller's durable write came to (PS3.4 B.2.3: 0x0000 only once the instance is kept).
    public mutating func storeFinished(status: UInt16) -> [PDU] {
        guard case .awaitingResponse(let request) = state else { return [] }
        state = .idle
        return dataPDUs(contextID: request.contextID, isCommand: true, Command.storeResponse(to: request, status: status).encoded(), maximumLength: peerMaximum)
    }

    // MARK: - Association

    private mutating func associate(_ request: AssociateRequest) -> [AcceptorEvent] {
        // Who called, for the log and the operator, whether or not they are let in.
        callingAE = request.callingAE
        if busy { return reject(.tooManyAssociations(), why: "too many associations open") }
        if request.applicationContext != dicomApplicationContext {
            return reject(.applicationContextNotSupported(), why: "application context \(request.applicationContext) is not DICOM's")
        }
        if request.calledAE != policy.aeTitle { return reject(.calledAENotRecognised(), why: "called AE title \(request.calledAE) is not this one (\(policy.aeTitle))") }
        if let callers = policy.callers {
            let named = callers.filter { $0.aeTitle == request.callingAE }
            if named.isEmpty { return reject(.callingAENotRecognised(), why: "calling AE title \(request.callingAE) is no dimse-peer") }
            if let address = peerAddress, !named.contains(where: { $0.addresses?.contains(address) ?? true }) {
                return reject(.callingAENotRecognised(), why: "calling AE title \(request.callingAE) from \(address), not from its dimse-peer address")
            }
        }
        // Presentation context ids are odd and each used once (PS3.8 §9.3.2.2): a request that
        // breaks this is aborted as an invalid parameter value.
        let ids = request.contexts.map(\.id)
        if ids.contains(where: { $0 % 2 == 0 }) || Set(ids).count != ids.count {
            return abort(reason: 6, why: "presentation context ids not odd and distinct")
        }
        var results: [AcceptedContext] = []
        for (index, context) in request.contexts.enumerated() {
            let result = negotiate(context, index: index)
            results.append(result)
            if result.result == .acceptance { contexts[context.id] = (context.abstractSyntax, result.transferSyntax) }
        }
        peerMaximum = request.userInformation.maximumLength
        state = .idle
        let accept = AssociateAccept(
            calledAE: request.calledAE, callingAE: request.callingAE, contexts: results,
            userInformation: UserInformation(maximumLength: policy.maximumLength, implementationClassUID: Implementation.classUID, implementationVersionName: Implementation.versionName))
        return [.associated(callingAE: request.callingAE, accepted: contexts.count, proposed: request.contexts.count), .send([.associateAccept(accept)])]
    }

    /// One context's answer: Verification in implicit or explicit VR little endian; a storage
    /// SOP class in the first transfer syntax proposed that the agent can read (the requester's
    /// preference: a file is then sent as it is stored).
    private func negotiate(_ context: ProposedContext, index: Int) -> AcceptedContext {
        func answer(_ result: AcceptedContext.Result, _ syntax: String = TransferSyntax.implicitLittle) -> AcceptedContext {
            AcceptedContext(id: context.id, result: result, transferSyntax: syntax)
        }
        if index >= policy.maximumContexts { return answer(.noReason) }
        let usable: (String) -> Bool
        if context.abstractSyntax == Command.verificationSOPClass {
            usable = { [TransferSyntax.implicitLittle, TransferSyntax.explicitLittle].contains($0) }
        } else if policy.acceptsStorage && Storage.isStorageSOPClass(context.abstractSyntax) {
            usable = Storage.isStorable(transferSyntax:)
        } else if policy.acceptsQuery && (policy.callers?.contains { $0.aeTitle == callingAE && $0.mayQuery } ?? true)
            && (QueryRetrieve.isFind(context.abstractSyntax) || QueryRetrieve.isMove(context.abstractSyntax))
        {
            usable = { [TransferSyntax.implicitLittle, TransferSyntax.explicitLittle].contains($0) }
        } else {
            return answer(.abstractSyntaxNotSupported)
        }
        guard let syntax = context.transferSyntaxes.first(where: usable) else { return answer(.transferSyntaxesNotSupported) }
        return answer(.acceptance, syntax)
    }

    private mutating func reject(_ reason: AssociateReject, why: String) -> [AcceptorEvent] {
        closed = true
        state = .over
        return [.rejected(reason, why: why), .send([.associateReject(reason)])]
    }

    /// A-ABORT by the service provider (source 2) with `reason` (PS3.8 §9.3.8: 1 unrecognised PDU,
    /// 2 unexpected PDU, 6 invalid PDU parameter value).
    private mutating func abort(reason: UInt8, why: String) -> [AcceptorEvent] {
        closed = true
        state = .over
        return [.aborted(why: why), .send([.abort(AssociateAbort(source: 2, reason: reason))])]
    }

    // MARK: - Messages

    private mutating func data(_ value: PresentationDataValue) -> [AcceptorEvent] {
        guard let context = contexts[value.contextID] else { return abort(reason: 6, why: "data on presentation context \(value.contextID), which was not accepted") }
        switch state {
        case .dataSet(let request, let refusal):
            guard !value.isCommand, value.contextID == request.contextID else {
                return abort(reason: 2, why: "a command or another context's data in the middle of a data set")
            }
            var events: [AcceptorEvent] = refusal == nil && !value.fragment.isEmpty ? [.dataSetFragment(value.fragment)] : []
            guard value.isLast else { return events }
            if let refusal {
                state = .idle
                let response = Command.storeResponse(to: request, status: refusal.status).encoded()
                return [.send(dataPDUs(contextID: request.contextID, isCommand: true, response, maximumLength: peerMaximum)), .storeRefused(request, status: refusal.status, why: refusal.why)]
            }
            state = .awaitingResponse(request)
            events.append(.dataSetEnded)
            return events
        case .identifier(let request, var bytes, let refusal):
            guard !value.isCommand, value.contextID == request.contextID else {
                return abort(reason: 2, why: "a command or another context's data in the middle of an identifier")
            }
            bytes += value.fragment
            guard bytes.count <= policy.maximumIdentifierLength else { return abort(reason: 6, why: "an identifier over \(policy.maximumIdentifierLength) bytes") }
            guard value.isLast else {
                state = .identifier(request, bytes, refusal: refusal)
                return []
            }
            if let refusal {
                state = .answering(request)
                let pdus = queryAnswer(status: refusal.status, comment: refusal.why)
                return [.send(pdus), .queryRefused(request, status: refusal.status, why: refusal.why)]
            }
            state = .answering(request)
            return [.queryArrived(request, identifier: bytes)]
        case .idle:
            guard value.isCommand else { return abort(reason: 2, why: "a data set without a command") }
            command += value.fragment
            guard command.count <= policy.maximumCommandLength else { return abort(reason: 6, why: "a command set over \(policy.maximumCommandLength) bytes") }
            guard value.isLast else { return [] }
            defer { command = [] }
            let decoded: Command
            do { decoded = try Command.decode(command) } catch { return abort(reason: 6, why: "a command set that cannot be read: \(error)") }
            return commandArrived(decoded, contextID: value.contextID, context: context)
        default:
            return abort(reason: 2, why: "P-DATA out of turn")
        }
    }

    private mutating func commandArrived(_ command: Command, contextID: UInt8, context: (abstractSyntax: String, transferSyntax: String)) -> [AcceptorEvent] {
        switch command.field {
        case .echoRequest:
            guard context.abstractSyntax == Command.verificationSOPClass, !command.hasDataSet, command.messageID != nil else {
                return abort(reason: 6, why: "a C-ECHO-RQ outside a Verification context, or with a data set")
            }
            let response = Command.echoResponse(to: command).encoded()
            return [.send(dataPDUs(contextID: contextID, isCommand: true, response, maximumLength: peerMaximum)), .echoed]
        case .storeRequest:
            guard let messageID = command.messageID, command.hasDataSet else { return abort(reason: 6, why: "a C-STORE-RQ without a message id or a data set") }
            let request = StoreRequest(
                messageID: messageID, sopClass: command.affectedSOPClassUID, sopInstance: command.affectedSOPInstanceUID ?? "", contextID: contextID,
                transferSyntax: context.transferSyntax, callingAE: callingAE)
            // PS3.7 §9.1.1.1: the affected SOP class is the context's abstract syntax; a UID is
            // 1 to 64 characters of digits and dots (PS3.5 §9.1).
            if request.sopClass != context.abstractSyntax {
                state = .dataSet(request, refusal: (0x0122, "the command's SOP class \(request.sopClass) is not its context's \(context.abstractSyntax)"))
            } else if !Self.isUID(request.sopInstance) {
                state = .dataSet(request, refusal: (0xC000, "the command's SOP Instance UID is not a UID"))
            } else {
                state = .dataSet(request, refusal: nil)
                return [.storeBegan(request)]
            }
            return []
        case .findRequest, .moveRequest:
            guard let messageID = command.messageID, command.hasDataSet else { return abort(reason: 6, why: "a \(command.field) without a message id or an identifier") }
            let kind: QueryRequest.Kind = command.field == .findRequest ? .find : .move
            let request = QueryRequest(
                kind: kind, messageID: messageID, sopClass: command.affectedSOPClassUID, contextID: contextID, transferSyntax: context.transferSyntax,
                callingAE: callingAE, moveDestination: command.moveDestination, priority: command.priority ?? 0)
            // PS3.7 §9.1.2.1.1: the SOP class is the context's, of the right kind; a move names
            // where it goes.
            let fits = kind == .find ? QueryRetrieve.isFind(context.abstractSyntax) : QueryRetrieve.isMove(context.abstractSyntax)
            var refusal: (UInt16, String)?
            if request.sopClass != context.abstractSyntax || !fits {
                refusal = (0x0122, "the command's SOP class \(request.sopClass) is not its context's \(context.abstractSyntax)")
            } else if kind == .move && (command.moveDestination ?? "").isEmpty {
                refusal = (QueryRetrieve.moveDestinationUnknown, "the C-MOVE names no move destination")
            }
            state = .identifier(request, [], refusal: refusal)
            return []
        case .cancelRequest:
            // PS3.7 §9.3.2.3: a cancel of a query already answered is ignored (a query is
            // answered whole before the next request is read).
            return []
        case .storeResponse, .echoResponse, .findResponse, .moveResponse:
            return abort(reason: 2, why: "a \(command.field) to an acceptor, which asks nothing")
        }
    }

    static func isUID(_ text: String) -> Bool {
        (1...64).contains(text.utf8.count) && text.utf8.allSatisfy { ($0 >= 0x30 && $0 <= 0x39) || $0 == 0x2E } && !text.hasPrefix(".") && !text.hasSuffix(".")
    }
}
