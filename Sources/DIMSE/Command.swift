/// A DIMSE command set (PS3.7 §9, Annex E): group 0000 elements, always in implicit VR little
/// endian whatever the context's transfer syntax, with the command group length first.
public struct Command: Sendable, Equatable {
    /// The command fields this implementation speaks (PS3.7 E.1).
    public enum Field: UInt16, Sendable {
        case storeRequest = 0x0001, storeResponse = 0x8001
        case echoRequest = 0x0030, echoResponse = 0x8030
    }

    public var field: Field
    public var affectedSOPClassUID: String
    public var messageID: UInt16?
    public var respondingTo: UInt16?
    public var affectedSOPInstanceUID: String?
    /// 0x0101: no data set follows; anything else: one does.
    public var dataSetType: UInt16 = 0x0101
    public var status: UInt16?
    /// C-STORE: 0 medium, 1 high, 2 low.
    public var priority: UInt16?

    public init(field: Field, affectedSOPClassUID: String) {
        self.field = field
        self.affectedSOPClassUID = affectedSOPClassUID
    }

    public var hasDataSet: Bool { dataSetType != 0x0101 }

    public static let verificationSOPClass = "1.2.840.10008.1.1"

    public static func echoRequest(messageID: UInt16) -> Command {
        var command = Command(field: .echoRequest, affectedSOPClassUID: verificationSOPClass)
        command.messageID = messageID
        return command
    }

    /// C-STORE-RQ (PS3.7 §9.1.1): a data set follows.
    public static func storeRequest(messageID: UInt16, sopClass: String, sopInstance: String, priority: UInt16 = 0) -> Command {
        var command = Command(field: .storeRequest, affectedSOPClassUID: sopClass)
        command.messageID = messageID
        command.affectedSOPInstanceUID = sopInstance
        command.priority = priority
        command.dataSetType = 0x0000
        return command
    }

    /// What a C-STORE status means (PS3.7 Annex C, §9.1.1.1.9; PS3.4 B.2.3): success, a warning
    /// (stored, with a remark), or a failure — and, for a failure, whether trying again later
    /// can help (out of resources) or not.
    public enum Outcome: Sendable, Equatable {
        case success, warning, failure(retryable: Bool)

        /// Stored: a success, or a warning (stored, with a remark).
        public var stored: Bool { self == .success || self == .warning }
    }

    /// PS3.7 Annex C: 0x0001, 0x0107, 0x0116 and the whole of 0xBxxx are warnings; 0xA7xx is
    /// out of resources (worth another try later); everything else, a cancel (0xFE00) included,
    /// is a failure that trying again will not mend.
    public static func outcome(ofStoreStatus status: UInt16) -> Outcome {
        switch status {
        case 0x0000: return .success
        case 0x0001, 0x0107, 0x0116, 0xB000...0xBFFF: return .warning
        case 0xA700...0xA7FF: return .failure(retryable: true)
        default: return .failure(retryable: false)
        }
    }

    /// A C-STORE status in an operator's words.
    public static func words(ofStoreStatus status: UInt16) -> String {
        let code = "0x" + String(status, radix: 16, uppercase: true)
        switch status {
        case 0x0000: return "success"
        case 0xB000: return "warning \(code): coercion of data elements"
        case 0xB007: return "warning \(code): data set does not match SOP class"
        case 0xB006: return "warning \(code): elements discarded"
        case 0x0001, 0x0107, 0x0116, 0xB000...0xBFFF: return "warning \(code)"
        case 0xFE00: return "cancelled \(code)"
        case 0xA700...0xA7FF: return "refused \(code): out of resources"
        case 0xA900...0xA9FF: return "refused \(code): data set does not match SOP class"
        case 0xC000...0xCFFF: return "refused \(code): cannot understand"
        case 0x0122: return "refused \(code): SOP class not supported"
        case 0x0124: return "refused \(code): not authorised"
        case 0x0211: return "refused \(code): unrecognised operation"
        default: return "refused \(code)"
        }
    }

    public static func echoResponse(to request: Command, status: UInt16 = 0) -> Command {
        var command = Command(field: .echoResponse, affectedSOPClassUID: request.affectedSOPClassUID)
        command.respondingTo = request.messageID
        command.status = status
        return command
    }

