import DICOM
import Foundation
import HTTP
import Testing

@testable import DICOMweb

@Suite("multipart/related")
struct MultipartTests {
    /// Decodes `body` fed in pieces of the given sizes (cycled); returns the parts' bodies and headers.
    /// `copying`: through the general `feed` (any collection) rather than the array-slice one that
    /// hands body bytes on without copying them; both must decode alike.
    static func decode(_ body: [UInt8], boundary: String, pieces: [Int], copying: Bool = false) throws -> (parts: [[UInt8]], headers: [[String: String]]) {
        var decoder = MultipartDecoder(boundary: boundary)
        var events: [MultipartDecoder.Event] = []
        var at = 0, k = 0
        while at < body.count {
            let n = min(max(1, pieces[k % pieces.count]), body.count - at)
            events += copying ? try decoder.feed(Array(body[at..<at + n])) : try decoder.feed(body[at..<at + n])
            at += n
            k += 1
        }
        events += try decoder.finish()
        var parts: [[UInt8]] = []
        var headers: [[String: String]] = []
        var open = false
        for event in events {
            switch event {
            case .partBegin(let h):
                #expect(!open)
                open = true
                parts.append([])
                headers.append(Dictionary(h.map { ($0.name, $0.value) }, uniquingKeysWith: { $1 }))
            case .partData(let bytes):
                #expect(open)
                parts[parts.count - 1] += bytes
            case .partEnd:
                #expect(open)
                open = false
            case .end:
                #expect(!open)
            }
        }
        return (parts, headers)
    }

    static let parts: [[UInt8]] = [
        Array("DICM first part".utf8),
        [],  // an empty part
        Array("\r\n--not-the-boundary\r\n and a CR LF -- inside\r\n-".utf8),
        (0..<5000).map { UInt8(truncatingIfNeeded: $0 * 31) },
    ]

    @Test("parts survive any split of the body", arguments: [[1], [2, 3], [7], [64], [1000], [1, 100, 3, 17], [1 << 20]])
    func anySplit(_ pieces: [Int]) throws {
        let encoder = MultipartEncoder(boundary: "consort-0123456789abcdef")
        let body = encoder.encode(Self.parts)
        for copying in [false, true] {
            let decoded = try Self.decode(body, boundary: encoder.boundary, pieces: pieces, copying: copying)
            #expect(decoded.parts == Self.parts)
            #expect(decoded.headers.allSatisfy { $0["content-type"] == "application/dicom" })
            #expect(decoded.headers[3]["content-length"] == "5000")
        }
    }

    /// Two pieces, split at every byte around each boundary: the delimiter whole in the first
    /// piece, straddling the two, or whole in the second — with slices and with arrays.
    @Test func aDelimiterSplitAnywhereBetweenTwoPiecesIsFound() throws {
        let encoder = MultipartEncoder(boundary: "b-0123456789")
        let parts: [[UInt8]] = [(0..<3000).map { UInt8(truncatingIfNeeded: $0 &* 7) }, Array("second\r\n--b-012345678".utf8), (0..<100).map { _ in 0x0D }]
        let body = encoder.encode(parts)
        var edges: [Int] = []
        var from = 0
        while let at = firstIndex(of: Array("\r\n--b-0123456789".utf8), in: body, from: from) {
            edges.append(at)
            from = at + 1
        }
        #expect(edges.count == 3)
        for edge in edges {
            for split in max(1, edge - 40)...min(body.count - 1, edge + 40) {
                for copying in [false, true] {
                    var decoder = MultipartDecoder(boundary: encoder.boundary)
                    var events = copying ? try decoder.feed(Array(body[..<split])) : try decoder.feed(body[..<split])
                    events += copying ? try decoder.feed(Array(body[split...])) : try decoder.feed(body[split...])
                    events += try decoder.finish()
                    var decoded: [[UInt8]] = []
                    for event in events {
                        if case .partBegin = event { decoded.append([]) }
                        if case .partData(let bytes) = event { decoded[decoded.count - 1] += bytes }
                    }
                    #expect(decoded == parts, "split at \(split), delimiter at \(edge), copying \(copying)")
                }
            }
        }
    }

