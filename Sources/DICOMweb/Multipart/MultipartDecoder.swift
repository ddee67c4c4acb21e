import HTTP

/// Decodes a multipart body (RFC 2046 §5.1; DICOMweb's multipart/related, PS3.18 §8.6) as it
/// streams in, with memory bounded by the part headers and the delimiter, never by the parts.
///
/// A state machine that does no I/O: `feed` takes the next bytes as they arrived (split anywhere,
/// one byte at a time if need be) and returns what it found; the caller writes part bodies where
/// it likes (to files, for DICOM instances). `finish` says the body ended and checks it ended well.
///
/// Tolerated, as real peers send them: a preamble before the first boundary, transport padding
/// (spaces, tabs) after a boundary, an epilogue after the closing one, a missing CRLF at the very
/// end. Refused with `MultipartError`: no boundary at all, a part whose headers do not end within
/// `maximumHeaderBytes`, a body that ends inside a part or before the closing boundary.
public struct MultipartDecoder {
    public enum Event: Equatable {
        /// A part begins; its header fields, names lower-cased.
        case partBegin(headers: [(name: String, value: String)])
        /// The next bytes of the current part's body.
        case partData(ArraySlice<UInt8>)
        case partEnd
        /// The closing boundary: the body is complete.
        case end

        public static func == (a: Event, b: Event) -> Bool {
            switch (a, b) {
            case (.partBegin(let x), .partBegin(let y)): return x.map { "\($0.name):\($0.value)" } == y.map { "\($0.name):\($0.value)" }
            case (.partData(let x), .partData(let y)): return x == y
            case (.partEnd, .partEnd), (.end, .end): return true
            default: return false
            }
        }
    }

    enum State {
        /// Before the first boundary.
        case preamble
        /// Just after a boundary: "--" (the close), or padding and CRLF (a part follows).
        case afterBoundary
        case headers
        case body
        case epilogue
    }

    public let boundary: String
    public let maximumHeaderBytes: Int
    /// "\r\n--boundary": what ends a part's body.
    private let delimiter: [UInt8]
    private var state = State.preamble
    /// Bytes received but not yet decided on: at most a delimiter's length in a body, or the
    /// headers of a part so far.
    private var pending: [UInt8] = []
    private var partsSeen = 0
    /// Total bytes fed, for error messages.
    private var offset = 0

    public init(boundary: String, maximumHeaderBytes: Int = 16 * 1024) {
        self.boundary = boundary
        self.maximumHeaderBytes = maximumHeaderBytes
        delimiter = Array("\r\n--\(boundary)".utf8)
        // The first boundary may open the body without a CRLF before it: pretend there was one.
        pending = [0x0D, 0x0A]
    }

    public var isComplete: Bool { state == .epilogue }
    /// Bytes held back between feeds (a possible start of the delimiter, an unfinished part
    /// header): what the decoder's memory is, whatever the size of the parts.
    public var heldBytes: Int { pending.count }

    /// Consumes the next bytes of the body; returns the events they complete.
    public mutating func feed(_ bytes: some Collection<UInt8>) throws(MultipartError) -> [Event] {
        try feedCopying(bytes)
    }

    private mutating func feedCopying(_ bytes: some Collection<UInt8>) throws(MultipartError) -> [Event] {
        pending.append(contentsOf: bytes)
        offset += bytes.count
        var events: [Event] = []
        var progress = true
        while progress {
            progress = try step(&events)
        }
        return events
    }

    /// The same, for bytes that arrive as an array slice (a server's request body): inside a
    /// part, the bytes are searched where they lie and handed on as slices of themselves, and
    /// only a tail shorter than the delimiter is kept. Copying every byte into `pending` first was
    /// a copy of each received instance and an allocation per piece.
    public mutating func feed(_ bytes: ArraySlice<UInt8>) throws(MultipartError) -> [Event] {
        let keep = delimiter.count - 1
        guard state == .body, pending.count <= keep, bytes.count > keep else { return try feedCopying(bytes) }
        // A delimiter that begins in the kept tail ends within the first `keep` new bytes: if
        // there is one, let the general path take it (once a part, at most).
        if !pending.isEmpty {
            let joined = pending + bytes.prefix(keep)
            if let at = firstIndex(of: delimiter, in: joined), at < pending.count {
                return try feedCopying(bytes)
            }
        }
        offset += bytes.count
        var events: [Event] = []
        if !pending.isEmpty { events.append(.partData(pending[...])) }
        let found = bytes.withUnsafeBytes { firstIndex(of: delimiter, in: $0) }
        let safe = found ?? bytes.count - keep  // offsets from bytes.startIndex
        if safe > 0 { events.append(.partData(bytes[bytes.startIndex..<bytes.startIndex + safe])) }
        pending = Array(bytes[(bytes.startIndex + safe)...])
        if found != nil {
            // The delimiter is at the start of `pending` now: the machine takes it from there.
            var progress = true
            while progress { progress = try step(&events) }
        }
        return events
    }

