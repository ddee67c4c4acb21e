/// Transfer syntaxes a command or a Verification context may use.
public enum TransferSyntax {
    public static let implicitLittle = "1.2.840.10008.1.2"
    public static let explicitLittle = "1.2.840.10008.1.2.1"
}

/// This implementation, as it names itself at association (PS3.7 D.3.3.2).
public enum Implementation {
    public static let classUID = "1.2.826.0.1.3680043.10.1484.1"
    public static let versionName = "CONSORT_1"
}

/// A DIMSE message's fragments, as P-DATA-TF PDUs no larger than the peer takes: `maximumLength`
/// is the largest variable field the peer announced (0: no limit), which holds each fragment's
/// 6 bytes of item header too (PS3.8 §9.3.5, D.1).
public func dataPDUs(contextID: UInt8, isCommand: Bool, _ bytes: [UInt8], maximumLength: UInt32) -> [PDU] {
    let room = maximumLength == 0 ? max(bytes.count, 1) : max(1, Int(maximumLength) - 6)
    var pdus: [PDU] = []
    var offset = 0
    repeat {
        let end = min(bytes.count, offset + room)
        pdus.append(.data([PresentationDataValue(contextID: contextID, isCommand: isCommand, isLast: end == bytes.count, fragment: Array(bytes[offset..<end]))]))
        offset = end
    } while offset < bytes.count
    return pdus
}

/// The requester's side of one association that asks a peer a C-ECHO (PS3.7 §9.1.5) and
/// releases: a pure state machine (PDUs in, PDUs out), so the protocol is tested without
/// sockets, and the socket layer only moves bytes with deadlines.
public struct EchoRequester: Sendable {
    public enum Step: Sendable, Equatable {
        /// Send these and read the next PDU.
        case send([PDU])
        /// The exchange is over: the C-ECHO's status (0 success), the association released.
        case finished(status: UInt16)
    }

    public let request: AssociateRequest
    private var state = State.requested
    private var peerMaximum: UInt32 = 0
    private var contextID: UInt8 = 1
    private var response: [UInt8] = []
    private var status: UInt16?

    private enum State { case requested, echoing, releasing, done }

    /// `maximumLength`: the largest P-DATA-TF this side takes (its PDU reader's limit).
    public init(calledAE: String, callingAE: String, maximumLength: UInt32) {
        request = AssociateRequest(
            calledAE: calledAE, callingAE: callingAE,
            contexts: [ProposedContext(id: 1, abstractSyntax: Command.verificationSOPClass, transferSyntaxes: [TransferSyntax.implicitLittle, TransferSyntax.explicitLittle])],
            userInformation: UserInformation(maximumLength: maximumLength, implementationClassUID: Implementation.classUID, implementationVersionName: Implementation.versionName))
    }

    /// The first PDU to send.
    public var opening: PDU { .associateRequest(request) }

    /// What the peer sent; what to do next. A refusal, an abort or a PDU out of turn is thrown
    /// as a `DIMSEFailure` in an operator's words.
    public mutating func receive(_ pdu: PDU) throws(DIMSEFailure) -> Step {
        switch (state, pdu) {
        case (.requested, .associateAccept(let accept)):
            guard let context = accept.contexts.first(where: { $0.id == 1 }), context.result == .acceptance else {
                throw DIMSEFailure("the peer accepted the association but not the Verification SOP class (it does not answer C-ECHO)")
            }
            peerMaximum = accept.userInformation.maximumLength
            contextID = context.id
            state = .echoing
            return .send(dataPDUs(contextID: contextID, isCommand: true, Command.echoRequest(messageID: 1).encoded(), maximumLength: peerMaximum))
        case (.requested, .associateReject(let reject)):
            throw DIMSEFailure("association rejected (\(reject.result == .permanent ? "permanent" : "transient")): \(reject.words)")
        case (.echoing, .data(let values)):
            for value in values {
                guard value.contextID == contextID, value.isCommand else { throw DIMSEFailure("the peer sent a data set in answer to C-ECHO") }
                response += value.fragment
                guard value.isLast else { continue }
                let command: Command
                do { command = try Command.decode(response) } catch { throw DIMSEFailure("the peer's C-ECHO response cannot be read: \(error)") }
                guard command.field == .echoResponse, command.respondingTo == 1 else { throw DIMSEFailure("the peer answered C-ECHO with \(command.field)") }
                status = command.status ?? 0xFFFF
                state = .releasing
                return .send([.releaseRequest])
            }
            return .send([])
        case (.releasing, .releaseResponse):
            state = .done
            return .finished(status: status ?? 0xFFFF)
        case (_, .abort(let abort)):
            throw DIMSEFailure("the peer aborted the association (source \(abort.source), reason \(abort.reason))")
        default:
            throw DIMSEFailure("the peer sent \(pdu.kind) out of turn")
        }
    }
}

/// What went wrong in an exchange, in an operator's words.
public struct DIMSEFailure: Error, Sendable, Equatable, CustomStringConvertible {
    public let description: String
    public init(_ description: String) { self.description = description }
}

/// The acceptor's side of associations for Verification (C-ECHO SCP) alone, PDUs in and PDUs
/// out: an `Acceptor` that takes no storage SOP class and checks calling AE titles only (from
/// any address). Who may associate is explicit — the called AE must be this one, and the
/// calling AE one of `callers` (nil: any) — and anything else is rejected with the reason the
/// standard gives.
public struct VerificationAcceptor: Sendable {
    private var acceptor: Acceptor

    public init(aeTitle: String, callers: Set<String>?, maximumLength: UInt32) {
        let policy = AcceptorPolicy(
            aeTitle: aeTitle, callers: callers.map { $0.sorted().map { AcceptorPolicy.Caller(aeTitle: $0, addresses: nil) } }, maximumLength: maximumLength,
            acceptsStorage: false)
        acceptor = Acceptor(policy: policy, peerAddress: nil)
    }

    public var closed: Bool { acceptor.closed }

    /// The PDUs to send in answer to `pdu`; `closed` is set when the association is over (the
    /// caller then closes the connection).
    public mutating func receive(_ pdu: PDU) -> [PDU] {
        acceptor.receive(pdu).flatMap { event -> [PDU] in
            if case .send(let pdus) = event { return pdus }
            return []
        }
    }
}
