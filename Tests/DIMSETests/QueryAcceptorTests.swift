import Testing

@testable import DIMSE

/// C-FIND and C-MOVE at the acceptor, bytes in and events out: the query/retrieve contexts
/// accepted only when the policy says so, the identifier gathered across fragments and handed
/// out whole, pending answers then one final, the association free again after it; a request
/// in the wrong context, or a move without a destination, refused with the status PS3.4 gives.
@Suite("DIMSE acceptor: C-FIND and C-MOVE")
struct QueryAcceptorTests {
    static var policy: AcceptorPolicy {
        var policy = AcceptorTests.policy
        policy.acceptsQuery = true
        policy.maximumContexts = 8
        policy.callers = [AcceptorPolicy.Caller(aeTitle: "CT1", addresses: ["10.0.0.5"], mayQuery: true)]
        return policy
    }

    static let contexts = [
        ProposedContext(id: 1, abstractSyntax: QueryRetrieve.studyRootFind, transferSyntaxes: [TransferSyntax.explicitLittle]),
        ProposedContext(id: 3, abstractSyntax: QueryRetrieve.studyRootMove, transferSyntaxes: [TransferSyntax.implicitLittle]),
        ProposedContext(id: 5, abstractSyntax: QueryRetrieve.patientRootFind, transferSyntaxes: ["1.2.840.10008.1.2.4.50"]),
    ]

    static func associated(_ policy: AcceptorPolicy = policy) -> (Acceptor, AssociateAccept?) {
        var acceptor = Acceptor(policy: policy, peerAddress: "10.0.0.5")
        let events = AcceptorTests.feed(&acceptor, [.associateRequest(AcceptorTests.request(contexts: contexts))])
        let accept = AcceptorTests.sent(events).compactMap { pdu -> AssociateAccept? in
            if case .associateAccept(let accept) = pdu { return accept }
            return nil
        }.first
        return (acceptor, accept)
    }

    /// A command and its identifier on `context`, the identifier in two fragments.
    static func query(_ command: Command, identifier: [UInt8], context: UInt8) -> [PDU] {
        let half = identifier.count / 2
        return [
            .data([PresentationDataValue(contextID: context, isCommand: true, isLast: true, fragment: command.encoded())]),
            .data([PresentationDataValue(contextID: context, isCommand: false, isLast: false, fragment: Array(identifier[..<half]))]),
            .data([PresentationDataValue(contextID: context, isCommand: false, isLast: true, fragment: Array(identifier[half...]))]),
        ]
    }

    @Test func queryContextsAreAcceptedOnlyByAQueryRetrieveSCPInAnUncompressedSyntax() {
        let (_, accept) = Self.associated()
        #expect(accept?.contexts.map(\.result) == [.acceptance, .acceptance, .transferSyntaxesNotSupported])
        var storageOnly = Self.policy
        storageOnly.acceptsQuery = false
        let (_, refused) = Self.associated(storageOnly)
        #expect(refused?.contexts.allSatisfy { $0.result == .abstractSyntaxNotSupported } == true)
        // A caller that may store but not query (a modality): its query contexts are rejected.
        var modalityOnly = Self.policy
        modalityOnly.callers = [AcceptorPolicy.Caller(aeTitle: "CT1", addresses: ["10.0.0.5"])]
        let (_, modality) = Self.associated(modalityOnly)
        #expect(modality?.contexts.allSatisfy { $0.result == .abstractSyntaxNotSupported } == true)
    }

