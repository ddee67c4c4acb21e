/// How much of a file to read, and the limits that keep a hostile file harmless.
public struct ReadOptions: Sendable {
    /// Stop at the first top-level Pixel Data element (7FE0,0010), Float Pixel Data (7FE0,0008) or
    /// Double Float Pixel Data (7FE0,0009), without reading it (pydicom's `stop_before_pixels`).
    public var stopBeforePixelData = true
    /// When set, values of bulk VRs (OB, OD, OF, OL, OV, OW, UN) longer than this many bytes, and
    /// encapsulated pixel data, are skipped rather than read (`DataElement.Value.notLoaded`), so
    /// elements after them can be read without holding the bulk data in memory.
    public var bulkDataThreshold: Int?
    /// Deepest nesting of sequences accepted; real files rarely go past 6.
    public var maximumNestingDepth = 64
    /// Most value bytes held in memory for one file, in total; past that the read fails with
    /// `limitExceeded`. Guards against a deflate bomb or a giant private blob before Pixel Data.
    public var maximumLoadedBytes = 256 << 20
    /// First read from a file. A header is usually 1–4 KiB; the reader grows as needed.
    public var initialReadSize = 8192
    /// Read the whole file's structure as `DICOMFile.verify` does: bytes after a complete top-level
    /// Pixel Data that are not elements are a warning, not an error (real archives hold such files).
    public var verifyingStructure = false
    /// Keep each top-level element's tag and header offset (`DataSetParser.topLevelOffsets`).
    var recordsTopLevelOffsets = false

    public init() {}

    /// Headers only: the default.
    public static let headers = ReadOptions()
    /// The whole file's structure, to its last byte, with bulk values (pixel data above all)
    /// skipped by seeking rather than read: what `DICOMFile.verify` uses.
    public static var wholeStructure: ReadOptions {
        var options = ReadOptions()
        options.stopBeforePixelData = false
        options.bulkDataThreshold = 0
        options.verifyingStructure = true
        return options
    }
    /// Everything, pixel data included, in memory.
    public static var everything: ReadOptions {
        var options = ReadOptions()
        options.stopBeforePixelData = false
        return options
    }
}
