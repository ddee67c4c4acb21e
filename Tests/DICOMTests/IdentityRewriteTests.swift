import DICOM
import Foundation
import Testing

/// The identity rewrite of one file (issue 25): the identity elements as asked, every other byte
/// of the data set as it was, the pixel data streamed, nothing left behind on failure.
///
/// Expected outputs are built by hand with `DICOMBytes` (not by the writer under test): the whole
/// data set of the rewritten file must equal them byte for byte.
@Suite struct IdentityRewriteTests {
    static let rewrite = IdentityRewrite(
        local: PatientIdentifier(id: "A555", issuer: "ASPH"), senderIssuer: "RSCH",
        additionalIdentifiers: [PatientIdentifier(id: "9434765919", issuer: "NHS")], accessionNumberIssuer: "RSCH")

    /// A data set in parts: before the patient module (with an undefined-length sequence), the
    /// patient's elements, and the rest with pixel data.
    struct Source {
        var b: DICOMBytes
        var accession = true
        var issuer: [UInt8] = []
        var others: [UInt8] = []
        var pixels: [UInt8] = (0..<64).map { UInt8($0) }

        var before: [UInt8] {
            b.text(0x0008, 0x0016, "UI", "1.2.840.10008.5.1.4.1.1.7") + b.text(0x0008, 0x0018, "UI", "1.2.3.4")
                + b.text(0x0008, 0x0020, "DA", "20240102")
                + (accession ? b.text(0x0008, 0x0050, "SH", "ACC42") : [])
        }
        var afterAccession: [UInt8] {
            b.text(0x0008, 0x0060, "CS", "CT")
                + b.sequence(0x0008, 0x1140, items: [b.text(0x0008, 0x1150, "UI", "1.2.3"), b.text(0x0008, 0x1155, "UI", "1.2.4")])
                + b.element(0x0009, 0x0010, "LO", Array("ACME    ".utf8)) + b.element(0x0009, 0x1001, "OB", [1, 2, 3, 4])
                + b.element(0x0010, 0x0010, "PN", Array("SMITH^JOHN".utf8))
        }
        var patientID: [UInt8] { b.text(0x0010, 0x0020, "LO", "R123") }
        var afterID: [UInt8] { b.text(0x0010, 0x0030, "DA", "19600101") + b.text(0x0010, 0x0040, "CS", "M") }
        var rest: [UInt8] {
            b.text(0x0020, 0x000D, "UI", "1.2.3.4.5") + b.element(0x0028, 0x0010, "US", b.u16(4))
                + b.element(0x0028, 0x0011, "US", b.u16(8)) + b.element(0x0028, 0x0100, "US", b.u16(16))
                + b.element(0x7FE0, 0x0010, "OW", pixels)
        }
        var dataSet: [UInt8] { before + afterAccession + patientID + issuer + afterID + others + rest }
        var syntax: String { b.explicit ? TransferSyntax.explicitVRLittleEndian : TransferSyntax.implicitVRLittleEndian }
        var file: [UInt8] { DICOMBytes.part10(transferSyntax: syntax, dataSet: dataSet) }

        /// An item of Other Patient IDs Sequence as the rewrite writes it (defined length).
        func identifierItem(_ id: String, _ issuer: String) -> [UInt8] {
            b.item(
                b.text(0x0010, 0x0020, "LO", id) + b.text(0x0010, 0x0021, "LO", issuer) + b.text(0x0010, 0x0022, "CS", "TEXT"),
                undefined: false)
        }
        var accessionIssuer: [UInt8] {
            b.sequence(0x0008, 0x0051, items: [b.text(0x0040, 0x0031, "UT", "RSCH")], undefined: false)
        }
    }

    /// The data set of a Part 10 file: what follows the File Meta Information, whose group length
    /// must say exactly where that is.
    static func dataSet(of file: [UInt8]) throws -> [UInt8] {
        let length = Int(file[140]) | Int(file[141]) << 8 | Int(file[142]) << 16 | Int(file[143]) << 24
        let start = 144 + length
        #expect(file[start] != 0x02 || file[start + 1] != 0x00, "the meta group length stops inside group 0002")
        return Array(file[start...])
    }

