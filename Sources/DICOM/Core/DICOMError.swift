/// Why a file could not be read (or written), and where.
///
/// Every error the parser raises carries the byte offset in the (inflated) stream and, when an
/// element was being read, its tag, so a sysadmin can open the file in a hex editor at that place.
/// The parser throws only this type (`throws(DICOMError)`).
public struct DICOMError: Error, Sendable, Equatable, CustomStringConvertible {
    public enum Code: String, Sendable {
        /// The file ended in the middle of an element header or value.
        case truncated
        /// A length field points past the end of the file, its item, or the allowed size.
        case lengthOutOfBounds
        /// A structural rule of PS3.5 is broken (stray delimiter, odd tag in an item, ...).
        case malformed
        /// Sequences nested deeper than `ReadOptions.maximumNestingDepth`.
        case nestingTooDeep
        /// The File Meta Information is missing something we need, or is unreadable.
        case badMetaInformation
        /// Neither a Part 10 file nor a recognisable bare data set.
        case notDICOM
        /// The deflated data set does not inflate.
        case inflateFailed
        /// A limit of `ReadOptions` was reached (header bytes).
        case limitExceeded
        /// The operating system refused a read or write (the message carries errno's text).
        case io
        /// A value cannot be encoded (writer).
        case unencodable
        /// An attribute the operation needs is absent or empty (the identity rewrite's PatientID).
        case missingAttribute
        /// The file is in a transfer syntax the operation does not handle (the identity rewrite
        /// refuses deflated and big endian data sets, whose bytes it cannot copy as they are).
        case unsupportedTransferSyntax
    }

    public var code: Code
    public var message: String
    /// Offset in the data stream (for deflated files, in the inflated stream) where it went wrong.
    public var offset: Int?
    /// The element being read, when there was one.
    public var tag: Tag?

    public init(_ code: Code, _ message: String, offset: Int? = nil, tag: Tag? = nil) {
        self.code = code
        self.message = message
        self.offset = offset
        self.tag = tag
    }

    public var description: String {
        var text = message
        if let tag { text += " in element \(tag)" }
        if let offset { text += " at byte \(offset)" }
        return text
    }
}

/// Something odd that did not stop the reading, for the caller to log or show (never printed).
public struct ReadWarning: Sendable, Equatable, CustomStringConvertible {
    public var message: String
    public var offset: Int?
    public var tag: Tag?
    public init(_ message: String, offset: Int? = nil, tag: Tag? = nil) {
        self.message = message
        self.offset = offset
        self.tag = tag
    }
    public var description: String {
        var text = message
        if let tag { text += " (\(tag))" }
        if let offset { text += " at byte \(offset)" }
        return text
    }
}
