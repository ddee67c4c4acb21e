/// Cuts PDUs out of a byte stream however it arrives (a byte at a time, or many PDUs at once),
/// with the limit on a PDU's size explicit: a peer announcing a PDU larger than `maximumLength`
/// is refused before its body is read, so it cannot make the reader hold more than that.
public struct PDUReader: Sendable {
    /// The largest PDU body this side takes (what it announced as its maximum length, plus the
    /// association PDUs' own, which carry no data: 64 kB is ample for those).
    public let maximumLength: Int
    private var buffer: [UInt8] = []
    private var start = 0

    public init(maximumLength: Int) {
        self.maximumLength = maximumLength
    }

    /// Bytes read from the connection.
    public mutating func append(_ bytes: some Sequence<UInt8>) { buffer.append(contentsOf: bytes) }

    /// Bytes held and not yet a whole PDU.
    public var pending: Int { buffer.count - start }

    /// The next whole PDU, or nil until its bytes are all there.
    public mutating func next() throws(PDUError) -> PDU? {
        guard buffer.count - start >= 6 else { return nil }
        let type = buffer[start]
        let length = Int(buffer[start + 2]) << 24 | Int(buffer[start + 3]) << 16 | Int(buffer[start + 4]) << 8 | Int(buffer[start + 5])
        let limit = type == PDU.Kind.data.rawValue ? maximumLength : max(maximumLength, 65_536)
        guard length <= limit else { throw PDUError("a PDU of type 0x\(hex(type)) of \(length) bytes, over the limit of \(limit)") }
        guard buffer.count - start >= 6 + length else { return nil }
        let body = Array(buffer[(start + 6)..<(start + 6 + length)])
        start += 6 + length
        // What has been read is let go now and then, not at every PDU.
        if start > 1 << 20 || start == buffer.count {
            buffer.removeFirst(start)
            start = 0
        }
        return try PDU.decode(type: type, body: body)
    }
}
