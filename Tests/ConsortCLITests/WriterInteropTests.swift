import DICOM
import Foundation
import Testing

/// What our writer produces is read by DCMTK and pydicom, and DICOM's own validator (dciodvfy,
/// from dicom3tools) finds no error in it that the original file did not already have.
@Suite("Writer output in other readers", .timeLimit(.minutes(10)))
struct WriterInteropTests {
    /// The pydicom-made fixtures rewritten by us, explicit and implicit VR; returns (original, ours).
    static func rewrite(into folder: String) throws -> [(original: String, rewritten: String)] {
        let fixtures = try makeFixtures(in: folder + "/fixtures")
        let out = folder + "/rewritten"
        try FileManager.default.createDirectory(atPath: out, withIntermediateDirectories: true)
        var pairs: [(String, String)] = []
        for name in try FileManager.default.contentsOfDirectory(atPath: fixtures).sorted() {
            let file = try DICOMFile.read(path: fixtures + "/" + name, options: .everything)
            let encapsulated = file.transferSyntaxUID.map(TransferSyntax.isEncapsulated) ?? false
            for (suffix, encoding) in [("explicit", Encoding.explicitVRLittleEndian), ("implicit", .implicitVRLittleEndian)] {
                if encapsulated && !encoding.isExplicitVR { continue }
                let target = "\(out)/\(suffix)-\(name)"
                try DICOMWriter.write(file, toPath: target, options: WriteOptions(encoding: encoding))
                pairs.append((fixtures + "/" + name, target))
            }
        }
        return pairs
    }

    @Test func dcmdumpReadsEveryFileWeWrite() throws {
        let dcmdump = try Run.require("dcmdump", package: "dcmtk")
        let folder = try ScratchFolder()
        for (_, rewritten) in try Self.rewrite(into: folder.path) {
            let outcome = try Run.program(dcmdump, ["+E", rewritten])
            #expect(outcome.status == 0, "\(rewritten): \(outcome.stderr)")
            #expect(!outcome.stderr.contains("E: "), "\(rewritten): \(outcome.stderr)")
            // Odd lengths are the only warnings DCMTK had for the originals; ours pads them.
            #expect(!outcome.stderr.contains("is odd"), "\(rewritten): \(outcome.stderr)")
        }
    }

    @Test func pydicomReadsWhatWeWriteAsWeDo() throws {
        let python = try Run.require("python3", package: "python3")
        let folder = try ScratchFolder()
        _ = try Self.rewrite(into: folder.path)
        let outcome = try Run.program(
            python, [Run.conformanceFolder + "/conformance.py", "--consort", Run.consort, folder.path + "/rewritten"])
        for line in outcome.stdout.split(separator: "\n") where line.hasPrefix("FAIL") || line.hasPrefix("    ") {
            Issue.record("\(line)")
        }
        #expect(outcome.status == 0)
        #expect(outcome.stdout.contains("NOTRUTH") == false)
    }

    @Test func dciodvfyFindsNoNewErrors() throws {
        let dciodvfy = try Run.require("dciodvfy", package: "dicom3tools")
        let folder = try ScratchFolder()
        for (original, rewritten) in try Self.rewrite(into: folder.path) {
            // dciodvfy cannot read deflated data sets at all, so it has no baseline for those.
            if original.hasSuffix("deflated.dcm") { continue }
            let before = try errors(dciodvfy, original)
            let after = try errors(dciodvfy, rewritten)
            let new = after.subtracting(before)
            #expect(new.isEmpty, "\(rewritten): \(new.sorted())")
        }
    }

    private func errors(_ dciodvfy: String, _ path: String) throws -> Set<String> {
        let outcome = try Run.program(dciodvfy, [path])
        let text = outcome.stdout + outcome.stderr
        return Set(text.split(separator: "\n").filter { $0.contains("Error") }.map(String.init))
    }
}
