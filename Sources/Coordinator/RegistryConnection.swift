internal import CLibPQ
import Foundation
import SQLite

/// What the registry's SQL runs on: SQLite or PostgreSQL, behind the shape of the SQLite
/// wrapper (prepare, run, first, rows; `?N` parameters). Rows come back as text, which is how
/// PostgreSQL's protocol gives them anyway; `RegistryRow` reads numbers from it.
protocol RegistryConnection: AnyObject {
    func prepare(_ sql: String) throws -> RegistryStatement
    /// Rows changed by the last statement run.
    var changes: Int { get }
    func execute(_ script: String) throws
    func transaction<T>(_ body: () throws -> T) throws -> T
    /// Several reads, each seeing at least what the one before it saw: one snapshot on SQLite
    /// (free there), on PostgreSQL each statement its own, later, snapshot (a transaction
    /// around them was two more round trips, half of a lookup's). Callers read last what must
    /// not be missed: a study's conflicts after the study, so a conflict that existed when
    /// the study was read is seen (conflicts are never deleted).
    func readTransaction<T>(_ body: () throws -> T) throws -> T
    /// Whether the schema has a table of that name (an older layout's, for its migration).
    func hasTable(_ name: String) throws -> Bool
    /// `values` handed to `body` as the inside of an `IN (…)` (placeholders numbered from
    /// `first`: those before are the caller's) with the values for them, in as many pieces
    /// as the store needs.
    func inLists(_ values: [String], from first: Int, _ body: (String, [SQLValue]) throws -> Void) throws
    /// Rows written into `table` ("name (columns)") with `clause` after them (`ON CONFLICT …`):
    /// the rows inserted or changed, as the store counts them.
    @discardableResult
    func insertRows(_ rows: [[SQLValue]], into table: String, then clause: String) throws -> Int
    /// Reads sent together, each statement's rows in order: one round trip on PostgreSQL
    /// (libpq's pipeline mode), one after the other on SQLite. Outside a transaction, each sees
    /// at least what the one before it saw.
    func together(_ statements: [(sql: String, values: [SQLValue])]) throws -> [[RegistryRow]]
}

/// Portable SQL for both (SQLite's way; PostgreSQL has its own, set-based).
extension RegistryConnection {
    func together(_ statements: [(sql: String, values: [SQLValue])]) throws -> [[RegistryRow]] {
        try statements.map { try prepare($0.sql).execute($0.values) }
    }

    func inLists(_ values: [String], _ body: (String, [SQLValue]) throws -> Void) throws { try inLists(values, from: 1, body) }

    /// Lists of at most 512, each list's length a power of two (the last value repeated to fill
    /// it): a handful of distinct statements for SQLite's statement cache, whatever the batch
    /// sizes.
    func inLists(_ values: [String], from first: Int, _ body: (String, [SQLValue]) throws -> Void) throws {
        var start = 0
        while start < values.count {
            let chunk = Array(values[start..<min(values.count, start + 512)])
            start += chunk.count
            var size = 1
            while size < chunk.count { size *= 2 }
            let padded = chunk + Array(repeating: chunk[chunk.count - 1], count: size - chunk.count)
            try body((first..<(first + size)).map { "?\($0)" }.joined(separator: ", "), padded.map(SQLValue.text))
        }
    }

    /// Multi-row `INSERT … VALUES (…), (…)`, in statements of a power-of-two number of rows (at
    /// most 256; the same reason as `inLists`).
    @discardableResult
    func insertRows(_ rows: [[SQLValue]], into table: String, then clause: String) throws -> Int {
        guard let width = rows.first?.count else { return 0 }
        var changed = 0
        var start = 0
        while start < rows.count {
            var size = 256
            while size > rows.count - start { size /= 2 }
            let tuples = (0..<size).map { row in "(" + (0..<width).map { "?\(row * width + $0 + 1)" }.joined(separator: ", ") + ")" }.joined(separator: ", ")
            try prepare("INSERT INTO \(table) VALUES \(tuples) \(clause)").run(rows[start..<(start + size)].flatMap { $0 })
            changed += changes
            start += size
        }
        return changed
    }
}

