/// A forward-only window over a `ByteSource`, the reader's only way to the bytes.
///
/// It reads the source in chunks, starting small (a DICOM header is usually a few KiB, and the
/// reader must not touch the megabytes of pixel data behind it) and growing only when the parser
/// asks for more. Slices handed out (`take`) keep their chunk alive, so values stay valid after the
/// window moves on, and nothing is copied twice.
///
/// Every `request` is checked against what the source says remains, so a corrupt length of 4 GiB
/// costs a comparison, not an allocation.
final class ByteStream {
    private(set) var buffer: [UInt8]
    /// Stream offset of `buffer[0]`.
    private(set) var bufferStart = 0
    /// Read position, an index into `buffer`.
    private(set) var position = 0
    private var source: (any ByteSource)?
    private var nextChunk: Int
    private static let largestChunk = 1 << 20

    /// A stream over a source, read on demand.
    init(source: any ByteSource, initialChunk: Int) {
        buffer = []
        self.source = source
        nextChunk = max(initialChunk, 16)
    }

    /// A stream over bytes already in memory: nothing is copied.
    init(bytes: [UInt8]) {
        buffer = bytes
        source = nil
        nextChunk = 0
    }

    /// Offset of the read position from the start of the stream.
    @inline(__always) var offset: Int { bufferStart + position }
    @inline(__always) var available: Int { buffer.count - position }

    /// Bytes left in the whole stream, when known.
    var remaining: Int? {
        guard let source else { return available }
        return source.remaining.map { $0 + available }
    }

    /// Makes `count` bytes available at the read position; false if the stream ends first.
    @inline(__always) func request(_ count: Int) throws(DICOMError) -> Bool {
        if buffer.count - position >= count { return true }
        return try refill(count)
    }

    private func refill(_ count: Int) throws(DICOMError) -> Bool {
        guard var source else { return false }
        let kept = buffer.count - position
        var target = max(count, kept + nextChunk)
        if let left = source.remaining {
            if left + kept < count { return false }
            // Small files are read whole in one call: one read instead of two.
            target = left + kept <= 2 * max(nextChunk, count) ? left + kept : min(target, left + kept)
        }
        nextChunk = min(nextChunk * 2, Self.largestChunk)
        var fresh = [UInt8](repeating: 0, count: target)
        if kept > 0 {
            fresh.withUnsafeMutableBytes { to in
                buffer.withUnsafeBytes { from in
                    to.baseAddress!.copyMemory(from: from.baseAddress! + position, byteCount: kept)
                }
            }
        }
        var filled = kept
        var failure: DICOMError?
        fresh.withUnsafeMutableBytes { to in
            while filled < target {
                do {
                    let n = try source.read(into: UnsafeMutableRawBufferPointer(rebasing: to[filled..<target]))
                    if n == 0 { break }
                    filled += n
                } catch let error as DICOMError {
                    failure = error
                    break
                } catch {
                    failure = DICOMError(.io, "\(error)")
                    break
                }
            }
        }
        self.source = source
        if let failure { throw failure }
        if filled < target { fresh.removeSubrange(filled...) }
        bufferStart += position
        position = 0
        buffer = fresh
        return filled >= count
    }

    @inline(__always) func uint16(at delta: Int, _ order: ByteOrder) -> UInt16 {
        let raw = buffer.withUnsafeBytes { $0.loadUnaligned(fromByteOffset: position + delta, as: UInt16.self) }
        return order == .littleEndian ? UInt16(littleEndian: raw) : UInt16(bigEndian: raw)
    }

    @inline(__always) func uint32(at delta: Int, _ order: ByteOrder) -> UInt32 {
        let raw = buffer.withUnsafeBytes { $0.loadUnaligned(fromByteOffset: position + delta, as: UInt32.self) }
        return order == .littleEndian ? UInt32(littleEndian: raw) : UInt32(bigEndian: raw)
    }

    @inline(__always) func byte(at delta: Int) -> UInt8 { buffer[position + delta] }

    /// Advances over bytes already requested.
    @inline(__always) func consume(_ count: Int) { position += count }

    /// The next `count` bytes (already requested) as a slice sharing the buffer.
    @inline(__always) func take(_ count: Int) -> ArraySlice<UInt8> {
        let slice = buffer[position..<position + count]
        position += count
        return slice
    }

    /// Skips `count` bytes, reading past them only if the source cannot seek; false if the
    /// stream ends first.
    func skip(_ count: Int) throws(DICOMError) -> Bool {
        if available >= count {
            position += count
            return true
        }
        let beyond = count - available
        bufferStart += buffer.count
        buffer = []
        position = 0
        guard var source else { return false }
        let skipped = try source.skip(beyond)
        self.source = source
        bufferStart += skipped
        return skipped == beyond
    }

    /// Replaces what follows the read position with `transform(rest)`, where `rest` yields the
    /// unread bytes: used to inflate a deflated data set. Offsets restart at 0.
    func replaceRemainder(_ transform: (any ByteSource) throws(DICOMError) -> any ByteSource) throws(DICOMError) {
        let unread = MemoryByteSource(buffer[position...])
        let rest: any ByteSource = source.map { ChainedByteSource(first: unread, second: $0) } ?? unread
        source = try transform(rest)
        buffer = []
        position = 0
        bufferStart = 0
        nextChunk = max(nextChunk, 8192)
    }
}

/// One source after another: the buffered head of a file, then the rest of it.
struct ChainedByteSource: ByteSource {
    var first: any ByteSource
    var second: any ByteSource
    private var firstDone = false

    init(first: any ByteSource, second: any ByteSource) {
        self.first = first
        self.second = second
    }

    var remaining: Int? {
        guard let b = second.remaining else { return nil }
        if firstDone { return b }
        return first.remaining.map { $0 + b }
    }

    mutating func read(into buffer: UnsafeMutableRawBufferPointer) throws(DICOMError) -> Int {
        if !firstDone {
            let n = try first.read(into: buffer)
            if n > 0 { return n }
            firstDone = true
        }
        return try second.read(into: buffer)
    }

    mutating func skip(_ count: Int) throws(DICOMError) -> Int {
        var done = 0
        if !firstDone {
            done = try first.skip(count)
            if done == count { return done }
            firstDone = true
        }
        return done + (try second.skip(count - done))
    }
}
