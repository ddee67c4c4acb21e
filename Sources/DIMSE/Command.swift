/// A DIMSE command set (PS3.7 §9, Annex E): group 0000 elements, always in implicit VR little
/// endian whatever the context's transfer syntax, with the command group length first.
public struct Command: Sendable, Equatable {
    /// The command fields this implementation speaks (PS3.7 E.1).
    public enum Field: UInt16, Sendable {
        case storeRequest = 0x0001, storeResponse = 0x8001
        case echoRequest = 0x0030, echoResponse = 0x8030
        case findRequest = 0x0020, findResponse = 0x8020
        case moveRequest = 0x0021, moveResponse = 0x8021
        case cancelRequest = 0x0FFF
    }

    public var field: Field
    public var affectedSOPClassUID: String
    public var messageID: UInt16?
    public var respondingTo: UInt16?
    public var affectedSOPInstanceUID: String?
    /// 0x0101: no data set follows; anything else: one does.
    public var dataSetType: UInt16 = 0x0101
    public var status: UInt16?
    /// C-STORE, C-FIND, C-MOVE: 0 medium, 1 high, 2 low.
    public var priority: UInt16?
    /// C-MOVE-RQ: the AE title the instances go to (0000,0600).
    public var moveDestination: String?
    /// A failure's words (0000,0902, at most 64 characters).
    public var errorComment: String?
    /// C-MOVE-RSP: sub-operations remaining, completed, failed, with a warning (0000,1020-1023).
    public var subOperations: SubOperations?
    /// C-STORE-RQ of a C-MOVE's sub-operation: who asked for the move, and its message id
    /// (0000,1030-1031), so that the destination can tell what the instances are for.
    public var moveOriginatorAE: String?
    public var moveOriginatorMessageID: UInt16?

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

    /// C-FIND-RSP / C-MOVE-RSP (PS3.7 §9.1.2.1, §9.1.4.1): the request's class, with the status;
    /// `identifier`: a data set follows (a C-FIND match, or a C-MOVE's failed instances).
    public static func queryResponse(
        to request: QueryRequest, status: UInt16, identifier: Bool, subOperations: SubOperations? = nil, comment: String? = nil
    ) -> Command {
        var command = Command(field: request.kind == .find ? .findResponse : .moveResponse, affectedSOPClassUID: request.sopClass)
        command.respondingTo = request.messageID
        command.status = status
        command.dataSetType = identifier ? 0x0000 : 0x0101
        command.subOperations = request.kind == .move ? subOperations : nil
        command.errorComment = comment
        return command
    }

    /// C-FIND-RQ (PS3.7 §9.1.2): an identifier follows.
    public static func findRequest(messageID: UInt16, sopClass: String, priority: UInt16 = 0) -> Command {
        var command = Command(field: .findRequest, affectedSOPClassUID: sopClass)
        command.messageID = messageID
        command.priority = priority
        command.dataSetType = 0x0000
        return command
    }

    /// C-MOVE-RQ (PS3.7 §9.1.4): an identifier follows; the instances go to `destination`.
    public static func moveRequest(messageID: UInt16, sopClass: String, destination: String, priority: UInt16 = 0) -> Command {
        var command = findRequest(messageID: messageID, sopClass: sopClass, priority: priority)
        command.field = .moveRequest
        command.moveDestination = destination
        return command
    }

    /// The command's bytes, elements in ascending tag order.
    public func encoded() -> [UInt8] {
        var elements: [(UInt16, [UInt8])] = []
        if !affectedSOPClassUID.isEmpty || field != .cancelRequest { elements.append((0x0002, Self.uid(affectedSOPClassUID))) }
        elements.append((0x0100, Self.us(field.rawValue)))
        if let messageID { elements.append((0x0110, Self.us(messageID))) }
        if let respondingTo { elements.append((0x0120, Self.us(respondingTo))) }
        if let moveDestination { elements.append((0x0600, Self.text(moveDestination))) }
        if let priority { elements.append((0x0700, Self.us(priority))) }
        elements.append((0x0800, Self.us(dataSetType)))
        if let status { elements.append((0x0900, Self.us(status))) }
        if let errorComment { elements.append((0x0902, Self.text(String(errorComment.prefix(64))))) }
        if let affectedSOPInstanceUID { elements.append((0x1000, Self.uid(affectedSOPInstanceUID))) }
        if let subOperations {
            // PS3.7 §9.1.4.1.6: the remaining count in pending (and cancel) responses only.
            if status == nil || status == 0xFF00 || status == 0xFF01 || status == 0xFE00 { elements.append((0x1020, Self.us(subOperations.remaining))) }
            elements.append((0x1021, Self.us(subOperations.completed)))
            elements.append((0x1022, Self.us(subOperations.failed)))
            elements.append((0x1023, Self.us(subOperations.warning)))
        }
        if let moveOriginatorAE { elements.append((0x1030, Self.text(moveOriginatorAE))) }
        if let moveOriginatorMessageID { elements.append((0x1031, Self.us(moveOriginatorMessageID))) }
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
        command.moveDestination = values[0x0600].map(Self.readText)
        command.moveOriginatorAE = values[0x1030].map(Self.readText)
        command.moveOriginatorMessageID = try us(0x1031)
        command.errorComment = values[0x0902].map(Self.readText)
        if let remaining = try us(0x1020), let completed = try us(0x1021), let failed = try us(0x1022), let warning = try us(0x1023) {
            command.subOperations = SubOperations(remaining: remaining, completed: completed, failed: failed, warning: warning)
        } else if let completed = try us(0x1021), let failed = try us(0x1022), let warning = try us(0x1023) {
            // A final response may leave out the remaining count (PS3.7 §9.1.4.1.10).
            command.subOperations = SubOperations(remaining: 0, completed: completed, failed: failed, warning: warning)
        }
        return command
    }

