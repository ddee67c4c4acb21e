#if canImport(Glibc)
    import Glibc
#endif
internal import Durability

/// Rewrites one DICOM Part 10 file into the receiving trust's identity (`IdentityRewrite`),
/// streaming, and changing nothing else.
///
/// What changes: Patient ID (0010,0020) and Issuer of Patient ID (0010,0021, added if absent)
/// become the local identifier; Other Patient IDs Sequence (0010,1002) keeps its items and gains
/// one for the source's Patient ID with the sender's issuer (carrying the source's Issuer of
/// Patient ID Qualifiers Sequence (0010,0024), which described that identifier and is moved there
/// from the top level) and one for each additional identifier, each item with its issuer and
/// Type of Patient ID "TEXT", per IHE MIMA — never the
/// issuer-less Other Patient IDs (0010,1000); an identifier already listed, or equal to the local
/// one, is not repeated. When there is an Accession Number, Issuer of Accession Number Sequence
/// (0008,0051) names the sending trust, unless the source already names an issuer there. A
/// retired group length (0008,0000) or (0010,0000) is recomputed. The File Meta Information is
/// written again as `DICOMWriter` writes it (its group length recomputed, the transfer syntax
/// kept, Consort as the implementation that wrote the file); the preamble is zeros, as a
/// preamble describing another layout would mislead.
///
/// What does not: every other element is copied as the bytes it was, in place in tag order
/// (sequences of defined or undefined length included, existing Other Patient IDs items too),
/// and everything from the first element past group 0010 (Pixel Data above all) is copied to
/// the end of the file in 1 MiB chunks: memory does not grow with the file's size.
///
/// The source is checked whole first (`DICOMFile.verify`'s structural check, bulk values
/// skipped by seeking), so a truncated or malformed file is refused before anything is written.
/// Refused too, with a `DICOMError`: a file that is not Part 10 (`.notDICOM`), that names no
/// transfer syntax (`.badMetaInformation`), that is deflated or big endian
/// (`.unsupportedTransferSyntax`: its bytes cannot be copied as they are), whose top-level
/// elements are out of order or repeated (`.malformed`), without a Patient ID
/// (`.missingAttribute`), or an identifier that is not printable ASCII within LO's 64 characters
/// (`.unencodable`). The target is written durably (`DurableFile`: a temporary name, fsync,
/// rename, fsync of the folder), so on any failure nothing is left under its name (or the file
/// that was there stays). Source and target may be the same path.
public enum IdentityRewriter {
    /// Writes `source` rewritten by `rewrite` at `target`; returns what it changed.
    @discardableResult
    public static func rewrite(
        _ source: String, to target: String, _ rewrite: IdentityRewrite
    ) throws(DICOMError) -> IdentityRewriteOutcome {
        let file = try FileByteSource(path: source)
        let (pieces, outcome) = try plan(.file(file), rewrite)
        do {
            // As DICOMWriter writes: the group (the local PACS's import account) may read it.
            try DurableFile.write(to: target, mode: 0o640) { descriptor in
                try write(pieces, from: file, to: descriptor, target: target)
            }
        } catch let error as DICOMError {
            throw error
        } catch {
            throw DICOMError(.io, "Cannot write \(target): \(error)")
        }
        return outcome
    }

    /// Writes `source` rewritten by `rewrite` into an open `descriptor` (named `target` in
    /// errors), without making it durable: for a receiver that rewrites a staged instance and
    /// makes a whole batch durable at once. `observe` sees every byte written, in order (a
    /// receiver hashes the new file as it is written rather than reading it back).
    /// `copyRange`, when given and nothing is observed, copies a source range inside the kernel
    /// (copy_file_range: the receiver passes it; this module makes no system calls of its own
    /// kind): `(from, offset, to, count)`, the bytes copied or -1 to copy them here instead.
    @discardableResult
    public static func rewrite(
        _ source: String, into descriptor: Int32, target: String, _ rewrite: IdentityRewrite,
        observe: ((UnsafeRawBufferPointer) -> Void)? = nil, copyRange: ((Int32, Int, Int32, Int) -> Int)? = nil
    ) throws(DICOMError) -> IdentityRewriteOutcome {
        let file = try FileByteSource(path: source)
        let (pieces, outcome) = try plan(.file(file), rewrite)
        try write(pieces, from: file, to: descriptor, target: target, observe: observe ?? { _ in }, copyRange: observe == nil ? copyRange : nil)
        return outcome
    }

