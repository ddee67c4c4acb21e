import Testing

@testable import DICOM

@Suite("Reading headers")
struct ReaderTests {
    static let encodings: [(String, DICOMBytes, Encoding)] = [
        (TransferSyntax.explicitVRLittleEndian, .explicitLE, .explicitVRLittleEndian),
        (TransferSyntax.implicitVRLittleEndian, .implicitLE, .implicitVRLittleEndian),
        (TransferSyntax.explicitVRBigEndian, .explicitBE, .explicitVRBigEndian),
    ]

    @Test("every native transfer syntax reads to the same values", arguments: 0..<3)
    func nativeSyntaxesReadAlike(_ index: Int) throws {
        let (syntax, builder, encoding) = Self.encodings[index]
        let file = try DICOMFile.read(DICOMBytes.part10(transferSyntax: syntax, dataSet: builder.sampleDataSet()))
        #expect(file.isPart10)
        #expect(file.transferSyntaxUID == syntax)
        #expect(file.encoding == encoding)
        let ds = file.dataSet
        #expect(ds.string(.modality) == "CT")
        #expect(ds.string(.patientName) == "Müller^Jörg")
        #expect(ds.personName(.patientName)?.familyName == "Müller")
        #expect(ds.int(Tag(0x0028, 0x0010)) == 512)
        #expect(ds.doubles(Tag(0x0020, 0x0032)) == [-12.5, 0, 300])
        #expect(ds.string(.patientID) == "RSCH123")
        let references = try #require(ds.sequence(Tag(0x0008, 0x1140)))
        #expect(references.count == 2)
        #expect(references[1].sequence(Tag(0x0040, 0xA043))?.first?.string(Tag(0x0008, 0x0100)) == "CODE")
        #expect(ds.int(Tag(0x0019, 0x1001)) == (encoding.isExplicitVR ? 123_456 : nil))
        // Stopped before Pixel Data, without reading it.
        #expect(ds[.pixelData] == nil)
        #expect(file.pixelDataOffset != nil)
    }

    @Test func keywordsReachElements() throws {
        let file = try DICOMFile.read(DICOMBytes.part10(transferSyntax: TransferSyntax.explicitVRLittleEndian, dataSet: DICOMBytes.explicitLE.sampleDataSet()))
        #expect(file.dataSet.string("PatientID") == "RSCH123")
        #expect(file.dataSet["StudyInstanceUID"]?.vr == .UI)
        #expect(file.dataSet["NoSuchKeyword"] == nil)
        #expect(DataDictionary.tag(forKeyword: "PatientName") == .patientName)
        #expect(DataDictionary.entry(for: Tag(0x6002, 0x3000))?.keyword == "OverlayData")
        #expect(DataDictionary.entry(for: Tag(0x6002, 0x3000))?.ambiguity == .obOrOW)
    }

    @Test func pixelDataIsReadOnlyWhenAsked() throws {
        let bytes = DICOMBytes.part10(transferSyntax: TransferSyntax.explicitVRLittleEndian, dataSet: DICOMBytes.explicitLE.sampleDataSet(pixels: [9, 8, 7, 6]))
        let whole = try DICOMFile.read(bytes, options: .everything)
        #expect(whole.dataSet[.pixelData]?.bytes.map(Array.init) == [9, 8, 7, 6])
        var skipping = ReadOptions.everything
        skipping.bulkDataThreshold = 2
        let skipped = try DICOMFile.read(bytes, options: skipping)
        guard case .notLoaded(let offset, let length)? = skipped.dataSet[.pixelData]?.value else {
            Issue.record("pixel data should be located, not loaded")
            return
        }
        #expect(length == 4)
        #expect(Array(bytes[offset..<offset + 4]) == [9, 8, 7, 6])
    }

    @Test func elementsAfterSkippedBulkDataAreRead() throws {
        let b = DICOMBytes.explicitLE
        let data = b.text(0x0008, 0x0060, "CS", "MR") + b.element(0x7FE0, 0x0010, "OB", [UInt8](repeating: 7, count: 4096))
            + b.element(0xFFFC, 0xFFFC, "OB", [0, 0])
        var options = ReadOptions.everything
        options.bulkDataThreshold = 1024
        let file = try DICOMFile.read(DICOMBytes.part10(transferSyntax: TransferSyntax.explicitVRLittleEndian, dataSet: data), options: options)
        #expect(file.dataSet[.dataSetTrailingPadding]?.bytes?.count == 2)
    }

    @Test func encapsulatedPixelDataKeepsItsFragments() throws {
        let b = DICOMBytes.explicitLE
        let fragments = b.item([], undefined: false) + b.item([0xFF, 0xD8, 1, 2], undefined: false) + b.item([3, 4, 0xFF, 0xD9], undefined: false)
        let data = b.text(0x0008, 0x0060, "CS", "CT") + b.element(0x7FE0, 0x0010, "OB", fragments + b.sequenceEnd, undefined: true)
        let file = try DICOMFile.read(DICOMBytes.part10(transferSyntax: TransferSyntax.jpegBaseline, dataSet: data), options: .everything)
        guard case .fragments(let parts)? = file.dataSet[.pixelData]?.value else {
            Issue.record("expected fragments")
            return
        }
        #expect(parts.map { Array($0) } == [[], [0xFF, 0xD8, 1, 2], [3, 4, 0xFF, 0xD9]])
        #expect(file.encoding == .explicitVRLittleEndian)
    }

