internal import CZlib

/// Inflates a raw deflate stream (RFC 1951, no zlib or gzip wrapper), as the Deflated Explicit VR
/// Little Endian transfer syntax requires (PS3.5 §A.5), from another source, on demand: only as
/// much is inflated as the reader asks for, so a header-only read of a deflated file does not
/// inflate its pixel data.
final class InflatingByteSource: ByteSource {
    private var input: any ByteSource
    // zlib keeps a pointer back to its z_stream inside its state: the stream must not move, so it
    // lives in memory of its own rather than in a Swift property.
    private let stream: UnsafeMutablePointer<z_stream>
    private let inputBuffer: UnsafeMutableRawBufferPointer
    private var inputEnded = false
    private var finished = false
    /// Offset of the deflated stream in the file, for error messages.
    private let baseOffset: Int
    /// A stream that stops before its final block is an error (a structural check), rather than
    /// handing over what was inflated for the parser to judge (a header read).
    private let strict: Bool

    init(wrapping input: any ByteSource, baseOffset: Int, strict: Bool = false) throws(DICOMError) {
        self.input = input
        self.baseOffset = baseOffset
        self.strict = strict
        stream = .allocate(capacity: 1)
        stream.initialize(to: z_stream())
        inputBuffer = .allocate(byteCount: 64 * 1024, alignment: 16)
        // inflateInit2 is a macro; its function form takes the library version and struct size
        // so zlib can check we were compiled against a compatible header. -15: raw deflate.
        let status = inflateInit2_(stream, -15, zlibVersion(), Int32(MemoryLayout<z_stream>.size))
        if status != Z_OK {
            stream.deallocate()
            inputBuffer.deallocate()
            throw DICOMError(.inflateFailed, "Cannot start inflating (zlib status \(status))", offset: baseOffset)
        }
    }

    deinit {
        inflateEnd(stream)
        stream.deinitialize(count: 1)
        stream.deallocate()
        inputBuffer.deallocate()
    }

    var remaining: Int? { nil }

    func read(into buffer: UnsafeMutableRawBufferPointer) throws(DICOMError) -> Int {
        if finished || buffer.count == 0 { return 0 }
        stream.pointee.next_out = buffer.baseAddress!.assumingMemoryBound(to: Bytef.self)
        stream.pointee.avail_out = uInt(min(buffer.count, Int(UInt32.max)))
        while stream.pointee.avail_out > 0 {
            if stream.pointee.avail_in == 0 && !inputEnded {
                let n = try input.read(into: inputBuffer)
                if n == 0 {
                    inputEnded = true
                } else {
                    stream.pointee.next_in = inputBuffer.baseAddress!.assumingMemoryBound(to: Bytef.self)
                    stream.pointee.avail_in = uInt(n)
                }
            }
            let status = inflate(stream, Z_NO_FLUSH)
            if status == Z_STREAM_END {
                finished = true
                break
            }
            if status == Z_BUF_ERROR && inputEnded {
                // The deflated stream stops without its final block: a truncated file. Hand over
                // what was inflated; the parser reports the truncation where it needs more.
                // A structural check refuses it here: the last bytes lost may be only the final
                // block's end, with every element already inflated.
                if strict {
                    throw DICOMError(
                        .truncated, "The deflated data set stops before its final block (inflated \(stream.pointee.total_out) bytes)",
                        offset: Int(stream.pointee.total_out))
                }
                finished = true
                break
            }
            if status != Z_OK && status != Z_BUF_ERROR {
                let reason = stream.pointee.msg.map { String(cString: $0) } ?? "zlib status \(status)"
                throw DICOMError(
                    .inflateFailed, "Deflated data set does not inflate: \(reason)",
                    offset: Int(stream.pointee.total_out))
            }
        }
        return buffer.count - Int(stream.pointee.avail_out)
    }

    func skip(_ count: Int) throws(DICOMError) -> Int {
        var skipped = 0
        let scratch = UnsafeMutableRawBufferPointer.allocate(byteCount: 64 * 1024, alignment: 16)
        defer { scratch.deallocate() }
        while skipped < count {
            let want = min(count - skipped, scratch.count)
            let n = try read(into: UnsafeMutableRawBufferPointer(rebasing: scratch[0..<want]))
            if n == 0 { break }
            skipped += n
        }
        return skipped
    }
}
