/// The DICOM application context, the only one there is (PS3.7 Annex A.2.1).
public let dicomApplicationContext = "1.2.840.10008.3.1.1.1"

/// An AE title: 1 to 16 characters of the default repertoire, no backslash, not only spaces
/// (PS3.5 Table 6.2-1, AE). Leading and trailing spaces are not significant.
public enum AETitle {
    /// The title as written on the wire: 16 bytes, space-padded. Nil for a title that is not one.
    public static func field(_ title: String) -> [UInt8]? {
        guard isValid(title) else { return nil }
        let bytes = Array(title.utf8)
        return bytes + Array(repeating: 0x20, count: 16 - bytes.count)
    }

    public static func isValid(_ title: String) -> Bool {
        let bytes = Array(title.utf8)
        let trimmed = title.trimmingSpaces
        return (1...16).contains(bytes.count) && !trimmed.isEmpty && bytes.allSatisfy { $0 >= 0x20 && $0 < 0x7F && $0 != 0x5C }
    }

    /// A node as written in commands and configuration, "AET@HOST:PORT" (HOST may be a
    /// bracketed IPv6 address); nil when it is not one.
    public static func node(_ text: String) -> (ae: String, host: String, port: UInt16)? {
        guard let at = text.lastIndex(of: "@") else { return nil }
        let ae = String(text[..<at])
        let address = text[text.index(after: at)...]
        guard let colon = address.lastIndex(of: ":"), let port = UInt16(address[address.index(after: colon)...]), port > 0 else { return nil }
        var host = String(address[..<colon])
        if host.hasPrefix("[") && host.hasSuffix("]") { host = String(host.dropFirst().dropLast()) }
        guard isValid(ae), !host.isEmpty else { return nil }
        return (ae, host, port)
    }

    /// A 16-byte field read back: its spaces (and any NULs a careless peer sends) trimmed.
    static func read(_ bytes: [UInt8]) -> String {
        String(decoding: bytes.filter { $0 != 0 }, as: UTF8.self).trimmingSpaces
    }
}

extension String {
    var trimmingSpaces: String {
        var scalars = Substring(self)
        while scalars.first == " " { scalars = scalars.dropFirst() }
        while scalars.last == " " { scalars = scalars.dropLast() }
        return String(scalars)
    }
}

/// A UID as an item's value: its characters, a trailing NUL tolerated on reading (PS3.8 §9.3.2.2
/// says UIDs here are not padded; some implementations pad them anyway).
enum UIDField {
    static func read(_ bytes: [UInt8]) -> String {
        var bytes = bytes
        while bytes.last == 0 || bytes.last == 0x20 { bytes.removeLast() }
        return String(decoding: bytes, as: UTF8.self)
    }
}

/// A presentation context as proposed: an abstract syntax (the SOP class) and the transfer
/// syntaxes the requester can send it in, in order of preference.
public struct ProposedContext: Sendable, Equatable {
    /// Odd, 1 ... 255 (§9.3.2.2).
    public var id: UInt8
    public var abstractSyntax: String
    public var transferSyntaxes: [String]

    public init(id: UInt8, abstractSyntax: String, transferSyntaxes: [String]) {
        self.id = id
        self.abstractSyntax = abstractSyntax
        self.transferSyntaxes = transferSyntaxes
    }
}

/// A presentation context as answered (§9.3.3.2).
public struct AcceptedContext: Sendable, Equatable {
    public enum Result: UInt8, Sendable {
        case acceptance = 0, userRejection = 1, noReason = 2, abstractSyntaxNotSupported = 3, transferSyntaxesNotSupported = 4
    }
    public var id: UInt8
    public var result: Result
    /// The transfer syntax chosen (meaningful only when accepted).
    public var transferSyntax: String

    public init(id: UInt8, result: Result, transferSyntax: String) {
        self.id = id
        self.result = result
        self.transferSyntax = transferSyntax
    }
}

