import Foundation
import TestSupport
import Testing

/// `consort echo` and `consort store` against DCMTK's `storescp` (bit-preserving, so what it
/// writes is what it received): every data set arrives byte for byte, fragmented under the
/// node's maximum PDU length; a file that is not DICOM is named and the rest still go.
@Suite("DIMSE against DCMTK", .serialized, .timeLimit(.minutes(3)))
struct DIMSEInteropTests {
    /// A file's data set: what follows its File Meta Information (whose group length is at 140).
    static func dataSet(_ path: String) throws -> Data {
        let bytes = try Data(contentsOf: URL(fileURLWithPath: path))
        let length = Int(bytes[140]) | Int(bytes[141]) << 8 | Int(bytes[142]) << 16 | Int(bytes[143]) << 24
        return bytes.subdata(in: (144 + length)..<bytes.count)
    }

    /// storescp on a free port, writing into `folder`, as STORESCP; `extra` options before the port.
    static func storescp(_ folder: String, extra: [String] = []) throws -> (RunningProgram, Int) {
        let port = try OrthancInteropTests.freePort()
        let program = try RunningProgram(["/usr/bin/storescp", "+B", "--aetitle", "STORESCP", "--output-directory", folder] + extra + [String(port)])
        // Listening once a C-ECHO is answered.
        let up = try Poll.until(within: 20, every: 0.05) { try Run.consort("echo", "STORESCP@127.0.0.1:\(port)", "--timeout", "2").status == 0 }
        try #require(up, "storescp did not answer C-ECHO: \(program.log)")
        return (program, port)
    }

    @Test func aStudyStoredToStorescpArrivesByteForByteAndAFileThatIsNotDICOMIsNamed() throws {
        try Skip.unless(FileManager.default.isExecutableFile(atPath: "/usr/bin/storescp"), "DCMTK's storescp is not installed (Debian package dcmtk)")
        let root = NSTemporaryDirectory() + "consort-dimse-\(UUID().uuidString)"
        defer { try? FileManager.default.removeItem(atPath: root) }
        let source = root + "/study", received = root + "/received"
        for folder in [source, received] { try FileManager.default.createDirectory(atPath: folder, withIntermediateDirectories: true) }
        // 512x512 CT slices: each data set spans many PDUs under storescp's 16 kB maximum.
        let synth = try Run.consort("synth", "--out", source, "--instances", "6", "--size", "512x512", "--trust", "RSCH", "--nhs", "9990000018")
        try #require(synth.status == 0, "\(synth.stderr)")
        let (storescp, port) = try Self.storescp(received, extra: ["--max-pdu", "16384"])
        defer { storescp.kill() }
        try Data("not DICOM".utf8).write(to: URL(fileURLWithPath: source + "/notes.txt"))
        let store = try Run.consort("store", "STORESCP@127.0.0.1:\(port)", source, "--calling-aet", "CONSORT_RSCH")
        #expect(store.status == 1, "a file was not DICOM: exit 1")
        #expect(store.stderr.contains("notes.txt") && store.stderr.contains("not readable DICOM"), "\(store.stderr)")
        #expect(store.stdout.contains("6 of 7 stored at STORESCP@127.0.0.1:\(port)"), "\(store.stdout)")
        // Every instance at storescp, its data set byte for byte.
        let sent = try FileManager.default.subpathsOfDirectory(atPath: source).filter { $0.hasSuffix(".dcm") }.map { source + "/" + $0 }
        let got = try FileManager.default.contentsOfDirectory(atPath: received).map { received + "/" + $0 }
        #expect(sent.count == 6 && got.count == 6, "\(got)")
        let expected = Set(try sent.map(Self.dataSet))
        for file in got { #expect(expected.contains(try Self.dataSet(file)), "\(file) differs from every data set sent") }
    }

    @Test func aNodeThatRefusesTheAssociationIsSaidWithItsReason() throws {
        try Skip.unless(FileManager.default.isExecutableFile(atPath: "/usr/bin/storescp"), "DCMTK's storescp is not installed (Debian package dcmtk)")
        let root = NSTemporaryDirectory() + "consort-dimse-\(UUID().uuidString)"
        defer { try? FileManager.default.removeItem(atPath: root) }
        let source = root + "/study", received = root + "/received"
        for folder in [source, received] { try FileManager.default.createDirectory(atPath: folder, withIntermediateDirectories: true) }
        let synth = try Run.consort("synth", "--out", source, "--instances", "2", "--trust", "RSCH", "--nhs", "9990000018")
        try #require(synth.status == 0, "\(synth.stderr)")
        let port = try OrthancInteropTests.freePort()
        let storescp = try RunningProgram(["/usr/bin/storescp", "--refuse", "--aetitle", "STORESCP", "--output-directory", received, String(port)])
        defer { storescp.kill() }
        // Until it listens the connection is refused; then every association is rejected.
        var last: ProgramOutcome?
        let rejected = try Poll.until(within: 20, every: 0.05) {
            last = try Run.consort("store", "STORESCP@127.0.0.1:\(port)", source, "--timeout", "5")
            return last?.stderr.contains("association rejected") ?? false
        }
        #expect(rejected, "\(last?.stderr ?? "")")
        #expect(last?.status == 1)
        #expect(try FileManager.default.contentsOfDirectory(atPath: received).isEmpty, "nothing stored")
    }
}