    /// A file held whole in memory (`bytes`, named `name` in errors) rewritten by `rewrite`, in
    /// memory: for a receiver that kept a small part in memory as it arrived, so that only the
    /// rewritten file is ever written, and written as it writes what it does not rewrite
    /// (staging it first, then rewriting it, wrote every byte twice, once through the page
    /// cache).
    public static func rewritten(bytes: [UInt8], name: String, _ rewrite: IdentityRewrite) throws(DICOMError) -> (bytes: [UInt8], outcome: IdentityRewriteOutcome) {
        let source = RewriteSource.memory(path: name, bytes: bytes)
        let (pieces, outcome) = try plan(source, rewrite)
        var out: [UInt8] = []
        out.reserveCapacity(bytes.count + 1024)
        for piece in pieces {
            switch piece {
            case .bytes(let made): out += made
            case .copy(let offset, let count):
                guard offset >= 0, count >= 0, offset + count <= bytes.count else {
                    throw DICOMError(.truncated, "\(name) is shorter than its elements say", offset: offset)
                }
                out += bytes[offset..<(offset + count)]
            }
        }
        return (out, outcome)
    }

    /// Where a rewrite reads its source: a file (its ranges copied with pread, or inside the
    /// kernel), or the whole file already in memory.
    enum RewriteSource {
        case file(FileByteSource)
        case memory(path: String, bytes: [UInt8])

        var path: String {
            switch self {
            case .file(let file): return file.path
            case .memory(let path, _): return path
            }
        }

        var size: Int {
            switch self {
            case .file(let file): return file.size
            case .memory(_, let bytes): return bytes.count
            }
        }

        /// A reader from the start (a file's own, which the plan reads through once).
        var reader: any ByteSource {
            switch self {
            case .file(let file): return file
            case .memory(_, let bytes): return MemoryByteSource(bytes[...])
            }
        }
    }

    /// A piece of the new file: bytes made here, or a range of the source copied as it is.
    typealias Piece = TransferSyntaxConversion.Piece

    static let issuerOfPatientID = Tag(0x0010, 0x0021)
    static let typeOfPatientID = Tag(0x0010, 0x0022)
    static let issuerOfPatientIDQualifiers = Tag(0x0010, 0x0024)
    static let otherPatientIDsSequence = Tag(0x0010, 0x1002)
    static let accessionNumber = Tag(0x0008, 0x0050)
    static let issuerOfAccessionNumberSequence = Tag(0x0008, 0x0051)
    static let localNamespaceEntityID = Tag(0x0040, 0x0031)
    /// The identity elements are all in groups 0008 and 0010: from the first tag past them, the
    /// file is copied to its end without a look.
    static let tailStart = Tag(0x0011, 0x0000)

