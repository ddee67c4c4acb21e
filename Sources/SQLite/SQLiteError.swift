internal import CSQLite

/// Why SQLite refused: its result code, its message, and what we were doing.
///
/// `isBusy` (another connection holds the write lock past the busy timeout) and `isFull` (the disk
/// is full) are the two a caller acts on; every other code is a fault to report.
public struct SQLiteError: Error, Sendable, CustomStringConvertible {
    public let code: Int32
    public let message: String
    public let context: String

    init(_ code: Int32, _ message: String, context: String) {
        self.code = code
        self.message = message
        self.context = context
    }

    init(_ code: Int32, database: OpaquePointer?, context: String) {
        let message = database.flatMap { sqlite3_errmsg($0) }.map { String(cString: $0) } ?? String(cString: sqlite3_errstr(code))
        self.init(code, message, context: context)
    }

    public var isBusy: Bool { code & 0xFF == SQLITE_BUSY || code & 0xFF == SQLITE_LOCKED }
    public var isFull: Bool { code & 0xFF == SQLITE_FULL }
    public var isConstraint: Bool { code & 0xFF == SQLITE_CONSTRAINT }

    public var description: String { "\(context): \(message) (SQLite \(code))" }
}
