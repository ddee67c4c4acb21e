/// An HTTP error the server answers with: the status, and a message for the log and the body.
public struct HTTPError: Error, Equatable, CustomStringConvertible {
    public var status: Int
    public var message: String
    public init(_ status: Int, _ message: String) {
        self.status = status
        self.message = message
    }
    public var description: String { "\(status) \(HTTPError.reason(status)): \(message)" }

    public static func reason(_ status: Int) -> String {
        switch status {
        case 100: return "Continue"
        case 200: return "OK"
        case 202: return "Accepted"
        case 204: return "No Content"
        case 400: return "Bad Request"
        case 403: return "Forbidden"
        case 404: return "Not Found"
        case 405: return "Method Not Allowed"
        case 408: return "Request Timeout"
        case 409: return "Conflict"
        case 411: return "Length Required"
        case 413: return "Content Too Large"
        case 414: return "URI Too Long"
        case 415: return "Unsupported Media Type"
        case 417: return "Expectation Failed"
        case 431: return "Request Header Fields Too Large"
        case 500: return "Internal Server Error"
        case 501: return "Not Implemented"
        case 503: return "Service Unavailable"
        case 505: return "HTTP Version Not Supported"
        default: return "Status \(status)"
        }
    }
}

/// The limits a server puts on what a client may send (every one explicit; the defaults suit a
/// DICOMweb receiver: small heads, bodies up to a whole study).
public struct HTTPLimits: Sendable {
    public var requestLineBytes = 8 * 1024
    public var headerBytes = 32 * 1024
    public var headerCount = 100
    public var bodyBytes = 16 << 30
    public init() {}
}

/// A request's method, target, version and header fields.
public struct HTTPRequestHead: Sendable, Equatable {
    public var method: String
    public var target: String
    public var version: String
    /// In the order received; names as sent (compare with `value(_:)`, which ignores case).
    public var headers: [(name: String, value: String)]

    public static func == (a: HTTPRequestHead, b: HTTPRequestHead) -> Bool {
        a.method == b.method && a.target == b.target && a.version == b.version
            && a.headers.map { "\($0.name):\($0.value)" } == b.headers.map { "\($0.name):\($0.value)" }
    }

    /// The first value of a field, by case-insensitive name.
    public func value(_ name: String) -> String? {
        let lower = name.lowercased()
        return headers.first { $0.name.lowercased() == lower }?.value
    }

    public func values(_ name: String) -> [String] {
        let lower = name.lowercased()
        return headers.filter { $0.name.lowercased() == lower }.map(\.value)
    }

    /// HTTP/1.1 keeps the connection unless told to close; HTTP/1.0 closes unless told to keep it.
    public var keepAlive: Bool {
        let tokens = values("Connection").flatMap { $0.lowercased().split(separator: ",").map { $0.trimmingCharacters(in: " \t") } }
        if tokens.contains("close") { return false }
        return version == "HTTP/1.1" || tokens.contains("keep-alive")
    }

    /// The client waits for "100 Continue" before sending the body (RFC 9110 §10.1.1).
    public var expectsContinue: Bool { value("Expect")?.lowercased() == "100-continue" }
}

/// Parses HTTP/1.1 requests (RFC 9112) as bytes arrive, and frames their bodies by Content-Length
/// or chunked transfer coding, streaming body bytes out as they come. A state machine with no I/O:
/// the connection feeds it and acts on the events.
///
/// Strict where leniency lets requests be smuggled past a proxy (RFC 9112 §6.3, §11.2): both
/// Content-Length and Transfer-Encoding, differing Content-Lengths, a transfer coding other than a
/// final "chunked", whitespace before a colon, folded header lines, bare CR — each is a 400. Limits
/// on the request line (414), the head (431) and the body (413) are enforced as bytes arrive, so a
/// client cannot make the server hold more than the limits, however it sends.
public struct HTTPRequestParser {
    public enum Event: Equatable {
        case head(HTTPRequestHead)
        case body(ArraySlice<UInt8>)
        /// The request (head and whole body) is complete; the parser is ready for the next one.
        case end
    }

    enum State: Equatable {
        case head
        case fixedBody(remaining: Int)
        case chunkSize
        case chunkData(remaining: Int)
        case chunkDataEnd
        case trailers
    }

    public let limits: HTTPLimits
    private var state = State.head
    private var pending: [UInt8] = []
    private var bodyReceived = 0
    /// How far the current head has been searched for its end: a head dripped in byte by byte
    /// costs linear time, not quadratic.
    private var headScanned = 0

    public init(limits: HTTPLimits = HTTPLimits()) {
        self.limits = limits
    }

    /// Between requests (nothing pending): a connection idle here may be closed without loss.
    public var isIdle: Bool { state == .head && pending.isEmpty }

    public mutating func feed(_ bytes: some Collection<UInt8>) throws(HTTPError) -> [Event] {
        pending.append(contentsOf: bytes)
        var events: [Event] = []
        while try step(&events) {}
        return events
    }

