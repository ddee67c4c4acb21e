import Foundation
import SQLite

#if canImport(Glibc)
    import Glibc
#endif

/// Files that left the disk (a PACS consuming its import folder, a person deleting a study, the
/// agent's own `inbound-keep`): the inventory forgets them, and the coordinator hears what this
/// trust no longer holds.
///
/// Contract: `forget(paths:)` removes, in one transaction, each instance whose file is at one of
/// the paths, with its study's counts and the inventory's totals; a pending push of it is
/// refused ("the file left the disk") with the job's counts; a study left with nothing is
/// removed and queued for withdrawal (`withdrawals`, durable: a coordinator down delays it, never
/// loses it); a study left with part is announced again with its new count (its `announced` no
/// longer equals its `instances`). An instance another copy of which is still on disk (a `files`
/// row of the same SOP Instance UID at another path) is kept and held at that copy instead, as
/// the archive's. The caller checks the disk first; each path is checked again inside the
/// transaction, and one there again is kept.
extension AgentStore {
    static let withdrawalSchema = """
        CREATE TABLE IF NOT EXISTS withdrawals (study TEXT PRIMARY KEY, queued REAL NOT NULL) WITHOUT ROWID;
        """

    /// What `forget(paths:)` changed.
    public struct Forgotten: Sendable, Equatable {
        public var instances = 0
        public var bytes: Int64 = 0
        /// Studies nothing is left of here: removed, and queued for withdrawal.
        public var withdrawn: [String] = []
        /// Studies part of which is left: to be announced again with their new count.
        public var shrunk: [String] = []
        /// Instances whose file left but another copy of which is still on disk (filed into a
        /// watched archive folder): kept, held at that copy.
        public var kept = 0
        public init() {}
    }

    /// Forgets the files at `paths` and the instances held there (see the type's contract).
    /// `present`: whether a path is on disk now (a path there again is not forgotten; another copy
    /// of an instance is kept only if so).
    @discardableResult
    public func forget(paths: [String], now: Double, present: (String) -> Bool = AgentStore.isOnDisk) throws -> Forgotten {
        guard !paths.isEmpty else { return Forgotten() }
        return try write {
            var out = Forgotten()
            let file = try db.prepare("SELECT sop FROM files WHERE path = ?1")
            let dropFile = try db.prepare("DELETE FROM files WHERE path = ?1")
            let instance = try db.prepare("SELECT study, size, origin FROM instances WHERE sop = ?1 AND path = ?2")
            let dropInstance = try db.prepare("DELETE FROM instances WHERE sop = ?1")
            let shrink = try db.prepare("UPDATE studies SET instances = instances - 1, bytes = bytes - ?2 WHERE uid = ?1")
            let total = try db.prepare("UPDATE totals SET value = value - ?2 WHERE name = ?1")
            let pending = try db.prepare("SELECT job, size FROM job_instances WHERE sop = ?1 AND path = ?2 AND state = 'pending'")
            let refuse = try db.prepare("UPDATE job_instances SET state = 'refused', reason = ?3 WHERE job = ?1 AND sop = ?2")
            let refuseCounts = try db.prepare("UPDATE jobs SET instances_refused = instances_refused + 1, bytes_refused = bytes_refused + ?2 WHERE id = ?1")
            let copies = try db.prepare("SELECT path, size FROM files WHERE sop = ?1 AND path <> ?2 AND problem IS NULL ORDER BY path")
            let repoint = try db.prepare("UPDATE instances SET path = ?2, size = ?3, origin = 'local' WHERE sop = ?1")
            let repointJobs = try db.prepare("UPDATE job_instances SET path = ?3 WHERE sop = ?1 AND path = ?2 AND state = 'pending'")
            let grow = try db.prepare("UPDATE studies SET instances = instances + 1, bytes = bytes + ?2 WHERE uid = ?1")
            let addTotal = try db.prepare("INSERT INTO totals (name, value) VALUES (?1, ?2) ON CONFLICT(name) DO UPDATE SET value = value + ?2")
            let leaving = Set(paths)
            var studies = Set<String>()
            for path in leaving {
                // Checked again inside the transaction: a file written again at the path since
                // the caller looked (a study fetched again) is kept; its own event takes it.
                if present(path) { continue }
                let sop = try file.first([.text(path)]) { $0.text(0) } ?? nil
                try dropFile.run([.text(path)])
                guard let sop, let held = try instance.first([.text(sop), .text(path)], { ($0.text(0) ?? "", $0.int(1), $0.text(2) ?? "local") }) else { continue }
                // Another copy still on disk (a PACS filed the received file into a watched
                // archive folder, then deleted the inbound copy): the instance is held there now,
                // as the archive's. The study stays; a pending push sends that copy.
                let other = try copies.rows([.text(sop), .text(path)]) { ($0.text(0) ?? "", $0.int(1)) }
                    .first { !leaving.contains($0.0) && present($0.0) }
                if let other {
                    let side = held.2 == "local" ? "local" : "received"
                    try total.run([.text("instances_" + side), .integer(1)])
                    try total.run([.text("bytes_" + side), .integer(held.1)])
                    try addTotal.run([.text("instances_local"), .integer(1)])
                    try addTotal.run([.text("bytes_local"), .integer(other.1)])
                    try shrink.run([.text(held.0), .integer(held.1)])
                    try grow.run([.text(held.0), .integer(other.1)])
                    try repoint.run([.text(sop), .text(other.0), .integer(other.1)])
                    try repointJobs.run([.text(sop), .text(path), .text(other.0)])
                    out.kept += 1
                    continue
                }
                try dropInstance.run([.text(sop)])
                try shrink.run([.text(held.0), .integer(held.1)])
                let side = held.2 == "local" ? "local" : "received"
                try total.run([.text("instances_" + side), .integer(1)])
                try total.run([.text("bytes_" + side), .integer(held.1)])
                for job in try pending.rows([.text(sop), .text(path)], { ($0.int(0), $0.int(1)) }) {
                    try refuse.run([.integer(job.0), .text(sop), .text("the file left the disk before it was sent: \(path)")])
                    try refuseCounts.run([.integer(job.0), .integer(job.1)])
                }
                out.instances += 1
                out.bytes += held.1
                studies.insert(held.0)
            }
            let left = try db.prepare("SELECT instances FROM studies WHERE uid = ?1")
            let dropStudy = try db.prepare("DELETE FROM studies WHERE uid = ?1")
            let queue = try db.prepare("INSERT INTO withdrawals (study, queued) VALUES (?1, ?2) ON CONFLICT(study) DO NOTHING")
            for study in studies.sorted() {
                guard let count = try left.first([.text(study)], { $0.int(0) }) else { continue }
                if count <= 0 {
                    try dropStudy.run([.text(study)])
                    try queue.run([.text(study), .real(now)])
                    out.withdrawn.append(study)
                } else {
                    out.shrunk.append(study)
                }
            }
            return out
        }
    }

