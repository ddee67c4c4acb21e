internal import Durability

/// How to write: the data set encoding and how sequences are delimited.
public struct WriteOptions: Sendable {
    public enum SequenceLengths: Sendable {
        /// Undefined lengths with delimiters (PS3.5 §7.5.2): streamable, the common choice.
        case undefined
        /// Defined lengths, computed.
        case defined
    }
    /// Explicit VR little endian (default) or implicit VR little endian. A file whose Pixel Data is
    /// encapsulated keeps its transfer syntax (its data set is explicit VR little endian anyway).
    public var encoding: Encoding = .explicitVRLittleEndian
    public var sequenceLengths: SequenceLengths = .undefined

    public init(encoding: Encoding = .explicitVRLittleEndian, sequenceLengths: SequenceLengths = .undefined) {
        self.encoding = encoding
        self.sequenceLengths = sequenceLengths
    }
}

/// Writes data sets as DICOM Part 10 files (PS3.10 §7): preamble, "DICM", File Meta Information
/// with its group length, then the data set in explicit or implicit VR little endian.
///
/// Values are written as read, converted to little endian where the source was big endian and
/// padded to even length (PS3.5 §7.1: space for text, NUL for UI and binary). Encapsulated pixel
/// data is carried through fragment by fragment. A value too long for a 2-byte length field is
/// written as UN, and a value that was not loaded is an error (read the file with
/// `ReadOptions.everything` to rewrite it whole).
public enum DICOMWriter {
    /// Consort's Implementation Class UID (PS3.7 §D.3.3.2): a UUID-derived UID (2.25, ITU-T X.667).
    public static let implementationClassUID = "2.25.140735918238017412409731212345678012097"
    public static let implementationVersionName = "CONSORT_1"

    /// The whole file as bytes.
    public static func encode(_ file: DICOMFile, options: WriteOptions = WriteOptions()) throws(DICOMError) -> [UInt8] {
        var out = ByteWriter()
        try write(file, to: &out, options: options)
        return out.bytes
    }

    /// Writes the file at `path` so that no reader ever sees it half-written: into a new
    /// temporary file beside it, fsynced, renamed over `path`, and the folder fsynced
    /// (`DurableFile`). Any failure is an `.io` error naming the path and errno's reason.
    public static func write(_ file: DICOMFile, toPath path: String, options: WriteOptions = WriteOptions()) throws(DICOMError) {
        let bytes = try encode(file, options: options)
        do {
            // Patient data stays out of reach of other users, but the group (e.g. the local
            // PACS's import account) may read it.
            try DurableFile.write(bytes, to: path, mode: 0o640)
        } catch {
            throw DICOMError(.io, "Cannot write \(path): \(error)")
        }
    }

    static func write(_ file: DICOMFile, to out: inout ByteWriter, options: WriteOptions) throws(DICOMError) {
        var encoding = options.encoding
        var syntax = encoding.isExplicitVR ? TransferSyntax.explicitVRLittleEndian : TransferSyntax.implicitVRLittleEndian
        if case .fragments = file.dataSet[.pixelData]?.value, let original = file.transferSyntaxUID {
            guard encoding.isExplicitVR else {
                throw DICOMError(.unencodable, "Encapsulated pixel data cannot be written in implicit VR", tag: .pixelData)
            }
            syntax = original
            encoding = .explicitVRLittleEndian
        }
        encoding.byteOrder = .littleEndian

        try writeHeader(
            meta: file.meta, transferSyntax: syntax, sopClassUID: file.dataSet.string(.sopClassUID),
            sopInstanceUID: file.dataSet.string(.sopInstanceUID), sequenceLengths: options.sequenceLengths, to: &out)

        let encoder = DataSetEncoder(encoding: encoding, sequenceLengths: options.sequenceLengths)
        try encoder.encode(file.dataSet, into: &out)
    }