    /// Reads and checks the source, and says what the new file is made of. No I/O on the target.
    static func plan(_ source: RewriteSource, _ rewrite: IdentityRewrite) throws(DICOMError) -> ([Piece], IdentityRewriteOutcome) {
        for identifier in [rewrite.local] + rewrite.additionalIdentifiers {
            try checkLO(identifier.id, "Patient ID")
            try checkLO(identifier.issuer, "Issuer of Patient ID")
        }
        try checkLO(rewrite.senderIssuer, "the sender's Issuer of Patient ID")
        try checkText(rewrite.accessionNumberIssuer, "Local Namespace Entity ID")

        let path = source.path
        let fileSize = source.size
        var options = ReadOptions.wholeStructure
        options.recordsTopLevelOffsets = true
        let stream = ByteStream(source: source.reader, initialChunk: options.initialReadSize)
        let (file, offsets): (DICOMFile, [(tag: Tag, offset: Int)])
        do {
            (file, offsets) = try DICOMFile.verifiedWithLayout(stream, fileSize: fileSize, options: options)
        } catch {
            var placed = error
            placed.message = "Cannot rewrite \(path): \(error.message)"
            throw placed
        }
        guard file.isPart10 else { throw DICOMError(.notDICOM, "Cannot rewrite \(path): not a DICOM Part 10 file") }
        guard let syntax = file.transferSyntaxUID else {
            throw DICOMError(.badMetaInformation, "Cannot rewrite \(path): its File Meta Information names no transfer syntax")
        }
        guard !file.isDeflated, file.encoding.byteOrder == .littleEndian else {
            throw DICOMError(
                .unsupportedTransferSyntax,
                "Cannot rewrite \(path): its transfer syntax \(syntax) is \(file.isDeflated ? "deflated" : "big endian"); only little endian data sets that are not deflated can be rewritten")
        }
        let dataSet = file.dataSet
        // The recorded offsets are the elements' in stream order; the data set is sorted. They
        // agree unless the file was out of order (or repeated a tag), which raw copies would keep.
        for (index, placed) in offsets.enumerated() {
            guard index < dataSet.count, dataSet.elements[index].tag == placed.tag,
                index == 0 || offsets[index - 1].tag < placed.tag
            else {
                throw DICOMError(
                    .malformed, "Cannot rewrite \(path): its elements are not in ascending tag order", offset: placed.offset,
                    tag: placed.tag)
            }
        }
        guard let previousID = dataSet.string(.patientID), !previousID.isEmpty else {
            throw DICOMError(.missingAttribute, "Cannot rewrite \(path): it has no Patient ID (0010,0020)", tag: .patientID)
        }
        let previousIssuer = dataSet.string(issuerOfPatientID).flatMap { $0.isEmpty ? nil : $0 }

        let encoding = file.encoding
        func encoded(_ element: DataElement, _ itemEncoding: Encoding = encoding) throws(DICOMError) -> [UInt8] {
            var out = ByteWriter()
            try DataSetEncoder(encoding: itemEncoding, sequenceLengths: .defined).encode(DataSet(elements: [element]), into: &out)
            return out.bytes
        }

        // The data set's elements up to the tail, as ranges of the source.
        var head: [(tag: Tag, piece: Piece)] = []
        var tail: Piece?
        for (index, placed) in offsets.enumerated() {
            if placed.tag >= tailStart {
                tail = .copy(offset: placed.offset, count: fileSize - placed.offset)
                break
            }
            let end = index + 1 < offsets.count ? offsets[index + 1].offset : fileSize
            head.append((placed.tag, .copy(offset: placed.offset, count: end - placed.offset)))
        }

        func put(_ tag: Tag, _ piece: Piece?) {
            let index = head.firstIndex { $0.tag >= tag } ?? head.endIndex
            let present = index < head.endIndex && head[index].tag == tag
            switch (piece, present) {
            case (let piece?, true): head[index].piece = piece
            case (let piece?, false): head.insert((tag, piece), at: index)
            case (nil, true): head.remove(at: index)
            case (nil, false): break
            }
        }

        put(.patientID, .bytes(try encoded(DICOMWriter.textElement(.patientID, .LO, rewrite.local.id))))
        put(issuerOfPatientID, .bytes(try encoded(DICOMWriter.textElement(issuerOfPatientID, .LO, rewrite.local.issuer))))

        // Other Patient IDs Sequence: the identifiers not already there (nor the local one).
        let existingItems = dataSet[otherPatientIDsSequence]?.items ?? []
        if let element = dataSet[otherPatientIDsSequence], element.items == nil {
            throw DICOMError(.malformed, "Cannot rewrite \(path): Other Patient IDs Sequence is not a sequence", tag: otherPatientIDsSequence)
        }
        var listed = Set(existingItems.map { PatientIdentifier(id: $0.string(.patientID) ?? "", issuer: $0.string(issuerOfPatientID) ?? "") })
        listed.insert(rewrite.local)
        let sender = PatientIdentifier(id: previousID, issuer: rewrite.senderIssuer)
        let qualifiers = dataSet[issuerOfPatientIDQualifiers]
        var added: [PatientIdentifier] = []
        for identifier in [sender] + rewrite.additionalIdentifiers where !listed.contains(identifier) {
            listed.insert(identifier)
            added.append(identifier)
        }
        // The qualifiers described the sender's identifier: they go with it, or are dropped when
        // it was listed already (they would misdescribe the local one at the top level).
        put(issuerOfPatientIDQualifiers, nil)
        if !added.isEmpty {
            let sequence = dataSet[otherPatientIDsSequence]
            let raw: [UInt8]? =
                if case .copy(let offset, let count)? = head.first(where: { $0.tag == otherPatientIDsSequence })?.piece {
                    try readRange(source, offset: offset, count: count)
                } else { nil }
            let itemEncoding = raw.map { itemsEncoding(ofSequence: $0, in: encoding) } ?? encoding
            var items: [UInt8] = []
            for identifier in added {
                // Type of Patient ID is Type 1 in these items (PS3.3 Table C.7-1); ours are text.
                var item = DataSet(elements: [
                    DICOMWriter.textElement(.patientID, .LO, identifier.id),
                    DICOMWriter.textElement(issuerOfPatientID, .LO, identifier.issuer),
                    DICOMWriter.textElement(typeOfPatientID, .CS, "TEXT"),
                ])
                if identifier == sender, let qualifiers, qualifiers.items != nil { item.set(qualifiers) }
                var body = ByteWriter()
                try DataSetEncoder(encoding: itemEncoding, sequenceLengths: .defined).encode(item, into: &body)
                var header = ByteWriter()
                header.appendItemHeader(.item, length: UInt32(body.bytes.count))
                items += header.bytes + body.bytes
            }
            if let raw, sequence != nil {
                put(otherPatientIDsSequence, .bytes(try appending(items, toSequence: raw, in: encoding, path: path)))
            } else {
                var element = ByteWriter()
                element.appendElementHeader(tag: otherPatientIDsSequence, vr: .SQ, length: UInt32(items.count), encoding: encoding)
                put(otherPatientIDsSequence, .bytes(element.bytes + items))
            }
        }

        // Issuer of Accession Number Sequence, when there is an accession number whose issuer the
        // source does not name.
        var addedAccessionIssuer = false
        if let accession = dataSet.string(accessionNumber), !accession.isEmpty,
            dataSet[issuerOfAccessionNumberSequence]?.items?.isEmpty ?? true
        {
            let item = DataSet(elements: [DICOMWriter.textElement(localNamespaceEntityID, .UT, rewrite.accessionNumberIssuer)])
            let element = DataElement(tag: issuerOfAccessionNumberSequence, vr: .SQ, length: nil, value: .sequence([item]))
            put(issuerOfAccessionNumberSequence, .bytes(try encoded(element)))
            addedAccessionIssuer = true
        }

        // Retired group lengths (PS3.5 §7.2) of the groups changed, if the source has them.
        for group: UInt16 in [0x0008, 0x0010] where head.contains(where: { $0.tag == Tag(group, 0) }) {
            let length = head.filter { $0.tag.group == group && $0.tag.element != 0 }.reduce(0) { $0 + $1.piece.count }
            let value = DataElement(tag: Tag(group, 0), vr: .UL, length: 4, value: .bytes(littleEndian32(UInt32(length))[...]))
            put(Tag(group, 0), .bytes(try encoded(value)))
        }

        // The File Meta Information, its bulk values (if any) read now.
        var meta = file.meta
        for (index, element) in meta.elements.enumerated() {
            if case .notLoaded(let offset, let count) = element.value {
                meta.elements[index].value = .bytes(try readRange(source, offset: offset, count: count)[...])
            }
        }
        var header = ByteWriter()
        try DICOMWriter.writeHeader(
            meta: meta, transferSyntax: syntax, sopClassUID: dataSet.string(.sopClassUID),
            sopInstanceUID: dataSet.string(.sopInstanceUID), sequenceLengths: .defined, to: &header)

        var pieces: [Piece] = [.bytes(header.bytes)]
        for piece in head.map(\.piece) + (tail.map { [$0] } ?? []) {
            // Adjacent ranges are one copy.
            if case .copy(let offset, let count) = piece, case .copy(let lastOffset, let lastCount)? = pieces.last,
                lastOffset + lastCount == offset
            {
                pieces[pieces.count - 1] = .copy(offset: lastOffset, count: lastCount + count)
            } else {
                pieces.append(piece)
            }
        }
        let outcome = IdentityRewriteOutcome(
            previousPatientID: previousID, previousIssuer: previousIssuer, addedOtherPatientIDs: added,
            addedAccessionNumberIssuer: addedAccessionIssuer)
        return (pieces, outcome)
    }

