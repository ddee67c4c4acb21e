#if canImport(Glibc)
    import Glibc
#endif

/// The structural check of a whole file, before anything takes it as an instance (issue 14: a CT
/// instance cut inside its Pixel Data was stored as complete, and the whole one then refused as a
/// conflict for ever).
///
/// Reads every top-level element to the last byte of the file: each length must be consistent with
/// what follows, a defined-length Pixel Data (or any bulk value) must end exactly where the file or
/// the next element begins, encapsulated Pixel Data is walked fragment by fragment to its sequence
/// delimiter. Bulk values are skipped by seeking, never read: checking a 512×512 CT file costs
/// about what reading its header costs. An image (Rows given, or an image storage SOP class) must
/// have its Pixel Data: a file cut exactly between two elements of its header is refused too.
/// Bytes after a complete Pixel Data that are not elements are a warning, not a refusal (real
/// archives hold such files, and pydicom and DCMTK read them).
///
/// A refusal is a `DICOMError` saying where the file ends and what was expected there, e.g.
/// "Pixel Data (7FE0,0010) declares 8192 bytes at offset 1410; the file ends at 1542".
extension DICOMFile {
    /// Checks the file at `path`; returns its header (bulk values not loaded) and any warnings.
    public static func verify(path: String) throws(DICOMError) -> DICOMFile {
        try verify(file: FileByteSource(path: path))
    }

    /// The same, on a source the caller keeps (tests count the bytes it read).
    static func verify(file source: FileByteSource) throws(DICOMError) -> DICOMFile {
        let size = source.size
        return try verified(ByteStream(source: source, initialChunk: ReadOptions.headers.initialReadSize), fileSize: size)
    }

    /// Checks a file whose first bytes are already in memory (`prefix`, as a receiver keeps them
    /// while the file streams to disk) and whose rest is at `path`: the prefix is not read again.
    public static func verify(prefix: ArraySlice<UInt8>, path: String) throws(DICOMError) -> DICOMFile {
        let file = try FileByteSource(path: path)
        let size = file.size
        guard size > prefix.count else {
            // The whole file is in memory (it cannot be shorter than what was kept of it).
            return try verified(ByteStream(bytes: Array(prefix.prefix(size))), fileSize: size)
        }
        guard try file.skip(prefix.count) == prefix.count else {
            throw DICOMError(.io, "\(path) is shorter than the \(prefix.count) bytes kept of it")
        }
        let chained = ChainedByteSource(first: MemoryByteSource(prefix), second: file)
        return try verified(ByteStream(source: chained, initialChunk: ReadOptions.headers.initialReadSize), fileSize: size)
    }

    /// Checks a file held in memory.
    public static func verify(bytes: [UInt8]) throws(DICOMError) -> DICOMFile {
        try verified(ByteStream(bytes: bytes), fileSize: bytes.count)
    }

    private static func verified(_ stream: ByteStream, fileSize: Int) throws(DICOMError) -> DICOMFile {
        try verifiedWithLayout(stream, fileSize: fileSize, options: .wholeStructure).file
    }

    /// The check, with `options` (`.wholeStructure`, perhaps recording top-level offsets), and
    /// where each top-level element starts when they were recorded.
    static func verifiedWithLayout(
        _ stream: ByteStream, fileSize: Int, options: ReadOptions
    ) throws(DICOMError) -> (file: DICOMFile, topLevelOffsets: [(tag: Tag, offset: Int)]) {
        let file: DICOMFile
        let offsets: [(tag: Tag, offset: Int)]
        do {
            (file, offsets) = try readWithLayout(stream: stream, options: options)
        } catch where error.code == .truncated || error.code == .lengthOutOfBounds || error.code == .inflateFailed {
            var placed = error
            if !placed.message.contains("the file ends at \(fileSize)") { placed.message += "; the file ends at byte \(fileSize)" }
            throw placed
        }
        if file.dataSet.isEmpty {
            throw DICOMError(.truncated, "The file ends at byte \(fileSize) with no data set after its File Meta Information", offset: fileSize)
        }
        let hasPixels = file.dataSet.contains(.pixelData) || file.dataSet.contains(Tag(0x7FE0, 0x0008))
            || file.dataSet.contains(Tag(0x7FE0, 0x0009))
        if !hasPixels {
            let sopClass = file.dataSet.string(.sopClassUID) ?? file.meta.string(.mediaStorageSOPClassUID) ?? ""
            let why: String? =
                file.dataSet.contains(Tag(0x0028, 0x0010)) ? "Rows (0028,0010) is given"
                : imageStorageClasses.contains(sopClass) ? "its SOP Class \(sopClass) is an image storage class" : nil
            if let why {
                throw DICOMError(
                    .truncated, "The file ends at byte \(fileSize) without Pixel Data (7FE0,0010), though \(why): it was cut short",
                    offset: fileSize)
            }
        }
        return (file, offsets)
    }

    /// Image storage SOP classes (PS3.4 Annex B.5), whose instances always carry pixel data:
    /// a file of one of these that ends before its Pixel Data was cut between two elements.
    static let imageStorageClasses: Set<String> = Set(
        [
            "1", "1.1", "1.1.1", "1.1.2", "1.1.2.1", "1.1.3", "1.1.3.1", "1.2", "1.2.1", "1.2.2", "1.2.2.1", "1.2.3", "1.2.3.1",
            "1.3", "1.3.1", "2", "2.1", "2.2", "3.1", "4", "4.1", "4.3", "4.4", "6.1", "6.2", "7", "7.1", "7.2", "7.3", "7.4",
            "12.1", "12.1.1", "12.2", "12.2.1", "12.3", "13.1.1", "13.1.2", "13.1.3", "13.1.4", "13.1.5", "14.1", "14.2", "20",
            "30", "77.1.1", "77.1.1.1", "77.1.2", "77.1.2.1", "77.1.3", "77.1.4", "77.1.4.1", "77.1.5.1", "77.1.5.2",
            "77.1.5.4", "77.1.6", "128", "128.1", "130", "481.1",
        ].map { "1.2.840.10008.5.1.4.1.1." + $0 })
}
