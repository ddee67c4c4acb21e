import DICOM
import Digest
import Foundation

#if canImport(Glibc)
    import Glibc
#endif

/// One event worth a record: who did what to which patient's imaging, why, when.
public struct AuditEntry: Sendable {
    /// A trust (from its certificate) or a local user (for a CLI action).
    public var who: String
    /// send, receive, fetch, drop, hold, release, retry, announce, withdraw, lookup, refused, ...
    public var action: String
    public var nhs: String?
    public var patient: String?
    public var study: String?
    /// The rule or command that caused it.
    public var why: String?
    /// Anything else (counts, the peer, the reason of a refusal).
    public var detail: String?

    public init(who: String, action: String, nhs: String? = nil, patient: String? = nil, study: String? = nil, why: String? = nil, detail: String? = nil) {
        self.who = who
        self.action = action
        self.nhs = nhs
        self.patient = patient
        self.study = study
        self.why = why
        self.detail = detail
    }
}

/// An append-only, hash-chained audit log: one JSON object a line, each carrying the SHA-256 of
/// its own content (`hash`) and its predecessor's (`prev`; 64 zeros for the first). Editing a
/// record breaks its own hash; removing or reordering records breaks the chain; removing the
/// last records is caught by the head file (`FILE.head`: the last record's number and hash).
/// Each record is written with one write(2) on an O_APPEND file and made durable (fdatasync)
/// before `record` returns. A partial last line (a crash mid-write, never acknowledged) is
/// cut off when the log is opened again.
public final class AuditLog: @unchecked Sendable {
    public let path: String
    private let fd: Int32
    /// Guards the chain (sequence, previous) and the group commit (synced, syncing).
    private let lock = NSCondition()
    private var sequence: Int64
    private var previous: String
    /// Records up to this number are durable; one writer at a time makes them so.
    private var synced: Int64 = 0
    private var syncing = false
    private var closed = false
    private let headFD: Int32
    /// A sync failed: records may not be durable. Every later record is refused (a person
    /// must look at the disk), rather than a later sync passing for the lost ones.
    private var poisoned: AuditError?
    static let zero = String(repeating: "0", count: 64)

    public init(path: String) throws {
        self.path = path
        try FileManager.default.createDirectory(atPath: (path as NSString).deletingLastPathComponent, withIntermediateDirectories: true)
        fd = open(path, O_RDWR | O_CREAT | O_APPEND | O_CLOEXEC, 0o640)
        guard fd >= 0 else { throw AuditError("cannot open the audit log \(path): \(String(cString: strerror(errno)))") }
        let data = FileManager.default.contents(atPath: path) ?? Data()
        var bytes = [UInt8](data)
        if let lastNewline = bytes.lastIndex(of: UInt8(ascii: "\n")), lastNewline != bytes.count - 1 {
            // A record cut by a crash: it was never acknowledged. Cut it off.
            _ = ftruncate(fd, off_t(lastNewline + 1))
            bytes = Array(bytes[...lastNewline])
        } else if !bytes.isEmpty && bytes.last != UInt8(ascii: "\n") {
            _ = ftruncate(fd, 0)
            bytes = []
        }
        let lastLine = bytes.split(separator: UInt8(ascii: "\n")).last.map { String(decoding: $0, as: UTF8.self) }
        if let lastLine, let record = Self.parse(lastLine) {
            sequence = record.seq
            previous = record.hash
        } else {
            sequence = 0
            previous = Self.zero
        }
        synced = sequence
        headFD = open(path + ".head", O_RDWR | O_CREAT | O_CLOEXEC, 0o640)
        // The flusher holds the log only while it flushes: a log no one uses any more goes away.
        let thread = Thread { [weak self] in
            while true {
                Thread.sleep(forTimeInterval: Self.flushInterval)
                guard let log = self, log.flushOnce() else { return }
            }
        }
        thread.name = "consort-audit-flush"
        thread.start()
    }

    deinit {
        Glibc.close(fd)
        Glibc.close(headFD)
    }

    /// Stops the background flusher after a last sync (the log stays readable).
    public func finish() {
        try? sync(upTo: lock.withLock { sequence })
        lock.withLock { closed = true }
    }