    static func run(_ source: Source, _ rewrite: IdentityRewrite = rewrite) throws -> (output: [UInt8], outcome: IdentityRewriteOutcome, folder: TemporaryDirectory) {
        let folder = try TemporaryDirectory()
        try writeFile(folder.path + "/in.dcm", source.file)
        let outcome = try IdentityRewriter.rewrite(folder.path + "/in.dcm", to: folder.path + "/out.dcm", rewrite)
        let output = Array(try Data(contentsOf: URL(fileURLWithPath: folder.path + "/out.dcm")))
        return (output, outcome, folder)
    }

    @Test(arguments: [DICOMBytes.explicitLE, DICOMBytes.implicitLE])
    func identityIsRewrittenAndEveryOtherByteKept(_ b: DICOMBytes) throws {
        let source = Source(b: b)
        let (output, outcome, _) = try Self.run(source)
        let expected =
            source.before + source.accessionIssuer + source.afterAccession + b.text(0x0010, 0x0020, "LO", "A555")
            + b.text(0x0010, 0x0021, "LO", "ASPH") + source.afterID
            + b.element(
                0x0010, 0x1002, "SQ", source.identifierItem("R123", "RSCH") + source.identifierItem("9434765919", "NHS"))
            + source.rest
        #expect(try Self.dataSet(of: output) == expected)
        #expect(outcome.previousPatientID == "R123")
        #expect(outcome.previousIssuer == nil)
        #expect(outcome.addedOtherPatientIDs.map(\.id) == ["R123", "9434765919"])
        #expect(outcome.addedAccessionNumberIssuer)

        // And as our reader reads it.
        let file = try DICOMFile.read(bytes: output, options: .everything)
        #expect(file.transferSyntaxUID == source.syntax)
        #expect(file.dataSet.string(.patientID) == "A555")
        #expect(file.dataSet.string(Tag(0x0010, 0x0021)) == "ASPH")
        #expect(file.dataSet.string(.patientName) == "SMITH^JOHN")
        let items = file.dataSet[Tag(0x0010, 0x1002)]?.items ?? []
        #expect(items.map { [$0.string(.patientID), $0.string(Tag(0x0010, 0x0021))] } == [["R123", "RSCH"], ["9434765919", "NHS"]])
        #expect(file.dataSet[.pixelData]?.bytes.map(Array.init) == source.pixels)
        #expect(file.meta.string(.mediaStorageSOPInstanceUID) == "1.2.3.4")
    }

    @Test(arguments: [DICOMBytes.explicitLE, DICOMBytes.implicitLE])
    func existingIssuerIsReplacedAndExistingOtherIDsAreKept(_ b: DICOMBytes) throws {
        var source = Source(b: b)
        source.issuer = b.text(0x0010, 0x0021, "LO", "RSCH-PAS")
        // An undefined-length sequence with an undefined-length item, already holding the NHS number.
        let existing = b.item(b.text(0x0010, 0x0020, "LO", "9434765919") + b.text(0x0010, 0x0021, "LO", "NHS"))
        source.others = b.element(0x0010, 0x1002, "SQ", existing + b.sequenceEnd, undefined: true)
        let (output, outcome, _) = try Self.run(source)
        let expected =
            source.before + source.accessionIssuer + source.afterAccession + b.text(0x0010, 0x0020, "LO", "A555")
            + b.text(0x0010, 0x0021, "LO", "ASPH") + source.afterID
            + b.element(0x0010, 0x1002, "SQ", existing + source.identifierItem("R123", "RSCH") + b.sequenceEnd, undefined: true)
            + source.rest
        #expect(try Self.dataSet(of: output) == expected)
        #expect(outcome.previousIssuer == "RSCH-PAS")
        #expect(outcome.addedOtherPatientIDs == [PatientIdentifier(id: "R123", issuer: "RSCH")])
    }

    @Test func aDefinedLengthOtherIDsSequenceGrowsByTheNewItems() throws {
        let b = DICOMBytes.explicitLE
        var source = Source(b: b)
        let existing = b.item(b.text(0x0010, 0x0020, "LO", "U987") + b.text(0x0010, 0x0021, "LO", "UHSX"), undefined: false)
        source.others = b.element(0x0010, 0x1002, "SQ", existing)
        let (output, _, _) = try Self.run(source)
        let items = existing + source.identifierItem("R123", "RSCH") + source.identifierItem("9434765919", "NHS")
        let expected =
            source.before + source.accessionIssuer + source.afterAccession + b.text(0x0010, 0x0020, "LO", "A555")
            + b.text(0x0010, 0x0021, "LO", "ASPH") + source.afterID + b.element(0x0010, 0x1002, "SQ", items) + source.rest
        #expect(try Self.dataSet(of: output) == expected)
    }