    @Test func preamblePaddingEpilogueAndAMissingFinalLineEndAreTolerated() throws {
        let body = Array("This is a preamble.\r\n--b1   \t\r\nContent-Type: application/dicom\r\n\r\nDATA\r\n--b1--".utf8)
        let decoded = try Self.decode(body, boundary: "b1", pieces: [3])
        #expect(decoded.parts == [Array("DATA".utf8)])
        let epilogue = Array("--b1\r\n\r\nX\r\n--b1--\r\nepilogue text".utf8)
        #expect(try Self.decode(epilogue, boundary: "b1", pieces: [5]).parts == [Array("X".utf8)])
    }

    @Test("malformed bodies are refused", arguments: [
        ("no boundary at all", "just some bytes"),
        ("truncated inside a part", "--b1\r\nContent-Type: application/dicom\r\n\r\nDATA that never ends"),
        ("no closing boundary", "--b1\r\n\r\nDATA\r\n--b1\r\n"),
        ("garbage after a boundary", "--b1xyz\r\n\r\nDATA\r\n--b1--"),
        ("a header without a colon", "--b1\r\nContent-Type application/dicom\r\n\r\nDATA\r\n--b1--"),
    ])
    func malformed(_ label: String, _ text: String) {
        #expect(throws: MultipartError.self, "\(label)") { try Self.decode(Array(text.utf8), boundary: "b1", pieces: [4]) }
    }