    /// How the items of a sequence element (its raw bytes) are encoded: as the data set, except
    /// that a sequence that came as UN, or without VR letters in an explicit VR data set, holds
    /// implicit VR little endian items (PS3.5 §6.2.2).
    static func itemsEncoding(ofSequence raw: [UInt8], in encoding: Encoding) -> Encoding {
        guard encoding.isExplicitVR, raw.count >= 6 else { return .implicitVRLittleEndian }
        return VR(raw[4], raw[5]) == .SQ ? encoding : .implicitVRLittleEndian
    }

    /// A sequence element's raw bytes with `items` after its last item: the existing items stay
    /// byte for byte; a defined length grows by the items' size, an undefined one keeps its
    /// delimiter at the end.
    static func appending(_ items: [UInt8], toSequence raw: [UInt8], in encoding: Encoding, path: String) throws(DICOMError) -> [UInt8] {
        let explicitHeader = encoding.isExplicitVR && raw.count >= 6 && VR(raw[4], raw[5]).looksLikeVR
        let headerSize = explicitHeader ? 12 : 8
        guard raw.count >= headerSize else {
            throw DICOMError(.malformed, "Cannot rewrite \(path): Other Patient IDs Sequence is cut short", tag: otherPatientIDsSequence)
        }
        let length = UInt32(raw[headerSize - 4]) | UInt32(raw[headerSize - 3]) << 8 | UInt32(raw[headerSize - 2]) << 16
            | UInt32(raw[headerSize - 1]) << 24
        if length == 0xFFFF_FFFF {
            let delimiter: [UInt8] = [0xFE, 0xFF, 0xDD, 0xE0, 0, 0, 0, 0]
            guard raw.count >= headerSize + 8, Array(raw.suffix(8)) == delimiter else {
                throw DICOMError(
                    .malformed, "Cannot rewrite \(path): Other Patient IDs Sequence does not end with its delimiter",
                    tag: otherPatientIDsSequence)
            }
            return Array(raw.dropLast(8)) + items + delimiter
        }
        let newLength = Int(length) + items.count
        guard raw.count == headerSize + Int(length), newLength < 0xFFFF_FFFF else {
            throw DICOMError(
                .malformed, "Cannot rewrite \(path): Other Patient IDs Sequence's length does not match its items",
                tag: otherPatientIDsSequence)
        }
        return Array(raw[0..<headerSize - 4]) + littleEndian32(UInt32(newLength)) + raw[headerSize...] + items
    }