    private mutating func step(_ events: inout [Event]) throws(HTTPError) -> Bool {
        switch state {
        case .head:
            guard let end = Self.find([0x0D, 0x0A, 0x0D, 0x0A], in: pending, from: max(0, headScanned - 3)) else {
                headScanned = pending.count
                try checkPartialHead()
                return false
            }
            let head = try parseHead(pending[0..<end])
            pending.removeSubrange(0..<end + 4)
            headScanned = 0
            events.append(.head(head))
            bodyReceived = 0
            state = try bodyState(for: head)
            if state == .head { events.append(.end) }
            return true
        case .fixedBody(let remaining):
            if remaining == 0 {
                state = .head
                events.append(.end)
                return true
            }
            guard !pending.isEmpty else { return false }
            let n = min(remaining, pending.count)
            events.append(.body(pending[0..<n]))
            pending.removeSubrange(0..<n)
            state = .fixedBody(remaining: remaining - n)
            return true
        case .chunkSize:
            guard let lineEnd = Self.find([0x0D, 0x0A], in: pending) else {
                if pending.count > 1024 { throw HTTPError(400, "A chunk-size line is longer than 1024 bytes") }
                return false
            }
            let line = pending[0..<lineEnd]
            let sizeEnd = line.firstIndex(of: UInt8(ascii: ";")) ?? line.endIndex
            let digits = line[line.startIndex..<sizeEnd]
            guard !digits.isEmpty, digits.count <= 15, digits.allSatisfy({ Self.hexValue($0) != nil }) else {
                throw HTTPError(400, "Invalid chunk size \"\(String(decoding: digits.prefix(20), as: UTF8.self))\"")
            }
            let size = digits.reduce(0) { $0 << 4 | Int(Self.hexValue($1)!) }
            pending.removeSubrange(0..<lineEnd + 2)
            if size == 0 {
                state = .trailers
            } else {
                try account(size)
                state = .chunkData(remaining: size)
            }
            return true
        case .chunkData(let remaining):
            guard !pending.isEmpty else { return false }
            let n = min(remaining, pending.count)
            events.append(.body(pending[0..<n]))
            pending.removeSubrange(0..<n)
            state = remaining - n == 0 ? .chunkDataEnd : .chunkData(remaining: remaining - n)
            return true
        case .chunkDataEnd:
            guard pending.count >= 2 else { return false }
            guard pending[0] == 0x0D, pending[1] == 0x0A else { throw HTTPError(400, "A chunk's data is not followed by CRLF") }
            pending.removeSubrange(0..<2)
            state = .chunkSize
            return true
        case .trailers:
            // Trailer fields are read and ignored; they end with an empty line.
            if pending.count >= 2, pending[0] == 0x0D, pending[1] == 0x0A {
                pending.removeSubrange(0..<2)
                state = .head
                events.append(.end)
                return true
            }
            guard let end = Self.find([0x0D, 0x0A, 0x0D, 0x0A], in: pending) else {
                if pending.count > limits.headerBytes { throw HTTPError(431, "Trailer fields exceed \(limits.headerBytes) bytes") }
                return false
            }
            pending.removeSubrange(0..<end + 4)
            state = .head
            events.append(.end)
            return true
        }
    }

    private mutating func account(_ size: Int) throws(HTTPError) {
        bodyReceived += size
        if bodyReceived > limits.bodyBytes {
            throw HTTPError(413, "The body exceeds the limit of \(limits.bodyBytes) bytes")
        }
    }

    /// Limits apply before the head is complete: a slow or endless head is cut off early.
    private func checkPartialHead() throws(HTTPError) {
        let lineEnd = pending.count > limits.requestLineBytes ? (Self.find([0x0D, 0x0A], in: pending) ?? pending.count) : 0
        if lineEnd > limits.requestLineBytes { throw HTTPError(414, "The request line exceeds \(limits.requestLineBytes) bytes") }
        if pending.count > limits.requestLineBytes + limits.headerBytes {
            throw HTTPError(431, "The header fields exceed \(limits.headerBytes) bytes")
        }
    }

