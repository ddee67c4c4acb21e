import Testing

@testable import DICOM

/// A hostile or broken file gives a `DICOMError` with a place, never a trap, a hang or a huge
/// allocation. These run on the real parser over hand-made bad input.
@Suite("Malformed input")
struct MalformedInputTests {
    static let sample = DICOMBytes.part10(
        transferSyntax: TransferSyntax.explicitVRLittleEndian, dataSet: DICOMBytes.explicitLE.sampleDataSet())

    @Test func truncationAtEveryOffsetIsAnErrorOrAShorterReading() throws {
        let complete = try DICOMFile.read(Self.sample, options: .everything)
        var errors = 0
        for cut in 0..<Self.sample.count {
            let prefix = Array(Self.sample[..<cut])
            do {
                let file = try DICOMFile.read(prefix, options: .everything)
                // Cut exactly between two top-level elements: a shorter, valid file.
                #expect(file.dataSet.count <= complete.dataSet.count, "cut at \(cut)")
            } catch {
                errors += 1
                #expect(error.offset != nil || error.code == .notDICOM, "cut at \(cut): \(error)")
                #expect(error.offset.map { $0 <= cut } ?? true, "cut at \(cut): error placed past the end")
            }
        }
        #expect(errors > Self.sample.count / 2)
    }

    @Test func truncatedFilesOnDiskFailTheSameWay() throws {
        let directory = try TemporaryDirectory()
        let path = directory.path + "/cut.dcm"
        try writeFile(path, Array(Self.sample.dropLast(3)))
        #expect(throws: DICOMError.self) { try DICOMFile.read(path: path, options: .everything) }
    }