/// The user information item's sub-items this implementation reads and writes; others are kept
/// as they came (type, value) and ignored.
public struct UserInformation: Sendable, Equatable {
    /// The largest P-DATA-TF PDU the sender of this item will take; 0 means no limit.
    public var maximumLength: UInt32
    public var implementationClassUID: String
    public var implementationVersionName: String?
    public var other: [Item] = []

    public struct Item: Sendable, Equatable {
        public var type: UInt8
        public var value: [UInt8]
    }

    public init(maximumLength: UInt32, implementationClassUID: String, implementationVersionName: String?) {
        self.maximumLength = maximumLength
        self.implementationClassUID = implementationClassUID
        self.implementationVersionName = implementationVersionName
    }

    func encoded() -> [UInt8] {
        var w = Writer()
        var length = Writer()
        length.u32(maximumLength)
        w.item(0x51, length.bytes)
        w.item(0x52, Array(implementationClassUID.utf8))
        if let name = implementationVersionName { w.item(0x55, Array(name.utf8)) }
        for item in other { w.item(item.type, item.value) }
        return w.bytes
    }

    static func read(_ bytes: [UInt8]) throws(PDUError) -> UserInformation {
        var reader = Reader(bytes, what: "user information")
        var info = UserInformation(maximumLength: 0, implementationClassUID: "", implementationVersionName: nil)
        var sawLength = false
        while !reader.atEnd {
            let (type, value) = try reader.item()
            switch type {
            case 0x51:
                guard value.count == 4 else { throw PDUError("a maximum length sub-item of \(value.count) bytes, not 4") }
                info.maximumLength = UInt32(value[0]) << 24 | UInt32(value[1]) << 16 | UInt32(value[2]) << 8 | UInt32(value[3])
                sawLength = true
            case 0x52: info.implementationClassUID = UIDField.read(value)
            case 0x55: info.implementationVersionName = String(decoding: value, as: UTF8.self).trimmingSpaces
            default: info.other.append(Item(type: type, value: value))
            }
        }
        guard sawLength else { throw PDUError("user information without a maximum length sub-item (required, PS3.7 D.3.3.1)") }
        return info
    }
}

/// A-ASSOCIATE-RQ (§9.3.2).
public struct AssociateRequest: Sendable, Equatable {
    public var calledAE: String
    public var callingAE: String
    public var applicationContext = dicomApplicationContext
    public var contexts: [ProposedContext]
    public var userInformation: UserInformation

    public init(calledAE: String, callingAE: String, contexts: [ProposedContext], userInformation: UserInformation) {
        self.calledAE = calledAE
        self.callingAE = callingAE
        self.contexts = contexts
        self.userInformation = userInformation
    }

    func write(to w: inout Writer) {
        writeHeader(calledAE, callingAE, applicationContext, to: &w)
        for context in contexts {
            var sub = Writer()
            sub.bytes += [context.id, 0, 0, 0]
            sub.item(0x30, Array(context.abstractSyntax.utf8))
            for syntax in context.transferSyntaxes { sub.item(0x40, Array(syntax.utf8)) }
            w.item(0x20, sub.bytes)
        }
        w.item(0x50, userInformation.encoded())
    }

    static func read(_ r: inout Reader) throws(PDUError) -> AssociateRequest {
        let (called, calling, application, items) = try readHeader(&r)
        var contexts: [ProposedContext] = []
        var user: UserInformation?
        for (type, value) in items {
            switch type {
            case 0x20:
                var sub = Reader(value, what: "presentation context")
                let id = try sub.u8()
                _ = try sub.bytes(3)
                var abstract: String?
                var syntaxes: [String] = []
                while !sub.atEnd {
                    let (subType, subValue) = try sub.item()
                    if subType == 0x30 { abstract = UIDField.read(subValue) } else if subType == 0x40 { syntaxes.append(UIDField.read(subValue)) }
                }
                guard let abstract else { throw PDUError("presentation context \(id) without an abstract syntax") }
                guard !syntaxes.isEmpty else { throw PDUError("presentation context \(id) without a transfer syntax") }
                contexts.append(ProposedContext(id: id, abstractSyntax: abstract, transferSyntaxes: syntaxes))
            case 0x50: user = try UserInformation.read(value)
            default: continue
            }
        }
        guard let user else { throw PDUError("an A-ASSOCIATE-RQ without user information") }
        var request = AssociateRequest(calledAE: called, callingAE: calling, contexts: contexts, userInformation: user)
        request.applicationContext = application
        return request
    }
}