    /// False only when the disk says the path is not there: a file that cannot be checked (a
    /// folder unreadable for a moment) is not forgotten.
    public static func isOnDisk(_ path: String) -> Bool {
        var info = stat()
        return lstat(path, &info) == 0 || (errno != ENOENT && errno != ENOTDIR)
    }

    /// The paths the inventory has at `path` or beneath it (a file, or a folder that left).
    public func knownPaths(at path: String) throws -> [String] {
        let trimmed = path.count > 1 && path.hasSuffix("/") ? String(path.dropLast()) : path
        // Beneath: from "folder/" up to "folder0" ("0" follows "/"), on the primary key.
        return try read {
            try db.prepare("SELECT path FROM files WHERE path = ?1 OR (path >= ?2 AND path < ?3) ORDER BY path")
                .rows([.text(trimmed), .text(trimmed + "/"), .text(trimmed + "0")]) { $0.text(0) ?? "" }
        }
    }

    /// A page of the paths known under `root`, after `cursor` (nil: from the start), in order:
    /// a sweep for files that left while nobody watched walks the inventory with it.
    public func knownPaths(under root: String, after cursor: String?, limit: Int) throws -> [String] {
        let prefix = root.hasSuffix("/") ? root : root + "/"
        let end = String(prefix.dropLast()) + "0"
        return try read {
            try db.prepare("SELECT path FROM files WHERE path > ?1 AND path < ?2 ORDER BY path LIMIT ?3")
                .rows([.text(max(cursor ?? prefix, prefix)), .text(end), .integer(Int64(limit))]) { $0.text(0) ?? "" }
        }
    }

    /// Paths under `root` recorded before `cutoff` (the time they were taken), but for those a
    /// pending job has still to send: what `inbound-keep` removes.
    public func pathsTaken(under root: String, before cutoff: Double, limit: Int) throws -> [String] {
        try filesTaken(under: root, before: cutoff, after: nil, limit: limit).map(\.path)
    }

    /// `pathsTaken` with the size and modification time recorded (a file is removed only if it
    /// still has them), a page after `cursor` (nil: from the start), in order.
    public func filesTaken(under root: String, before cutoff: Double, after cursor: String?, limit: Int) throws -> [(path: String, size: Int64, mtime: Double)] {
        let prefix = root.hasSuffix("/") ? root : root + "/"
        let end = String(prefix.dropLast()) + "0"
        return try read {
            // A copy still to be sent on (a pending job instance) is kept until it is sent.
            try db.prepare("""
                SELECT path, size, mtime FROM files WHERE path > ?1 AND path < ?2 AND taken < ?3
                AND path NOT IN (SELECT path FROM job_instances WHERE state = 'pending') ORDER BY path LIMIT ?4
                """)
                .rows([.text(max(cursor ?? prefix, prefix)), .text(end), .real(cutoff), .integer(Int64(limit))]) { ($0.text(0) ?? "", $0.int(1), $0.double(2)) }
        }
    }

    /// Studies to withdraw from the registry, oldest first.
    public func pendingWithdrawals(limit: Int) throws -> [String] {
        try read { try db.prepare("SELECT study FROM withdrawals ORDER BY queued, study LIMIT ?1").rows([.integer(Int64(limit))]) { $0.text(0) ?? "" } }
    }

    /// The coordinator acknowledged these withdrawals.
    public func markWithdrawn(_ studies: [String]) throws {
        try write {
            let statement = try db.prepare("DELETE FROM withdrawals WHERE study = ?1")
            for study in studies { try statement.run([.text(study)]) }
        }
    }
}
