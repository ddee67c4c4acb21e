import DICOM
import HTTP

#if canImport(Glibc)
    import Glibc
#endif

/// Writes multipart/related bodies (RFC 2387; PS3.18 §8.6.1.2): the framing around each part,
/// and a body that streams its parts from files in fixed-size reads (`MultipartFileBody`).
public struct MultipartEncoder: Sendable {
    public let boundary: String

    /// A boundary that cannot occur in DICOM data by chance: "consort-" and 32 random hex digits.
    public static func randomBoundary() -> String {
        var generator = SystemRandomNumberGenerator()
        let hex = Array("0123456789abcdef")
        return "consort-" + String((0..<32).map { _ in hex[Int(generator.next() % 16)] })
    }

    public init(boundary: String = MultipartEncoder.randomBoundary()) {
        self.boundary = boundary
    }

    /// The request's Content-Type: multipart/related; type="application/dicom"; boundary=...
    public func contentType(partType: String = "application/dicom") -> String {
        "multipart/related; type=\"\(partType)\"; boundary=\(boundary)"
    }

    /// What goes before part `index`: the boundary line and the part's headers.
    public func partHeader(index: Int, contentType: String = "application/dicom", length: Int? = nil) -> [UInt8] {
        var text = (index == 0 ? "" : "\r\n") + "--\(boundary)\r\nContent-Type: \(contentType)\r\n"
        if let length { text += "Content-Length: \(length)\r\n" }
        return Array((text + "\r\n").utf8)
    }

    /// What ends the body.
    public var closing: [UInt8] { Array("\r\n--\(boundary)--\r\n".utf8) }

    /// A whole body in memory (small bodies and tests).
    public func encode(_ parts: [[UInt8]], contentType: String = "application/dicom") -> [UInt8] {
        var out: [UInt8] = []
        for (i, part) in parts.enumerated() {
            out += partHeader(index: i, contentType: contentType, length: part.count)
            out += part
        }
        return out + closing
    }
}

/// A multipart/related body whose parts are files, or files made as they are sent (a header made
/// here, then ranges of a source: a de-identified instance), read as it is sent: memory stays at
/// one read buffer and the pieces' headers whatever the study's size. Its length is known before
/// sending (Content-Length).
public final class MultipartFileBody {
    /// One part: a file as it is, or pieces — bytes held here and ranges of `source`, planned
    /// from the file `stamp` describes (when it is not that file any more, the ranges would be
    /// another file's bytes: the part is not sent).
    public enum Part: Sendable {
        case file(String)
        case pieces(source: String, [TransferSyntaxConversion.Piece], stamp: FileStamp?)

        var path: String {
            switch self {
            case .file(let path), .pieces(let path, _, _): return path
            }
        }
    }

    /// Which file a path named, and in what state: device, inode, size, modification time.
    public struct FileStamp: Sendable, Hashable {
        public let device: UInt64
        public let inode: UInt64
        public let size: Int64
        public let modified: Int64
        public let modifiedNanoseconds: Int64

        /// The file at `path` now; nil when it cannot be stat'ed.
        public init?(path: String) {
            var info = stat()
            guard stat(path, &info) == 0 else { return nil }
            self.init(info)
        }

        init(_ info: stat) {
            device = UInt64(info.st_dev)
            inode = UInt64(info.st_ino)
            size = Int64(info.st_size)
            modified = Int64(info.st_mtim.tv_sec)
            modifiedNanoseconds = Int64(info.st_mtim.tv_nsec)
        }
    }

    public let encoder: MultipartEncoder
    public let parts: [Part]
    public var paths: [String] { parts.map(\.path) }
    public let contentLength: Int
    private let sizes: [Int]
    private var part = 0
    /// Bytes of framing waiting to go out before the current part's data (or the closing).
    private var framing: [UInt8] = []
    private var framingSent = 0
    private var descriptor: Int32 = -1
    private var remainingInFile = 0
    /// In a part of pieces: the piece being sent, and how much of it has gone.
    private var piece = 0
    private var doneInPiece = 0
    private var finished = false

    /// Measures the files (their sizes fix Content-Length); throws if one cannot be read.
    public convenience init(paths: [String], encoder: MultipartEncoder = MultipartEncoder()) throws(MultipartError) {
        try self.init(parts: paths.map(Part.file), encoder: encoder)
    }

    /// Measures the parts: a file by its size, pieces by theirs (their source must be a file
    /// that can be read); throws if one cannot be.
    public init(parts: [Part], encoder: MultipartEncoder = MultipartEncoder()) throws(MultipartError) {
        self.encoder = encoder
        self.parts = parts
        var sizes: [Int] = []
        var total = 0
        for (i, part) in parts.enumerated() {
            var info = stat()
            guard stat(part.path, &info) == 0, info.st_mode & S_IFMT == S_IFREG else {
                throw MultipartError("Cannot send \(part.path): \(String(cString: strerror(errno)))", offset: 0)
            }
            let size: Int
            switch part {
            case .file: size = Int(info.st_size)
            case .pieces(_, let pieces, _): size = pieces.reduce(0) { $0 + $1.count }
            }
            sizes.append(size)
            total += encoder.partHeader(index: i, length: size).count + size
        }
        self.sizes = sizes
        contentLength = total + encoder.closing.count
        framing = parts.isEmpty ? encoder.closing : encoder.partHeader(index: 0, length: sizes[0])
    }

