#if canImport(Glibc)
    import Glibc
#endif
internal import Durability

/// A Part 10 file written again with its data set changed by a caller (de-identification,
/// issue 29), streaming: the file is read with bulk values over 16 KiB (pixel data above all) left
/// where they are, the caller changes the data set it is given — its short values in memory, its
/// bulk ones as `DataElement.Value.notLoaded` ranges it keeps or drops, never reads — and the new
/// file is written as pieces: bytes made here, and ranges of the source copied as they are.
/// Memory does not grow with the file.
///
/// The data set is written in explicit VR little endian; a source in implicit VR little endian
/// is converted on the way (its values are little endian too). Encapsulated (compressed), big
/// endian and deflated sources are refused (`.unsupportedTransferSyntax`): their bulk values
/// cannot be copied as they are into that encoding. Retired group lengths are left out (they
/// would be wrong), as is anything after a complete Pixel Data that is not an element.
public enum StreamingRewrite {
    static let accepted: Set<String> = [TransferSyntax.implicitVRLittleEndian, TransferSyntax.explicitVRLittleEndian]

    /// Writes `source` at `target` (durably: a temporary name, fsync, rename, fsync of the
    /// folder) with its File Meta Information changed by `meta` and its data set by `dataSet`.
    public static func rewrite(
        _ source: String, to target: String, meta: (DataSet) -> DataSet, dataSet: (DataSet) throws -> DataSet
    ) throws(DICOMError) {
        let pieces = try plan(source, meta: meta, dataSet: dataSet)
        let input = open(source, O_RDONLY | O_CLOEXEC)
        guard input >= 0 else { throw DICOMError(.io, "Cannot open \(source): \(String(cString: strerror(errno)))") }
        defer { close(input) }
        do {
            try DurableFile.write(to: target, mode: 0o640) { descriptor in
                try write(pieces, from: input, to: descriptor, target: target)
            }
        } catch let error as DICOMError {
            throw error
        } catch {
            throw DICOMError(.io, "Cannot write \(target): \(error)")
        }
    }

    /// The new file's pieces.
    static func plan(_ source: String, meta: (DataSet) -> DataSet, dataSet transform: (DataSet) throws -> DataSet) throws(DICOMError) -> [TransferSyntaxConversion.Piece] {
        var options = ReadOptions.wholeStructure
        options.bulkDataThreshold = 16 * 1024
        let file = try DICOMFile.read(path: source, options: options)
        guard let syntax = file.transferSyntaxUID else { throw DICOMError(.badMetaInformation, "\(source) names no transfer syntax") }
        guard accepted.contains(syntax) else {
            throw DICOMError(.unsupportedTransferSyntax, "\(source) is stored in \(syntax); only implicit and explicit VR little endian files are rewritten streaming")
        }
        var dataSet: DataSet
        do { dataSet = try transform(file.dataSet) } catch let error as DICOMError { throw error } catch {
            throw DICOMError(.unencodable, "\(source): \(error)")
        }
        dataSet.elements.removeAll { $0.tag.isGroupLength }
        var out = ByteWriter()
        try DICOMWriter.writeHeader(
            meta: meta(file.meta), transferSyntax: TransferSyntax.explicitVRLittleEndian, sopClassUID: dataSet.string(.sopClassUID),
            sopInstanceUID: dataSet.string(.sopInstanceUID), sequenceLengths: .undefined, to: &out)
        let bulk = BulkPieces()
        try DataSetEncoder(encoding: .explicitVRLittleEndian, sequenceLengths: .undefined, bulk: bulk).encode(dataSet, into: &out)
        bulk.cut(&out, then: nil)
        return bulk.pieces
    }

    /// The pieces written in order; source ranges in 1 MiB chunks.
    static func write(_ pieces: [TransferSyntaxConversion.Piece], from input: Int32, to descriptor: Int32, target: String) throws(DICOMError) {
        /// The whole buffer written: nil, or errno's reason it could not be.
        func all(_ buffer: UnsafeRawBufferPointer) -> String? {
            var done = 0
            while done < buffer.count {
                let written = Glibc.write(descriptor, buffer.baseAddress! + done, buffer.count - done)
                if written < 0 && errno == EINTR { continue }
                guard written > 0 else { return String(cString: strerror(errno)) }
                done += written
            }
            return nil
        }
        var chunk = [UInt8](repeating: 0, count: 1 << 20)
        for piece in pieces {
            switch piece {
            case .bytes(let bytes):
                if let failure = bytes.withUnsafeBytes({ all($0) }) { throw DICOMError(.io, "Cannot write \(target): \(failure)") }
            case .copy(let offset, let count):
                var done = 0
                while done < count {
                    let want = min(chunk.count, count - done)
                    let got = chunk.withUnsafeMutableBytes { pread(input, $0.baseAddress!, want, off_t(offset + done)) }
                    if got < 0 && errno == EINTR { continue }
                    guard got > 0 else { throw DICOMError(.io, "The source ended or could not be read at byte \(offset + done) while writing \(target)") }
                    if let failure = chunk.withUnsafeBytes({ all(UnsafeRawBufferPointer(rebasing: $0[0..<got])) }) {
                        throw DICOMError(.io, "Cannot write \(target): \(failure)")
                    }
                    done += got
                }
            }
        }
    }
}
