import Testing

@testable import DIMSE

/// The C-STORE and C-ECHO acceptor alone, bytes in and events out: who may associate (calling
/// AE and address, called AE, too many associations), each presentation context answered on its
/// own, a PDU over the limit, and a C-STORE's data set handed out fragment by fragment.
@Suite("DIMSE acceptor")
struct AcceptorTests {
    static let ct = "1.2.840.10008.5.1.4.1.1.2"
    static let policy = AcceptorPolicy(
        aeTitle: "CONSORT_RSCH", callers: [AcceptorPolicy.Caller(aeTitle: "CT1", addresses: ["10.0.0.5"])], maximumLength: 16_384, maximumContexts: 4, acceptsStorage: true)

    static func request(calling: String = "CT1", called: String = "CONSORT_RSCH", contexts: [ProposedContext]? = nil, maximumLength: UInt32 = 16_384) -> AssociateRequest {
        AssociateRequest(
            calledAE: called, callingAE: calling,
            contexts: contexts ?? [
                ProposedContext(id: 1, abstractSyntax: ct, transferSyntaxes: [TransferSyntax.explicitLittle, TransferSyntax.implicitLittle]),
                ProposedContext(id: 3, abstractSyntax: Command.verificationSOPClass, transferSyntaxes: [TransferSyntax.implicitLittle]),
            ],
            userInformation: UserInformation(maximumLength: maximumLength, implementationClassUID: "1.2.3", implementationVersionName: nil))
    }

    /// The acceptor fed `pdus` through their bytes; every event.
    static func feed(_ acceptor: inout Acceptor, _ pdus: [PDU]) -> [AcceptorEvent] {
        var events: [AcceptorEvent] = []
        for pdu in pdus {
            acceptor.append(pdu.encoded())
            while let more = acceptor.next() { events += more }
        }
        return events
    }

    static func associated(_ address: String = "10.0.0.5") -> Acceptor {
        var acceptor = Acceptor(policy: policy, peerAddress: address)
        _ = feed(&acceptor, [.associateRequest(request())])
        return acceptor
    }

    static func sent(_ events: [AcceptorEvent]) -> [PDU] {
        events.flatMap { event -> [PDU] in
            if case .send(let pdus) = event { return pdus }
            return []
        }
    }

    static func response(_ pdus: [PDU]) throws -> Command {
        let bytes = pdus.flatMap { pdu -> [UInt8] in
            if case .data(let values) = pdu { return values.flatMap(\.fragment) }
            return []
        }
        return try Command.decode(bytes)
    }

    @Test func eachContextIsAnsweredOnItsOwnAndAnUnsupportedAbstractSyntaxRejectsOnlyItsContext() throws {
        var acceptor = Acceptor(policy: Self.policy, peerAddress: "10.0.0.5")
        let contexts = [
            ProposedContext(id: 1, abstractSyntax: Self.ct, transferSyntaxes: ["1.2.840.10008.1.2.4.50", TransferSyntax.implicitLittle]),
            // Patient Root Query/Retrieve FIND: not a storage class.
            ProposedContext(id: 3, abstractSyntax: "1.2.840.10008.5.1.4.1.2.1.1", transferSyntaxes: [TransferSyntax.implicitLittle]),
            ProposedContext(id: 5, abstractSyntax: Self.ct, transferSyntaxes: ["1.2.3.4.5"]),
            ProposedContext(id: 7, abstractSyntax: Command.verificationSOPClass, transferSyntaxes: [TransferSyntax.explicitLittle]),
            // Past maximumContexts (4).
            ProposedContext(id: 9, abstractSyntax: Command.verificationSOPClass, transferSyntaxes: [TransferSyntax.implicitLittle]),
        ]
        let events = Self.feed(&acceptor, [.associateRequest(Self.request(contexts: contexts))])
        guard case .associateAccept(let accept)? = Self.sent(events).first else {
            Issue.record("not accepted: \(events)")
            return
        }
        #expect(accept.contexts.map(\.result) == [.acceptance, .abstractSyntaxNotSupported, .transferSyntaxesNotSupported, .acceptance, .noReason])
        #expect(accept.contexts[0].transferSyntax == "1.2.840.10008.1.2.4.50", "the requester's first storable choice")
        #expect(accept.userInformation.maximumLength == 16_384)
        #expect(events.contains(.associated(callingAE: "CT1", accepted: 2, proposed: 5)))
        // The rest works: a C-ECHO on context 7.
        let echo = Self.feed(&acceptor, dataPDUs(contextID: 7, isCommand: true, Command.echoRequest(messageID: 4).encoded(), maximumLength: 0))
        #expect(echo.contains(.echoed))
        let answer = try Self.response(Self.sent(echo))
        #expect(answer.field == .echoResponse && answer.respondingTo == 4 && answer.status == 0)
        // Data on the rejected context aborts.
        let stray = Self.feed(&acceptor, [.data([PresentationDataValue(contextID: 3, isCommand: true, isLast: true, fragment: [])])])
        #expect(Self.sent(stray) == [.abort(AssociateAbort(source: 2, reason: 6))] && acceptor.closed)
    }

