import Foundation
import Testing

@testable import DICOM

/// Implicit ↔ explicit VR little endian, streamed (`TransferSyntaxConversion`): what a DIMSE
/// sender does when a PACS refuses the syntax an instance is stored in.
@Suite("Converting between implicit and explicit VR")
struct TransferSyntaxConversionTests {
    /// The pieces put together: bytes as made, ranges read from the file.
    static func assemble(_ pieces: [TransferSyntaxConversion.Piece], from path: String) throws -> [UInt8] {
        let file = [UInt8](try Data(contentsOf: URL(fileURLWithPath: path)))
        return pieces.flatMap { piece -> [UInt8] in
            switch piece {
            case .bytes(let bytes): return bytes
            case .copy(let offset, let count): return Array(file[offset..<(offset + count)])
            }
        }
    }

    /// The data set part of a whole encoded file (after its File Meta Information).
    static func dataSetBytes(_ file: [UInt8]) -> [UInt8] {
        let metaLength = Int(file[140]) | Int(file[141]) << 8 | Int(file[142]) << 16 | Int(file[143]) << 24
        return Array(file[(144 + metaLength)...])
    }

    /// A sample with pixel data large enough to be copied from the file rather than held, in a
    /// nested sequence's item too.
    static func sample(_ builder: DICOMBytes, bulk: Int = 40_000) -> [UInt8] {
        let pixels = (0..<bulk).map { UInt8(truncatingIfNeeded: $0 &* 7) }
        let icon = builder.element(0x0028, 0x0010, "US", builder.u16(8)) + builder.element(0x7FE0, 0x0010, "OW", pixels)
        return builder.sampleDataSet(pixels: pixels).dropLast(8 + (builder.explicit ? 4 : 0) + pixels.count)
            + builder.sequence(0x0088, 0x0200, items: [icon])
            + builder.element(0x7FE0, 0x0010, "OW", pixels)
    }

    @Test("the streamed conversion gives exactly what the writer gives from the data set read whole", arguments: [
        (TransferSyntax.implicitVRLittleEndian, TransferSyntax.explicitVRLittleEndian),
        (TransferSyntax.explicitVRLittleEndian, TransferSyntax.implicitVRLittleEndian),
    ])
    func matchesTheWriter(_ from: String, _ to: String) throws {
        let folder = try TemporaryDirectory()
        let path = folder.path + "/source.dcm"
        let builder = from == TransferSyntax.implicitVRLittleEndian ? DICOMBytes.implicitLE : DICOMBytes.explicitLE
        try writeFile(path, DICOMBytes.part10(transferSyntax: from, dataSet: Self.sample(builder)))
        let pieces = try TransferSyntaxConversion.dataSet(of: path, to: to)
        // The bulk values were not held: ranges of the file.
        #expect(pieces.filter { if case .copy = $0 { return true } else { return false } }.count == 2)
        let converted = try Self.assemble(pieces, from: path)

        var whole = try DICOMFile.read(path: path, options: .everything)
        whole.dataSet.elements.removeAll { $0.tag.isGroupLength }
        let target: Encoding = to == TransferSyntax.explicitVRLittleEndian ? .explicitVRLittleEndian : .implicitVRLittleEndian
        let expected = Self.dataSetBytes(try DICOMWriter.encode(whole, options: WriteOptions(encoding: target)))
        #expect(converted == expected)

        // Read back in the new syntax: the same values.
        let again = try DICOMFile.read(DICOMBytes.part10(transferSyntax: to, dataSet: converted), options: .everything)
        #expect(WriterTests.meaning(again.dataSet) == WriterTests.meaning(whole.dataSet))
        #expect(again.dataSet[.pixelData]?.bytes.map(Array.init) == whole.dataSet[.pixelData]?.bytes.map(Array.init))
    }

    @Test func explicitVRTakesTheDictionarysVRAndUNForAnUnknownPrivateElement() throws {
        let folder = try TemporaryDirectory()
        let path = folder.path + "/source.dcm"
        try writeFile(path, DICOMBytes.part10(transferSyntax: TransferSyntax.implicitVRLittleEndian, dataSet: DICOMBytes.implicitLE.sampleDataSet()))
        let converted = try Self.assemble(try TransferSyntaxConversion.dataSet(of: path, to: TransferSyntax.explicitVRLittleEndian), from: path)
        let e = DICOMBytes.explicitLE
        // Patient ID as LO, the private creator as LO, its element of an unknown creator as UN
        // (long form), the pixel data as OW: each header as PS3.5 §7.1.2 writes it.
        for expected in [e.text(0x0010, 0x0020, "LO", "RSCH123"), e.text(0x0019, 0x0010, "LO", "CONSORT"), e.element(0x0019, 0x1001, "UN", e.u32(123_456)), e.element(0x7FE0, 0x0010, "OW", [1, 2, 3, 4])] {
            #expect(converted.firstRange(of: expected) != nil, "\(expected)")
        }
    }

    @Test func onlyTheUncompressedLittleEndianSyntaxesAreConverted() throws {
        #expect(TransferSyntaxConversion.canConvert(from: TransferSyntax.implicitVRLittleEndian, to: TransferSyntax.explicitVRLittleEndian))
        #expect(!TransferSyntaxConversion.canConvert(from: TransferSyntax.explicitVRLittleEndian, to: TransferSyntax.explicitVRLittleEndian))
        #expect(!TransferSyntaxConversion.canConvert(from: TransferSyntax.jpegBaseline, to: TransferSyntax.explicitVRLittleEndian))
        #expect(!TransferSyntaxConversion.canConvert(from: TransferSyntax.explicitVRBigEndian, to: TransferSyntax.explicitVRLittleEndian))
        #expect(!TransferSyntaxConversion.canConvert(from: TransferSyntax.deflatedExplicitVRLittleEndian, to: TransferSyntax.implicitVRLittleEndian))
        let folder = try TemporaryDirectory()
        let path = folder.path + "/big.dcm"
        try writeFile(path, DICOMBytes.part10(transferSyntax: TransferSyntax.explicitVRBigEndian, dataSet: DICOMBytes.explicitBE.sampleDataSet()))
        #expect(throws: DICOMError.self) { try TransferSyntaxConversion.dataSet(of: path, to: TransferSyntax.explicitVRLittleEndian) }
    }

    @Test func aTruncatedFileIsRefusedNotHalfSent() throws {
        let folder = try TemporaryDirectory()
        let path = folder.path + "/cut.dcm"
        let whole = DICOMBytes.part10(transferSyntax: TransferSyntax.implicitVRLittleEndian, dataSet: Self.sample(.implicitLE))
        try writeFile(path, Array(whole.dropLast(1000)))
        #expect(throws: DICOMError.self) { try TransferSyntaxConversion.dataSet(of: path, to: TransferSyntax.explicitVRLittleEndian) }
    }
}