    /// Appends a record and makes it durable. Throws when it cannot: the caller must not go on
    /// as if the event were audited. Group commit: records written while another writer's
    /// fdatasync runs are made durable by the next one, together (one sync for many lookups).
    ///
    /// `durable: false` (lookups, which change nothing): written at once, made durable by the
    /// background flusher within `flushInterval` — a read is not held up by a disk sync, and a
    /// crash can lose at most that much of the lookup records. Every movement and change waits.
    public func record(_ entry: AuditEntry, now: Double = Date().timeIntervalSince1970, durable: Bool = true) throws {
        let mine = try append(entry, now: now)
        if durable { try sync(upTo: mine) }
    }

    public static let flushInterval = 0.05

    /// Makes every record up to `target` durable: one writer syncs for all who wait.
    private func sync(upTo target: Int64) throws {
        lock.lock()
        defer { lock.unlock() }
        while synced < target {
            if let poisoned { throw poisoned }
            if syncing {
                lock.wait()
                continue
            }
            syncing = true
            let covering = sequence, hash = previous
            lock.unlock()
            let ok = fdatasync(fd) == 0
            let reason = errno
            if ok { writeHead(covering, hash) }
            lock.lock()
            syncing = false
            lock.broadcast()
            guard ok else {
                let error = AuditError("cannot make the audit log \(path) durable: \(String(cString: strerror(reason))); no record is accepted until the agent restarts")
                poisoned = error
                throw error
            }
            synced = max(synced, covering)
        }
    }

    /// The head: where the log ends (so that records cut from its end are noticed), rewritten in
    /// place after each sync: fixed width, one pwrite. It may lag the log after a crash, never
    /// run ahead of it.
    private func writeHead(_ sequence: Int64, _ hash: String) {
        let line = Array(String(format: "%020lld %@\n", sequence, hash).utf8)
        _ = line.withUnsafeBytes { pwrite(headFD, $0.baseAddress, $0.count, 0) }
    }

    /// Syncs what lookups wrote since the last sync; false once the log is finished.
    private func flushOnce() -> Bool {
        let behind: Int64? = lock.withLock { closed ? nil : (synced < sequence && !syncing ? sequence : 0) }
        guard let behind else { return false }
        if behind > 0 { try? sync(upTo: behind) }
        return true
    }

    /// Writes the record (one write(2) on the O_APPEND file) and returns its number.
    private func append(_ entry: AuditEntry, now: Double) throws -> Int64 {
        let time = Self.isoTime(now)  // outside the lock, which every audited request takes
        return try lock.withLock {
            let seq = sequence + 1
            var fields: [(String, JSON)] = [("seq", .int(seq)), ("time", .string(time)), ("who", .string(entry.who)), ("action", .string(entry.action))]
            if let nhs = entry.nhs { fields.append(("nhs", .string(nhs))) }
            if let patient = entry.patient { fields.append(("patient", .string(patient))) }
            if let study = entry.study { fields.append(("study", .string(study))) }
            if let why = entry.why { fields.append(("why", .string(why))) }
            if let detail = entry.detail { fields.append(("detail", .string(detail))) }
            fields.append(("prev", .string(previous)))
            let content = JSON.object(fields).serialized()
            let hash = Self.sha256(content)
            let line = String(content.dropLast()) + ",\"hash\":\"\(hash)\"}\n"
            if let poisoned { throw poisoned }
            let bytes = Array(line.utf8)
            let end = lseek(fd, 0, SEEK_END)
            let written = bytes.withUnsafeBytes { write(fd, $0.baseAddress, $0.count) }
            guard written == bytes.count else {
                let reason = String(cString: strerror(errno))
                // A part of a line (a full disk) would break the chain for good: cut it off.
                if end >= 0 { _ = ftruncate(fd, end) }
                throw AuditError("cannot write the audit log \(path): \(reason)")
            }
            sequence = seq
            previous = hash
            return seq
        }
    }

    struct Parsed {
        var seq: Int64
        var prev: String
        var hash: String
        var content: String
        var fields: [String: Any]
    }

    /// A line's fields, its own hash and the content that hash covers; nil if not a record.
    static func parse(_ line: String) -> Parsed? {
        let suffixStart = line.range(of: ",\"hash\":\"", options: .backwards)
        guard let suffixStart, line.hasSuffix("\"}") else { return nil }
        let hash = String(line[suffixStart.upperBound...].dropLast(2))
        let content = String(line[..<suffixStart.lowerBound]) + "}"
        guard hash.count == 64, let fields = try? JSONSerialization.jsonObject(with: Data(line.utf8)) as? [String: Any],
            let seq = (fields["seq"] as? NSNumber)?.int64Value, let prev = fields["prev"] as? String
        else { return nil }
        return Parsed(seq: seq, prev: prev, hash: hash, content: content, fields: fields)
    }