    deinit { if descriptor >= 0 { close(descriptor) } }


    /// Fills `buffer` with the next bytes of the body; 0 at the end. A file that shrank since it
    /// was measured (or planned) is an error (the Content-Length sent would be a lie).
    public func read(into buffer: UnsafeMutableRawBufferPointer) throws(MultipartError) -> Int {
        var written = 0
        while written < buffer.count && !finished {
            if framingSent < framing.count {
                let n = min(framing.count - framingSent, buffer.count - written)
                framing.withUnsafeBytes { from in
                    (buffer.baseAddress! + written).copyMemory(from: from.baseAddress! + framingSent, byteCount: n)
                }
                framingSent += n
                written += n
                continue
            }
            if part == parts.count {
                finished = true
                break
            }
            let path = parts[part].path
            if descriptor < 0 {
                descriptor = open(path, O_RDONLY | O_CLOEXEC)
                if descriptor < 0 { throw MultipartError("Cannot open \(path): \(String(cString: strerror(errno)))", offset: 0) }
                if case .pieces(_, _, let stamp?) = parts[part] {
                    var info = stat()
                    guard fstat(descriptor, &info) == 0, FileStamp(info) == stamp else {
                        throw MultipartError("\(path) changed since the part was made of it", offset: 0)
                    }
                }
                remainingInFile = sizes[part]
                (piece, doneInPiece) = (0, 0)
            }
            if remainingInFile > 0 {
                let want = min(remainingInFile, buffer.count - written)
                let n: Int
                switch parts[part] {
                case .file:
                    n = Glibc.read(descriptor, buffer.baseAddress! + written, want)
                case .pieces(_, let pieces, _):
                    // An empty piece (nothing between two bulk values) is passed over.
                    if pieces[piece].count == 0 {
                        piece += 1
                        continue
                    }
                    switch pieces[piece] {
                    case .bytes(let bytes):
                        n = min(want, bytes.count - doneInPiece)
                        bytes.withUnsafeBytes { from in
                            (buffer.baseAddress! + written).copyMemory(from: from.baseAddress! + doneInPiece, byteCount: n)
                        }
                    case .copy(let offset, let count):
                        n = pread(descriptor, buffer.baseAddress! + written, min(want, count - doneInPiece), off_t(offset + doneInPiece))
                    }
                }
                if n < 0 {
                    if errno == EINTR { continue }
                    throw MultipartError("Cannot read \(path): \(String(cString: strerror(errno)))", offset: 0)
                }
                if n == 0 { throw MultipartError("\(path) became shorter while it was being sent", offset: 0) }
                remainingInFile -= n
                written += n
                if case .pieces(_, let pieces, _) = parts[part] {
                    doneInPiece += n
                    if doneInPiece == pieces[piece].count { (piece, doneInPiece) = (piece + 1, 0) }
                }
                continue
            }
            close(descriptor)
            descriptor = -1
            part += 1
            framing = part < parts.count ? encoder.partHeader(index: part, length: sizes[part]) : encoder.closing
            framingSent = 0
        }
        return written
    }
}

/// A media type with its parameters: `multipart/related; type="application/dicom"; boundary=x`.
public struct MediaType: Sendable, Equatable {
    public var type: String
    public var parameters: [String: String]

    /// Parses a Content-Type value (RFC 9110 §8.3.1); type and parameter names lower-cased,
    /// quoted values unquoted. nil when there is no type/subtype.
    public init?(_ text: String) {
        let pieces = Self.split(text)
        guard let first = pieces.first?.trimmingCharacters(in: " \t").lowercased(), first.contains("/") else { return nil }
        type = first
        parameters = [:]
        for piece in pieces.dropFirst() {
            guard let eq = piece.firstIndex(of: "=") else { continue }
            let name = piece[..<eq].trimmingCharacters(in: " \t").lowercased()
            var value = piece[piece.index(after: eq)...].trimmingCharacters(in: " \t")
            if value.hasPrefix("\""), value.hasSuffix("\""), value.count >= 2 {
                value = String(value.dropFirst().dropLast()).replacingEscapes()
            }
            parameters[name] = value
        }
    }

    /// Splits on semicolons outside quotes.
    private static func split(_ text: String) -> [String] {
        var out: [String] = []
        var current = ""
        var quoted = false
        var escaped = false
        for c in text {
            if escaped {
                current.append(c)
                escaped = false
                continue
            }
            if c == "\\" && quoted { escaped = true; current.append(c); continue }
            if c == "\"" { quoted.toggle() }
            if c == ";" && !quoted {
                out.append(current)
                current = ""
            } else {
                current.append(c)
            }
        }
        out.append(current)
        return out
    }
}

extension String {
    fileprivate func replacingEscapes() -> String {
        var out = ""
        var escaped = false
        for c in self {
            if escaped { out.append(c); escaped = false } else if c == "\\" { escaped = true } else { out.append(c) }
        }
        return out
    }
}
