/// A data set re-encoded between the two uncompressed little-endian transfer syntaxes, implicit
/// VR (1.2.840.10008.1.2) and explicit VR (1.2.840.10008.1.2.1), for a DIMSE peer that accepts
/// the instance only in the other one (PS3.5 §10: the same data set, another encoding).
///
/// Streaming: the file is read with bulk values (pixel data above all) left where they are, and
/// the result is a list of pieces — bytes made here (element headers, the short values as they
/// were), and ranges of the source copied as they are — so memory does not grow with the file.
/// Values are not changed: both syntaxes are little endian. In explicit VR each element takes
/// the VR the reader settled (the dictionary's, ambiguities resolved by PS3.5's rules; a private
/// element whose creator's dictionary is unknown, UN); a value too long for a 2-byte length, UN.
/// Sequences and items are written with undefined length (their defined lengths would change
/// with the headers). Retired group lengths (gggg,0000), which would be wrong afterwards, are
/// left out, as is anything after a complete Pixel Data that is not an element.
public enum TransferSyntaxConversion {
    /// A piece of a new file: bytes made here, or a range of the source copied as it is (the
    /// identity rewriter's and the streaming rewrite's too).
    public enum Piece: Hashable, Sendable {
        case bytes([UInt8])
        case copy(offset: Int, count: Int)

        public var count: Int {
            switch self {
            case .bytes(let bytes): return bytes.count
            case .copy(_, let count): return count
            }
        }
    }

    static let convertible: Set<String> = [TransferSyntax.implicitVRLittleEndian, TransferSyntax.explicitVRLittleEndian]

    /// Whether a data set stored in `source` can be sent in `target` by `dataSet(of:to:)`.
    public static func canConvert(from source: String, to target: String) -> Bool {
        source != target && convertible.contains(source) && convertible.contains(target)
    }

    /// The data set of the Part 10 file at `path` (after its File Meta Information), encoded in
    /// `target`. A file that cannot be read whole, or that is stored in another syntax, is a
    /// `DICOMError`.
    public static func dataSet(of path: String, to target: String) throws(DICOMError) -> [Piece] {
        var options = ReadOptions.wholeStructure
        options.bulkDataThreshold = 16 * 1024
        let file = try DICOMFile.read(path: path, options: options)
        guard let source = file.transferSyntaxUID else {
            throw DICOMError(.badMetaInformation, "\(path) names no transfer syntax")
        }
        guard canConvert(from: source, to: target) else {
            throw DICOMError(.unsupportedTransferSyntax, "\(path) is stored in \(source); only implicit and explicit VR little endian are converted, to each other")
        }
        var dataSet = file.dataSet
        dataSet.elements.removeAll { $0.tag.isGroupLength }
        let bulk = BulkPieces()
        let encoder = DataSetEncoder(
            encoding: target == TransferSyntax.explicitVRLittleEndian ? .explicitVRLittleEndian : .implicitVRLittleEndian,
            sequenceLengths: .undefined, bulk: bulk)
        var out = ByteWriter()
        try encoder.encode(dataSet, into: &out)
        bulk.cut(&out, then: nil)
        return bulk.pieces
    }
}

/// The pieces a conversion makes, gathered as the encoder goes.
final class BulkPieces {
    var pieces: [TransferSyntaxConversion.Piece] = []

    /// Hands over what `out` holds (then empty), and `next` after it.
    func cut(_ out: inout ByteWriter, then next: TransferSyntaxConversion.Piece?) {
        if !out.bytes.isEmpty { pieces.append(.bytes(out.bytes)) }
        out.bytes.removeAll(keepingCapacity: true)
        if let next { pieces.append(next) }
    }
}