    @Test(arguments: [
        ("CT1", "CONSORT_RSCH", "10.0.0.9", UInt8(3), "from 10.0.0.9"),
        ("STRANGER", "CONSORT_RSCH", "10.0.0.5", UInt8(3), "no dimse-peer"),
        ("CT1", "SOMEONE_ELSE", "10.0.0.5", UInt8(7), "is not this one"),
    ])
    func whoMayAssociateIsCheckedWithTheReasonPS3_8Gives(calling: String, called: String, address: String, reason: UInt8, why: String) {
        var acceptor = Acceptor(policy: Self.policy, peerAddress: address)
        let events = Self.feed(&acceptor, [.associateRequest(Self.request(calling: calling, called: called))])
        let expected = AssociateReject(result: .permanent, source: 1, reason: reason)
        #expect(Self.sent(events) == [.associateReject(expected)])
        #expect(events.contains { if case .rejected(expected, let text) = $0 { return text.contains(why) } else { return false } }, "\(events)")
        #expect(acceptor.closed && !acceptor.isAssociated)
    }

    @Test func tooManyAssociationsIsATransientRejection() {
        var acceptor = Acceptor(policy: Self.policy, peerAddress: "10.0.0.5", busy: true)
        let events = Self.feed(&acceptor, [.associateRequest(Self.request())])
        #expect(Self.sent(events) == [.associateReject(AssociateReject(result: .transient, source: 3, reason: 2))])
    }

    @Test func aPDUOverTheLimitIsAbortedBeforeItsBodyIsRead() {
        var acceptor = Self.associated()
        // A P-DATA-TF header announcing 16,385 bytes: one over what was announced.
        acceptor.append([0x04, 0x00, 0x00, 0x00, 0x40, 0x01])
        let events = acceptor.next() ?? []
        #expect(Self.sent(events) == [.abort(AssociateAbort(source: 2, reason: 6))])
        #expect(events.contains { if case .aborted(let why) = $0 { return why.contains("over the limit") } else { return false } })
        #expect(acceptor.closed)
    }

    @Test func aCStoreDataSetIsHandedOutFragmentByFragmentAndAnsweredWithTheCallersStatus() throws {
        var acceptor = Self.associated()
        let command = Command.storeRequest(messageID: 7, sopClass: Self.ct, sopInstance: "1.2.3.4")
        // The command in fragments of 10 bytes (PDUs of 16), then a data set in three PDUs.
        var events = Self.feed(&acceptor, dataPDUs(contextID: 1, isCommand: true, command.encoded(), maximumLength: 16))
        let expected = StoreRequest(messageID: 7, sopClass: Self.ct, sopInstance: "1.2.3.4", contextID: 1, transferSyntax: TransferSyntax.explicitLittle, callingAE: "CT1")
        #expect(events == [.storeBegan(expected)])
        let dataSet: [UInt8] = Array(0..<250)
        let pieces = dataPDUs(contextID: 1, isCommand: false, dataSet, maximumLength: 106)
        #expect(pieces.count == 3)
        // Each fragment is out as soon as its PDU is whole, before the next arrives.
        events = Self.feed(&acceptor, [pieces[0]])
        #expect(events == [.dataSetFragment(Array(dataSet[0..<100]))])
        #expect(acceptor.inStore)
        events = Self.feed(&acceptor, Array(pieces[1...]))
        #expect(events == [.dataSetFragment(Array(dataSet[100..<200])), .dataSetFragment(Array(dataSet[200...])), .dataSetEnded])
        // Nothing more is read until the caller answers.
        acceptor.append(PDU.releaseRequest.encoded())
        #expect(acceptor.next() == nil)
        let answer = try Self.response(acceptor.storeFinished(status: 0xA700))
        #expect(answer.field == .storeResponse && answer.respondingTo == 7 && answer.status == 0xA700 && answer.affectedSOPInstanceUID == "1.2.3.4")
        // Then the release that was waiting.
        #expect(acceptor.next() == [.send([.releaseResponse]), .released])
    }

