import DIMSE

/// libFuzzer entry point for the DIMSE upper layer: any bytes from a peer must come out as PDUs,
/// a `PDUError`, or nothing yet — never a crash or a hang — and whatever PDUs they make must be
/// answered by the acceptor and the requester without one either; any bytes as a command set
/// likewise. The same bytes go to a C-STORE acceptor (any caller, storage accepted) as they
/// would from a socket, each stored instance answered as the SCP does.
@_cdecl("LLVMFuzzerTestOneInput")
public func fuzzTestOneInput(_ data: UnsafePointer<UInt8>?, _ size: Int) -> CInt {
    let bytes = size == 0 ? [] : Array(UnsafeBufferPointer(start: data, count: size))
    var reader = PDUReader(maximumLength: 16_384)
    reader.append(bytes)
    var acceptor = VerificationAcceptor(aeTitle: "FUZZ", callers: nil, maximumLength: 16_384)
    var requester = EchoRequester(calledAE: "FUZZ", callingAE: "PEER", maximumLength: 16_384)
    while let pdu = try? reader.next() {
        for answer in acceptor.receive(pdu) { _ = answer.encoded() }
        _ = try? requester.receive(pdu)
        _ = pdu.encoded()
    }
    _ = try? Command.decode(bytes)
    var store = Acceptor(
        policy: AcceptorPolicy(aeTitle: "FUZZ", callers: nil, maximumLength: 16_384, maximumContexts: 8, acceptsStorage: true), peerAddress: "127.0.0.1")
    store.append(bytes)
    while let events = store.next() {
        for event in events {
            switch event {
            case .send(let pdus): for pdu in pdus { _ = pdu.encoded() }
            case .dataSetEnded: for pdu in store.storeFinished(status: 0) { _ = pdu.encoded() }
            default: continue
            }
        }
    }
    return 0
}