    @Test func noAccessionNumberMeansNoAccessionIssuer() throws {
        var source = Source(b: .explicitLE)
        source.accession = false
        let (output, outcome, _) = try Self.run(source)
        let file = try DICOMFile.read(bytes: output, options: .everything)
        #expect(file.dataSet[Tag(0x0008, 0x0051)] == nil)
        #expect(!outcome.addedAccessionNumberIssuer)
        #expect(file.dataSet.string(.patientID) == "A555")
    }

    @Test func theSourceMayBeRewrittenInPlace() throws {
        let source = Source(b: .explicitLE)
        let folder = try TemporaryDirectory()
        let path = folder.path + "/study.dcm"
        try writeFile(path, source.file)
        try IdentityRewriter.rewrite(path, to: path, Self.rewrite)
        #expect(try DICOMFile.read(path: path).dataSet.string(.patientID) == "A555")
        #expect(folder.files() == ["study.dcm"])
    }

    /// Every refusal: a clear error, and nothing under the target's name (nor a temporary file).
    @Test func refusedSourcesLeaveNoTarget() throws {
        let noPatientID = Source(b: .explicitLE)
        let withoutID = DICOMBytes.part10(
            transferSyntax: TransferSyntax.explicitVRLittleEndian,
            dataSet: noPatientID.before + noPatientID.afterAccession + noPatientID.afterID + noPatientID.rest)
        let full = Source(b: .explicitLE).file
        let bigEndian = DICOMBytes.part10(transferSyntax: TransferSyntax.explicitVRBigEndian, dataSet: Source(b: .explicitBE).dataSet)
        let deflated = DICOMBytes.part10(transferSyntax: TransferSyntax.deflatedExplicitVRLittleEndian, dataSet: try rawDeflate(Source(b: .explicitLE).dataSet))
        let cases: [(String, [UInt8], DICOMError.Code)] = [
            ("no Patient ID", withoutID, .missingAttribute),
            ("cut inside its pixel data", Array(full.dropLast(10)), .lengthOutOfBounds),
            ("big endian", bigEndian, .unsupportedTransferSyntax),
            ("deflated", deflated, .unsupportedTransferSyntax),
            ("not DICOM", Array("hello, this is not DICOM at all".utf8), .notDICOM),
        ]
        for (what, bytes, code) in cases {
            let folder = try TemporaryDirectory()
            try writeFile(folder.path + "/in.dcm", bytes)
            do {
                try IdentityRewriter.rewrite(folder.path + "/in.dcm", to: folder.path + "/out.dcm", Self.rewrite)
                Issue.record("\(what): rewritten")
            } catch {
                #expect(error.code == code, "\(what): \(error)")
                #expect(error.description.contains("in.dcm"), "\(what): \(error)")
            }
            #expect(folder.files() == ["in.dcm"], "\(what)")
        }
    }

    @Test func identifiersThatAreNotLOValuesAreRefused() throws {
        var bad = Self.rewrite
        bad.local.id = "A\\555"
        #expect(throws: DICOMError.self) { try Self.run(Source(b: .explicitLE), bad) }
        bad.local.id = "Ä555"
        #expect(throws: DICOMError.self) { try Self.run(Source(b: .explicitLE), bad) }
    }

    @Test func issuerQualifiersMoveWithTheSendersIdentifier() throws {
        let b = DICOMBytes.explicitLE
        var source = Source(b: b)
        let qualifiers = b.sequence(0x0010, 0x0024, items: [b.text(0x0040, 0x0032, "UT", "2.16.840.1.113883.2.1.4.1")], undefined: false)
        source.issuer = b.text(0x0010, 0x0021, "LO", "RSCH") + qualifiers
        let (output, _, _) = try Self.run(source)
        let file = try DICOMFile.read(bytes: output, options: .everything)
        #expect(file.dataSet[Tag(0x0010, 0x0024)] == nil)
        let sender = file.dataSet[Tag(0x0010, 0x1002)]?.items?.first
        #expect(sender?.string(.patientID) == "R123")
        #expect(sender?[Tag(0x0010, 0x0024)]?.items?.first?.string(Tag(0x0040, 0x0032)) == "2.16.840.1.113883.2.1.4.1")
    }