    /// What `consort audit verify` says.
    public struct Verification: Sendable {
        public var records = 0
        /// The first bad record: its line number (from 1) and what is wrong.
        public var firstBad: (line: Int, reason: String)?
        public var isIntact: Bool { firstBad == nil }
    }

    /// Checks every record: its own hash, the chain, the numbering, and the head file.
    public static func verify(path: String) -> Verification {
        var result = Verification()
        guard let data = FileManager.default.contents(atPath: path) else {
            result.firstBad = (0, "cannot read \(path)")
            return result
        }
        var previous = zero
        var expected: Int64 = 1
        for (index, raw) in data.split(separator: UInt8(ascii: "\n"), omittingEmptySubsequences: false).enumerated() {
            let number = index + 1
            if raw.isEmpty { continue }
            let line = String(decoding: raw, as: UTF8.self)
            guard let record = parse(line) else {
                result.firstBad = (number, "not an audit record")
                return result
            }
            if sha256(record.content) != record.hash {
                result.firstBad = (number, "record \(record.seq) was edited: its content does not match its hash")
                return result
            }
            if record.seq != expected {
                result.firstBad = (number, record.seq > expected ? "record \(expected) is missing (found \(record.seq))" : "record \(record.seq) is out of order (expected \(expected))")
                return result
            }
            if record.prev != previous {
                result.firstBad = (number, "record \(record.seq) does not follow record \(record.seq - 1): the chain is broken (a record removed, moved or edited before it)")
                return result
            }
            previous = record.hash
            expected += 1
            result.records += 1
        }
        if let head = try? String(contentsOfFile: path + ".head", encoding: .utf8) {
            let parts = head.split(separator: " ").map { $0.trimmingCharacters(in: .whitespacesAndNewlines) }
            if parts.count == 2, let seq = Int(parts[0]) {
                if seq > result.records {
                    result.firstBad = (result.records + 1, "records \(result.records + 1) to \(seq) were removed from the end (the head file says the log reached \(seq))")
                } else if seq == result.records && parts[1] != previous {
                    result.firstBad = (result.records, "the last record does not match the head file")
                }
            }
        }
        return result
    }

    /// Every record, in order (for `consort audit show`).
    public static func records(path: String) -> [[String: Any]] {
        guard let data = FileManager.default.contents(atPath: path) else { return [] }
        return data.split(separator: UInt8(ascii: "\n")).compactMap { parse(String(decoding: $0, as: UTF8.self))?.fields }
    }

    static func sha256(_ text: String) -> String {
        SHA256Hasher.hex(Array(text.utf8))
    }

    /// `2026-12-02T08:40:24.123Z`, digit by digit: Foundation's `String(format:)` took a
    /// twentieth of a coordinator's lookup, which is audited.
    static func isoTime(_ seconds: Double) -> String {
        var time = time_t(seconds)
        var parts = tm()
        gmtime_r(&time, &parts)
        let millis = Int((seconds - seconds.rounded(.down)) * 1000)
        var text = Array("0000-00-00T00:00:00.000Z".utf8)
        func put(_ value: Int, at end: Int, width: Int) {
            var rest = value
            for index in stride(from: end, to: end - width, by: -1) {
                text[index] = UInt8(ascii: "0") + UInt8(rest % 10)
                rest /= 10
            }
        }
        put(Int(parts.tm_year) + 1900, at: 3, width: 4)
        put(Int(parts.tm_mon) + 1, at: 6, width: 2)
        put(Int(parts.tm_mday), at: 9, width: 2)
        put(Int(parts.tm_hour), at: 12, width: 2)
        put(Int(parts.tm_min), at: 15, width: 2)
        put(Int(parts.tm_sec), at: 18, width: 2)
        put(min(max(millis, 0), 999), at: 22, width: 3)
        return String(decoding: text, as: UTF8.self)
    }
}

public struct AuditError: Error, CustomStringConvertible {
    public let description: String
    init(_ description: String) { self.description = description }
}