/// A-ASSOCIATE-AC (§9.3.3).
public struct AssociateAccept: Sendable, Equatable {
    public var calledAE: String
    public var callingAE: String
    public var applicationContext = dicomApplicationContext
    public var contexts: [AcceptedContext]
    public var userInformation: UserInformation

    public init(calledAE: String, callingAE: String, contexts: [AcceptedContext], userInformation: UserInformation) {
        self.calledAE = calledAE
        self.callingAE = callingAE
        self.contexts = contexts
        self.userInformation = userInformation
    }

    func write(to w: inout Writer) {
        writeHeader(calledAE, callingAE, applicationContext, to: &w)
        for context in contexts {
            var sub = Writer()
            sub.bytes += [context.id, 0, context.result.rawValue, 0]
            sub.item(0x40, Array(context.transferSyntax.utf8))
            w.item(0x21, sub.bytes)
        }
        w.item(0x50, userInformation.encoded())
    }

    static func read(_ r: inout Reader) throws(PDUError) -> AssociateAccept {
        let (called, calling, application, items) = try readHeader(&r)
        var contexts: [AcceptedContext] = []
        var user: UserInformation?
        for (type, value) in items {
            switch type {
            case 0x21:
                var sub = Reader(value, what: "presentation context result")
                let id = try sub.u8()
                _ = try sub.u8()
                let resultByte = try sub.u8()
                _ = try sub.u8()
                guard let result = AcceptedContext.Result(rawValue: resultByte) else { throw PDUError("presentation context \(id): result \(resultByte) is not 0 ... 4") }
                var syntax = ""
                while !sub.atEnd {
                    let (subType, subValue) = try sub.item()
                    if subType == 0x40 { syntax = UIDField.read(subValue) }
                }
                contexts.append(AcceptedContext(id: id, result: result, transferSyntax: syntax))
            case 0x50: user = try UserInformation.read(value)
            default: continue
            }
        }
        guard let user else { throw PDUError("an A-ASSOCIATE-AC without user information") }
        var accept = AssociateAccept(calledAE: called, callingAE: calling, contexts: contexts, userInformation: user)
        accept.applicationContext = application
        return accept
    }
}

/// The fixed part of an A-ASSOCIATE-RQ or -AC (§9.3.2, §9.3.3: the same layout), then the
/// application context item.
private func writeHeader(_ called: String, _ calling: String, _ applicationContext: String, to w: inout Writer) {
    w.u16(1)  // protocol version
    w.u16(0)
    w.bytes += AETitle.field(called) ?? Array(repeating: 0x20, count: 16)
    w.bytes += AETitle.field(calling) ?? Array(repeating: 0x20, count: 16)
    w.bytes += Array(repeating: 0, count: 32)
    w.item(0x10, Array(applicationContext.utf8))
}

/// The fixed part of an A-ASSOCIATE-RQ or -AC and its items.
private func readHeader(_ r: inout Reader) throws(PDUError) -> (String, String, String, [(UInt8, [UInt8])]) {
    let version = try r.u16()
    guard version & 0x0001 != 0 else { throw PDUError("protocol version \(version) (bit 0, version 1, must be set)") }
    _ = try r.u16()
    let called = AETitle.read(try r.bytes(16))
    let calling = AETitle.read(try r.bytes(16))
    _ = try r.bytes(32)
    var items: [(UInt8, [UInt8])] = []
    var application: String?
    while !r.atEnd {
        let (type, value) = try r.item()
        if type == 0x10 { application = UIDField.read(value) } else { items.append((type, value)) }
    }
    guard let application else { throw PDUError("no application context item") }
    return (called, calling, application, items)
}