    /// Preamble (zeros), "DICM" and the File Meta Information (PS3.10 §7.1): `meta` with the
    /// transfer syntax, Consort's implementation UID and name, the media storage UIDs if it has
    /// none, and its group length (0002,0000) computed from what is written.
    static func writeHeader(
        meta original: DataSet, transferSyntax: String, sopClassUID: String?, sopInstanceUID: String?,
        sequenceLengths: WriteOptions.SequenceLengths, to out: inout ByteWriter
    ) throws(DICOMError) {
        out.append(contentsOf: [UInt8](repeating: 0, count: 128))
        out.append(contentsOf: Array("DICM".utf8))

        // File Meta Information: always explicit VR little endian, with a correct group length.
        var meta = original
        meta.remove(.fileMetaInformationGroupLength)
        meta.set(DataElement(tag: Tag(0x0002, 0x0001), vr: .OB, length: 2, value: .bytes(meta[Tag(0x0002, 0x0001)]?.bytes ?? [0x00, 0x01])))
        if meta[.mediaStorageSOPClassUID] == nil, let uid = sopClassUID {
            meta.set(textElement(.mediaStorageSOPClassUID, .UI, uid))
        }
        if meta[.mediaStorageSOPInstanceUID] == nil, let uid = sopInstanceUID {
            meta.set(textElement(.mediaStorageSOPInstanceUID, .UI, uid))
        }
        meta.set(textElement(.transferSyntaxUID, .UI, transferSyntax))
        meta.set(textElement(.implementationClassUID, .UI, implementationClassUID))
        meta.set(textElement(.implementationVersionName, .SH, implementationVersionName))
        var metaBytes = ByteWriter()
        let metaEncoder = DataSetEncoder(encoding: .explicitVRLittleEndian, sequenceLengths: sequenceLengths)
        try metaEncoder.encode(meta, into: &metaBytes)
        out.appendElementHeader(tag: .fileMetaInformationGroupLength, vr: .UL, length: 4, encoding: .explicitVRLittleEndian)
        out.appendUInt32(UInt32(metaBytes.bytes.count))
        out.append(contentsOf: metaBytes.bytes)
    }

    /// The start of a Part 10 file whose data set is written after it as it came (a DIMSE
    /// C-STORE's, streamed): preamble, "DICM" and the File Meta Information with `transferSyntax`,
    /// the media storage SOP class and instance, and the AE title it came from (0002,0016).
    public static func fileHeader(transferSyntax: String, sopClassUID: String, sopInstanceUID: String, sourceAETitle: String?) throws(DICOMError) -> [UInt8] {
        var meta = DataSet()
        if let sourceAETitle { meta.set(textElement(Tag(0x0002, 0x0016), .AE, sourceAETitle)) }
        var out = ByteWriter()
        try writeHeader(meta: meta, transferSyntax: transferSyntax, sopClassUID: sopClassUID, sopInstanceUID: sopInstanceUID, sequenceLengths: .undefined, to: &out)
        return out.bytes
    }

    /// A bare data set (no preamble, no File Meta Information) in explicit or implicit VR
    /// little endian, sequences of undefined length: a DIMSE identifier (a C-FIND match).
    public static func encodeDataSet(_ dataSet: DataSet, explicitVR: Bool) throws(DICOMError) -> [UInt8] {
        var out = ByteWriter()
        try DataSetEncoder(encoding: explicitVR ? .explicitVRLittleEndian : .implicitVRLittleEndian, sequenceLengths: .undefined).encode(dataSet, into: &out)
        return out.bytes
    }

    /// A text element with its value padded to even length.
    public static func textElement(_ tag: Tag, _ vr: VR, _ text: String) -> DataElement {
        var bytes = Array(text.utf8)
        if bytes.count % 2 == 1 { bytes.append(vr.paddingByte) }
        return DataElement(tag: tag, vr: vr, length: UInt32(bytes.count), value: .bytes(bytes[...]))
    }
}

/// Encodes one data set (and its items, recursively) in a given encoding.
struct DataSetEncoder {
    let encoding: Encoding
    let sequenceLengths: WriteOptions.SequenceLengths
    /// Where a value that was not loaded goes (`TransferSyntaxConversion`: copied from its place
    /// in the source file): its header is written, the bytes so far are handed over, and then
    /// the value's range. Without it (or in a sequence of defined length, whose length would
    /// need the value) such a value is an error.
    var bulk: BulkPieces? = nil

    func encode(_ dataSet: DataSet, into out: inout ByteWriter) throws(DICOMError) {
        for element in dataSet.elements {
            try encode(element, from: dataSet.byteOrder, into: &out)
        }
    }

