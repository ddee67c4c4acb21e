import Testing

@testable import DIMSE

/// The upper layer's PDUs and the command sets against bytes written out by hand from PS3.8
/// §9.3 and PS3.7 Annex E (never only against our own encoder), fed a byte at a time, and with
/// every limit and malformation refused by name.
@Suite("DIMSE PDUs and commands")
struct PDUTests {
    /// "ECHOSCP" called by "CONSORT": one Verification context (implicit VR LE), user
    /// information with a maximum length of 16384 and an implementation class UID "1.2.3".
    static let associateRequest: [UInt8] = {
        var body: [UInt8] = [0x00, 0x01, 0x00, 0x00]
        body += Array("ECHOSCP         ".utf8) + Array("CONSORT         ".utf8) + Array(repeating: 0, count: 32)
        body += [0x10, 0x00, 0x00, 0x15] + Array("1.2.840.10008.3.1.1.1".utf8)
        let abstract = [0x30, 0x00, 0x00, 0x11] + Array("1.2.840.10008.1.1".utf8)
        let transfer = [0x40, 0x00, 0x00, 0x11] + Array("1.2.840.10008.1.2".utf8)
        body += [0x20, 0x00, 0x00, UInt8(4 + abstract.count + transfer.count), 0x01, 0x00, 0x00, 0x00] + abstract + transfer
        let user = [0x51, 0x00, 0x00, 0x04, 0x00, 0x00, 0x40, 0x00] + [0x52, 0x00, 0x00, 0x05] + Array("1.2.3".utf8)
        body += [0x50, 0x00, 0x00, UInt8(user.count)] + user
        return [0x01, 0x00, 0x00, 0x00, 0x00, UInt8(body.count)] + body
    }()

    @Test func anAssociateRequestWrittenByHandIsReadAndWrittenBackTheSame() throws {
        var reader = PDUReader(maximumLength: 16_384)
        reader.append(Self.associateRequest)
        guard case .associateRequest(let request)? = try reader.next() else {
            Issue.record("not an A-ASSOCIATE-RQ")
            return
        }
        #expect(request.calledAE == "ECHOSCP" && request.callingAE == "CONSORT")
        #expect(request.contexts == [ProposedContext(id: 1, abstractSyntax: "1.2.840.10008.1.1", transferSyntaxes: ["1.2.840.10008.1.2"])])
        #expect(request.userInformation.maximumLength == 16_384 && request.userInformation.implementationClassUID == "1.2.3")
        #expect(PDU.associateRequest(request).encoded() == Self.associateRequest)
    }

    @Test func pdusFedAByteAtATimeComeOutWholeAndInOrder() throws {
        let release: [UInt8] = [0x05, 0x00, 0x00, 0x00, 0x00, 0x04, 0, 0, 0, 0]
        let abort: [UInt8] = [0x07, 0x00, 0x00, 0x00, 0x00, 0x04, 0, 0, 2, 2]
        var reader = PDUReader(maximumLength: 16_384)
        var out: [PDU] = []
        for byte in Self.associateRequest + release + abort {
            reader.append([byte])
            while let pdu = try reader.next() { out.append(pdu) }
        }
        #expect(out.map(\.kind) == [.associateRequest, .releaseRequest, .abort])
        #expect(out.last == .abort(AssociateAbort(source: 2, reason: 2)))
        #expect(reader.pending == 0)
    }

    @Test func aPDUOverTheLimitIsRefusedBeforeItsBodyIsRead() {
        var reader = PDUReader(maximumLength: 1_000)
        reader.append([0x04, 0x00, 0x00, 0x00, 0x03, 0xE9])  // P-DATA-TF of 1,001 bytes, body not sent
        #expect(throws: PDUError.self) { try reader.next() }
    }

    @Test(arguments: [
        ([0x09, 0x00, 0x00, 0x00, 0x00, 0x00] as [UInt8], "unknown PDU type"),
        ([0x03, 0x00, 0x00, 0x00, 0x00, 0x03, 0, 1, 1], "A-ASSOCIATE-RJ of 3 bytes"),
        ([0x04, 0x00, 0x00, 0x00, 0x00, 0x06, 0, 0, 0, 9, 1, 3], "7 bytes needed at offset 6"),
        ([0x04, 0x00, 0x00, 0x00, 0x00, 0x00], "no presentation data value"),
    ])
    func malformedPDUsAreRefusedByName(bytes: [UInt8], words: String) {
        var reader = PDUReader(maximumLength: 16_384)
        reader.append(bytes)
        do {
            _ = try reader.next()
            Issue.record("accepted: \(bytes)")
        } catch {
            let text = "\(error)"
            #expect(text.contains(words), "\(text)")
        }
    }

    /// C-ECHO-RQ, message 7, as PS3.7 lays it out: group length, then (0000,0002), (0000,0100),
    /// (0000,0110), (0000,0800), implicit VR little endian, the UID padded with a NUL.
    @Test func anEchoRequestIsTheBytesTheStandardGives() throws {
        let uid = Array("1.2.840.10008.1.1".utf8) + [0]
        var body: [UInt8] = [0x00, 0x00, 0x02, 0x00, UInt8(uid.count), 0, 0, 0] + uid
        body += [0x00, 0x00, 0x00, 0x01, 2, 0, 0, 0, 0x30, 0x00]
        body += [0x00, 0x00, 0x10, 0x01, 2, 0, 0, 0, 0x07, 0x00]
        body += [0x00, 0x00, 0x00, 0x08, 2, 0, 0, 0, 0x01, 0x01]
        let expected: [UInt8] = [0x00, 0x00, 0x00, 0x00, 4, 0, 0, 0, UInt8(body.count), 0, 0, 0] + body
        #expect(Command.echoRequest(messageID: 7).encoded() == expected)
        let decoded = try Command.decode(expected)
        #expect(decoded.field == .echoRequest && decoded.messageID == 7 && decoded.affectedSOPClassUID == Command.verificationSOPClass && !decoded.hasDataSet)
    }

    @Test func aCommandWithAnElementOutsideGroupZeroOrCutShortIsRefused() {
        #expect(throws: PDUError.self) { try Command.decode([0x08, 0x00, 0x00, 0x01, 2, 0, 0, 0, 0x30, 0x00]) }
        #expect(throws: PDUError.self) { try Command.decode([0x00, 0x00, 0x00, 0x01, 9, 0, 0, 0, 0x30]) }
        #expect(throws: PDUError.self) { try Command.decode([0x00, 0x00, 0x10, 0x01, 2, 0, 0, 0, 0x01, 0x00]) }  // no command field
    }
}