/// One row, column by column from 0.
struct RegistryRow {
    let cells: [String?]
    func text(_ column: Int32) -> String? { cells[Int(column)] }
    func int(_ column: Int32) -> Int64 { cells[Int(column)].flatMap { Int64($0) ?? Double($0).map { Int64($0) } } ?? 0 }
    func double(_ column: Int32) -> Double { cells[Int(column)].flatMap(Double.init) ?? 0 }
    func isNull(_ column: Int32) -> Bool { cells[Int(column)] == nil }
}

/// A statement of either store: runs with its parameters and returns its rows.
struct RegistryStatement {
    let execute: ([SQLValue]) throws -> [RegistryRow]

    func run(_ values: [SQLValue] = []) throws { _ = try execute(values) }
    func rows<T>(_ values: [SQLValue] = [], _ row: (RegistryRow) throws -> T) throws -> [T] { try execute(values).map(row) }
    func first<T>(_ values: [SQLValue] = [], _ row: (RegistryRow) throws -> T) throws -> T? { try execute(values).first.map(row) }
}

final class SQLiteConnection: RegistryConnection {
    let db: Database
    init(_ db: Database) { self.db = db }

    func prepare(_ sql: String) throws -> RegistryStatement {
        let statement = try db.prepare(sql)
        return RegistryStatement { values in
            try statement.rows(values) { row in RegistryRow(cells: (0..<row.count).map { row.isNull($0) ? nil : row.text($0) }) }
        }
    }

    var changes: Int { db.changes }
    func execute(_ script: String) throws { try db.execute(script) }
    func transaction<T>(_ body: () throws -> T) throws -> T { try db.transaction(body) }

    func readTransaction<T>(_ body: () throws -> T) throws -> T {
        try db.execute("BEGIN")
        defer { try? db.execute("COMMIT") }
        return try body()
    }

    func hasTable(_ name: String) throws -> Bool {
        try prepare("SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = ?1").first([.text(name)]) { _ in true } ?? false
    }
}

/// PostgreSQL through libpq: one connection, each statement prepared on the server the first
/// time it is run and executed by name after that (parameters as text, never spliced into the
/// SQL), `?N` rewritten to `$N`. A broken connection is reset once and the statement retried
/// (outside a transaction only).
final class PostgreSQLConnection: RegistryConnection {
    private var connection: OpaquePointer?
    private var inTransaction = false
    private(set) var changes = 0
    let conninfo: String

    /// Statements prepared on this connection's session, by their SQL. Parsing and planning
    /// were most of a lookup's time in the server (the conflicts' four-branch UNION: 0.19 ms to
    /// plan, 0.009 ms to run) and the multi-row inserts of an announcement, thousands of
    /// parameters each, were parsed again at every batch. The registry's statements are a
    /// fixed set (lists and rows sent as arrays, one text whatever their length), so the cache
    /// stays small; past `preparedLimit` a statement is sent unprepared rather than growing the
    /// server's memory without bound. A session reset forgets them all (the server has). Named
    /// statements need a session of their own: a pooler in transaction mode between the
    /// coordinator and the server is not supported (Deploy/postgresql-standby.md).
    private var prepared: [String: String] = [:]
    static let preparedLimit = 500

    init(_ conninfo: String) throws {
        self.conninfo = conninfo
        connection = Self.connect(conninfo)
        guard PQstatus(connection) == CONNECTION_OK else {
            let message = connection.map { String(cString: PQerrorMessage($0)) } ?? "no memory"
            PQfinish(connection)
            throw RegistryError("cannot connect to PostgreSQL (\(Self.redacted(conninfo))): \(message.trimmingCharacters(in: .whitespacesAndNewlines))")
        }
        sessionSettings()
    }

    /// Limits of the registry's own where the connection string names none, so that a database
    /// machine that goes silent (lost, not refusing) fails a statement within seconds rather
    /// than when Linux gives up retransmitting (about 15 minutes), with the writer's lock held
    /// all that time: TCP keepalives after 5 s idle, every 2 s, 3 unanswered; data unacknowledged
    /// for 10 s; a connection attempt (one host of a list) given 10 s, where libpq would wait
    /// for ever. The operator's connection string comes after them and wins
    /// (PQconnectdbParams expands it in place of `dbname`).
    static let connectionDefaults = [
        ("keepalives", "1"), ("keepalives_idle", "5"), ("keepalives_interval", "2"), ("keepalives_count", "3"),
        ("tcp_user_timeout", "10000"), ("connect_timeout", "10"),
    ]