    private func encode(_ element: DataElement, from sourceOrder: ByteOrder, into out: inout ByteWriter) throws(DICOMError) {
        let tag = element.tag
        if tag == .fileMetaInformationGroupLength && tag.group == 0x0002 { return }
        switch element.value {
        case .notLoaded(let offset, let count):
            guard let bulk, sequenceLengths == .undefined, count < 0xFFFF_FFFF else {
                throw DICOMError(.unencodable, "Value was not loaded (read with ReadOptions.everything to rewrite it)", tag: tag)
            }
            guard element.length != nil else {
                // Encapsulated pixel data (its fragment items and delimiter, as they were read),
                // copied as it is in an explicit VR little-endian data set.
                guard tag.isPixelData, encoding.isExplicitVR, encoding.byteOrder == .littleEndian else {
                    throw DICOMError(.unencodable, "Encapsulated data was not loaded (read with ReadOptions.everything to rewrite it)", tag: tag)
                }
                out.appendElementHeader(tag: tag, vr: element.vr == .OW ? .OW : .OB, length: 0xFFFF_FFFF, encoding: encoding)
                bulk.cut(&out, then: .copy(offset: offset, count: count))
                return
            }
            // Bulk VRs have 4-byte lengths; anything else too long for a 2-byte one goes as UN.
            let vr = encoding.isExplicitVR && !element.vr.hasLongLength && count > 0xFFFF ? VR.UN : element.vr
            out.appendElementHeader(tag: tag, vr: vr, length: UInt32(count), encoding: encoding)
            bulk.cut(&out, then: .copy(offset: offset, count: count))
        case .sequence(let items):
            switch sequenceLengths {
            case .undefined:
                out.appendElementHeader(tag: tag, vr: .SQ, length: 0xFFFF_FFFF, encoding: encoding)
                for item in items {
                    out.appendItemHeader(.item, length: 0xFFFF_FFFF)
                    try encode(item, into: &out)
                    out.appendItemHeader(.itemDelimitationItem, length: 0)
                }
                out.appendItemHeader(.sequenceDelimitationItem, length: 0)
            case .defined:
                var body = ByteWriter()
                for item in items {
                    var itemBytes = ByteWriter()
                    try encode(item, into: &itemBytes)
                    body.appendItemHeader(.item, length: try length32(itemBytes.bytes.count, tag))
                    body.append(contentsOf: itemBytes.bytes)
                }
                out.appendElementHeader(tag: tag, vr: .SQ, length: try length32(body.bytes.count, tag), encoding: encoding)
                out.append(contentsOf: body.bytes)
            }
        case .fragments(let fragments):
            out.appendElementHeader(tag: tag, vr: element.vr == .OW ? .OW : .OB, length: 0xFFFF_FFFF, encoding: encoding)
            for fragment in fragments {
                let padded = fragment.count % 2 == 1
                out.appendItemHeader(.item, length: try length32(fragment.count + (padded ? 1 : 0), tag))
                out.append(contentsOf: fragment)
                if padded { out.append(0) }
            }
            out.appendItemHeader(.sequenceDelimitationItem, length: 0)
        case .bytes(let raw):
            var vr = element.vr
            var bytes = raw
            // Values of UN origin are little endian whatever the data set; others follow it.
            let order: ByteOrder = element.wireVR == .UN ? .littleEndian : sourceOrder
            if order == .bigEndian, let size = vr.numberSize ?? (vr == .AT ? 2 : nil), size > 1 {
                bytes = swapped(bytes, size: vr == .AT ? 2 : size)
            }
            var padding = 0
            if bytes.count % 2 == 1 { padding = 1 }
            let total = bytes.count + padding
            if encoding.isExplicitVR && !vr.hasLongLength && total > 0xFFFF {
                vr = .UN  // too long for a 2-byte length: keep the bytes as UN (PS3.5 §6.2.2)
            }
            out.appendElementHeader(tag: tag, vr: vr, length: try length32(total, tag), encoding: encoding)
            out.append(contentsOf: bytes)
            if padding == 1 { out.append(vr.paddingByte) }
        }
    }

    private func length32(_ count: Int, _ tag: Tag) throws(DICOMError) -> UInt32 {
        guard count < 0xFFFF_FFFF else {
            throw DICOMError(.unencodable, "Value of \(count) bytes is too long for a DICOM length field", tag: tag)
        }
        return UInt32(count)
    }

    private func swapped(_ bytes: ArraySlice<UInt8>, size: Int) -> ArraySlice<UInt8> {
        var result = Array(bytes)
        var i = 0
        while i + size <= result.count {
            result[i..<i + size].reverse()
            i += size
        }
        return result[...]
    }
}

/// A growing byte buffer with little-endian writers.
struct ByteWriter {
    var bytes: [UInt8] = []

    mutating func append(_ byte: UInt8) { bytes.append(byte) }
    mutating func append(contentsOf other: some Sequence<UInt8>) { bytes.append(contentsOf: other) }
    mutating func appendUInt16(_ v: UInt16) {
        bytes.append(UInt8(v & 0xFF))
        bytes.append(UInt8(v >> 8))
    }
    mutating func appendUInt32(_ v: UInt32) {
        appendUInt16(UInt16(v & 0xFFFF))
        appendUInt16(UInt16(v >> 16))
    }
    mutating func appendItemHeader(_ tag: Tag, length: UInt32) {
        appendUInt16(tag.group)
        appendUInt16(tag.element)
        appendUInt32(length)
    }
    /// An element header (PS3.5 §7.1.1–7.1.3) in little endian.
    mutating func appendElementHeader(tag: Tag, vr: VR, length: UInt32, encoding: Encoding) {
        appendUInt16(tag.group)
        appendUInt16(tag.element)
        if encoding.isExplicitVR {
            bytes.append(UInt8(vr.rawValue >> 8))
            bytes.append(UInt8(vr.rawValue & 0xFF))
            if vr.hasLongLength {
                appendUInt16(0)
                appendUInt32(length)
            } else {
                appendUInt16(UInt16(truncatingIfNeeded: length))
            }
        } else {
            appendUInt32(length)
        }
    }
}