    static func littleEndian32(_ value: UInt32) -> [UInt8] {
        [UInt8(value & 0xFF), UInt8(value >> 8 & 0xFF), UInt8(value >> 16 & 0xFF), UInt8(value >> 24)]
    }

    /// An LO value we write: printable ASCII without a backslash (which separates values), at
    /// most 64 characters (PS3.5 Table 6.2-1), not empty.
    static func checkLO(_ text: String, _ what: String) throws(DICOMError) {
        try checkText(text, what)
        guard text.utf8.count <= 64, !text.utf8.contains(0x5C) else {
            throw DICOMError(.unencodable, "\(what) \"\(text)\" is not a valid LO value (at most 64 characters, no backslash)")
        }
    }

    /// Printable ASCII, the repertoire every Specific Character Set shares, and not empty.
    static func checkText(_ text: String, _ what: String) throws(DICOMError) {
        guard !text.isEmpty, text.utf8.allSatisfy({ $0 >= 0x20 && $0 < 0x7F }) else {
            throw DICOMError(.unencodable, "\(what) \"\(text)\" must be printable ASCII and not empty")
        }
    }

    /// `count` bytes of the source from `offset` (a header element: small).
    static func readRange(_ source: RewriteSource, offset: Int, count: Int) throws(DICOMError) -> [UInt8] {
        guard case .file(let source) = source else {
            guard case .memory(_, let held) = source, offset >= 0, count >= 0, offset + count <= held.count else {
                throw DICOMError(.truncated, "\(source.path) is shorter than its elements say", offset: offset)
            }
            return Array(held[offset..<(offset + count)])
        }
        var bytes = [UInt8](repeating: 0, count: count)
        var failure: DICOMError?
        let read = bytes.withUnsafeMutableBytes { buffer in
            do throws(DICOMError) { return try preadFully(source, into: buffer, at: offset) } catch {
                failure = error
                return 0
            }
        }
        if let failure { throw failure }
        guard read == count else {
            throw DICOMError(.truncated, "\(source.path) became shorter while it was being rewritten", offset: offset + read)
        }
        return bytes
    }

