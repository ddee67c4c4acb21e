/// The upper layer's protocol data units (DICOM PS3.8 §9.3): what goes on the wire of a DIMSE
/// association, encoded and decoded here without sockets. Every length is checked against the
/// bytes there and against the limits the caller sets; anything malformed is a `PDUError`
/// naming what and where, never a crash or a guess.
public enum PDU: Sendable, Equatable {
    case associateRequest(AssociateRequest)
    case associateAccept(AssociateAccept)
    case associateReject(AssociateReject)
    case data([PresentationDataValue])
    case releaseRequest
    case releaseResponse
    case abort(AssociateAbort)

    /// The PDU types of §9.3.1.
    public enum Kind: UInt8, Sendable {
        case associateRequest = 0x01, associateAccept = 0x02, associateReject = 0x03, data = 0x04
        case releaseRequest = 0x05, releaseResponse = 0x06, abort = 0x07
    }

    public var kind: Kind {
        switch self {
        case .associateRequest: return .associateRequest
        case .associateAccept: return .associateAccept
        case .associateReject: return .associateReject
        case .data: return .data
        case .releaseRequest: return .releaseRequest
        case .releaseResponse: return .releaseResponse
        case .abort: return .abort
        }
    }

    /// The PDU's bytes: type, a reserved byte, the big-endian length of the rest, the rest.
    public func encoded() -> [UInt8] {
        var body = Writer()
        switch self {
        case .associateRequest(let request): request.write(to: &body)
        case .associateAccept(let accept): accept.write(to: &body)
        case .associateReject(let reject): body.bytes += [0, reject.result.rawValue, reject.source, reject.reason]
        case .data(let values):
            for value in values {
                body.u32(UInt32(value.fragment.count + 2))
                body.bytes += [value.contextID, (value.isCommand ? 0x01 : 0) | (value.isLast ? 0x02 : 0)]
                body.bytes += value.fragment
            }
        case .releaseRequest, .releaseResponse: body.bytes += [0, 0, 0, 0]
        case .abort(let abort): body.bytes += [0, 0, abort.source, abort.reason]
        }
        var out = Writer()
        out.bytes += [kind.rawValue, 0]
        out.u32(UInt32(body.bytes.count))
        out.bytes += body.bytes
        return out.bytes
    }

    /// Decodes the body of a PDU of type `type` (the 6-byte header already read).
    public static func decode(type: UInt8, body: [UInt8]) throws(PDUError) -> PDU {
        guard let kind = Kind(rawValue: type) else { throw PDUError("unknown PDU type 0x\(hex(type))") }
        var reader = Reader(body, what: "\(kind)")
        switch kind {
        case .associateRequest: return .associateRequest(try AssociateRequest.read(&reader))
        case .associateAccept: return .associateAccept(try AssociateAccept.read(&reader))
        case .associateReject:
            guard body.count == 4 else { throw PDUError("an A-ASSOCIATE-RJ of \(body.count) bytes, not 4") }
            guard let result = AssociateReject.Result(rawValue: body[1]) else { throw PDUError("A-ASSOCIATE-RJ result \(body[1]) is not 1 or 2") }
            return .associateReject(AssociateReject(result: result, source: body[2], reason: body[3]))
        case .data:
            var values: [PresentationDataValue] = []
            while !reader.atEnd {
                let length = Int(try reader.u32())
                guard length >= 2 else { throw PDUError("a presentation data value item of length \(length) (at least 2)") }
                let context = try reader.u8()
                let header = try reader.u8()
                let fragment = try reader.bytes(length - 2)
                values.append(PresentationDataValue(contextID: context, isCommand: header & 0x01 != 0, isLast: header & 0x02 != 0, fragment: fragment))
            }
            guard !values.isEmpty else { throw PDUError("a P-DATA-TF with no presentation data value") }
            return .data(values)
        case .releaseRequest, .releaseResponse:
            guard body.count == 4 else { throw PDUError("an A-RELEASE PDU of \(body.count) bytes, not 4") }
            return kind == .releaseRequest ? .releaseRequest : .releaseResponse
        case .abort:
            guard body.count == 4 else { throw PDUError("an A-ABORT of \(body.count) bytes, not 4") }
            return .abort(AssociateAbort(source: body[2], reason: body[3]))
        }
    }
}

/// One fragment of a DIMSE message (§9.3.5.1): of a command or of a data set, the last one or not.
public struct PresentationDataValue: Sendable, Equatable {
    public var contextID: UInt8
    public var isCommand: Bool
    public var isLast: Bool
    public var fragment: [UInt8]

