import Foundation
import Testing

@testable import DICOM

@Suite("Writing files")
struct WriterTests {
    static func sample(_ builder: DICOMBytes, _ syntax: String) throws -> DICOMFile {
        try DICOMFile.read(DICOMBytes.part10(transferSyntax: syntax, dataSet: builder.sampleDataSet()), options: .everything)
    }

    /// The values a reader sees, independent of encoding: text decoded, numbers decoded. Private
    /// elements of an unknown creator are compared as little-endian bytes: implicit VR cannot
    /// carry their VR, so a reader sees them as UN (PS3.5 §6.2.2), whatever the writer.
    static func meaning(_ dataSet: DataSet) -> [String] {
        dataSet.elements.map { element in
            let order = element.wireVR == .UN ? ByteOrder.littleEndian : dataSet.byteOrder
            var value: String
            switch element.value {
            case .sequence(let items): value = "[" + items.map { meaning($0).joined(separator: ",") }.joined(separator: "|") + "]"
            case .fragments(let f): value = "\(f.map { Array($0) })"
            case .notLoaded: value = "?"
            case .bytes(let b):
                if element.tag.isPrivate && !element.tag.isPrivateCreator {
                    let size = element.vr.numberSize ?? 1
                    value = "\(order == .littleEndian || element.vr.isText ? Array(b) : swapped(Array(b), size))"
                } else if element.vr.isText {
                    value = element.strings(characterSet: dataSet.characterSet).joined(separator: "\\")
                } else if element.vr.numberSize != nil && !element.vr.isBulk {
                    value = element.vr == .AT ? "\(element.tags(byteOrder: order))"
                        : "\(element.integers(byteOrder: order))\(element.floats(byteOrder: order))"
                } else if element.vr == .OW {
                    value = "\(element.integers(byteOrder: order))"
                } else {
                    value = "\(Array(b))"
                }
            }
            let isPrivate = element.tag.isPrivate && !element.tag.isPrivateCreator
            return "\(element.tag) \(isPrivate ? "private" : element.vr.description) \(value)"
        }
    }

    static func swapped(_ bytes: [UInt8], _ size: Int) -> [UInt8] {
        stride(from: 0, to: bytes.count, by: size).flatMap { bytes[$0..<min($0 + size, bytes.count)].reversed() }
    }

    @Test("read, write, read gives the same data set", arguments: 0..<3)
    func roundTrip(_ index: Int) throws {
        let (syntax, builder, _) = ReaderTests.encodings[index]
        let original = try Self.sample(builder, syntax)
        for options in [WriteOptions(), WriteOptions(encoding: .implicitVRLittleEndian), WriteOptions(sequenceLengths: .defined)] {
            let written = try DICOMWriter.encode(original, options: options)
            let again = try DICOMFile.read(written, options: .everything)
            #expect(again.isPart10)
            #expect(again.encoding == options.encoding)
            #expect(again.transferSyntaxUID == (options.encoding.isExplicitVR ? TransferSyntax.explicitVRLittleEndian : TransferSyntax.implicitVRLittleEndian))
            #expect(Self.meaning(again.dataSet) == Self.meaning(original.dataSet), "from \(syntax) with \(options)")
            // Writing what we read back gives the same bytes: the writer is stable.
            #expect(try DICOMWriter.encode(again, options: options) == written)
        }
    }

    @Test func metaHasACorrectGroupLengthAndOurImplementation() throws {
        let original = try Self.sample(.explicitLE, TransferSyntax.explicitVRLittleEndian)
        let bytes = try DICOMWriter.encode(original)
        let again = try DICOMFile.read(bytes)
        let groupLength = try #require(again.meta.int(.fileMetaInformationGroupLength))
        // 132 (preamble + DICM) + 12 (the group length element) + the group: where the data set starts.
        let firstDataElement = 132 + 12 + groupLength
        #expect(bytes[firstDataElement] == 0x08 && bytes[firstDataElement + 1] == 0x00)
        #expect(again.meta.string(.implementationClassUID) == DICOMWriter.implementationClassUID)
        #expect(again.meta.string(.mediaStorageSOPInstanceUID) == "1.2.3.4")
    }

    @Test func oddValuesArePaddedToEvenLength() throws {
        let e = DICOMBytes.explicitLE
        let data = e.element(0x0010, 0x0020, "LO", Array("ABC".utf8)) + e.element(0x0020, 0x000D, "UI", Array("1.2.3".utf8))
        let file = try DICOMFile.read(DICOMBytes.part10(transferSyntax: TransferSyntax.explicitVRLittleEndian, dataSet: data))
        let again = try DICOMFile.read(try DICOMWriter.encode(file))
        #expect(again.dataSet[.patientID]?.bytes.map(Array.init) == Array("ABC ".utf8))
        #expect(again.dataSet[.studyInstanceUID]?.bytes.map(Array.init) == Array("1.2.3".utf8) + [0])
        #expect(again.dataSet.string(.patientID) == "ABC")
    }

    @Test func encapsulatedPixelDataIsCarriedThrough() throws {
        let b = DICOMBytes.explicitLE
        let fragments = b.item([], undefined: false) + b.item([0xFF, 0xD8, 1, 0xFF, 0xD9, 0], undefined: false)
        let data = b.text(0x0008, 0x0060, "CS", "CT") + b.element(0x7FE0, 0x0010, "OB", fragments + b.sequenceEnd, undefined: true)
        let file = try DICOMFile.read(DICOMBytes.part10(transferSyntax: TransferSyntax.jpegBaseline, dataSet: data), options: .everything)
        let again = try DICOMFile.read(try DICOMWriter.encode(file), options: .everything)
        #expect(again.transferSyntaxUID == TransferSyntax.jpegBaseline)
        #expect(Self.meaning(again.dataSet) == Self.meaning(file.dataSet))
        #expect(throws: DICOMError.self) { try DICOMWriter.encode(file, options: WriteOptions(encoding: .implicitVRLittleEndian)) }
    }

    @Test func valuesNotLoadedCannotBeWritten() throws {
        var options = ReadOptions.everything
        options.bulkDataThreshold = 1
        let file = try DICOMFile.read(DICOMBytes.part10(transferSyntax: TransferSyntax.explicitVRLittleEndian, dataSet: DICOMBytes.explicitLE.sampleDataSet()), options: options)
        let error = try #require(throws: DICOMError.self) { try DICOMWriter.encode(file) }
        #expect(error.code == .unencodable)
        #expect(error.tag == .pixelData)
    }

    @Test func filesAppearWholeOrNotAtAll() throws {
        let directory = try TemporaryDirectory()
        let file = try Self.sample(.explicitLE, TransferSyntax.explicitVRLittleEndian)
        let path = directory.path + "/out.dcm"
        try DICOMWriter.write(file, toPath: path)
        #expect(directory.files() == ["out.dcm"])  // no temporary left behind
        #expect(try DICOMFile.read(path: path).dataSet.string(.patientID) == "RSCH123")
        // Overwriting replaces atomically.
        try DICOMWriter.write(file, toPath: path, options: WriteOptions(encoding: .implicitVRLittleEndian))
        #expect(try DICOMFile.read(path: path).encoding == .implicitVRLittleEndian)
        #expect(directory.files() == ["out.dcm"])
        // A folder that does not exist: an I/O error naming it, and nothing written anywhere.
        let error = try #require(throws: DICOMError.self) { try DICOMWriter.write(file, toPath: directory.path + "/missing/out.dcm") }
        #expect(error.code == .io)
        #expect(error.message.contains("missing"))
        #expect(directory.files() == ["out.dcm"])
    }
}