    @Test func endlessHeadersHitTheLimit() {
        var decoder = MultipartDecoder(boundary: "b1", maximumHeaderBytes: 1024)
        #expect(throws: MultipartError.self) {
            _ = try decoder.feed(Array("--b1\r\n".utf8))
            for _ in 0..<100 { _ = try decoder.feed(Array("X-Filler: aaaaaaaaaaaaaaaaaaaaaaaaaaaaaa\r\n".utf8)) }
        }
    }

    @Test func whatTheDecoderHoldsIsBoundedByTheDelimiterNotThePart() throws {
        // 8 MB of one part, fed in 64 KiB pieces: between feeds the decoder holds back no more
        // than a delimiter's length (the rest is handed on at once), however long the part.
        let encoder = MultipartEncoder()
        var decoder = MultipartDecoder(boundary: encoder.boundary)
        var total = 0
        _ = try decoder.feed(encoder.partHeader(index: 0))
        let chunk = [UInt8](repeating: 0x2D, count: 65536)  // dashes: the worst case for a search
        var mostHeld = 0
        for _ in 0..<128 {
            for event in try decoder.feed(chunk) { if case .partData(let d) = event { total += d.count } }
            mostHeld = max(mostHeld, decoder.heldBytes)
        }
        #expect(mostHeld < encoder.boundary.utf8.count + 8, "held \(mostHeld) bytes between feeds")
        for event in try decoder.feed(encoder.closing) + (try decoder.finish()) {
            if case .partData(let d) = event { total += d.count }
        }
        #expect(total == 128 * 65536)
        #expect(decoder.isComplete)
    }

    @Test func filesStreamIntoABodyOfTheAnnouncedLength() throws {
        let folder = NSTemporaryDirectory() + "consort-multipart-\(UUID().uuidString)"
        try FileManager.default.createDirectory(atPath: folder, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(atPath: folder) }
        var paths: [String] = []
        for (i, part) in Self.parts.enumerated() {
            let path = "\(folder)/\(i).dcm"
            try Data(part).write(to: URL(fileURLWithPath: path))
            paths.append(path)
        }
        let body = try MultipartFileBody(paths: paths)
        var bytes: [UInt8] = []
        var buffer = [UInt8](repeating: 0, count: 1000)
        while true {
            let n = try buffer.withUnsafeMutableBytes { try body.read(into: $0) }
            if n == 0 { break }
            bytes += buffer[0..<n]
        }
        #expect(bytes.count == body.contentLength)
        #expect(bytes == body.encoder.encode(Self.parts))
        #expect(try Self.decode(bytes, boundary: body.encoder.boundary, pieces: [333]).parts == Self.parts)
    }

    /// A part made as it is sent — bytes held here and ranges of a source file (a de-identified
    /// instance) — streams like a file, in reads of any size, empty pieces passed over; a source
    /// that became shorter than its pieces say is an error, never a short part.
    @Test func piecesStreamIntoABodyOfTheAnnouncedLength() throws {
        let folder = NSTemporaryDirectory() + "consort-multipart-\(UUID().uuidString)"
        try FileManager.default.createDirectory(atPath: folder, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(atPath: folder) }
        let source = folder + "/source.dcm"
        let sourceBytes = (0..<5000).map { UInt8($0 % 251) }
        try Data(sourceBytes).write(to: URL(fileURLWithPath: source))
        try Data(Self.parts[0]).write(to: URL(fileURLWithPath: folder + "/plain.dcm"))
        let pieces: [TransferSyntaxConversion.Piece] = [.bytes([1, 2, 3]), .copy(offset: 100, count: 2000), .bytes([]), .copy(offset: 4000, count: 0), .bytes([9]), .copy(offset: 4500, count: 500)]
        let made: [UInt8] = [1, 2, 3] + sourceBytes[100..<2100] + [9] + sourceBytes[4500..<5000]
        for size in [1, 7, 1000, 65536] {
            let body = try MultipartFileBody(parts: [.pieces(source: source, pieces, stamp: MultipartFileBody.FileStamp(path: source)), .file(folder + "/plain.dcm")])
            var bytes: [UInt8] = []
            var buffer = [UInt8](repeating: 0, count: size)
            while true {
                let n = try buffer.withUnsafeMutableBytes { try body.read(into: $0) }
                if n == 0 { break }
                bytes += buffer[0..<n]
            }
            #expect(bytes.count == body.contentLength && bytes == body.encoder.encode([made, Self.parts[0]]), "reads of \(size)")
        }
        let body = try MultipartFileBody(parts: [.pieces(source: source, [.copy(offset: 4000, count: 1000)], stamp: nil)])
        try Data(sourceBytes.prefix(4500)).write(to: URL(fileURLWithPath: source))
        var buffer = [UInt8](repeating: 0, count: 65536)
        #expect(throws: MultipartError.self) {
            while try buffer.withUnsafeMutableBytes({ try body.read(into: $0) }) > 0 {}
        }
        // Replaced since the pieces were made of it, same size or not: not sent.
        let stamp = try #require(MultipartFileBody.FileStamp(path: source))
        try Data(sourceBytes.prefix(4500).reversed()).write(to: URL(fileURLWithPath: source), options: .atomic)
        let replaced = try MultipartFileBody(parts: [.pieces(source: source, [.copy(offset: 0, count: 100)], stamp: stamp)])
        #expect(throws: MultipartError.self) {
            while try buffer.withUnsafeMutableBytes({ try replaced.read(into: $0) }) > 0 {}
        }
    }

    @Test func contentTypesParse() throws {
        let type = try #require(MediaType("Multipart/Related; type=\"application/dicom\"; boundary=\"a;b\\\"c\"; charset=utf-8"))
        #expect(type.type == "multipart/related")
        #expect(type.parameters["type"] == "application/dicom")
        #expect(type.parameters["boundary"] == "a;b\"c")
        #expect(MediaType("nonsense") == nil)
        let encoder = MultipartEncoder(boundary: "xyz")
        #expect(MediaType(encoder.contentType())?.parameters["boundary"] == "xyz")
    }
}
