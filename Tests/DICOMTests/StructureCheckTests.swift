import Foundation
import Testing

@testable import DICOM

/// `DICOMFile.verify`: a file cut anywhere is refused with where it ends; a whole file passes,
/// with a warning for bytes after its data set; pixel data is skipped by seeking, not read.
@Suite("Structural check of whole files")
struct StructureCheckTests {
    /// A small image in each encoding the check must handle, with the cut points that matter
    /// named; every other byte offset is tried as well.
    struct Sample: CustomStringConvertible, Sendable {
        let name: String
        let bytes: [UInt8]
        var description: String { name }
    }

    static let pixels = (0..<64).map { UInt8($0) }

    static func native(_ e: DICOMBytes, syntax: String) -> [UInt8] {
        DICOMBytes.part10(transferSyntax: syntax, dataSet: e.sampleDataSet(pixels: pixels))
    }

    /// JPEG baseline: an empty offset table, two fragments, the sequence delimiter.
    static let encapsulated: [UInt8] = {
        let e = DICOMBytes.explicitLE
        var dataSet = e.sampleDataSet(pixels: [])
        dataSet.removeLast(12)  // the empty native Pixel Data element: 8 + 4 bytes of header
        let fragments = e.item([], undefined: false) + e.item(Array(pixels[0..<30]), undefined: false)
            + e.item(Array(pixels[30..<64]), undefined: false)
        dataSet += e.element(0x7FE0, 0x0010, "OB", fragments + e.sequenceEnd, undefined: true)
        return DICOMBytes.part10(transferSyntax: TransferSyntax.jpegBaseline, dataSet: dataSet)
    }()

    static let samples: [Sample] = [
        Sample(name: "explicit VR little endian", bytes: native(.explicitLE, syntax: TransferSyntax.explicitVRLittleEndian)),
        Sample(name: "implicit VR little endian", bytes: native(.implicitLE, syntax: TransferSyntax.implicitVRLittleEndian)),
        Sample(name: "explicit VR big endian", bytes: native(.explicitBE, syntax: TransferSyntax.explicitVRBigEndian)),
        Sample(name: "deflated", bytes: DICOMBytes.part10(
            transferSyntax: TransferSyntax.deflatedExplicitVRLittleEndian,
            dataSet: try! rawDeflate(DICOMBytes.explicitLE.sampleDataSet(pixels: pixels)))),
        Sample(name: "encapsulated (JPEG baseline)", bytes: encapsulated),
    ]

    @Test("a whole file passes", arguments: samples)
    func aWholeFilePasses(_ sample: Sample) throws {
        let file = try DICOMFile.verify(bytes: sample.bytes)
        #expect(file.dataSet.contains(.pixelData))
        #expect(file.warnings.isEmpty, "\(file.warnings)")
    }