    @Test func bareDataSetsAreDetectedInEveryEncoding() throws {
        for (_, builder, encoding) in Self.encodings {
            let file = try DICOMFile.read(builder.sampleDataSet())
            #expect(!file.isPart10)
            #expect(file.meta.isEmpty)
            #expect(file.transferSyntaxUID == nil)
            #expect(file.encoding == encoding, "detected \(file.encoding) for \(encoding)")
            #expect(file.dataSet.string(.patientID) == "RSCH123")
        }
    }

    @Test func dataSetEncodedAgainstItsMetaIsReadAsItIs() throws {
        // The meta says explicit VR; the data set is implicit (pydicom's SC_rgb_jpeg.dcm case).
        let data = DICOMBytes.implicitLE.sampleDataSet()
        let file = try DICOMFile.read(DICOMBytes.part10(transferSyntax: TransferSyntax.explicitVRLittleEndian, dataSet: data))
        #expect(file.encoding == .implicitVRLittleEndian)
        #expect(file.dataSet.string(.patientID) == "RSCH123")
        #expect(file.warnings.contains { $0.message.contains("implicit VR although") })
    }

    @Test func undefinedLengthUNHoldsAnImplicitSequence() throws {
        let e = DICOMBytes.explicitLE, i = DICOMBytes.implicitLE
        let inner = i.text(0x0008, 0x0100, "SH", "X1") + i.sequence(0x0040, 0xA730, items: [i.text(0x0040, 0xA040, "CS", "TEXT")])
        let data = e.text(0x0029, 0x0010, "LO", "VENDOR") + e.element(0x0029, 0x1001, "UN", i.item(inner) + e.sequenceEnd, undefined: true)
        let file = try DICOMFile.read(DICOMBytes.part10(transferSyntax: TransferSyntax.explicitVRLittleEndian, dataSet: data))
        let element = try #require(file.dataSet[Tag(0x0029, 0x1001)])
        #expect(element.vr == .SQ)
        #expect(element.wireVR == .UN)
        let items = try #require(element.items)
        #expect(items.first?.string(Tag(0x0008, 0x0100)) == "X1")
        #expect(items.first?.sequence(Tag(0x0040, 0xA730))?.first?.string(Tag(0x0040, 0xA040)) == "TEXT")
    }

    @Test func unOfAKnownTagTakesTheDictionaryVR() throws {
        let e = DICOMBytes.explicitLE
        let data = e.element(0x0010, 0x0020, "UN", Array("PID1".utf8)) + e.element(0x0028, 0x0010, "UN", [0x00, 0x02])
        let file = try DICOMFile.read(DICOMBytes.part10(transferSyntax: TransferSyntax.explicitVRLittleEndian, dataSet: data))
        #expect(file.dataSet[.patientID]?.vr == .LO)
        #expect(file.dataSet[.patientID]?.wireVR == .UN)
        #expect(file.dataSet.string(.patientID) == "PID1")
        #expect(file.dataSet.int(Tag(0x0028, 0x0010)) == 512)
    }

    @Test func ambiguousVRsFollowPixelRepresentationInImplicitVR() throws {
        let i = DICOMBytes.implicitLE
        let signed = i.element(0x0028, 0x0103, "US", i.u16(1)) + i.element(0x0028, 0x0106, "SS", i.u16(0xFC00))
        let file = try DICOMFile.read(DICOMBytes.part10(transferSyntax: TransferSyntax.implicitVRLittleEndian, dataSet: signed))
        #expect(file.dataSet[Tag(0x0028, 0x0106)]?.vr == .SS)
        #expect(file.dataSet.int(Tag(0x0028, 0x0106)) == -1024)
        let unsigned = i.element(0x0028, 0x0103, "US", i.u16(0)) + i.element(0x0028, 0x0106, "US", i.u16(0xFC00))
        let file2 = try DICOMFile.read(DICOMBytes.part10(transferSyntax: TransferSyntax.implicitVRLittleEndian, dataSet: unsigned))
        #expect(file2.dataSet[Tag(0x0028, 0x0106)]?.vr == .US)
        #expect(file2.dataSet.int(Tag(0x0028, 0x0106)) == 64512)
    }

