import DIMSE
import Platform

#if canImport(Glibc)
    import Glibc
#endif

// MARK: - C-FIND and C-MOVE as the requester

extension DIMSEAssociation {
    /// What a C-FIND or C-MOVE came to: the final status, each pending response's identifier
    /// (C-FIND matches) and counts (C-MOVE), the final counts and error comment, and when each
    /// pending response came (seconds after the request was sent).
    public struct QueryOutcome: Sendable {
        public var status: UInt16
        public var matches: [[UInt8]] = []
        public var pending: [(seconds: Double, counts: SubOperations?)] = []
        public var final: SubOperations?
        public var comment: String?
    }

    /// One C-FIND or C-MOVE (study root) to `called`@`host`:`port` on an association of its own,
    /// the identifier (already encoded in implicit VR little endian) as given; every response
    /// read to the final one. `moveDestination` makes it a C-MOVE.
    public static func query(
        _ identifier: [UInt8], moveDestination: String? = nil, host: String, port: UInt16, called: String, calling: String, timeout: Double,
        maximumLength: UInt32 = 65_536, tls: TLSContext? = nil
    ) throws -> QueryOutcome {
        let sopClass = moveDestination == nil ? QueryRetrieve.studyRootFind : QueryRetrieve.studyRootMove
        let fd = try openLink(host: host, port: port, timeout: timeout, tls: tls)
        defer { fd.finish() }
        var reader = PDUReader(maximumLength: Int(maximumLength))
        let request = AssociateRequest(
            calledAE: called, callingAE: calling, contexts: [ProposedContext(id: 1, abstractSyntax: sopClass, transferSyntaxes: [TransferSyntax.implicitLittle])],
            userInformation: UserInformation(maximumLength: maximumLength, implementationClassUID: Implementation.classUID, implementationVersionName: Implementation.versionName))
        try send([.associateRequest(request)], on: fd, timeout: timeout)
        let accept: AssociateAccept
        switch try next(&reader, on: fd, timeout: timeout) {
        case .associateAccept(let answer): accept = answer
        case .associateReject(let reject): throw Failure("association rejected: \(reject.words)", rejection: reject)
        case let other: throw Failure("the node answered the association request with \(other.kind)")
        }
        guard let context = accept.contexts.first, context.result == .acceptance else { throw Failure("the node does not take \(sopClass)") }
        let command = moveDestination.map { Command.moveRequest(messageID: 1, sopClass: sopClass, destination: $0) } ?? Command.findRequest(messageID: 1, sopClass: sopClass)
        let started = MonotonicClock.now
        let limit = accept.userInformation.maximumLength
        try send(dataPDUs(contextID: 1, isCommand: true, command.encoded(), maximumLength: limit) + dataPDUs(contextID: 1, isCommand: false, identifier, maximumLength: limit), on: fd, timeout: timeout)
        var outcome = QueryOutcome(status: 0xFFFF)
        while true {
            let response = try readCommand(&reader, contextID: 1, on: fd, timeout: timeout)
            var data: [UInt8]?
            if response.hasDataSet { data = try readDataSet(&reader, on: fd, timeout: timeout) }
            let status = response.status ?? 0xFFFF
            if status == 0xFF00 || status == 0xFF01 {
                if let data { outcome.matches.append(data) }
                outcome.pending.append((MonotonicClock.now - started, response.subOperations))
                continue
            }
            outcome.status = status
            outcome.final = response.subOperations
            outcome.comment = response.errorComment
            break
        }
        try? send([.releaseRequest], on: fd, timeout: timeout)
        _ = try? next(&reader, on: fd, timeout: min(timeout, 2))
        return outcome
    }

    /// A data set's fragments, gathered (an identifier: small).
    static func readDataSet(_ reader: inout PDUReader, on fd: DIMSELink, timeout: Double) throws -> [UInt8] {
        var bytes: [UInt8] = []
        while true {
            switch try next(&reader, on: fd, timeout: timeout) {
            case .data(let values):
                for value in values {
                    guard !value.isCommand else { throw Failure("a command where a data set was due") }
                    bytes += value.fragment
                    guard bytes.count <= 1 << 20 else { throw Failure("an identifier over 1 MB") }
                    if value.isLast { return bytes }
                }
            case .abort(let abort): throw Failure("the node aborted the association (source \(abort.source), reason \(abort.reason))")
            case let other: throw Failure("the node sent \(other.kind) where a data set was due")
            }
        }
    }
}