    private func parseHead(_ bytes: ArraySlice<UInt8>) throws(HTTPError) -> HTTPRequestHead {
        if bytes.contains(0x00) { throw HTTPError(400, "NUL in the request head") }
        var lines: [ArraySlice<UInt8>] = []
        var start = bytes.startIndex
        var i = bytes.startIndex
        while i < bytes.endIndex {
            if bytes[i] == 0x0D {
                guard i + 1 < bytes.endIndex, bytes[i + 1] == 0x0A else { throw HTTPError(400, "A bare CR in the request head") }
                lines.append(bytes[start..<i])
                i += 2
                start = i
                continue
            }
            if bytes[i] == 0x0A { throw HTTPError(400, "A line ends in LF without CR") }
            i += 1
        }
        lines.append(bytes[start..<bytes.endIndex])
        // RFC 9112 §2.2: a server SHOULD ignore at least one empty line before the request line.
        while let first = lines.first, first.isEmpty { lines.removeFirst() }
        guard let requestLine = lines.first else { throw HTTPError(400, "No request line") }
        if requestLine.count > limits.requestLineBytes { throw HTTPError(414, "The request line exceeds \(limits.requestLineBytes) bytes") }
        let parts = requestLine.split(separator: 0x20, omittingEmptySubsequences: false)
        guard parts.count == 3 else { throw HTTPError(400, "The request line is not METHOD TARGET VERSION") }
        let method = String(decoding: parts[0], as: UTF8.self)
        let target = String(decoding: parts[1], as: UTF8.self)
        let version = String(decoding: parts[2], as: UTF8.self)
        guard !method.isEmpty, method.utf8.allSatisfy(Self.isTokenCharacter) else { throw HTTPError(400, "Invalid method") }
        guard target.hasPrefix("/") || (target == "*" && method == "OPTIONS") else {
            throw HTTPError(400, "The target must be a path starting with /")
        }
        guard target.utf8.allSatisfy({ $0 > 0x20 && $0 < 0x7F }) else { throw HTTPError(400, "Invalid characters in the target") }
        guard version == "HTTP/1.1" || version == "HTTP/1.0" else {
            throw version.hasPrefix("HTTP/") ? HTTPError(505, "Only HTTP/1.1 and HTTP/1.0 are served") : HTTPError(400, "Invalid HTTP version")
        }
        var headers: [(name: String, value: String)] = []
        var total = 0
        for line in lines.dropFirst() {
            total += line.count + 2
            if total > limits.headerBytes { throw HTTPError(431, "The header fields exceed \(limits.headerBytes) bytes") }
            if line.first == 0x20 || line.first == 0x09 { throw HTTPError(400, "Folded header lines are not accepted") }
            guard let colon = line.firstIndex(of: UInt8(ascii: ":")) else { throw HTTPError(400, "A header line has no colon") }
            let name = line[line.startIndex..<colon]
            guard !name.isEmpty, name.allSatisfy(Self.isTokenCharacter) else {
                throw HTTPError(400, "Invalid header field name (no space is allowed before the colon)")
            }
            var value = line[(colon + 1)...]
            while let f = value.first, f == 0x20 || f == 0x09 { value = value.dropFirst() }
            while let l = value.last, l == 0x20 || l == 0x09 { value = value.dropLast() }
            headers.append((String(decoding: name, as: UTF8.self), String(decoding: value, as: UTF8.self)))
            if headers.count > limits.headerCount { throw HTTPError(431, "More than \(limits.headerCount) header fields") }
        }
        if version == "HTTP/1.1" && !headers.contains(where: { $0.name.lowercased() == "host" }) {
            throw HTTPError(400, "HTTP/1.1 requests must carry Host")
        }
        return HTTPRequestHead(method: method, target: target, version: version, headers: headers)
    }

    /// How the body is framed (RFC 9112 §6.3).
    private mutating func bodyState(for head: HTTPRequestHead) throws(HTTPError) -> State {
        let encodings = head.values("Transfer-Encoding")
        let lengths = head.values("Content-Length")
        if !encodings.isEmpty {
            if !lengths.isEmpty { throw HTTPError(400, "Both Transfer-Encoding and Content-Length") }
            let codings = encodings.flatMap { $0.lowercased().split(separator: ",").map { $0.trimmingCharacters(in: " \t") } }
            guard codings == ["chunked"] else {
                throw codings.last == "chunked"
                    ? HTTPError(501, "Transfer codings other than chunked are not supported")
                    : HTTPError(400, "The last transfer coding must be chunked")
            }
            if head.version == "HTTP/1.0" { throw HTTPError(400, "Transfer-Encoding in an HTTP/1.0 request") }
            return .chunkSize
        }
        guard !lengths.isEmpty else { return .head }
        let values = Set(lengths.flatMap { $0.split(separator: ",").map { $0.trimmingCharacters(in: " \t") } })
        guard values.count == 1, let text = values.first, !text.isEmpty, text.count <= 18, text.allSatisfy({ $0.isASCII && $0.isNumber }),
            let length = Int(text)
        else {
            throw HTTPError(400, "Invalid Content-Length")
        }
        if length > limits.bodyBytes { throw HTTPError(413, "The body (\(length) bytes) exceeds the limit of \(limits.bodyBytes) bytes") }
        bodyReceived = length
        return .fixedBody(remaining: length)
    }

    static func isTokenCharacter(_ c: UInt8) -> Bool {
        // RFC 9110 §5.6.2 tchar.
        if (c >= 0x30 && c <= 0x39) || (c >= 0x41 && c <= 0x5A) || (c >= 0x61 && c <= 0x7A) { return true }
        return Array("!#$%&'*+-.^_`|~".utf8).contains(c)
    }

    static func hexValue(_ c: UInt8) -> UInt8? {
        switch c {
        case 0x30...0x39: return c - 0x30
        case 0x41...0x46: return c - 0x41 + 10
        case 0x61...0x66: return c - 0x61 + 10
        default: return nil
        }
    }

    static func find(_ needle: [UInt8], in haystack: [UInt8], from start: Int = 0) -> Int? {
        firstIndex(of: needle, in: haystack, from: start)
    }
}