    /// C-STORE-RSP (PS3.7 §9.1.1.1.9): the request's class and instance, with the status.
    public static func storeResponse(to request: StoreRequest, status: UInt16) -> Command {
        var command = Command(field: .storeResponse, affectedSOPClassUID: request.sopClass)
        command.respondingTo = request.messageID
        command.affectedSOPInstanceUID = request.sopInstance
        command.status = status
        return command
    }

    /// The command's bytes, elements in ascending tag order.
    public func encoded() -> [UInt8] {
        var elements: [(UInt16, [UInt8])] = []
        elements.append((0x0002, Self.uid(affectedSOPClassUID)))
        elements.append((0x0100, Self.us(field.rawValue)))
        if let messageID { elements.append((0x0110, Self.us(messageID))) }
        if let respondingTo { elements.append((0x0120, Self.us(respondingTo))) }
        if let priority { elements.append((0x0700, Self.us(priority))) }
        elements.append((0x0800, Self.us(dataSetType)))
        if let status { elements.append((0x0900, Self.us(status))) }
        if let affectedSOPInstanceUID { elements.append((0x1000, Self.uid(affectedSOPInstanceUID))) }
        var body: [UInt8] = []
        for (element, value) in elements { body += Self.element(element, value) }
        return Self.element(0x0000, Self.ul(UInt32(body.count))) + body
    }

    /// Reads a command set; unknown elements of group 0000 are skipped, anything else refused.
    public static func decode(_ bytes: [UInt8]) throws(PDUError) -> Command {
        var offset = 0
        var values: [UInt16: [UInt8]] = [:]
        while offset < bytes.count {
            guard offset + 8 <= bytes.count else { throw PDUError("a command set cut inside an element's header at offset \(offset)") }
            let group = UInt16(bytes[offset]) | UInt16(bytes[offset + 1]) << 8
            let element = UInt16(bytes[offset + 2]) | UInt16(bytes[offset + 3]) << 8
            let length = Int(bytes[offset + 4]) | Int(bytes[offset + 5]) << 8 | Int(bytes[offset + 6]) << 16 | Int(bytes[offset + 7]) << 24
            guard group == 0 else { throw PDUError("an element of group \(group) in a command set (only group 0000 belongs there)") }
            guard length >= 0, offset + 8 + length <= bytes.count else { throw PDUError("command element (0000,\(element)) of \(length) bytes runs past the command's end") }
            values[element] = Array(bytes[(offset + 8)..<(offset + 8 + length)])
            offset += 8 + length
        }
        func us(_ element: UInt16) throws(PDUError) -> UInt16? {
            guard let value = values[element] else { return nil }
            guard value.count == 2 else { throw PDUError("command element (0000,\(element)) of \(value.count) bytes, not 2") }
            return UInt16(value[0]) | UInt16(value[1]) << 8
        }
        func uid(_ element: UInt16) -> String? { values[element].map(UIDField.read) }
        guard let fieldValue = try us(0x0100) else { throw PDUError("a command set without a Command Field (0000,0100)") }
        guard let field = Field(rawValue: fieldValue) else { throw PDUError("command field 0x\(hex(UInt8(fieldValue >> 8)))\(hex(UInt8(fieldValue & 0xFF))) is not one this implementation speaks") }
        var command = Command(field: field, affectedSOPClassUID: uid(0x0002) ?? "")
        command.messageID = try us(0x0110)
        command.respondingTo = try us(0x0120)
        command.priority = try us(0x0700)
        command.dataSetType = try us(0x0800) ?? 0x0101
        command.status = try us(0x0900)
        command.affectedSOPInstanceUID = uid(0x1000)
        return command
    }

    private static func element(_ element: UInt16, _ value: [UInt8]) -> [UInt8] {
        [0, 0, UInt8(element & 0xFF), UInt8(element >> 8)] + ul(UInt32(value.count)) + value
    }
    private static func us(_ value: UInt16) -> [UInt8] { [UInt8(value & 0xFF), UInt8(value >> 8)] }
    private static func ul(_ value: UInt32) -> [UInt8] { [UInt8(value & 0xFF), UInt8((value >> 8) & 0xFF), UInt8((value >> 16) & 0xFF), UInt8(value >> 24)] }
    /// A UID padded to an even length with a NUL (PS3.5 §9.1).
    private static func uid(_ text: String) -> [UInt8] {
        var bytes = Array(text.utf8)
        if bytes.count % 2 == 1 { bytes.append(0) }
        return bytes
    }
}
