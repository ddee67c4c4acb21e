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
    /// Never mutated in place, only replaced (every replacement goes through `setBuffer`).
    private(set) var buffer: [UInt8]
    /// The address of `buffer`'s bytes, for the header loads of the element loop. Reading them
    /// through `buffer.withUnsafeBytes` cost a retain and a release of the array per element (a
    /// class property may be replaced during the closure), a quarter of the parser's time. The
    /// address is stable because `buffer` is only ever replaced whole, never mutated, and this
    /// object holds it alive for as long as the address is used.
    private var base: UnsafeRawPointer?
    /// `buffer.count`, kept beside it for the same reason.
    private var count = 0
    /// Stream offset of `buffer[0]`.
    private(set) var bufferStart = 0
    /// Read position, an index into `buffer`.
    private(set) var position = 0
    private var source: (any ByteSource)?
    /// The source said it has nothing more.
    private var sourceEnded = false
    private var nextChunk: Int
    private static let largestChunk = 1 << 20
    /// Length of the whole stream, once known: kept here so that bounds checks are subtractions.
    private var streamLength: Int?
    /// The rest of the stream is not the file's bytes but what they became (inflated): offsets
    /// from here on are in the inflated data set.
    private(set) var isTransformed = false

    /// A stream over a source, read on demand.
    init(source: any ByteSource, initialChunk: Int) {
        buffer = []
        self.source = source
        nextChunk = max(initialChunk, 16)
    }

    private func setBuffer(_ bytes: [UInt8]) {
        buffer = bytes
        base = buffer.withUnsafeBytes { $0.baseAddress }
        count = buffer.count
    }

    /// A stream over bytes already in memory: nothing is copied.
    init(bytes: [UInt8]) {
        buffer = []
        source = nil
        streamLength = bytes.count
        sourceEnded = true
        nextChunk = 0
        setBuffer(bytes)
    }

    /// Offset of the read position from the start of the stream.
    @inline(__always) var offset: Int { bufferStart + position }
    @inline(__always) var available: Int { count - position }

    /// Bytes left in the whole stream, when the source can tell (a file can; an inflating
    /// stream cannot until it ends).
    var remaining: Int? {
        if streamLength == nil, let left = source?.remaining { streamLength = bufferStart + buffer.count + left }
        return streamLength.map { $0 - offset }
    }

    /// Whether `count` bytes can remain at the read position: true unless the stream is known to
    /// be shorter. Cheap when the bytes are already buffered.
    @inline(__always) func mayHave(_ count: Int) -> Bool {
        if count <= available { return true }
        guard let left = remaining else { return true }
        return count <= left
    }

    /// Makes `count` bytes available at the read position; false if the stream ends first.
    @inline(__always) func request(_ count: Int) throws(DICOMError) -> Bool {
        if self.count - position >= count { return true }
        return try refill(count)
    }

    private func refill(_ count: Int) throws(DICOMError) -> Bool {
        guard !sourceEnded, var source else { return false }
        let kept = buffer.count - position
        // At least what is asked for; else the next chunk (growing, so a long header costs few
        // reads), but never more than the source has. The size is asked for only when the request
        // is larger than a chunk: a corrupt length must cost a comparison, not an allocation.
        var target = max(count, kept + nextChunk)
        if count > kept + nextChunk || streamLength != nil {
            if let left = remaining {
                if left < count { return false }
                target = min(target, left)
            } else if count > kept + Self.largestChunk {
                return try refillGrowing(count)
            }
        }
        nextChunk = min(nextChunk * 2, Self.largestChunk)
        var failure: DICOMError?
        var ended = false
        let position = self.position
        let fresh = buffer.withUnsafeBytes { old in
            // Uninitialised capacity: every byte handed out below is one the source wrote.
            [UInt8](unsafeUninitializedCapacity: target) { to, initialized in
                let raw = UnsafeMutableRawBufferPointer(to)
                if kept > 0 { raw.baseAddress!.copyMemory(from: old.baseAddress! + position, byteCount: kept) }
                var filled = kept
                while filled < count || (filled < target && filled == kept) {
                    do {
                        let n = try source.read(into: UnsafeMutableRawBufferPointer(rebasing: raw[filled..<target]))
                        if n == 0 {
                            ended = true
                            break
                        }
                        filled += n
                    } catch let error as DICOMError {
                        failure = error
                        break
                    } catch {
                        failure = DICOMError(.io, "\(error)")
                        break
                    }
                }
                initialized = filled
            }
        }
        self.source = source
        if let failure { throw failure }
        bufferStart += position
        self.position = 0
        setBuffer(fresh)
        if ended {
            sourceEnded = true
            streamLength = bufferStart + buffer.count
        }
        return buffer.count >= count
    }

    /// For sources of unknown length (an inflating stream): grows with the bytes that actually
    /// arrive, so memory stays bounded by the real data however large `count` claims to be.
    private func refillGrowing(_ count: Int) throws(DICOMError) -> Bool {
        guard var source else { return false }
        var grown = Array(buffer[position...])
        let chunk = UnsafeMutableRawBufferPointer.allocate(byteCount: Self.largestChunk, alignment: 16)
        defer { chunk.deallocate() }
        while grown.count < count {
            let n = try source.read(into: chunk)
            if n == 0 {
                sourceEnded = true
                break
            }
            grown.append(contentsOf: UnsafeRawBufferPointer(rebasing: chunk[0..<n]))
        }
        self.source = source
        bufferStart += position
        position = 0
        setBuffer(grown)
        if sourceEnded { streamLength = bufferStart + buffer.count }
        return buffer.count >= count
    }

    // The loads below read bytes already requested (`request` said they are in the buffer).

    @inline(__always) func uint16(at delta: Int, _ order: ByteOrder) -> UInt16 {
        let raw = base!.loadUnaligned(fromByteOffset: position + delta, as: UInt16.self)
        return order == .littleEndian ? UInt16(littleEndian: raw) : UInt16(bigEndian: raw)
    }

    @inline(__always) func uint32(at delta: Int, _ order: ByteOrder) -> UInt32 {
        let raw = base!.loadUnaligned(fromByteOffset: position + delta, as: UInt32.self)
        return order == .littleEndian ? UInt32(littleEndian: raw) : UInt32(bigEndian: raw)
    }

    @inline(__always) func byte(at delta: Int) -> UInt8 { base!.load(fromByteOffset: position + delta, as: UInt8.self) }

    /// The next 8 bytes (already requested) in one load: an element or item header.
    @inline(__always) func header() -> ElementHeader {
        let raw = base!.loadUnaligned(fromByteOffset: position, as: UInt64.self)
        return ElementHeader(raw: UInt64(littleEndian: raw))
    }

    /// Advances over bytes already requested.
    @inline(__always) func consume(_ count: Int) { position += count }

    /// The next `count` bytes (already requested, at most `InlineBytes.capacity`) copied out.
    @inline(__always) func takeInline(_ count: Int) -> InlineBytes {
        let bytes = InlineBytes(copying: base! + position, count: count)
        position += count
        return bytes
    }

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
        setBuffer([])
        position = 0
        guard !sourceEnded, var source else { return false }
        let skipped = try source.skip(beyond)
        self.source = source
        bufferStart += skipped
        // After a seek over bulk data comes an element or fragment header: read small again, or
        // checking an encapsulated image's fragments would read most of the file.
        nextChunk = min(nextChunk, 1024)
        if skipped < beyond {
            sourceEnded = true
            streamLength = bufferStart
        }
        return skipped == beyond
    }

    /// Replaces what follows the read position with `transform(rest)`, where `rest` yields the
    /// unread bytes: used to inflate a deflated data set. Offsets restart at 0.
    func replaceRemainder(_ transform: (any ByteSource) throws(DICOMError) -> any ByteSource) throws(DICOMError) {
        let unread = MemoryByteSource(buffer[position...])
        let rest: any ByteSource = source.map { ChainedByteSource(first: unread, second: $0) } ?? unread
        let transformed = try transform(rest)
        isTransformed = true
        source = transformed
        streamLength = nil
        sourceEnded = false
        setBuffer([])
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

/// The first 8 bytes of an element or item header, decoded on demand with shifts: one memory load
/// per element instead of five (PS3.5 §7.1.1–7.1.3 layouts).
struct ElementHeader {
    let raw: UInt64

    @inline(__always) func group(_ order: ByteOrder) -> UInt16 {
        let v = UInt16(truncatingIfNeeded: raw)
        return order == .littleEndian ? v : v.byteSwapped
    }
    @inline(__always) func element(_ order: ByteOrder) -> UInt16 {
        let v = UInt16(truncatingIfNeeded: raw >> 16)
        return order == .littleEndian ? v : v.byteSwapped
    }
    @inline(__always) func tag(_ order: ByteOrder) -> Tag { Tag(group(order), element(order)) }
    /// Bytes 4–5: the VR letters of an explicit VR header.
    @inline(__always) var vr: VR { VR(UInt8(truncatingIfNeeded: raw >> 32), UInt8(truncatingIfNeeded: raw >> 40)) }
    /// Bytes 6–7: the length of an explicit VR header with a 2-byte length.
    @inline(__always) func shortLength(_ order: ByteOrder) -> UInt16 {
        let v = UInt16(truncatingIfNeeded: raw >> 48)
        return order == .littleEndian ? v : v.byteSwapped
    }
    /// Bytes 4–7: the length of an implicit VR header or of an item.
    @inline(__always) func length(_ order: ByteOrder) -> UInt32 {
        let v = UInt32(truncatingIfNeeded: raw >> 32)
        return order == .littleEndian ? v : v.byteSwapped
    }
}