    /// Text padded to an even length with a space (AE, LO).
    private static func text(_ value: String) -> [UInt8] {
        var bytes = Array(value.utf8)
        if bytes.count % 2 == 1 { bytes.append(0x20) }
        return bytes
    }
    private static func readText(_ bytes: [UInt8]) -> String {
        var slice = bytes[...]
        while let first = slice.first, first == 0x20 || first == 0 { slice = slice.dropFirst() }
        while let last = slice.last, last == 0x20 || last == 0 { slice = slice.dropLast() }
        return String(decoding: slice, as: UTF8.self)
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

/// A C-MOVE's sub-operations (PS3.7 §9.1.4.1.6-9): each instance sent is one.
public struct SubOperations: Sendable, Equatable {
    public var remaining: UInt16
    public var completed: UInt16
    public var failed: UInt16
    public var warning: UInt16

    public init(remaining: UInt16 = 0, completed: UInt16 = 0, failed: UInt16 = 0, warning: UInt16 = 0) {
        self.remaining = remaining
        self.completed = completed
        self.failed = failed
        self.warning = warning
    }
}

/// The query/retrieve SOP classes (PS3.4 Annex C): study root and patient root, FIND and MOVE.
public enum QueryRetrieve {
    public static let patientRootFind = "1.2.840.10008.5.1.4.1.2.1.1"
    public static let patientRootMove = "1.2.840.10008.5.1.4.1.2.1.2"
    public static let studyRootFind = "1.2.840.10008.5.1.4.1.2.2.1"
    public static let studyRootMove = "1.2.840.10008.5.1.4.1.2.2.2"

    public static func isFind(_ uid: String) -> Bool { uid == patientRootFind || uid == studyRootFind }
    public static func isMove(_ uid: String) -> Bool { uid == patientRootMove || uid == studyRootMove }

    /// C-FIND and C-MOVE statuses (PS3.4 C.4.1.1.4, C.4.2.1.5).
    public static let pending: UInt16 = 0xFF00
    public static let outOfResources: UInt16 = 0xA700
    public static let subOperationsImpossible: UInt16 = 0xA702
    public static let moveDestinationUnknown: UInt16 = 0xA801
    public static let identifierDoesNotMatch: UInt16 = 0xA900
    public static let unableToProcess: UInt16 = 0xC000
    public static let cancelled: UInt16 = 0xFE00
    public static let subOperationsWithFailures: UInt16 = 0xB000
}

/// A C-FIND or C-MOVE whose identifier has arrived: what the caller needs to answer it.
public struct QueryRequest: Sendable, Equatable {
    public enum Kind: Sendable { case find, move }
    public var kind: Kind
    public var messageID: UInt16
    public var sopClass: String
    public var contextID: UInt8
    /// The accepted context's transfer syntax: the identifier's encoding, and the answers'.
    public var transferSyntax: String
    public var callingAE: String
    public var moveDestination: String?
    public var priority: UInt16

    public init(kind: Kind, messageID: UInt16, sopClass: String, contextID: UInt8, transferSyntax: String, callingAE: String, moveDestination: String? = nil, priority: UInt16 = 0) {
        self.kind = kind
        self.messageID = messageID
        self.sopClass = sopClass
        self.contextID = contextID
        self.transferSyntax = transferSyntax
        self.callingAE = callingAE
        self.moveDestination = moveDestination
        self.priority = priority
    }
}