    @Test func privateElementsOfAKnownCreatorTakeItsVRInImplicitVR() throws {
        let i = DICOMBytes.implicitLE
        let data = i.text(0x0029, 0x0010, "LO", "SIEMENS CSA HEADER") + i.text(0x0029, 0x1008, "CS", "IMAGE NUM 4")
            + i.text(0x0029, 0x1109, "LO", "unknown")
        let file = try DICOMFile.read(DICOMBytes.part10(transferSyntax: TransferSyntax.implicitVRLittleEndian, dataSet: data))
        #expect(file.dataSet[Tag(0x0029, 0x0010)]?.vr == .LO)
        #expect(file.dataSet[Tag(0x0029, 0x1008)]?.vr == .CS)
        #expect(file.dataSet[Tag(0x0029, 0x1109)]?.vr == .UN)  // no creator reserves block 0x11
    }

    @Test func oddLengthValuesAndOutOfOrderElementsAreRead() throws {
        let e = DICOMBytes.explicitLE
        let data = e.element(0x0010, 0x0020, "LO", Array("ABC".utf8)) + e.element(0x0008, 0x0060, "CS", Array("MR".utf8))
        let file = try DICOMFile.read(DICOMBytes.part10(transferSyntax: TransferSyntax.explicitVRLittleEndian, dataSet: data))
        #expect(file.dataSet.string(.patientID) == "ABC")
        #expect(file.dataSet.elements.map(\.tag) == [.modality, .patientID])
        #expect(file.warnings.contains { $0.message.contains("order") })
    }

    @Test func deflatedDataSetsInflate() throws {
        let plain = DICOMBytes.explicitLE.sampleDataSet()
        let bytes = DICOMBytes.part10(transferSyntax: TransferSyntax.deflatedExplicitVRLittleEndian, dataSet: try rawDeflate(plain))
        let file = try DICOMFile.read(bytes)
        #expect(file.isDeflated)
        #expect(file.dataSet.string(.patientID) == "RSCH123")
        #expect(file.dataSet.sequence(Tag(0x0008, 0x1140))?.count == 2)
    }

    @Test func oneByteAtATimeReadsTheSameAsAllAtOnce() throws {
        for (syntax, builder, _) in Self.encodings {
            let bytes = DICOMBytes.part10(transferSyntax: syntax, dataSet: builder.sampleDataSet())
            let whole = try DICOMFile.read(bytes)
            let dripped = try DICOMFile.read(
                stream: ByteStream(source: DripByteSource(bytes, step: 1), initialChunk: 16), options: .headers)
            let uneven = try DICOMFile.read(
                stream: ByteStream(source: DripByteSource(bytes, step: 7), initialChunk: 33), options: .headers)
            #expect(describe(whole.dataSet) == describe(dripped.dataSet))
            #expect(describe(whole.dataSet) == describe(uneven.dataSet))
        }
    }

    @Test func filesOnDiskReadOnlyTheirHeader() throws {
        let directory = try TemporaryDirectory()
        let pixels = [UInt8](repeating: 0x55, count: 1 << 20)
        let path = directory.path + "/large.dcm"
        try writeFile(path, DICOMBytes.part10(transferSyntax: TransferSyntax.explicitVRLittleEndian, dataSet: DICOMBytes.explicitLE.sampleDataSet(pixels: pixels)))
        // Bytes counted as the file hands them over: the first 8 KiB, not the megabyte after.
        let source = try FileByteSource(path: path)
        let file = try DICOMFile.read(stream: ByteStream(source: source, initialChunk: ReadOptions.headers.initialReadSize), options: .headers)
        #expect(file.dataSet.string(.patientID) == "RSCH123")
        #expect(file.dataSet[.pixelData] == nil)
        #expect(source.bytesRead <= 8192, "a header read read \(source.bytesRead) bytes of \(pixels.count + 500)")
        let whole = try DICOMFile.read(path: path, options: .everything)
        #expect(whole.dataSet[.pixelData]?.bytes?.count == pixels.count)
    }
}

/// A text rendering of a data set, for comparing two readings.
func describe(_ dataSet: DataSet) -> String {
    dataSet.elements.map { element in
        var text = "\(element.tag) \(element.vr) \(element.length.map(String.init) ?? "u/l")"
        switch element.value {
        case .bytes(let b): text += " \(Array(b))"
        case .sequence(let items): text += " [" + items.map(describe).joined(separator: " | ") + "]"
        case .fragments(let f): text += " fragments \(f.map { Array($0) })"
        case .notLoaded(let o, let l): text += " not loaded \(o) \(l)"
        }
        return text
    }.joined(separator: "; ")
}

/// Hands out at most `step` bytes per read: the parser must not care how reads are split.
struct DripByteSource: ByteSource {
    let bytes: [UInt8]
    let step: Int
    var position = 0
    init(_ bytes: [UInt8], step: Int) {
        self.bytes = bytes
        self.step = step
    }
    var remaining: Int? { nil }
    mutating func read(into buffer: UnsafeMutableRawBufferPointer) throws(DICOMError) -> Int {
        let n = min(step, buffer.count, bytes.count - position)
        for k in 0..<n { buffer[k] = bytes[position + k] }
        position += n
        return n
    }
    mutating func skip(_ count: Int) throws(DICOMError) -> Int {
        let n = min(count, bytes.count - position)
        position += n
        return n
    }
}