    @Test func aFindIsHandedOutWholeAndAnsweredPendingThenFinal() throws {
        var (acceptor, _) = Self.associated()
        let identifier: [UInt8] = Array(0..<40)
        let events = AcceptorTests.feed(&acceptor, Self.query(Command.findRequest(messageID: 7, sopClass: QueryRetrieve.studyRootFind), identifier: identifier, context: 1))
        guard case .queryArrived(let request, let got)? = events.last else {
            Issue.record("no query: \(events)")
            return
        }
        #expect(got == identifier && request.kind == .find && request.messageID == 7 && request.transferSyntax == TransferSyntax.explicitLittle && request.callingAE == "CT1")
        #expect(acceptor.isAnswering)
        // While it is answered nothing more is read: a release waits.
        acceptor.append(PDU.releaseRequest.encoded())
        #expect(acceptor.next() == nil)
        let pending = acceptor.queryAnswer(status: QueryRetrieve.pending, identifier: [1, 2, 3, 4])
        #expect(acceptor.isAnswering)
        let command = try AcceptorTests.response(Array(pending.prefix(1)))
        #expect(command.field == .findResponse && command.respondingTo == 7 && command.status == 0xFF00 && command.hasDataSet)
        if case .data(let values) = pending.last { #expect(values.first?.isCommand == false && values.first?.fragment == [1, 2, 3, 4]) } else { Issue.record("no identifier sent") }
        let final = try AcceptorTests.response(acceptor.queryAnswer(status: 0))
        #expect(final.status == 0 && !final.hasDataSet)
        #expect(!acceptor.isAnswering)
        // The release read now.
        #expect(acceptor.next()?.contains(.released) == true)
    }

    @Test func aMoveCarriesItsDestinationAndItsCounts() throws {
        var (acceptor, _) = Self.associated()
        let events = AcceptorTests.feed(&acceptor, Self.query(Command.moveRequest(messageID: 9, sopClass: QueryRetrieve.studyRootMove, destination: "PACS"), identifier: [0, 0, 0, 0], context: 3))
        guard case .queryArrived(let request, _)? = events.last else {
            Issue.record("no query: \(events)")
            return
        }
        #expect(request.kind == .move && request.moveDestination == "PACS")
        let pending = try AcceptorTests.response(acceptor.queryAnswer(status: QueryRetrieve.pending, subOperations: SubOperations(remaining: 3, completed: 1)))
        #expect(pending.field == .moveResponse && pending.subOperations == SubOperations(remaining: 3, completed: 1))
        let finalPDUs = acceptor.queryAnswer(status: QueryRetrieve.subOperationsWithFailures, subOperations: SubOperations(completed: 3, failed: 1), comment: "one instance refused")
        let final = try AcceptorTests.response(finalPDUs)
        #expect(final.status == 0xB000 && final.subOperations == SubOperations(completed: 3, failed: 1) && final.errorComment == "one instance refused")
        // PS3.7 §9.1.4.1.6: no remaining count in a final response, only in pending ones.
        let bytes = finalPDUs.flatMap { pdu -> [UInt8] in if case .data(let values) = pdu { return values.flatMap(\.fragment) } else { return [] } }
        #expect(bytes.firstRange(of: [0x00, 0x00, 0x20, 0x10]) == nil && bytes.firstRange(of: [0x00, 0x00, 0x21, 0x10]) != nil)
    }

    @Test func aFindInAMoveContextAndAMoveWithoutADestinationAreRefused() throws {
        var (acceptor, _) = Self.associated()
        let wrong = AcceptorTests.feed(&acceptor, Self.query(Command.findRequest(messageID: 1, sopClass: QueryRetrieve.studyRootFind), identifier: [0, 0], context: 3))
        #expect(try AcceptorTests.response(AcceptorTests.sent(wrong)).status == 0x0122)
        #expect(!acceptor.isAnswering)
        var move = Command.moveRequest(messageID: 2, sopClass: QueryRetrieve.studyRootMove, destination: "")
        move.moveDestination = nil
        let nowhere = AcceptorTests.feed(&acceptor, Self.query(move, identifier: [0, 0], context: 3))
        #expect(try AcceptorTests.response(AcceptorTests.sent(nowhere)).status == QueryRetrieve.moveDestinationUnknown)
        // A cancel of something already answered is ignored; the association goes on.
        var cancel = Command(field: .cancelRequest, affectedSOPClassUID: "")
        cancel.respondingTo = 2
        let ignored = AcceptorTests.feed(&acceptor, [.data([PresentationDataValue(contextID: 3, isCommand: true, isLast: true, fragment: cancel.encoded())])])
        #expect(ignored.isEmpty)
        #expect(acceptor.isAssociated)
    }

    @Test func aSubOperationsStoreNamesTheMovesOriginatorInAscendingTagOrder() throws {
        var command = Command.storeRequest(messageID: 3, sopClass: AcceptorTests.ct, sopInstance: "1.2.3")
        command.moveOriginatorAE = "PACS"
        command.moveOriginatorMessageID = 9
        let bytes = command.encoded()
        let again = try Command.decode(bytes)
        #expect(again.moveOriginatorAE == "PACS" && again.moveOriginatorMessageID == 9 && again.affectedSOPInstanceUID == "1.2.3")
        // Tags ascending, as PS3.7 Annex E requires: (0000,1000) before (0000,1030), (0000,1031).
        let at = { (element: UInt16) in bytes.firstRange(of: [0x00, 0x00, UInt8(element & 0xFF), UInt8(element >> 8)])?.lowerBound ?? -1 }
        #expect(at(0x1000) < at(0x1030) && at(0x1030) < at(0x1031) && at(0x1000) > 0)
    }

    @Test func anIdentifierOverTheLimitIsAborted() {
        var policy = Self.policy
        policy.maximumIdentifierLength = 16
        var (acceptor, _) = Self.associated(policy)
        let events = AcceptorTests.feed(&acceptor, Self.query(Command.findRequest(messageID: 1, sopClass: QueryRetrieve.studyRootFind), identifier: Array(repeating: 0, count: 40), context: 1))
        #expect(events.contains { if case .aborted = $0 { return true } else { return false } })
    }
}
