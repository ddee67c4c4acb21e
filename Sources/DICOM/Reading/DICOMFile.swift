/// A DICOM file as read: File Meta Information, the data set, and how it was encoded.
///
/// `read(path:)` accepts DICOM Part 10 files (128-byte preamble, "DICM", File Meta Information in
/// explicit VR little endian, then the data set in the transfer syntax the meta names) and bare
/// data sets without preamble or meta, as old archives hold them: for those the byte order and
/// explicit/implicit VR are detected from the first element rather than assumed. A data set whose
/// encoding contradicts its meta (explicit VR where the meta says implicit, or the reverse) is
/// read as it really is, with a warning.
///
/// By default only the header is read, up to Pixel Data, with memory bounded by the header's size.
public struct DICOMFile: Sendable {
    /// True when the file has the preamble and "DICM" (PS3.10 §7.1).
    public var isPart10: Bool
    /// The 128-byte preamble of a Part 10 file.
    public var preamble: ArraySlice<UInt8>?
    /// File Meta Information (group 0002); empty for bare data sets without it.
    public var meta: DataSet
    public var dataSet: DataSet
    /// (0002,0010) Transfer Syntax UID, when the meta has one.
    public var transferSyntaxUID: String?
    /// How the data set was actually encoded.
    public var encoding: Encoding
    /// Whether the data set was deflated (PS3.5 §A.5).
    public var isDeflated: Bool
    /// Stream offset of the top-level Pixel Data element when the read stopped before it.
    public var pixelDataOffset: Int?
    public var warnings: [ReadWarning]

    public init(
        meta: DataSet, dataSet: DataSet, transferSyntaxUID: String?, encoding: Encoding,
        isDeflated: Bool = false, isPart10: Bool = true
    ) {
        self.init(
            isPart10: isPart10, preamble: nil, meta: meta, dataSet: dataSet, transferSyntaxUID: transferSyntaxUID,
            encoding: encoding, isDeflated: isDeflated, pixelDataOffset: nil, warnings: [])
    }

    /// Reads a file from disk; by default only its header.
    public static func read(path: String, options: ReadOptions = .headers) throws(DICOMError) -> DICOMFile {
        let source = try FileByteSource(path: path)
        return try read(stream: ByteStream(source: source, initialChunk: options.initialReadSize), options: options)
    }

    /// Reads a file already in memory.
    public static func read(bytes: [UInt8], options: ReadOptions = .headers) throws(DICOMError) -> DICOMFile {
        try read(stream: ByteStream(bytes: bytes), options: options)
    }

    static func read(stream: ByteStream, options: ReadOptions) throws(DICOMError) -> DICOMFile {
        try readWithLayout(stream: stream, options: options).file
    }