    static func connect(_ conninfo: String) -> OpaquePointer? {
        let pairs = connectionDefaults + [("dbname", conninfo)]
        let keys = pairs.map { strdup($0.0) }, values = pairs.map { strdup($0.1) }
        defer { for copy in keys + values { free(copy) } }
        let keyPointers = keys.map { UnsafePointer($0) } + [nil], valuePointers = values.map { UnsafePointer($0) } + [nil]
        return PQconnectdbParams(keyPointers, valuePointers, 1)
    }

    /// A connection parameter as the connection uses it (for tests and messages).
    func setting(_ keyword: String) -> String? {
        guard let options = PQconninfo(connection) else { return nil }
        defer { PQconninfoFree(options) }
        var option = options
        while let name = option.pointee.keyword {
            if String(cString: name) == keyword { return option.pointee.val.map { String(cString: $0) } }
            option += 1
        }
        return nil
    }

    /// The session's settings, at connect and after a reset. The server's NOTICEs ("index …
    /// does not exist, skipping" from the schema's IF EXISTS) would go to stderr through
    /// libpq's default processor, as noise in the service's log; warnings and errors still
    /// come. And no statement runs longer than 30 s: a server that hangs fails the request
    /// (the agent retries) rather than holding the registry's connection for ever. The arrays'
    /// unquoted NULLs are NULLs whatever the server's `array_nulls`.
    private func sessionSettings() {
        PQclear(PQexec(connection, "SET client_min_messages = warning; SET statement_timeout = '30s'; SET array_nulls = on"))
    }

    deinit { PQfinish(connection) }

    /// A new session (the server restarted, or a standby became the primary): its settings
    /// again, and no statement prepared yet.
    private func reset() {
        PQreset(connection)
        prepared = [:]
        sessionSettings()
    }