    /// Says the body has ended: an error unless the closing boundary was seen (a missing final
    /// CRLF after it is fine).
    public mutating func finish() throws(MultipartError) -> [Event] {
        var events = try feed([])
        if state == .afterBoundary, pending.count >= 2, pending[0] == 0x2D, pending[1] == 0x2D {
            state = .epilogue
            events.append(.end)
        }
        switch state {
        case .epilogue: return events
        case .preamble: throw MultipartError("The body has no boundary \"--\(boundary)\"", offset: offset)
        case .body, .headers: throw MultipartError("The body ends inside part \(partsSeen) (truncated)", offset: offset)
        case .afterBoundary: throw MultipartError("The body ends without its closing boundary \"--\(boundary)--\"", offset: offset)
        }
    }

    /// One step of the machine; false when it needs more bytes.
    private mutating func step(_ events: inout [Event]) throws(MultipartError) -> Bool {
        switch state {
        case .preamble:
            if let at = find(delimiter, in: pending) {
                pending.removeSubrange(0..<at + delimiter.count)
                state = .afterBoundary
                return true
            }
            // Keep only what could still be the start of the delimiter.
            if pending.count > delimiter.count { pending.removeSubrange(0..<pending.count - delimiter.count) }
            return false
        case .afterBoundary:
            guard pending.count >= 2 else { return false }
            if pending[0] == 0x2D && pending[1] == 0x2D {
                state = .epilogue
                pending.removeAll()
                events.append(.end)
                return true
            }
            // Transport padding (RFC 2046: linear white space), then CRLF.
            var i = 0
            while i < pending.count, pending[i] == 0x20 || pending[i] == 0x09 { i += 1 }
            guard i + 1 < pending.count else {
                if i > 256 { throw MultipartError("Too much padding after a boundary", offset: offset) }
                return false
            }
            guard pending[i] == 0x0D, pending[i + 1] == 0x0A else {
                throw MultipartError("A boundary is followed by something other than a line end", offset: offset - pending.count + i)
            }
            pending.removeSubrange(0..<i + 2)
            state = .headers
            return true
        case .headers:
            // An empty header block is allowed: the part starts with CRLF.
            if pending.count >= 2, pending[0] == 0x0D, pending[1] == 0x0A {
                pending.removeSubrange(0..<2)
                partsSeen += 1
                events.append(.partBegin(headers: []))
                state = .body
                return true
            }
            guard let end = find([0x0D, 0x0A, 0x0D, 0x0A], in: pending) else {
                if pending.count > maximumHeaderBytes {
                    throw MultipartError("Part \(partsSeen + 1)'s headers are longer than \(maximumHeaderBytes) bytes", offset: offset)
                }
                return false
            }
            let headers = try Self.parseHeaders(pending[0..<end], offset: offset)
            pending.removeSubrange(0..<end + 4)
            partsSeen += 1
            events.append(.partBegin(headers: headers))
            state = .body
            return true
        case .body:
            if let at = find(delimiter, in: pending) {
                if at > 0 { events.append(.partData(pending[0..<at])) }
                events.append(.partEnd)
                pending.removeSubrange(0..<at + delimiter.count)
                state = .afterBoundary
                return true
            }
            // Hand over everything that cannot be the start of a delimiter.
            let safe = pending.count - (delimiter.count - 1)
            if safe > 0 {
                events.append(.partData(pending[0..<safe]))
                pending.removeSubrange(0..<safe)
            }
            return false
        case .epilogue:
            pending.removeAll()
            return false
        }
    }

    static func parseHeaders(_ bytes: ArraySlice<UInt8>, offset: Int) throws(MultipartError) -> [(name: String, value: String)] {
        var headers: [(String, String)] = []
        let text = String(decoding: bytes, as: UTF8.self)
        for line in text.split(separator: "\r\n", omittingEmptySubsequences: true) {
            guard let colon = line.firstIndex(of: ":") else {
                throw MultipartError("A part header line has no colon: \"\(line.prefix(80))\"", offset: offset)
            }
            let name = line[..<colon].trimmingCharacters(in: " \t").lowercased()
            let value = line[line.index(after: colon)...].trimmingCharacters(in: " \t")
            headers.append((name, value))
        }
        return headers
    }

    private func find(_ needle: [UInt8], in haystack: [UInt8]) -> Int? { firstIndex(of: needle, in: haystack) }
}

/// A multipart body that is not well formed, and where.
public struct MultipartError: Error, Equatable, CustomStringConvertible {
    public var message: String
    public var offset: Int
    public init(_ message: String, offset: Int) {
        self.message = message
        self.offset = offset
    }
    public var description: String { "\(message) (at byte \(offset) of the body)" }
}