    /// Fills `buffer` from `offset` unless the file ends first; returns how many bytes were read.
    static func preadFully(_ source: FileByteSource, into buffer: UnsafeMutableRawBufferPointer, at offset: Int) throws(DICOMError) -> Int {
        var filled = 0
        while filled < buffer.count {
            let n = pread(source.descriptor, buffer.baseAddress! + filled, buffer.count - filled, off_t(offset + filled))
            if n == 0 { break }
            if n < 0 {
                if errno == EINTR { continue }
                throw DICOMError(.io, "Cannot read \(source.path): \(errnoText())", offset: offset + filled)
            }
            filled += n
        }
        return filled
    }

    /// Writes the pieces in order; source ranges go through one 1 MiB buffer.
    static func write(
        _ pieces: [Piece], from source: FileByteSource, to descriptor: Int32, target: String,
        observe: (UnsafeRawBufferPointer) -> Void = { _ in }, copyRange: ((Int32, Int, Int32, Int) -> Int)? = nil
    ) throws(DICOMError) {
        /// Bytes at hand, written and shown to `observe`.
        func emit(_ bytes: ArraySlice<UInt8>) throws(DICOMError) {
            let failure: DICOMError? = bytes.withUnsafeBytes { raw in
                do throws(DICOMError) { try writeAll(raw, to: descriptor, target: target) } catch { return error }
                observe(raw)
                return nil
            }
            if let failure { throw failure }
        }
        let chunk = UnsafeMutableRawBufferPointer.allocate(byteCount: 1 << 20, alignment: 16)
        defer { chunk.deallocate() }
        for piece in pieces {
            switch piece {
            case .bytes(let bytes): try emit(bytes[...])
            case .copy(let offset, let count):
                var done = 0
                // Inside the kernel while it will; what it will not copy is copied below.
                while let copyRange, done < count {
                    let copied = copyRange(source.descriptor, offset + done, descriptor, count - done)
                    guard copied > 0 else { break }
                    done += copied
                }
                while done < count {
                    let step = min(chunk.count, count - done)
                    let part = UnsafeMutableRawBufferPointer(rebasing: chunk[0..<step])
                    let read = try preadFully(source, into: part, at: offset + done)
                    guard read == step else {
                        throw DICOMError(
                            .truncated, "\(source.path) became shorter while it was being rewritten", offset: offset + done + read)
                    }
                    try writeAll(UnsafeRawBufferPointer(part), to: descriptor, target: target)
                    observe(UnsafeRawBufferPointer(part))
                    done += step
                }
            }
        }
    }

    static func writeAll(_ bytes: UnsafeRawBufferPointer, to descriptor: Int32, target: String) throws(DICOMError) {
        var written = 0
        while written < bytes.count {
            let n = Glibc.write(descriptor, bytes.baseAddress! + written, bytes.count - written)
            if n < 0 && errno == EINTR { continue }
            // A regular file never takes nothing without an error; if one did, do not spin.
            guard n > 0 else { throw DICOMError(.io, "Cannot write \(target): \(n < 0 ? errnoText() : "no progress")") }
            written += n
        }
    }
}