    /// The connection string without its password, for messages.
    static func redacted(_ conninfo: String) -> String {
        conninfo.replacingOccurrences(of: #"password=\S+"#, with: "password=…", options: .regularExpression)
    }

    /// `?12` → `$12`.
    static func dollarParameters(_ sql: String) -> String {
        sql.replacingOccurrences(of: #"\?([0-9]+)"#, with: "\\$$1", options: .regularExpression)
    }

    func prepare(_ sql: String) throws -> RegistryStatement {
        let text = rewrittenText(sql)
        return RegistryStatement { [self] values in try run(text, values) }
    }

    private func rewrittenText(_ sql: String) -> String {
        if let known = rewritten[sql] { return known }
        let text = Self.dollarParameters(sql)
        if rewritten.count < Self.preparedLimit { rewritten[sql] = text }
        return text
    }

    /// Each statement's text with `$N` parameters, by its `?N` text (the rewrite is a regular
    /// expression over the whole statement: it showed in the writer's profile).
    private var rewritten: [String: String] = [:]

    /// One list, as one array parameter: `IN (SELECT unnest($N::text[]))`. The statement's text
    /// is the same whatever the number of values, so it is prepared once, and the server
    /// parses one array instead of binding hundreds of parameters.
    func inLists(_ values: [String], from first: Int, _ body: (String, [SQLValue]) throws -> Void) throws {
        guard !values.isEmpty else { return }
        try body("SELECT unnest(?\(first)::text[])", [.text(Self.arrayLiteral(values.map(SQLValue.text)))])
    }

    /// Set-based: `INSERT INTO table SELECT * FROM unnest($1::type[], $2::type[], …) clause`, one
    /// array a column and one statement whatever the number of rows. Multi-row VALUES lists
    /// (256 rows, thousands of parameters) were parsed and bound at every batch.
    @discardableResult
    func insertRows(_ rows: [[SQLValue]], into table: String, then clause: String) throws -> Int {
        guard let width = rows.first?.count else { return 0 }
        var columns: [SQLValue] = []
        var types: [String] = []
        for column in 0..<width {
            let values = rows.map { $0[column] }
            columns.append(.text(Self.arrayLiteral(values)))
            // A column's type from its first value that is not NULL: the registry's columns
            // are text, bigint or double precision, and its numeric ones are NOT NULL.
            switch values.first(where: { if case .null = $0 { return false } else { return true } }) {
            case .integer?: types.append("bigint[]")
            case .real?: types.append("double precision[]")
            default: types.append("text[]")
            }
        }
        let arrays = types.enumerated().map { "?\($0.offset + 1)::\($0.element)" }.joined(separator: ", ")
        try prepare("INSERT INTO \(table) SELECT * FROM unnest(\(arrays)) \(clause)").run(columns)
        return changes
    }

    /// A PostgreSQL array literal (`{"a","b",NULL}`): every element quoted, `"` and `\` escaped
    /// within it, so no value can end its element or the array.
    static func arrayLiteral(_ values: [SQLValue]) -> String {
        var out = "{"
        out.reserveCapacity(values.count * 24)
        for (index, value) in values.enumerated() {
            if index > 0 { out += "," }
            let text: String
            switch value {
            case .null: out += "NULL"; continue
            case .integer(let i): text = String(i)
            case .real(let d): text = "\(d)"
            case .text(let s): text = s
            case .blob(let b): text = String(decoding: b, as: UTF8.self)
            }
            out += "\""
            if text.utf8.contains(where: { $0 == UInt8(ascii: "\"") || $0 == UInt8(ascii: "\\") }) {
                for character in text.unicodeScalars {
                    if character == "\"" || character == "\\" { out += "\\" }
                    out.unicodeScalars.append(character)
                }
            } else {
                out += text
            }
            out += "\""
        }
        return out + "}"
    }

    /// Parameters as libpq takes them: text, nil for NULL.
    static func texts(_ values: [SQLValue]) -> [String?] {
        values.map { value in
            switch value {
            case .null: return nil
            case .integer(let i): return String(i)
            case .real(let d): return String(d)
            case .text(let s): return s
            case .blob(let b): return String(decoding: b, as: UTF8.self)
            }
        }
    }

    static func rows(of result: OpaquePointer?) -> [RegistryRow] {
        var rows: [RegistryRow] = []
        let count = PQntuples(result), columns = PQnfields(result)
        rows.reserveCapacity(Int(count))
        for r in 0..<count {
            rows.append(RegistryRow(cells: (0..<columns).map { c in PQgetisnull(result, r, c) == 1 ? nil : String(cString: PQgetvalue(result, r, c)) }))
        }
        return rows
    }

    /// The statements prepared (a round trip each, the first time in a session), then sent in
    /// one pipeline with one sync, their results read in order: a lookup's two reads in one
    /// round trip instead of two. Statements in one pipeline run as one implicit transaction,
    /// each with its own snapshot under READ COMMITTED, as they would one by one. Anything
    /// unusual — a statement that cannot be prepared, a connection that is not idle or not
    /// there, a pipeline libpq refuses — and they are run one by one instead, which resets a
    /// broken connection and retries as every statement does.
    func together(_ statements: [(sql: String, values: [SQLValue])]) throws -> [[RegistryRow]] {
        let oneByOne = { try statements.map { try self.prepare($0.sql).execute($0.values) } }
        guard statements.count > 1, !inTransaction, PQstatus(connection) == CONNECTION_OK else { return try oneByOne() }
        var names: [String] = []
        for statement in statements {
            guard let name = try? preparedName(rewrittenText(statement.sql), parameters: statement.values.count) else { return try oneByOne() }
            names.append(name)
        }
        guard PQenterPipelineMode(connection) == 1 else { return try oneByOne() }
        var sent = true
        for (name, statement) in zip(names, statements) where sent {
            sent = Self.withCStrings(Self.texts(statement.values)) { pointers in
                PQsendQueryPrepared(connection, name, Int32(pointers.count), pointers, nil, nil, 0)
            } == 1
        }
        sent = sent && PQpipelineSync(connection) == 1
        // Every result read, to the sync, whatever happened: the connection must leave the
        // pipeline idle. A query's results end with a NULL; the sync's has none after it.
        var out: [[RegistryRow]] = []
        var failure: String?
        var reads = 0
        while sent, reads < 10 * statements.count + 10 {
            reads += 1
            guard let result = PQgetResult(connection) else { continue }
            defer { PQclear(result) }
            let status = PQresultStatus(result)
            if status == PGRES_PIPELINE_SYNC { break }
            if status == PGRES_TUPLES_OK || status == PGRES_COMMAND_OK {
                out.append(Self.rows(of: result))
            } else if failure == nil {
                failure = String(cString: PQresultErrorMessage(result)).trimmingCharacters(in: .whitespacesAndNewlines)
            }
            if PQstatus(connection) != CONNECTION_OK { break }
        }
        let left = PQexitPipelineMode(connection) == 1
        if PQstatus(connection) != CONNECTION_OK || !sent || !left {
            // Broken or confused: a fresh session, then the statements one by one.
            reset()
            return try oneByOne()
        }
        if let failure { throw RegistryError("PostgreSQL: \(failure) (in \(statements.map { $0.sql.prefix(60) }.joined(separator: "; ")))") }
        guard out.count == statements.count else { return try oneByOne() }
        return out
    }

    private func run(_ sql: String, _ values: [SQLValue]) throws -> [RegistryRow] {
        let texts = Self.texts(values)
        var attempt = 0
        while true {
            let result: OpaquePointer?
            switch try preparedName(sql, parameters: texts.count) {
            case .some(let name):
                result = Self.withCStrings(texts) { pointers in PQexecPrepared(connection, name, Int32(pointers.count), pointers, nil, nil, 0) }
            case .none:
                result = Self.withCStrings(texts) { pointers in PQexecParams(connection, sql, Int32(pointers.count), nil, pointers, nil, nil, 0) }
            }
            defer { PQclear(result) }
            let status = PQresultStatus(result)
            if status == PGRES_COMMAND_OK || status == PGRES_TUPLES_OK {
                changes = Int(String(cString: PQcmdTuples(result))) ?? 0
                return Self.rows(of: result)
            }
            let message = String(cString: PQerrorMessage(connection)).trimmingCharacters(in: .whitespacesAndNewlines)
            if PQstatus(connection) != CONNECTION_OK, !inTransaction, attempt == 0 {
                attempt += 1
                reset()
                continue
            }
            throw RegistryError("PostgreSQL: \(message) (in \(sql.prefix(100)))")
        }
    }

    /// The name `sql` is prepared under in this session, preparing it if it is new; nil when
    /// the cache is full (the statement is then sent with its text) or the connection is
    /// broken (the statement's own run then finds that, and resets it).
    private func preparedName(_ sql: String, parameters: Int) throws -> String? {
        if let name = prepared[sql] { return name }
        guard prepared.count < Self.preparedLimit, PQstatus(connection) == CONNECTION_OK else { return nil }
        let name = "consort_\(prepared.count)"
        let result = PQprepare(connection, name, sql, Int32(parameters), nil)
        defer { PQclear(result) }
        guard PQresultStatus(result) == PGRES_COMMAND_OK else {
            if PQstatus(connection) != CONNECTION_OK { return nil }
            throw RegistryError("PostgreSQL: \(String(cString: PQerrorMessage(connection)).trimmingCharacters(in: .whitespacesAndNewlines)) (in \(sql.prefix(100)))")
        }
        prepared[sql] = name
        return name
    }

    static func withCStrings<T>(_ values: [String?], _ body: ([UnsafePointer<CChar>?]) -> T) -> T {
        let copies = values.map { $0.map { strdup($0) } ?? nil }
        defer { for copy in copies { free(copy) } }
        return body(copies.map { $0.map { UnsafePointer($0) } })
    }

    func execute(_ script: String) throws {
        // A connection the server dropped (a restart) is reset before a new transaction or
        // script, as a statement outside a transaction is: otherwise every BEGIN fails for ever.
        if !inTransaction, PQstatus(connection) != CONNECTION_OK { reset() }
        let result = PQexec(connection, script)
        defer { PQclear(result) }
        let status = PQresultStatus(result)
        guard status == PGRES_COMMAND_OK || status == PGRES_TUPLES_OK else {
            throw RegistryError("PostgreSQL: \(String(cString: PQerrorMessage(connection)).trimmingCharacters(in: .whitespacesAndNewlines))")
        }
    }

    /// A writing transaction holds the registry's advisory lock, so writes are serialised across
    /// coordinators sharing the database as SQLite's BEGIN IMMEDIATE serialises them in one
    /// file: an announcement reads a study's row, decides, and writes it back with every trust
    /// holding it (one column), and two coordinators deciding at once would each write the row
    /// without the other's trust. Lookups take no lock.
    static let writersLock: Int64 = 0x436F_6E73_6F72_74  // "Consort"

    func transaction<T>(_ body: () throws -> T) throws -> T {
        // READ COMMITTED whatever the server's default: each statement then sees what the
        // writer before us committed while we waited for the lock (a snapshot taken before the
        // wait would fail to serialise instead).
        try execute("BEGIN ISOLATION LEVEL READ COMMITTED")
        inTransaction = true
        defer { inTransaction = false }
        do {
            // Inside the block that rolls back: a lock wait cut by statement_timeout (another
            // coordinator holding it for long) must not leave the connection in an aborted
            // transaction, where every later BEGIN would fail.
            try execute("SELECT pg_advisory_xact_lock(\(Self.writersLock))")
            let value = try body()
            try execute("COMMIT")
            return value
        } catch {
            try? execute("ROLLBACK")
            throw error
        }
    }

    /// Statements in autocommit, each under READ COMMITTED's snapshot of its own start: later
    /// statements see later commits, never earlier ones.
    func readTransaction<T>(_ body: () throws -> T) throws -> T { try body() }

    func hasTable(_ name: String) throws -> Bool {
        try prepare("SELECT 1 FROM pg_tables WHERE schemaname = current_schema() AND tablename = ?1").first([.text(name)]) { _ in true } ?? false
    }
}

/// The registry's tables, for each store (the types differ: PostgreSQL's REAL is 4 bytes).
///
/// A patient's studies are kept together: `patient_studies` is keyed by (NHS number, study UID)
/// — '' for a study whose patient is not known yet — and each row carries the trusts holding
/// the study (`held`, `RegistryHoldings`), so a lookup reads a page or two of one tree instead
/// of an index entry, a row and a location scattered over the file for each study (some
/// thirty pages for a patient with eleven studies at 10 million; on a machine that does not
/// keep the file in its page cache each was a read from the disk). `study_keys` finds a
/// study's patient from its UID. On SQLite both are WITHOUT ROWID, so the rows themselves are
/// in key order; PostgreSQL keeps rows in a heap beside the key's index.
/// `registry_counts` keeps the totals (patients, studies, locations, each trust's locations) in
/// step with the rows, in the same transactions: counting rows took time that grew with the
/// registry (each announcement answers with the trust's count; at 5 million studies a count of
/// one trust's locations cost more than the batch it followed), and the index by trust that
/// served it is gone with it.
enum Schema {
    static let sqlite = """
        CREATE TABLE IF NOT EXISTS patients (
            nhs TEXT PRIMARY KEY, sex TEXT, birth_date TEXT, demographics_from TEXT, first_seen REAL NOT NULL) WITHOUT ROWID;
        CREATE TABLE IF NOT EXISTS local_ids (
            trust TEXT NOT NULL, patient_id TEXT NOT NULL, issuer TEXT NOT NULL, nhs TEXT NOT NULL, first_seen REAL NOT NULL,
            PRIMARY KEY (trust, patient_id, issuer)) WITHOUT ROWID;
        CREATE INDEX IF NOT EXISTS local_ids_nhs ON local_ids(nhs, trust);
        CREATE TABLE IF NOT EXISTS patient_studies (
            nhs TEXT NOT NULL, uid TEXT NOT NULL, announced_by TEXT NOT NULL, study_date TEXT, modalities TEXT, body_part TEXT, description TEXT,
            accession TEXT, instances INTEGER NOT NULL, bytes INTEGER NOT NULL, updated REAL NOT NULL, held TEXT NOT NULL,
            PRIMARY KEY (nhs, uid)) WITHOUT ROWID;
        CREATE TABLE IF NOT EXISTS study_keys (uid TEXT PRIMARY KEY, nhs TEXT NOT NULL) WITHOUT ROWID;
        CREATE TABLE IF NOT EXISTS registry_counts (name TEXT PRIMARY KEY, n INTEGER NOT NULL) WITHOUT ROWID;
        CREATE TABLE IF NOT EXISTS conflicts (
            id INTEGER PRIMARY KEY, kind TEXT NOT NULL, key TEXT NOT NULL, first TEXT NOT NULL, second TEXT NOT NULL,
            first_from TEXT NOT NULL, second_from TEXT NOT NULL, created REAL NOT NULL, UNIQUE (kind, key, first, second));
        CREATE INDEX IF NOT EXISTS conflicts_first ON conflicts(first);
        CREATE INDEX IF NOT EXISTS conflicts_second ON conflicts(second);
        CREATE INDEX IF NOT EXISTS conflicts_key ON conflicts(key);
        CREATE TABLE IF NOT EXISTS identity_errors (
            trust TEXT NOT NULL, study TEXT NOT NULL, value TEXT NOT NULL, created REAL NOT NULL, PRIMARY KEY (trust, study, value)) WITHOUT ROWID;
        CREATE TABLE IF NOT EXISTS origin_withdrawals (uid TEXT PRIMARY KEY, origin TEXT NOT NULL, withdrawn REAL NOT NULL) WITHOUT ROWID;
        CREATE TABLE IF NOT EXISTS study_origins (uid TEXT PRIMARY KEY, origin TEXT NOT NULL) WITHOUT ROWID;
        """

    static let postgresql = """
        CREATE TABLE IF NOT EXISTS patients (
            nhs TEXT PRIMARY KEY, sex TEXT, birth_date TEXT, demographics_from TEXT, first_seen DOUBLE PRECISION NOT NULL);
        CREATE TABLE IF NOT EXISTS local_ids (
            trust TEXT NOT NULL, patient_id TEXT NOT NULL, issuer TEXT NOT NULL, nhs TEXT NOT NULL, first_seen DOUBLE PRECISION NOT NULL,
            PRIMARY KEY (trust, patient_id, issuer));
        CREATE INDEX IF NOT EXISTS local_ids_nhs ON local_ids(nhs, trust);
        CREATE TABLE IF NOT EXISTS patient_studies (
            nhs TEXT NOT NULL, uid TEXT NOT NULL, announced_by TEXT NOT NULL, study_date TEXT, modalities TEXT, body_part TEXT, description TEXT,
            accession TEXT, instances BIGINT NOT NULL, bytes BIGINT NOT NULL, updated DOUBLE PRECISION NOT NULL, held TEXT NOT NULL,
            PRIMARY KEY (nhs, uid));
        CREATE TABLE IF NOT EXISTS study_keys (uid TEXT PRIMARY KEY, nhs TEXT NOT NULL);
        CREATE TABLE IF NOT EXISTS registry_counts (name TEXT PRIMARY KEY, n BIGINT NOT NULL);
        CREATE TABLE IF NOT EXISTS conflicts (
            id BIGSERIAL PRIMARY KEY, kind TEXT NOT NULL, key TEXT NOT NULL, first TEXT NOT NULL, second TEXT NOT NULL,
            first_from TEXT NOT NULL, second_from TEXT NOT NULL, created DOUBLE PRECISION NOT NULL, UNIQUE (kind, key, first, second));
        CREATE INDEX IF NOT EXISTS conflicts_first ON conflicts(first);
        CREATE INDEX IF NOT EXISTS conflicts_second ON conflicts(second);
        CREATE INDEX IF NOT EXISTS conflicts_key ON conflicts(key);
        CREATE TABLE IF NOT EXISTS identity_errors (
            trust TEXT NOT NULL, study TEXT NOT NULL, value TEXT NOT NULL, created DOUBLE PRECISION NOT NULL, PRIMARY KEY (trust, study, value));
        CREATE TABLE IF NOT EXISTS origin_withdrawals (uid TEXT PRIMARY KEY, origin TEXT NOT NULL, withdrawn DOUBLE PRECISION NOT NULL);
        CREATE TABLE IF NOT EXISTS study_origins (uid TEXT PRIMARY KEY, origin TEXT NOT NULL);
        """
}
