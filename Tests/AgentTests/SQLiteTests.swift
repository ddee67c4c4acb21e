import Foundation
import SQLite
import Testing

/// The wrapper on a real SQLite file: values round-trip, a transaction that throws leaves
/// nothing, errors name what was being done, WAL lets a reader see committed rows.
@Suite("SQLite wrapper")
struct SQLiteTests {
    static func scratch() -> String { NSTemporaryDirectory() + "consort-sqlite-\(UUID().uuidString).sqlite" }

    @Test func valuesRoundTripThroughPreparedStatements() throws {
        let path = Self.scratch()
        defer { for suffix in ["", "-wal", "-shm"] { try? FileManager.default.removeItem(atPath: path + suffix) } }
        let db = try Database(path: path)
        try db.execute("CREATE TABLE t (i INTEGER, r REAL, s TEXT, b BLOB, n TEXT)")
        try db.prepare("INSERT INTO t VALUES (?1, ?2, ?3, ?4, ?5)").run([.integer(Int64.max), .real(2.5), .text("Müller^Jörg"), .blob([0, 1, 255]), .null])
        let row = try db.prepare("SELECT i, r, s, b, n FROM t").first { row in
            (row.int(0), row.double(1), row.text(2), row.blob(3), row.isNull(4))
        }
        #expect(row?.0 == Int64.max)
        #expect(row?.1 == 2.5)
        #expect(row?.2 == "Müller^Jörg")
        #expect(row?.3 == [0, 1, 255])
        #expect(row?.4 == true)
    }

    @Test func aTransactionThatThrowsLeavesNothing() throws {
        let path = Self.scratch()
        defer { for suffix in ["", "-wal", "-shm"] { try? FileManager.default.removeItem(atPath: path + suffix) } }
        let db = try Database(path: path)
        try db.execute("CREATE TABLE t (k TEXT PRIMARY KEY)")
        struct Abandon: Error {}
        #expect(throws: Abandon.self) {
            try db.transaction {
                try db.prepare("INSERT INTO t VALUES (?1)").run([.text("a")])
                throw Abandon()
            }
        }
        #expect(try db.prepare("SELECT count(*) FROM t").first { $0.int(0) } == 0)
        try db.transaction { try db.prepare("INSERT INTO t VALUES (?1)").run([.text("b")]) }
        // A second connection (another process would be the same) sees the committed row.
        let reader = try Database(path: path, readOnly: true)
        #expect(try reader.prepare("SELECT k FROM t").rows { $0.text(0) } == ["b"])
    }

    @Test func errorsNameWhatWasBeingDone() throws {
        let path = Self.scratch()
        defer { for suffix in ["", "-wal", "-shm"] { try? FileManager.default.removeItem(atPath: path + suffix) } }
        let db = try Database(path: path)
        try db.execute("CREATE TABLE t (k TEXT PRIMARY KEY)")
        try db.prepare("INSERT INTO t VALUES (?1)").run([.text("a")])
        let duplicate = try #require(throws: SQLiteError.self) { try db.prepare("INSERT INTO t VALUES (?1)").run([.text("a")]) }
        #expect(duplicate.isConstraint)
        #expect(duplicate.description.contains("INSERT INTO t"), "\(duplicate)")
        let typo = try #require(throws: SQLiteError.self) { try db.prepare("SELEC k FROM t") }
        #expect(typo.description.contains("syntax error"), "\(typo)")
        let missing = try #require(throws: SQLiteError.self) { try Database(path: "/no/such/folder/x.sqlite") }
        #expect(missing.description.contains("/no/such/folder/x.sqlite"))
    }
}