    @Test("absurd lengths are refused without allocating", arguments: [UInt32(0xFFFF_FFF0), 0x7FFF_FFFF, 1_000_000])
    func absurdLengthsAreRefused(_ length: UInt32) throws {
        let e = DICOMBytes.explicitLE
        var data = e.text(0x0008, 0x0060, "CS", "CT") + e.element(0x0010, 0x1000, "UT", [])
        // Patch the UT length field (last 4 bytes of its header) with the absurd value.
        data.replaceSubrange(data.count - 4..<data.count, with: e.u32(length))
        data += Array("short".utf8)
        let error = try #require(throws: DICOMError.self) {
            try DICOMFile.read(DICOMBytes.part10(transferSyntax: TransferSyntax.explicitVRLittleEndian, dataSet: data))
        }
        #expect(error.code == .lengthOutOfBounds)
        #expect(error.tag == Tag(0x0010, 0x1000))
        #expect(error.offset != nil)
    }

    @Test func anItemLongerThanItsSequenceIsAnError() throws {
        let e = DICOMBytes.explicitLE
        let item = e.text(0x0008, 0x0100, "SH", "ABCD")
        var sequence = e.element(0x0008, 0x1140, "SQ", e.item(item, undefined: false))
        // The item claims 100 bytes more than the sequence holds.
        let itemLengthAt = 12 + 4
        sequence.replaceSubrange(itemLengthAt..<itemLengthAt + 4, with: e.u32(UInt32(item.count + 100)))
        let data = sequence + e.text(0x0010, 0x0020, "LO", "AFTER") + [UInt8](repeating: 0x20, count: 200)
        let error = try #require(throws: DICOMError.self) {
            try DICOMFile.read(DICOMBytes.part10(transferSyntax: TransferSyntax.explicitVRLittleEndian, dataSet: data))
        }
        #expect(error.code == .lengthOutOfBounds)
    }

    @Test func nestingBeyondTheLimitIsRefused() throws {
        let e = DICOMBytes.explicitLE
        var content = e.text(0x0008, 0x0100, "SH", "LEAF")
        for _ in 0..<200 { content = e.element(0x0040, 0xA730, "SQ", e.item(content) + e.sequenceEnd, undefined: true) }
        let bytes = DICOMBytes.part10(transferSyntax: TransferSyntax.explicitVRLittleEndian, dataSet: content)
        let error = try #require(throws: DICOMError.self) { try DICOMFile.read(bytes) }
        #expect(error.code == .nestingTooDeep)
        var deeper = ReadOptions.headers
        deeper.maximumNestingDepth = 250
        #expect(try DICOMFile.read(bytes, options: deeper).dataSet.count == 1)
    }

    @Test func aMissingSequenceDelimiterIsAnError() throws {
        let e = DICOMBytes.explicitLE
        let data = e.element(0x0008, 0x1140, "SQ", e.item(e.text(0x0008, 0x1150, "UI", "1.2")), undefined: true)
        let error = try #require(throws: DICOMError.self) {
            try DICOMFile.read(DICOMBytes.part10(transferSyntax: TransferSyntax.explicitVRLittleEndian, dataSet: data))
        }
        #expect(error.code == .truncated)
    }

    @Test func undefinedLengthOnAPlainElementIsAnError() throws {
        let e = DICOMBytes.explicitLE
        let data = e.element(0x0010, 0x4000, "LT", []) + e.element(0x0010, 0x4001, "UT", Array("AB".utf8), undefined: true)
        let error = try #require(throws: DICOMError.self) {
            try DICOMFile.read(DICOMBytes.part10(transferSyntax: TransferSyntax.explicitVRLittleEndian, dataSet: data))
        }
        #expect(error.code == .malformed)
        #expect(error.tag == Tag(0x0010, 0x4001))
    }

    @Test func notDICOMIsSaidPlainly() throws {
        for bytes in [[], Array("hello, world".utf8), [UInt8](repeating: 0xAB, count: 300)] {
            let error = try #require(throws: DICOMError.self) { try DICOMFile.read(bytes) }
            #expect(error.code == .notDICOM)
        }
    }

    @Test func corruptDeflateIsAnInflateError() throws {
        let bytes = DICOMBytes.part10(
            transferSyntax: TransferSyntax.deflatedExplicitVRLittleEndian, dataSet: [UInt8](repeating: 0xFF, count: 64))
        let error = try #require(throws: DICOMError.self) { try DICOMFile.read(bytes) }
        #expect(error.code == .inflateFailed)
    }

    @Test func aDeflateBombStopsAtTheLimit() throws {
        // 64 MiB of one private OB value, deflated to ~64 KiB.
        let e = DICOMBytes.explicitLE
        let huge = e.text(0x0009, 0x0010, "LO", "BOMB") + e.element(0x0009, 0x1001, "OB", [UInt8](repeating: 0, count: 64 << 20))
        let bytes = DICOMBytes.part10(transferSyntax: TransferSyntax.deflatedExplicitVRLittleEndian, dataSet: try rawDeflate(huge))
        var options = ReadOptions.headers
        options.maximumLoadedBytes = 1 << 20
        let error = try #require(throws: DICOMError.self) { try DICOMFile.read(bytes, options: options) }
        #expect(error.code == .limitExceeded)
    }

    @Test func randomByteFlipsNeverTrap() throws {
        // Deterministic pseudo-random mutations of a valid file: each must read or throw.
        var generator = SplitMix(seed: 42)
        for _ in 0..<3000 {
            var bytes = Self.sample
            for _ in 0..<Int(generator.next() % 8 + 1) {
                let at = Int(generator.next() % UInt64(bytes.count))
                bytes[at] = UInt8(truncatingIfNeeded: generator.next())
            }
            _ = try? DICOMFile.read(bytes, options: .everything)
        }
    }
}

struct SplitMix {
    var state: UInt64
    init(seed: UInt64) { state = seed }
    mutating func next() -> UInt64 {
        state &+= 0x9E37_79B9_7F4A_7C15
        var z = state
        z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
        z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
        return z ^ (z >> 31)
    }
}

@Suite("Malformed input: cost")
struct CostTests {
    @Test func manyPrivateElementsCostLinearTime() throws {
        // 60,000 private elements in implicit VR, each needing its creator's dictionary: a search
        // of the elements for each would take minutes; the creator table takes milliseconds.
        let i = DICOMBytes.implicitLE
        var data = i.text(0x0029, 0x0010, "LO", "SIEMENS CSA HEADER")
        for group in stride(from: 0x0029, to: 0x0029 + 2 * 240, by: 2) {
            let g = UInt16(group)
            if g != 0x0029 { data += i.text(g, 0x0010, "LO", "SIEMENS CSA HEADER") }
            for element in 0x1000..<0x1000 + 250 { data += i.element(g, UInt16(element), "UN", [1, 2]) }
        }
        let file = try DICOMFile.read(DICOMBytes.part10(transferSyntax: TransferSyntax.implicitVRLittleEndian, dataSet: data))
        #expect(file.dataSet.count == 240 * 251)
        #expect(file.dataSet[Tag(0x0029, 0x1008)]?.vr == .CS)
    }
}
