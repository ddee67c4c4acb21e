import Testing

@testable import DIMSE

/// The requester and the acceptor talking to each other in memory: the whole C-ECHO exchange,
/// fragments under a small maximum length, and each refusal with the reason the standard gives.
@Suite("DIMSE associations")
struct AssociationTests {
    /// Runs a requester against an acceptor until the requester finishes or throws, passing every
    /// PDU through its bytes and a reader (so the encoding is exercised both ways).
    static func converse(_ requester: inout EchoRequester, _ acceptor: inout VerificationAcceptor) throws -> UInt16 {
        var toAcceptor: [PDU] = [requester.opening]
        for _ in 0..<100 {
            var toRequester: [PDU] = []
            for pdu in toAcceptor { toRequester += acceptor.receive(try Self.wire(pdu)) }
            toAcceptor = []
            for pdu in toRequester {
                switch try requester.receive(try Self.wire(pdu)) {
                case .send(let more): toAcceptor += more
                case .finished(let status): return status
                }
            }
        }
        throw DIMSEFailure("no end to the conversation")
    }

    static func wire(_ pdu: PDU) throws -> PDU {
        var reader = PDUReader(maximumLength: 1 << 20)
        reader.append(pdu.encoded())
        return try #require(try reader.next())
    }

    @Test func anEchoIsAnsweredSuccessAndTheAssociationReleased() throws {
        var requester = EchoRequester(calledAE: "CONSORT_UHSX", callingAE: "CONSORT_RSCH", maximumLength: 16_384)
        var acceptor = VerificationAcceptor(aeTitle: "CONSORT_UHSX", callers: ["CONSORT_RSCH"], maximumLength: 16_384)
        #expect(try Self.converse(&requester, &acceptor) == 0)
        #expect(acceptor.closed, "released")
    }

    @Test func aSmallMaximumLengthSplitsTheCommandIntoFragmentsBothWays() throws {
        let fragments = dataPDUs(contextID: 1, isCommand: true, Command.echoRequest(messageID: 1).encoded(), maximumLength: 16)
        #expect(fragments.count > 3)
        var requester = EchoRequester(calledAE: "A", callingAE: "B", maximumLength: 16)
        var acceptor = VerificationAcceptor(aeTitle: "A", callers: nil, maximumLength: 16)
        #expect(try Self.converse(&requester, &acceptor) == 0)
    }

    @Test(arguments: [
        ("WRONG", "CONSORT_RSCH", "called AE title not recognised"),
        ("CONSORT_UHSX", "STRANGER", "calling AE title not recognised"),
    ])
    func whoMayAssociateIsChecked(called: String, calling: String, words: String) {
        var requester = EchoRequester(calledAE: called, callingAE: calling, maximumLength: 16_384)
        var acceptor = VerificationAcceptor(aeTitle: "CONSORT_UHSX", callers: ["CONSORT_RSCH"], maximumLength: 16_384)
        do {
            _ = try Self.converse(&requester, &acceptor)
            Issue.record("associated")
        } catch {
            #expect("\(error)".contains("rejected (permanent): \(words)"), "\(error)")
        }
        #expect(acceptor.closed)
    }

    @Test func anUnsupportedSOPClassIsRefusedInItsContextAndTheRestWorks() throws {
        var acceptor = VerificationAcceptor(aeTitle: "A", callers: nil, maximumLength: 16_384)
        let request = AssociateRequest(
            calledAE: "A", callingAE: "B",
            contexts: [
                ProposedContext(id: 1, abstractSyntax: "1.2.840.10008.5.1.4.1.1.2", transferSyntaxes: [TransferSyntax.implicitLittle]),
                ProposedContext(id: 3, abstractSyntax: Command.verificationSOPClass, transferSyntaxes: ["1.2.840.10008.1.2.4.50", TransferSyntax.explicitLittle]),
                ProposedContext(id: 5, abstractSyntax: Command.verificationSOPClass, transferSyntaxes: ["1.2.840.10008.1.2.4.50"]),
            ],
            userInformation: UserInformation(maximumLength: 0, implementationClassUID: "1.2.3", implementationVersionName: nil))
        guard case .associateAccept(let accept)? = acceptor.receive(.associateRequest(request)).first else {
            Issue.record("not accepted")
            return
        }
        #expect(accept.contexts.map(\.result) == [.abstractSyntaxNotSupported, .acceptance, .transferSyntaxesNotSupported])
        #expect(accept.contexts[1].transferSyntax == TransferSyntax.explicitLittle)
        // The echo on the accepted context works.
        let answer = dataPDUs(contextID: 3, isCommand: true, Command.echoRequest(messageID: 9).encoded(), maximumLength: 0).flatMap { acceptor.receive($0) }
        guard case .data(let values)? = answer.first else {
            Issue.record("no answer")
            return
        }
        let response = try Command.decode(values.flatMap(\.fragment))
        #expect(response.field == .echoResponse && response.respondingTo == 9 && response.status == 0)
    }

    @Test(arguments: [[UInt8(2)], [1, 1]])
    func evenOrRepeatedContextIDsAreAnInvalidRequest(ids: [UInt8]) {
        var acceptor = VerificationAcceptor(aeTitle: "A", callers: nil, maximumLength: 16_384)
        let request = AssociateRequest(
            calledAE: "A", callingAE: "B", contexts: ids.map { ProposedContext(id: $0, abstractSyntax: Command.verificationSOPClass, transferSyntaxes: [TransferSyntax.implicitLittle]) },
            userInformation: UserInformation(maximumLength: 0, implementationClassUID: "1.2.3", implementationVersionName: nil))
        #expect(acceptor.receive(.associateRequest(request)) == [.abort(AssociateAbort(source: 2, reason: 6))] && acceptor.closed)
    }

    @Test(arguments: [(0x0000, "success"), (0xB000, "warning"), (0xB00A, "warning"), (0x0107, "warning"), (0xA701, "retry"), (0xA900, "fail"), (0xC000, "fail"), (0xFE00, "fail"), (0x0122, "fail")])
    func cStoreStatusesAreClassedAsPS3_7Says(status: Int, expected: String) {
        let outcome = Command.outcome(ofStoreStatus: UInt16(status))
        switch expected {
        case "success": #expect(outcome == .success && outcome.stored)
        case "warning": #expect(outcome == .warning && outcome.stored)
        case "retry": #expect(outcome == .failure(retryable: true) && !outcome.stored)
        default: #expect(outcome == .failure(retryable: false) && !outcome.stored)
        }
    }

    @Test func aPDUOutOfTurnIsAbortedNotAnswered() {
        var acceptor = VerificationAcceptor(aeTitle: "A", callers: nil, maximumLength: 16_384)
        // Data before any association.
        let out = acceptor.receive(.data([PresentationDataValue(contextID: 1, isCommand: true, isLast: true, fragment: [])]))
        #expect(out == [.abort(AssociateAbort(source: 2, reason: 2))] && acceptor.closed)
        var requester = EchoRequester(calledAE: "A", callingAE: "B", maximumLength: 16_384)
        #expect(throws: DIMSEFailure.self) { try requester.receive(.releaseResponse) }
    }
}