    @Test func aGroupLengthOfGroup0010IsRecomputed() throws {
        let b = DICOMBytes.explicitLE
        let source = Source(b: b)
        let group = source.afterAccession.count  // any stale value
        let patient = b.element(0x0010, 0x0010, "PN", Array("SMITH^JOHN".utf8))
        // Group 0010 starts with its (retired) group length.
        let withLength = Source(b: b)
        let ds =
            withLength.before + b.text(0x0008, 0x0060, "CS", "CT") + b.element(0x0010, 0x0000, "UL", b.u32(UInt32(group)))
            + patient + withLength.patientID + withLength.afterID + withLength.rest
        let folder = try TemporaryDirectory()
        try writeFile(folder.path + "/in.dcm", DICOMBytes.part10(transferSyntax: TransferSyntax.explicitVRLittleEndian, dataSet: ds))
        try IdentityRewriter.rewrite(folder.path + "/in.dcm", to: folder.path + "/out.dcm", Self.rewrite)
        let output = Array(try Data(contentsOf: URL(fileURLWithPath: folder.path + "/out.dcm")))
        let data = try Self.dataSet(of: output)
        let group0010 =
            patient + b.text(0x0010, 0x0020, "LO", "A555") + b.text(0x0010, 0x0021, "LO", "ASPH") + withLength.afterID
            + b.element(0x0010, 0x1002, "SQ", source.identifierItem("R123", "RSCH") + source.identifierItem("9434765919", "NHS"))
        let expected =
            withLength.before + withLength.accessionIssuer + b.text(0x0008, 0x0060, "CS", "CT")
            + b.element(0x0010, 0x0000, "UL", b.u32(UInt32(group0010.count))) + group0010 + withLength.rest
        #expect(data == expected)
    }

    /// Memory flat in file size: a 200 MB file rewritten with peak RSS growing by far less than it.
    @Test func a200MegabyteFileIsRewrittenInBoundedMemory() throws {
        let folder = try TemporaryDirectory()
        let b = DICOMBytes.explicitLE
        var source = Source(b: b)
        source.pixels = []
        let pixelBytes = 200 << 20
        let header = DICOMBytes.part10(transferSyntax: TransferSyntax.explicitVRLittleEndian, dataSet: Array(source.dataSet.dropLast(12)))
            + b.u16(0x7FE0) + b.u16(0x0010) + Array("OW".utf8) + [0, 0] + b.u32(UInt32(pixelBytes))
        _ = FileManager.default.createFile(atPath: folder.path + "/big.dcm", contents: nil)
        let handle = try FileHandle(forWritingTo: URL(fileURLWithPath: folder.path + "/big.dcm"))
        try handle.write(contentsOf: header)
        let chunk = Data((0..<(1 << 20)).map { UInt8(truncatingIfNeeded: $0 &* 7) })
        for _ in 0..<(pixelBytes >> 20) { try handle.write(contentsOf: chunk) }
        try handle.close()

        let before = peakResidentBytes()
        try IdentityRewriter.rewrite(folder.path + "/big.dcm", to: folder.path + "/out.dcm", Self.rewrite)
        let growth = peakResidentBytes() - before
        // The peak is the whole test process's, and other suites run beside this one (CI runs
        // saw 78 and then 112 MiB of growth from them while the rewrite was flat): three quarters
        // of the file's size is the line. A rewrite that held the pixel data would grow by all
        // of it, 200 MiB and more.
        #expect(growth < pixelBytes * 3 / 4, "peak RSS grew by \(growth >> 20) MiB rewriting a \(pixelBytes >> 20) MiB file")

        let size = try FileManager.default.attributesOfItem(atPath: folder.path + "/out.dcm")[.size] as? Int
        #expect(size.map { $0 > pixelBytes } == true)
        let out = try DICOMFile.verify(path: folder.path + "/out.dcm")
        #expect(out.dataSet.string(.patientID) == "A555")
        // The pixel data's last bytes are the source's.
        let tail = try FileHandle(forReadingFrom: URL(fileURLWithPath: folder.path + "/out.dcm"))
        try tail.seek(toOffset: UInt64(size ?? 0) - UInt64(chunk.count))
        #expect(try tail.readToEnd() == chunk)
        try tail.close()
    }

    private func peakResidentBytes() -> Int {
        var usage = rusage()
        getrusage(RUSAGE_SELF.rawValue, &usage)
        return usage.ru_maxrss * 1024  // kilobytes on Linux
    }
}
