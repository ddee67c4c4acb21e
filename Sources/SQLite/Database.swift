internal import CSQLite

/// One SQLite connection, owned by one thread at a time (the agent gives each its own; SQLite is
/// built serialized here, but a statement must not be shared mid-step).
///
/// Opened in WAL mode with `synchronous=FULL` (a committed transaction survives a power cut: the
/// spool's promise), foreign keys on, and a busy timeout so that a reader never fails because the
/// writer is committing. Every failure is a `SQLiteError` naming what was being done.
public final class Database: @unchecked Sendable {
    let handle: OpaquePointer
    public let path: String
    private var cache: [String: Statement] = [:]

    /// Opens (creating if asked) the database at `path`. `readOnly` for inspection tools that
    /// must change nothing (`consort queue` while the agent is down). `pageSize` applies to a
    /// file created now (SQLite fixes it once the file is in WAL mode); an existing file keeps its own.
    public init(path: String, readOnly: Bool = false, busyTimeoutMilliseconds: Int32 = 5000, pageSize: Int? = nil) throws(SQLiteError) {
        self.path = path
        var db: OpaquePointer?
        let flags = readOnly ? SQLITE_OPEN_READONLY : (SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE)
        let status = sqlite3_open_v2(path, &db, flags | SQLITE_OPEN_NOMUTEX, nil)
        guard status == SQLITE_OK, let db else {
            let error = SQLiteError(status, database: db, context: "Cannot open the database \(path)")
            sqlite3_close_v2(db)
            throw error
        }
        handle = db
        sqlite3_busy_timeout(db, busyTimeoutMilliseconds)
        sqlite3_extended_result_codes(db, 1)
        if !readOnly {
            if let pageSize { try execute("PRAGMA page_size=\(pageSize)") }
            try execute("PRAGMA journal_mode=WAL")
            try execute("PRAGMA synchronous=FULL")
        }
        try execute("PRAGMA foreign_keys=ON")
    }

    deinit {
        cache.removeAll()  // statements are finalised before the connection closes
        sqlite3_close_v2(handle)
    }

    /// Runs SQL that returns no rows (several statements allowed: a schema).
    public func execute(_ sql: String) throws(SQLiteError) {
        var message: UnsafeMutablePointer<CChar>?
        let status = sqlite3_exec(handle, sql, nil, nil, &message)
        if status != SQLITE_OK {
            let text = message.map { String(cString: $0) } ?? String(cString: sqlite3_errstr(status))
            sqlite3_free(message)
            throw SQLiteError(status, text, context: "Cannot run \(sql.prefix(80))")
        }
    }

    /// A prepared statement for `sql`, compiled once and kept for this connection.
    public func prepare(_ sql: String) throws(SQLiteError) -> Statement {
        if let statement = cache[sql] {
            statement.reset()
            return statement
        }
        var raw: OpaquePointer?
        let status = sqlite3_prepare_v3(handle, sql, -1, UInt32(SQLITE_PREPARE_PERSISTENT), &raw, nil)
        guard status == SQLITE_OK, let raw else { throw SQLiteError(status, database: handle, context: "Cannot prepare \(sql.prefix(120))") }
        let statement = Statement(raw, database: self, sql: sql)
        cache[sql] = statement
        return statement
    }

    /// Runs `body` in one transaction: committed if it returns, rolled back if it throws. BEGIN
    /// IMMEDIATE takes the write lock at once, so two writers wait (busy timeout) instead of
    /// failing half-way.
    public func transaction<T>(_ body: () throws -> T) throws -> T {
        try execute("BEGIN IMMEDIATE")
        do {
            let result = try body()
            try execute("COMMIT")
            return result
        } catch {
            try? execute("ROLLBACK")
            throw error
        }
    }

    /// The rowid of the last row inserted on this connection.
    public var lastInsertedRowID: Int64 { sqlite3_last_insert_rowid(handle) }
    /// Rows changed by the last statement.
    public var changes: Int { Int(sqlite3_changes(handle)) }
}
