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

/// A multipart/related body whose parts are files, read as it is sent: memory stays at one read
/// buffer whatever the study's size. Its length is known before sending (Content-Length).
public final class MultipartFileBody {
    public let encoder: MultipartEncoder
    public let paths: [String]
    public let contentLength: Int
    private let sizes: [Int]
    private var part = 0
    /// Bytes of framing waiting to go out before the current file's data (or the closing).
    private var framing: [UInt8] = []
    private var framingSent = 0
    private var descriptor: Int32 = -1
    private var remainingInFile = 0
    private var finished = false

    /// Measures the files (their sizes fix Content-Length); throws if one cannot be read.
    public init(paths: [String], encoder: MultipartEncoder = MultipartEncoder()) throws(MultipartError) {
        self.encoder = encoder
        self.paths = paths
        var sizes: [Int] = []
        var total = 0
        for (i, path) in paths.enumerated() {
            var info = stat()
            guard stat(path, &info) == 0, info.st_mode & S_IFMT == S_IFREG else {
                throw MultipartError("Cannot send \(path): \(String(cString: strerror(errno)))", offset: 0)
            }
            sizes.append(Int(info.st_size))
            total += encoder.partHeader(index: i, length: Int(info.st_size)).count + Int(info.st_size)
        }
        self.sizes = sizes
        contentLength = total + encoder.closing.count
        framing = paths.isEmpty ? encoder.closing : encoder.partHeader(index: 0, length: sizes[0])
    }

    deinit { if descriptor >= 0 { close(descriptor) } }

    /// Fills `buffer` with the next bytes of the body; 0 at the end. A file that shrank since it
    /// was measured is an error (the Content-Length sent would be a lie).
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
            if part == paths.count {
                finished = true
                break
            }
            if descriptor < 0 {
                descriptor = open(paths[part], O_RDONLY | O_CLOEXEC)
                if descriptor < 0 { throw MultipartError("Cannot open \(paths[part]): \(String(cString: strerror(errno)))", offset: 0) }
                remainingInFile = sizes[part]
            }
            if remainingInFile > 0 {
                let want = min(remainingInFile, buffer.count - written)
                let n = Glibc.read(descriptor, buffer.baseAddress! + written, want)
                if n < 0 {
                    if errno == EINTR { continue }
                    throw MultipartError("Cannot read \(paths[part]): \(String(cString: strerror(errno)))", offset: 0)
                }
                if n == 0 { throw MultipartError("\(paths[part]) became shorter while it was being sent", offset: 0) }
                remainingInFile -= n
                written += n
                continue
            }
            close(descriptor)
            descriptor = -1
            part += 1
            framing = part < paths.count ? encoder.partHeader(index: part, length: sizes[part]) : encoder.closing
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
