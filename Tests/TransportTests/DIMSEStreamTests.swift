import DIMSE
import Foundation
import Testing

@testable import Transport

/// A C-STORE's data set as it goes out, read back off a socket pair: fragments of what the node
/// takes, each full but the last, exactly one marked last — whatever the data set's length,
/// including a whole number of fragments (where a second, empty, "last" fragment would reach the
/// node as data without a command).
@Suite("DIMSE data set fragments")
struct DIMSEStreamTests {
    /// What `streamDataSet` sends for `pieces` of a file of `fileBytes`, with PDUs of at most
    /// `maximum` bytes: each fragment's length and whether it is marked last.
    static func fragments(_ pieces: [DIMSEAssociation.DataSetPiece], fileBytes: Int, maximum: UInt32) throws -> [(count: Int, last: Bool)] {
        let folder = NSTemporaryDirectory() + "consort-stream-\(UUID().uuidString)"
        try FileManager.default.createDirectory(atPath: folder, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(atPath: folder) }
        let path = folder + "/data"
        try Data((0..<fileBytes).map { UInt8(truncatingIfNeeded: $0) }).write(to: URL(fileURLWithPath: path))
        var pair: [Int32] = [0, 0]
        #expect(socketpair(AF_UNIX, Int32(SOCK_STREAM.rawValue), 0, &pair) == 0)
        let item = DIMSEAssociation.StoreItem(path: path, sopClass: "1.2", sopInstance: "1.2.3", transferSyntax: "1.2.840.10008.1.2", dataSetOffset: 0, size: fileBytes)
        do {
            let link = DIMSELink(fd: pair[0])
            try DIMSEAssociation.streamDataSet(item, pieces, contextID: 1, maximumLength: maximum, on: link, timeout: 5)
        }  // the link closes its end: the reader sees the end
        var reader = PDUReader(maximumLength: 1 << 20)
        var buffer = [UInt8](repeating: 0, count: 65_536)
        while true {
            let n = read(pair[1], &buffer, buffer.count)
            guard n > 0 else { break }
            reader.append(buffer[0..<n])
        }
        close(pair[1])
        var out: [(Int, Bool)] = []
        while let pdu = try reader.next() {
            guard case .data(let values) = pdu else { continue }
            for value in values { out.append((value.fragment.count, value.isLast)) }
        }
        return out
    }

    @Test func aDataSetAWholeNumberOfFragmentsLongEndsWithItsLastFullOne() throws {
        // PDUs of 1030 bytes: 1024 of data each.
        let sent = try Self.fragments([.file(offset: 0, count: 3072)], fileBytes: 3072, maximum: 1030)
        #expect(sent.map(\.count) == [1024, 1024, 1024] && sent.map(\.last) == [false, false, true], "\(sent)")
    }

    @Test func bytesMadeAndFileRangesFillFragmentsTogether() throws {
        let sent = try Self.fragments([.bytes(Array(repeating: 7, count: 100)), .file(offset: 10, count: 2000), .bytes([1, 2])], fileBytes: 3000, maximum: 1030)
        #expect(sent.map(\.count) == [1024, 1024, 54] && sent.filter(\.last).count == 1 && sent.last?.last == true, "\(sent)")
    }

    @Test func anEmptyDataSetIsOneEmptyFragmentMarkedLast() throws {
        let sent = try Self.fragments([], fileBytes: 0, maximum: 1030)
        #expect(sent.count == 1 && sent[0].count == 0 && sent[0].last)
    }
}