    @Test func aCStoreWhoseSOPClassIsNotItsContextsIsRefusedAfterItsDataSetIsDropped() throws {
        var acceptor = Self.associated()
        let command = Command.storeRequest(messageID: 2, sopClass: "1.2.840.10008.5.1.4.1.1.4", sopInstance: "1.2.3.5")
        var events = Self.feed(&acceptor, dataPDUs(contextID: 1, isCommand: true, command.encoded(), maximumLength: 0))
        #expect(events.isEmpty)
        events = Self.feed(&acceptor, dataPDUs(contextID: 1, isCommand: false, Array(repeating: 1, count: 50), maximumLength: 0))
        #expect(!events.contains { if case .dataSetFragment = $0 { return true } else { return false } })
        #expect(try Self.response(Self.sent(events)).status == 0x0122)
        #expect(!acceptor.closed && !acceptor.inStore, "the association goes on")
    }

    @Test(arguments: [
        ("a command in the middle of a data set", true),
        ("a data set without a command", false),
    ])
    func messagesOutOfOrderAreAborted(what: String, commandFirst: Bool) {
        var acceptor = Self.associated()
        var pdus: [PDU] = []
        if commandFirst {
            pdus += dataPDUs(contextID: 1, isCommand: true, Command.storeRequest(messageID: 1, sopClass: Self.ct, sopInstance: "1.2").encoded(), maximumLength: 0)
            pdus.append(.data([PresentationDataValue(contextID: 1, isCommand: false, isLast: false, fragment: [1, 2])]))
            pdus += dataPDUs(contextID: 1, isCommand: true, Command.echoRequest(messageID: 2).encoded(), maximumLength: 0)
        } else {
            pdus.append(.data([PresentationDataValue(contextID: 1, isCommand: false, isLast: true, fragment: [1, 2])]))
        }
        let events = Self.feed(&acceptor, pdus)
        #expect(Self.sent(events).last == .abort(AssociateAbort(source: 2, reason: 2)), "\(what)")
        #expect(acceptor.closed)
    }

    @Test func aPeerAbortInTheMiddleOfADataSetEndsTheStore() {
        var acceptor = Self.associated()
        _ = Self.feed(&acceptor, dataPDUs(contextID: 1, isCommand: true, Command.storeRequest(messageID: 1, sopClass: Self.ct, sopInstance: "1.2").encoded(), maximumLength: 0))
        let events = Self.feed(&acceptor, [.abort(AssociateAbort(source: 0, reason: 0))])
        #expect(events == [.aborted(why: "the peer aborted the association (source 0, reason 0)")] && acceptor.closed)
    }

    @Test func aCallerWithoutAnAddressListMayCallFromAnywhere() {
        let open = AcceptorPolicy(aeTitle: "CONSORT_RSCH", callers: [AcceptorPolicy.Caller(aeTitle: "CT1", addresses: nil)], maximumLength: 16_384, acceptsStorage: true)
        var acceptor = Acceptor(policy: open, peerAddress: "192.168.7.7")
        _ = Self.feed(&acceptor, [.associateRequest(Self.request())])
        #expect(acceptor.isAssociated)
    }
}
