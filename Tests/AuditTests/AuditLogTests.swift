import Foundation
import Testing

@testable import Audit

/// The audit log's promise: any one record edited, removed or moved is found, and named.
@Suite("Audit log")
struct AuditLogTests {
    static func scratch() -> String { NSTemporaryDirectory() + "consort-audit-\(UUID().uuidString)/audit.log" }

    /// A log of ten records, its lines.
    static func written(_ path: String) throws -> [String] {
        let log = try AuditLog(path: path)
        for index in 1...10 {
            try log.record(AuditEntry(who: index % 2 == 0 ? "UHSX" : "alice", action: index % 3 == 0 ? "lookup" : "send", nhs: "9990000018", study: "1.2.3.\(index)", why: "rule r\(index)"))
        }
        return try String(contentsOfFile: path, encoding: .utf8).split(separator: "\n").map(String.init)
    }

    static func rewrite(_ path: String, _ lines: [String]) throws {
        try (lines.joined(separator: "\n") + "\n").write(toFile: path, atomically: true, encoding: .utf8)
    }

    @Test func anUntouchedLogIsIntact() throws {
        let path = Self.scratch()
        let lines = try Self.written(path)
        #expect(lines.count == 10)
        let result = AuditLog.verify(path: path)
        #expect(result.isIntact && result.records == 10, "\(String(describing: result.firstBad))")
        // Reopened, it goes on from where it was: the chain continues.
        try AuditLog(path: path).record(AuditEntry(who: "bob", action: "drop", detail: "jobs 4"))
        #expect(AuditLog.verify(path: path).records == 11)
    }

    @Test(arguments: 1...10) func anyOneRecordEditedIsFound(line: Int) throws {
        let path = Self.scratch()
        var lines = try Self.written(path)
        lines[line - 1] = lines[line - 1].replacingOccurrences(of: "\"study\":\"1.2.3.\(line)\"", with: "\"study\":\"9.9.9.9\"")
        try Self.rewrite(path, lines)
        let result = AuditLog.verify(path: path)
        #expect(result.firstBad?.line == line && result.firstBad?.reason.contains("edited") == true, "\(String(describing: result.firstBad))")
    }

    /// A careful forger recomputes the edited record's own hash: the next record's chain breaks.
    @Test func anEditWithItsHashRecomputedBreaksTheChain() throws {
        let path = Self.scratch()
        var lines = try Self.written(path)
        let record = try #require(AuditLog.parse(lines[4]))
        let forged = record.content.replacingOccurrences(of: "\"who\":\"alice\"", with: "\"who\":\"mallory\"")
        lines[4] = String(forged.dropLast()) + ",\"hash\":\"\(AuditLog.sha256(forged))\"}"
        try Self.rewrite(path, lines)
        let result = AuditLog.verify(path: path)
        #expect(result.firstBad?.line == 6 && result.firstBad?.reason.contains("chain") == true, "\(String(describing: result.firstBad))")
    }

    @Test(arguments: 1...9) func anyOneRecordRemovedIsFound(line: Int) throws {
        let path = Self.scratch()
        var lines = try Self.written(path)
        lines.remove(at: line - 1)
        try Self.rewrite(path, lines)
        let result = AuditLog.verify(path: path)
        #expect(result.firstBad?.line == line && result.firstBad?.reason.contains("missing") == true, "\(String(describing: result.firstBad))")
    }

    @Test func theLastRecordRemovedIsFoundByTheHead() throws {
        let path = Self.scratch()
        let lines = try Self.written(path)
        try Self.rewrite(path, Array(lines.dropLast()))
        let result = AuditLog.verify(path: path)
        #expect(result.firstBad?.reason.contains("removed from the end") == true, "\(String(describing: result.firstBad))")
    }

    @Test(arguments: 1...9) func anyTwoNeighboursSwappedAreFound(line: Int) throws {
        let path = Self.scratch()
        var lines = try Self.written(path)
        lines.swapAt(line - 1, line)
        try Self.rewrite(path, lines)
        let result = AuditLog.verify(path: path)
        #expect(result.firstBad?.line == line, "\(String(describing: result.firstBad))")
    }

    /// A crash in the middle of a write leaves a partial line, never acknowledged: cut off when
    /// the log is opened again, and the chain goes on whole.
    @Test func aRecordCutByACrashIsDroppedAndTheChainGoesOn() throws {
        let path = Self.scratch()
        _ = try Self.written(path)
        let handle = try #require(FileHandle(forWritingAtPath: path))
        handle.seekToEndOfFile()
        handle.write(Data("{\"seq\":11,\"time\":\"2026-".utf8))
        try handle.close()
        #expect(AuditLog.verify(path: path).firstBad != nil)
        try AuditLog(path: path).record(AuditEntry(who: "UHSX", action: "send"))
        let result = AuditLog.verify(path: path)
        #expect(result.isIntact && result.records == 11, "\(String(describing: result.firstBad))")
    }

    /// A lookup's record is written at once and made durable by the flusher, soon after: the
    /// head file (rewritten after each sync) catches up without another record forcing it.
    @Test func aLookupRecordBecomesDurableWithoutWaitingForIt() throws {
        let path = Self.scratch()
        let log = try AuditLog(path: path)
        try log.record(AuditEntry(who: "UHSX", action: "send"))
        try log.record(AuditEntry(who: "ASPH", action: "lookup", nhs: "9990000018"), durable: false)
        #expect(AuditLog.records(path: path).count == 2, "written at once")
        let deadline = Date().addingTimeInterval(10)
        var head = ""
        while Date() < deadline {
            head = (try? String(contentsOfFile: path + ".head", encoding: .utf8)) ?? ""
            if head.hasPrefix("00000000000000000002 ") { break }
            Thread.sleep(forTimeInterval: 0.01)
        }
        #expect(head.hasPrefix("00000000000000000002 "), "the flusher synced it: \(head)")
        #expect(AuditLog.verify(path: path).isIntact)
        log.finish()
    }

    /// Record times are UTC to the millisecond (truncated), as ISO 8601 writes them, across a
    /// leap day, a year's last millisecond and the next century.
    @Test func recordTimesAreISO8601InUTC() {
        let expected: [(Double, String)] = [
            (0, "1970-01-01T00:00:00.000Z"), (0.999, "1970-01-01T00:00:00.999Z"), (951_782_400.5, "2000-02-29T00:00:00.500Z"),
            (1_798_761_599.9994, "2026-12-31T23:59:59.999Z"), (4_102_444_800.25, "2100-01-01T00:00:00.250Z"), (1_733_130_024.5, "2024-12-02T09:00:24.500Z"),
        ]
        for (time, text) in expected { #expect(AuditLog.isoTime(time) == text, "\(time)") }
    }
}
