#if canImport(Glibc)
    import Glibc
#endif

/// Where the reader's bytes come from: a file, a buffer, or an inflating wrapper around either.
///
/// Reading is strictly sequential (DICOM never needs to look back), so a source only reads
/// forward and skips forward.
protocol ByteSource {
    /// Reads up to `buffer.count` bytes; returns 0 at the end.
    mutating func read(into buffer: UnsafeMutableRawBufferPointer) throws(DICOMError) -> Int
    /// Skips `count` bytes without handing them over; returns how many were skipped (fewer at the end).
    mutating func skip(_ count: Int) throws(DICOMError) -> Int
    /// Bytes left to read, when the source knows (a file does; an inflating stream does not).
    var remaining: Int? { get }
}

/// Reads a file through its descriptor, which it owns and closes.
///
/// The file's size is asked of the kernel (fstat) only when a caller needs it: a header that fits
/// in the first read never needs it, and the saved system call is a tenth of a small file's cost.
final class FileByteSource: ByteSource {
    /// Open for reading while this object lives; the identity rewrite copies ranges of it with pread.
    let descriptor: Int32
    private var position: Int = 0
    private var knownSize: Int?
    let path: String
    /// Bytes handed over by read(2) so far (not those skipped by seeking): how tests show that a
    /// header read, or a structural check, does not read the pixel data.
    private(set) var bytesRead = 0

    init(path: String) throws(DICOMError) {
        self.path = path
        let fd = open(path, O_RDONLY | O_CLOEXEC)
        if fd < 0 { throw DICOMError(.io, "Cannot open \(path): \(errnoText())") }
        descriptor = fd
    }

    deinit { close(descriptor) }

    var size: Int {
        if let knownSize { return knownSize }
        var info = stat()
        let size = fstat(descriptor, &info) == 0 ? Int(info.st_size) : position
        knownSize = size
        return size
    }

    var remaining: Int? { max(0, size - position) }

    func read(into buffer: UnsafeMutableRawBufferPointer) throws(DICOMError) -> Int {
        while true {
            let n = Glibc.read(descriptor, buffer.baseAddress, buffer.count)
            if n >= 0 {
                position += n
                bytesRead += n
                return n
            }
            if errno == EINTR { continue }
            if errno == EISDIR { throw DICOMError(.io, "\(path) is a directory") }
            throw DICOMError(.io, "Cannot read \(path): \(errnoText())", offset: position)
        }
    }

    func skip(_ count: Int) throws(DICOMError) -> Int {
        let step = min(count, max(0, size - position))
        if lseek(descriptor, off_t(position + step), SEEK_SET) < 0 {
            throw DICOMError(.io, "Cannot seek in \(path): \(errnoText())", offset: position)
        }
        position += step
        return step
    }
}

/// Serves bytes from memory (used for data already read, such as a deflated stream's input,
/// and by the in-memory `DICOMFile.read(bytes:)`).
struct MemoryByteSource: ByteSource {
    let bytes: ArraySlice<UInt8>
    var position: Int

    init(_ bytes: ArraySlice<UInt8>) {
        self.bytes = bytes
        position = bytes.startIndex
    }

    var remaining: Int? { bytes.endIndex - position }

    mutating func read(into buffer: UnsafeMutableRawBufferPointer) throws(DICOMError) -> Int {
        let n = min(buffer.count, bytes.endIndex - position)
        if n > 0 {
            bytes.withUnsafeBytes { source in
                let start = position - bytes.startIndex
                buffer.baseAddress!.copyMemory(from: source.baseAddress! + start, byteCount: n)
            }
            position += n
        }
        return n
    }

    mutating func skip(_ count: Int) throws(DICOMError) -> Int {
        let n = min(count, bytes.endIndex - position)
        position += n
        return n
    }
}

func errnoText(_ code: Int32 = errno) -> String {
    String(cString: strerror(code))
}