    @Test("every cut point is refused, saying where the file ends", arguments: samples)
    func everyCutPointIsRefused(_ sample: Sample) throws {
        for cut in 0..<sample.bytes.count {
            let prefix = Array(sample.bytes[..<cut])
            do {
                let file = try DICOMFile.verify(bytes: prefix)
                Issue.record("\(sample.name) cut at \(cut) of \(sample.bytes.count) passed the check (\(file.dataSet.count) elements)")
            } catch {
                if cut < 132 {
                    #expect(error.code == .notDICOM, "cut at \(cut): \(error)")
                } else {
                    let text = error.description.lowercased()
                    #expect(text.contains("the file ends at \(cut)") || text.contains("the file ends at byte \(cut)"),
                        "\(sample.name) cut at \(cut): \(error)")
                }
            }
        }
    }

    /// The message a sysadmin reads for the commonest case: a CT cut inside its pixel data.
    @Test func aCutInsidePixelDataNamesTheDeclaredLengthAndTheEnd() throws {
        let whole = Self.native(.explicitLE, syntax: TransferSyntax.explicitVRLittleEndian)
        let valueStart = whole.count - Self.pixels.count
        let error = try #require(throws: DICOMError.self) { try DICOMFile.verify(bytes: Array(whole.dropLast(10))) }
        #expect(error.message == "Pixel Data (7FE0,0010) declares 64 bytes at offset \(valueStart); the file ends at \(whole.count - 10)")
        #expect(error.tag == .pixelData)
    }

    @Test func justBeforeTheSequenceDelimiterIsRefused() throws {
        let error = try #require(throws: DICOMError.self) { try DICOMFile.verify(bytes: Array(Self.encapsulated.dropLast(8))) }
        #expect(error.message.contains("ends inside encapsulated data"), "\(error)")
        #expect(error.description.contains("the file ends at byte \(Self.encapsulated.count - 8)"))
    }

    @Test func bytesAfterTheDataSetAreAWarningNotARefusal() throws {
        for sample in Self.samples where !sample.name.hasPrefix("deflated") {
            for garbage in [[UInt8](repeating: 0, count: 3), Array("trailing bytes written by a broken exporter".utf8), [UInt8](repeating: 0xFF, count: 100)] {
                let file = try DICOMFile.verify(bytes: sample.bytes + garbage)
                #expect(file.dataSet.contains(.pixelData), "\(sample.name)")
                #expect(file.warnings.contains { $0.message.contains("\(garbage.count) bytes after") || $0.message.contains("trailing bytes") },
                    "\(sample.name) + \(garbage.count) bytes: \(file.warnings)")
            }
        }
        // Data set trailing padding (FFFC,FFFC) is an element like any other: no warning.
        let e = DICOMBytes.explicitLE
        let padded = try DICOMFile.verify(bytes: Self.samples[0].bytes + e.element(0xFFFC, 0xFFFC, "OB", [0, 0, 0, 0]))
        #expect(padded.warnings.isEmpty, "\(padded.warnings)")
    }

    @Test func anImageWithoutItsPixelDataIsRefusedAndAReportIsNot() throws {
        let e = DICOMBytes.explicitLE
        // A CT instance with nothing after its header: cut exactly between two elements.
        let ct = e.text(0x0008, 0x0016, "UI", "1.2.840.10008.5.1.4.1.1.2") + e.text(0x0008, 0x0018, "UI", "1.2.3.4")
        let error = try #require(throws: DICOMError.self) {
            try DICOMFile.verify(bytes: DICOMBytes.part10(transferSyntax: TransferSyntax.explicitVRLittleEndian, dataSet: ct))
        }
        #expect(error.message.contains("without Pixel Data"), "\(error)")
        // A structured report has no pixel data, and needs none.
        let report = e.text(0x0008, 0x0016, "UI", "1.2.840.10008.5.1.4.1.1.88.22") + e.text(0x0008, 0x0018, "UI", "1.2.3.4")
        let whole = DICOMBytes.part10(transferSyntax: TransferSyntax.explicitVRLittleEndian, dataSet: report)
        _ = try DICOMFile.verify(bytes: whole)
        // But one cut inside its last element's header (1 to 7 bytes of it left) is refused:
        // without pixel data nothing else would tell it was cut.
        let sr = whole + e.text(0x0040, 0xA040, "CS", "CONTAINER")
        for left in 1...7 {
            let cut = Array(sr.prefix(whole.count + left))
            #expect(throws: DICOMError.self, "cut \(left) bytes into the last element's header") { try DICOMFile.verify(bytes: cut) }
        }
    }

    /// Seeking, not reading: a 4 MB image is checked by reading its header and nothing of its
    /// pixels (bytes counted as the file source hands them over).
    @Test func theCheckSeeksOverPixelDataInsteadOfReadingIt() throws {
        let directory = try TemporaryDirectory()
        let big = [UInt8](repeating: 0x5A, count: 4 << 20)
        let native = DICOMBytes.part10(transferSyntax: TransferSyntax.explicitVRLittleEndian, dataSet: DICOMBytes.explicitLE.sampleDataSet(pixels: big))
        try writeFile(directory.path + "/native.dcm", native)
        let source = try FileByteSource(path: directory.path + "/native.dcm")
        _ = try DICOMFile.verify(file: source)
        #expect(source.bytesRead <= 16 * 1024, "read \(source.bytesRead) bytes of a \(native.count)-byte file")
        // Encapsulated, 64 fragments of 64 KB: each fragment's 8-byte header is read, not its data.
        let e = DICOMBytes.explicitLE
        var dataSet = e.sampleDataSet(pixels: [])
        dataSet.removeLast(12)
        let fragments = e.item([], undefined: false) + (0..<64).map { _ in e.item([UInt8](repeating: 0x33, count: 65536), undefined: false) }.reduce([], +)
        dataSet += e.element(0x7FE0, 0x0010, "OB", fragments + e.sequenceEnd, undefined: true)
        let jpeg = DICOMBytes.part10(transferSyntax: TransferSyntax.jpegBaseline, dataSet: dataSet)
        try writeFile(directory.path + "/jpeg.dcm", jpeg)
        let jpegSource = try FileByteSource(path: directory.path + "/jpeg.dcm")
        _ = try DICOMFile.verify(file: jpegSource)
        #expect(jpegSource.bytesRead <= 64 * 1024 + 16 * 1024, "read \(jpegSource.bytesRead) bytes of a \(jpeg.count)-byte file")
        // And the header read of the same file reads only its first 8 KiB.
        let headerSource = try FileByteSource(path: directory.path + "/native.dcm")
        _ = try DICOMFile.read(stream: ByteStream(source: headerSource, initialChunk: 8192), options: .headers)
        #expect(headerSource.bytesRead <= 8192, "a header read read \(headerSource.bytesRead) bytes")
    }

    /// The receiver's form: the first bytes from memory, the rest from the file.
    @Test func aPrefixInMemoryAndTheRestOnDiskAreCheckedAsOne() throws {
        let directory = try TemporaryDirectory()
        let whole = Self.native(.explicitLE, syntax: TransferSyntax.explicitVRLittleEndian)
        try writeFile(directory.path + "/whole.dcm", whole)
        for kept in [0, 10, 200, whole.count - 1, whole.count, whole.count + 100] {
            let file = try DICOMFile.verify(prefix: whole.prefix(kept), path: directory.path + "/whole.dcm")
            #expect(file.dataSet.string(.sopInstanceUID) == "1.2.3.4")
        }
        try writeFile(directory.path + "/cut.dcm", Array(whole.dropLast(5)))
        #expect(throws: DICOMError.self) { try DICOMFile.verify(prefix: whole.prefix(200), path: directory.path + "/cut.dcm") }
    }
}
