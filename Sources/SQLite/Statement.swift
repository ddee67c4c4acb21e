internal import CSQLite

/// A value to bind or read: SQLite's storage classes, as the agent uses them.
public enum SQLValue: Sendable, Equatable {
    case null
    case integer(Int64)
    case real(Double)
    case text(String)
    case blob([UInt8])
}

/// A compiled statement of one connection. Bind, then step through rows; reset for the next use.
public final class Statement {
    let raw: OpaquePointer
    unowned let database: Database
    let sql: String

    init(_ raw: OpaquePointer, database: Database, sql: String) {
        self.raw = raw
        self.database = database
        self.sql = sql
    }

    deinit { sqlite3_finalize(raw) }

    func reset() {
        sqlite3_reset(raw)
        sqlite3_clear_bindings(raw)
    }

    /// Binds values to ?1, ?2, ... in order.
    @discardableResult
    public func bind(_ values: [SQLValue]) throws(SQLiteError) -> Statement {
        reset()
        for (offset, value) in values.enumerated() {
            let index = Int32(offset + 1)
            let status: Int32
            switch value {
            case .null: status = sqlite3_bind_null(raw, index)
            case .integer(let v): status = sqlite3_bind_int64(raw, index, v)
            case .real(let v): status = sqlite3_bind_double(raw, index, v)
            case .text(let v):
                // SQLITE_TRANSIENT (a cast macro Swift cannot import): SQLite copies the bytes.
                status = sqlite3_bind_text(raw, index, v, -1, unsafeBitCast(-1, to: sqlite3_destructor_type.self))
            case .blob(let v):
                status = v.withUnsafeBytes { sqlite3_bind_blob(raw, index, $0.baseAddress, Int32($0.count), unsafeBitCast(-1, to: sqlite3_destructor_type.self)) }
            }
            guard status == SQLITE_OK else { throw SQLiteError(status, database: database.handle, context: "Cannot bind value \(index) of \(sql.prefix(80))") }
        }
        return self
    }

    /// Runs a statement that returns no rows.
    public func run(_ values: [SQLValue] = []) throws(SQLiteError) {
        try bind(values)
        let status = sqlite3_step(raw)
        defer { sqlite3_reset(raw) }
        guard status == SQLITE_DONE || status == SQLITE_ROW else {
            throw SQLiteError(status, database: database.handle, context: "Cannot run \(sql.prefix(120))")
        }
    }

    /// Every row, each read by `row` while it is current.
    public func rows<T>(_ values: [SQLValue] = [], _ row: (Row) throws -> T) throws -> [T] {
        try bind(values)
        defer { sqlite3_reset(raw) }
        var out: [T] = []
        while true {
            let status = sqlite3_step(raw)
            if status == SQLITE_DONE { return out }
            guard status == SQLITE_ROW else { throw SQLiteError(status, database: database.handle, context: "Cannot read \(sql.prefix(120))") }
            out.append(try row(Row(raw: raw)))
        }
    }

    /// The first row, or nil.
    public func first<T>(_ values: [SQLValue] = [], _ row: (Row) throws -> T) throws -> T? {
        try bind(values)
        defer { sqlite3_reset(raw) }
        let status = sqlite3_step(raw)
        if status == SQLITE_DONE { return nil }
        guard status == SQLITE_ROW else { throw SQLiteError(status, database: database.handle, context: "Cannot read \(sql.prefix(120))") }
        return try row(Row(raw: raw))
    }
}

/// The current row of a stepping statement: columns by position, from 0.
public struct Row {
    let raw: OpaquePointer

    /// How many columns the row has.
    public var count: Int32 { sqlite3_column_count(raw) }

    public func isNull(_ column: Int32) -> Bool { sqlite3_column_type(raw, column) == SQLITE_NULL }
    public func int(_ column: Int32) -> Int64 { sqlite3_column_int64(raw, column) }
    public func double(_ column: Int32) -> Double { sqlite3_column_double(raw, column) }
    public func text(_ column: Int32) -> String? {
        guard let pointer = sqlite3_column_text(raw, column) else { return nil }
        return String(cString: pointer)
    }
    public func blob(_ column: Int32) -> [UInt8] {
        let count = Int(sqlite3_column_bytes(raw, column))
        guard count > 0, let pointer = sqlite3_column_blob(raw, column) else { return [] }
        return Array(UnsafeRawBufferPointer(start: pointer, count: count))
    }
}