    public init(contextID: UInt8, isCommand: Bool, isLast: Bool, fragment: [UInt8]) {
        self.contextID = contextID
        self.isCommand = isCommand
        self.isLast = isLast
        self.fragment = fragment
    }
}

public struct AssociateReject: Sendable, Equatable {
    public enum Result: UInt8, Sendable { case permanent = 1, transient = 2 }
    public var result: Result
    /// 1: the service user; 2: the service provider (ACSE); 3: the service provider (presentation).
    public var source: UInt8
    public var reason: UInt8

    public init(result: Result, source: UInt8, reason: UInt8) {
        self.result = result
        self.source = source
        self.reason = reason
    }

    /// The service user's reasons (source 1): 1 no reason given, 2 application context name not
    /// supported, 3 calling AE title not recognised, 7 called AE title not recognised.
    public static func callingAENotRecognised() -> AssociateReject { AssociateReject(result: .permanent, source: 1, reason: 3) }
    public static func calledAENotRecognised() -> AssociateReject { AssociateReject(result: .permanent, source: 1, reason: 7) }
    public static func applicationContextNotSupported() -> AssociateReject { AssociateReject(result: .permanent, source: 1, reason: 2) }
    /// Source 3, reason 2: local limit exceeded (too many associations); transient.
    public static func tooManyAssociations() -> AssociateReject { AssociateReject(result: .transient, source: 3, reason: 2) }

    /// In an operator's words.
    public var words: String {
        switch (source, reason) {
        case (1, 2): return "application context name not supported"
        case (1, 3): return "calling AE title not recognised"
        case (1, 7): return "called AE title not recognised"
        case (2, 2): return "protocol version not supported"
        case (3, 1): return "temporary congestion"
        case (3, 2): return "local limit exceeded"
        default: return "source \(source), reason \(reason)"
        }
    }
}

public struct AssociateAbort: Sendable, Equatable {
    /// 0: the service user; 2: the service provider.
    public var source: UInt8
    public var reason: UInt8
    public init(source: UInt8, reason: UInt8) {
        self.source = source
        self.reason = reason
    }
}

public struct PDUError: Error, Sendable, Equatable, CustomStringConvertible {
    public let description: String
    public init(_ description: String) { self.description = description }
}

func hex(_ byte: UInt8) -> String {
    let digits = Array("0123456789ABCDEF")
    return String([digits[Int(byte >> 4)], digits[Int(byte & 0x0F)]])
}

/// Big-endian writing, as PS3.8 lays out its PDUs.
struct Writer {
    var bytes: [UInt8] = []
    mutating func u16(_ value: UInt16) { bytes += [UInt8(value >> 8), UInt8(value & 0xFF)] }
    mutating func u32(_ value: UInt32) { bytes += [UInt8(value >> 24), UInt8((value >> 16) & 0xFF), UInt8((value >> 8) & 0xFF), UInt8(value & 0xFF)] }
    /// An item: type, reserved, 2-byte length, value.
    mutating func item(_ type: UInt8, _ value: [UInt8]) {
        bytes += [type, 0]
        u16(UInt16(value.count))
        bytes += value
    }
}

/// Big-endian reading with every length checked against what is there.
struct Reader {
    let bytes: [UInt8]
    var offset = 0
    let what: String
    init(_ bytes: [UInt8], what: String) {
        self.bytes = bytes
        self.what = what
    }
    var atEnd: Bool { offset >= bytes.count }
    mutating func bytes(_ count: Int) throws(PDUError) -> [UInt8] {
        guard count >= 0, offset + count <= bytes.count else {
            throw PDUError("\(what): \(count) bytes needed at offset \(offset), \(bytes.count - offset) there")
        }
        defer { offset += count }
        return Array(bytes[offset..<(offset + count)])
    }
    mutating func u8() throws(PDUError) -> UInt8 { try bytes(1)[0] }
    mutating func u16() throws(PDUError) -> UInt16 {
        let b = try bytes(2)
        return UInt16(b[0]) << 8 | UInt16(b[1])
    }
    mutating func u32() throws(PDUError) -> UInt32 {
        let b = try bytes(4)
        return UInt32(b[0]) << 24 | UInt32(b[1]) << 16 | UInt32(b[2]) << 8 | UInt32(b[3])
    }
    /// An item's type and value.
    mutating func item() throws(PDUError) -> (type: UInt8, value: [UInt8]) {
        let type = try u8()
        _ = try u8()
        let length = Int(try u16())
        return (type, try bytes(length))
    }
}