    /// The read, and where each top-level element starts in the stream (recorded only with
    /// `ReadOptions.recordsTopLevelOffsets`).
    static func readWithLayout(
        stream: ByteStream, options: ReadOptions
    ) throws(DICOMError) -> (file: DICOMFile, topLevelOffsets: [(tag: Tag, offset: Int)]) {
        var parser = DataSetParser(stream: stream, options: options)
        var isPart10 = false
        var preamble: ArraySlice<UInt8>?
        if try stream.request(132), stream.byte(at: 128) == 0x44, stream.byte(at: 129) == 0x49,
            stream.byte(at: 130) == 0x43, stream.byte(at: 131) == 0x4D
        {
            isPart10 = true
            preamble = stream.take(128)
            stream.consume(4)
        } else {
            guard try stream.request(8) else {
                throw DICOMError(.notDICOM, "Not DICOM: too short for a Part 10 file or a data set", offset: 0)
            }
            // A bare data set (no preamble, no meta) starts in group 0002 or 0008 with a small
            // element number, in either byte order; anything else is not taken for DICOM.
            let little = (stream.uint16(at: 0, .littleEndian), stream.uint16(at: 2, .littleEndian))
            let big = (stream.uint16(at: 0, .bigEndian), stream.uint16(at: 2, .bigEndian))
            let plausible = { (g: UInt16, e: UInt16) in (g == 0x0002 || g == 0x0008) && e < 0x0100 }
            guard plausible(little.0, little.1) || plausible(big.0, big.1) else {
                throw DICOMError(.notDICOM, "Not DICOM: no \"DICM\" at byte 128 and no recognisable data set at the start", offset: 0)
            }
        }

        // File Meta Information: group 0002, explicit VR little endian (PS3.10 §7.1), though some
        // writers use implicit VR; read while the group is 0002, whatever the group length says.
        var meta = DataSet()
        if try stream.request(2), stream.uint16(at: 0, .littleEndian) == 0x0002 {
            let explicit = try parser.nextElementLooksExplicit(.littleEndian) ?? true
            if !explicit { parser.warn("File Meta Information is implicit VR", offset: stream.offset) }
            meta = try parser.readDataSet(
                encoding: explicit ? .explicitVRLittleEndian : .implicitVRLittleEndian, boundary: .endOfStream,
                depth: 0, characterSet: .defaultRepertoire, pixelRepresentation: nil, topLevel: false, metaOnly: true)
        } else if isPart10 {
            parser.warn("Part 10 file without File Meta Information", offset: stream.offset)
        }
        var transferSyntax: String?
        if let bytes = meta[.transferSyntaxUID]?.bytes {
            // A UI value: ASCII, padded with NUL (or, wrongly, spaces).
            var end = bytes.endIndex
            while end > bytes.startIndex, bytes[end - 1] == 0 || bytes[end - 1] == 0x20 { end -= 1 }
            if end > bytes.startIndex { transferSyntax = String(decoding: bytes[bytes.startIndex..<end], as: UTF8.self) }
        }

        var encoding: Encoding
        var deflated = false
        if let transferSyntax {
            (encoding, deflated) = TransferSyntax.encoding(of: transferSyntax)
        } else {
            // No transfer syntax: tell the byte order from the first tag's group, which is small.
            encoding = .implicitVRLittleEndian
            if try stream.request(4) {
                let little = stream.uint16(at: 0, .littleEndian), big = stream.uint16(at: 0, .bigEndian)
                if big < little && big != 0 { encoding.byteOrder = .bigEndian }
            }
        }
        if deflated {
            let at = stream.offset
            try stream.replaceRemainder { (rest) throws(DICOMError) -> any ByteSource in
                try InflatingByteSource(wrapping: rest, baseOffset: at, strict: options.verifyingStructure)
            }
        }
        // The data set is what it is: explicit VR if its first element has VR letters.
        if let explicit = try parser.nextElementLooksExplicit(encoding.byteOrder), explicit != encoding.isExplicitVR {
            if transferSyntax != nil {
                parser.warn(
                    "Data set is \(explicit ? "explicit" : "implicit") VR although the transfer syntax says otherwise; read as it is",
                    offset: stream.offset)
            }
            encoding.isExplicitVR = explicit
        }
        let dataSet = try parser.readDataSet(
            encoding: encoding, boundary: .endOfStream, depth: 0, characterSet: .defaultRepertoire,
            pixelRepresentation: nil, topLevel: true)

        let file = DICOMFile(
            isPart10: isPart10, preamble: preamble, meta: meta, dataSet: dataSet, transferSyntaxUID: transferSyntax,
            encoding: encoding, isDeflated: deflated, pixelDataOffset: parser.stoppedAtPixelData,
            warnings: parser.warnings)
        return (file, parser.topLevelOffsets)
    }

    /// Every field at once: the reader's constructor (one copy of each value, no later mutation).
    init(
        isPart10: Bool, preamble: ArraySlice<UInt8>?, meta: DataSet, dataSet: DataSet, transferSyntaxUID: String?,
        encoding: Encoding, isDeflated: Bool, pixelDataOffset: Int?, warnings: [ReadWarning]
    ) {
        self.isPart10 = isPart10
        self.preamble = preamble
        self.meta = meta
        self.dataSet = dataSet
        self.transferSyntaxUID = transferSyntaxUID
        self.encoding = encoding
        self.isDeflated = isDeflated
        self.pixelDataOffset = pixelDataOffset
        self.warnings = warnings
    }
}
