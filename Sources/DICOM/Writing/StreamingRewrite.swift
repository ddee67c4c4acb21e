internal import Durability

/// A Part 10 file written again with its data set changed by a caller (de-identification,
/// issue 29), streaming: the file is read with bulk values over 16 KiB (pixel data above all) left
/// where they are, the caller changes the data set it is given — its short values in memory, its
/// bulk ones as `DataElement.Value.notLoaded` ranges it keeps or drops, never reads — and the new
/// file is written as pieces: bytes made here, and ranges of the source copied as they are.
/// Memory does not grow with the file.
///
/// The data set is written in explicit VR little endian; a source in implicit VR little endian
/// is converted on the way (its values are little endian too). An encapsulated (compressed)
/// source keeps its transfer syntax (its data set is explicit VR little endian already), its
/// pixel data's fragment items copied as they are. Big endian and deflated sources are refused
/// (`.unsupportedTransferSyntax`): their bulk values cannot be copied as they are. Retired group lengths are left out (they
/// would be wrong), as is anything after a complete Pixel Data that is not an element.
public enum StreamingRewrite {
    static let accepted: Set<String> = [TransferSyntax.implicitVRLittleEndian, TransferSyntax.explicitVRLittleEndian]
    /// Big endian, and deflated (JPIP Referenced Deflate too): their values as read are not the
    /// bytes at their offsets in the file.
    static let refused: Set<String> = [TransferSyntax.explicitVRBigEndian, TransferSyntax.deflatedExplicitVRLittleEndian, "1.2.840.10008.1.2.4.95"]

    /// Writes `source` at `target` (durably: a temporary name, fsync, rename, fsync of the
    /// folder) with its File Meta Information changed by `meta` and its data set by `dataSet`.
    public static func rewrite(
        _ source: String, to target: String, meta: (DataSet) -> DataSet, dataSet: (DataSet) throws -> DataSet
    ) throws(DICOMError) {
        let pieces = try plan(source, meta: meta, dataSet: dataSet)
        let file = try FileByteSource(path: source)
        do {
            // Written as the identity rewriter writes its pieces (the same 1 MiB copies, the same
            // check that the source did not shrink meanwhile).
            try DurableFile.write(to: target, mode: 0o640) { descriptor in
                try IdentityRewriter.write(pieces, from: file, to: descriptor, target: target)
            }
        } catch let error as DICOMError {
            throw error
        } catch {
            throw DICOMError(.io, "Cannot write \(target): \(error)")
        }
    }

    /// The new file as pieces — bytes made here, and ranges of `source` to copy as they are — for
    /// a caller that sends it rather than writes it (a de-identified push streams each instance
    /// into its request: no copy on disk at all).
    public static func pieces(
        _ source: String, meta: (DataSet) -> DataSet, dataSet: (DataSet) throws -> DataSet
    ) throws(DICOMError) -> [TransferSyntaxConversion.Piece] {
        try plan(source, meta: meta, dataSet: dataSet)
    }

    /// The new file's pieces.
    static func plan(_ source: String, meta: (DataSet) -> DataSet, dataSet transform: (DataSet) throws -> DataSet) throws(DICOMError) -> [TransferSyntaxConversion.Piece] {
        var options = ReadOptions.wholeStructure
        options.bulkDataThreshold = 16 * 1024
        let file = try DICOMFile.read(path: source, options: options)
        guard let syntax = file.transferSyntaxUID else { throw DICOMError(.badMetaInformation, "\(source) names no transfer syntax") }
        // An encapsulated (compressed) file's data set is explicit VR little endian too: it is
        // written in its own transfer syntax, its pixel data's fragments copied as they are.
        let (encoding, deflated) = TransferSyntax.encoding(of: syntax)
        let encapsulated = !accepted.contains(syntax) && !refused.contains(syntax) && !deflated && encoding == .explicitVRLittleEndian
        guard accepted.contains(syntax) || encapsulated else {
            throw DICOMError(
                .unsupportedTransferSyntax, "\(source) is stored in \(syntax); big endian and deflated files are not rewritten streaming (their values would have to be read and changed)")
        }
        var dataSet: DataSet
        do { dataSet = try transform(file.dataSet) } catch let error as DICOMError { throw error } catch {
            throw DICOMError(.unencodable, "\(source): \(error)")
        }
        dataSet.elements.removeAll { $0.tag.isGroupLength }
        var out = ByteWriter()
        try DICOMWriter.writeHeader(
            meta: meta(file.meta), transferSyntax: encapsulated ? syntax : TransferSyntax.explicitVRLittleEndian, sopClassUID: dataSet.string(.sopClassUID),
            sopInstanceUID: dataSet.string(.sopInstanceUID), sequenceLengths: .undefined, to: &out)
        let bulk = BulkPieces()
        try DataSetEncoder(encoding: .explicitVRLittleEndian, sequenceLengths: .undefined, bulk: bulk).encode(dataSet, into: &out)
        bulk.cut(&out, then: nil)
        return bulk.pieces
    }
}
