import Foundation
import SQLite

/// Study manifests at the receiving end: what a sending agent said it will deliver of a study
/// (see `StudyManifest`), and whether it is all here. A manifest's instance is held when the
/// inventory has its SOP Instance UID with the same size and, where the bytes were hashed as
/// they arrived, the same SHA-256.
extension AgentStore {
    public struct ManifestState: Sendable {
        public var study: String
        public var sender: String
        public var final: Bool
        public var listed: Int
        public var bytes: Int64
        public var held: Int
        public var received: Double
        public var completed: Double?
        /// When the study's last instance arrived (nil: none yet).
        public var lastInstance: Double?
    }

    /// The SHA-256 the inventory holds for a job's instances (the same file: path and size).
    public func hashes(ofJob id: Int64) throws -> [String: String] {
        try read {
            let rows = try db.prepare("""
                SELECT j.sop, i.sha256 FROM job_instances j JOIN instances i ON i.sop = j.sop AND i.path = j.path AND i.size = j.size
                WHERE j.job = ?1 AND i.sha256 IS NOT NULL
                """).rows([.integer(id)]) { ($0.text(0) ?? "", $0.text(1) ?? "") }
            return Dictionary(rows, uniquingKeysWith: { first, _ in first })
        }
    }

    /// Keeps hashes made for a manifest. (A file taken again, rewritten, loses its hash: see
    /// `recordInstance`.)
    public func recordHashes(_ hashes: [(sop: String, sha256: String)]) throws {
        guard !hashes.isEmpty else { return }
        try write {
            let update = try db.prepare("UPDATE instances SET sha256 = ?2 WHERE sop = ?1 AND sha256 IS NULL")
            for hash in hashes { try update.run([.text(hash.sop), .text(hash.sha256)]) }
        }
    }

    /// Stores a sender's manifest of a study, replacing the one it sent before; how many of its
    /// instances are held already.
    @discardableResult
    public func recordManifest(study: String, sender: String, final: Bool, instances: [(sop: String, size: Int, sha256: String)], now: Double) throws -> Int {
        try write {
            try db.prepare("DELETE FROM manifest_instances WHERE study = ?1 AND sender = ?2").run([.text(study), .text(sender)])
            let insert = try db.prepare("INSERT INTO manifest_instances (study, sender, sop, size, sha256) VALUES (?1, ?2, ?3, ?4, ?5) ON CONFLICT DO NOTHING")
            var bytes: Int64 = 0
            for instance in instances {
                try insert.run([.text(study), .text(sender), .text(instance.sop), .integer(Int64(instance.size)), .text(instance.sha256)])
                bytes += Int64(instance.size)
            }
            let held = try heldOfManifest(study: study, sender: sender)
            let counted = try db.prepare("SELECT instances FROM studies WHERE uid = ?1").first([.text(study)]) { $0.int(0) } ?? -1
            try db.prepare("""
                INSERT INTO manifests (study, sender, final, instances, bytes, received, checked, held, completed) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?8, ?7, NULL)
                ON CONFLICT (study, sender) DO UPDATE SET final = ?3, instances = ?4, bytes = ?5, received = ?6, checked = ?8, held = ?7, completed = NULL
                """).run([.text(study), .text(sender), .integer(final ? 1 : 0), .integer(Int64(instances.count)), .integer(bytes), .real(now), .integer(Int64(held)), .integer(counted)])
            return held
        }
    }

    private func heldOfManifest(study: String, sender: String) throws -> Int {
        Int(try db.prepare("""
            SELECT count(*) FROM manifest_instances m JOIN instances i ON i.sop = m.sop
            WHERE m.study = ?1 AND m.sender = ?2 AND ((i.size = m.size AND (i.sha256 IS NULL OR i.sha256 = m.sha256)) OR i.sent_sha256 = m.sha256)
            """).first([.text(study), .text(sender)]) { $0.int(0) } ?? 0)
    }

    /// Studies whose final manifests are now all satisfied and whose stable rules have not yet
    /// fired for it. Each open manifest is counted again only when its study's instance count
    /// changed since the last count (`checked`; a count, not a time, because an instance's time
    /// is taken before its transaction waits for the lock): a large study in flight is not
    /// recounted every second.
    public func completedManifests(now: Double) throws -> [QuietStudy] {
        try write {
            // The studies worth a look: an open manifest whose study changed since it was counted,
            // or one already satisfied; then every open manifest of those studies (a study with
            // several senders is never decided on some of them). Studies stuck for want of an
            // instance are not looked at again until one arrives.
            let candidates = try db.prepare("""
                SELECT DISTINCT m.study FROM manifests m LEFT JOIN studies s ON s.uid = m.study
                WHERE m.final = 1 AND m.completed IS NULL AND (m.checked != coalesce(s.instances, -1) OR m.held >= m.instances) LIMIT 500
                """).rows { $0.text(0) ?? "" }
            var open: [(String, String, Int, Int, Int64, Int64)] = []
            let ofStudy = try db.prepare("""
                SELECT m.study, m.sender, m.instances, m.held, m.checked, coalesce(s.instances, -1) FROM manifests m LEFT JOIN studies s ON s.uid = m.study
                WHERE m.study = ?1 AND m.final = 1 AND m.completed IS NULL
                """)
            for study in candidates {
                open += try ofStudy.rows([.text(study)]) { ($0.text(0) ?? "", $0.text(1) ?? "", Int($0.int(2)), Int($0.int(3)), $0.int(4), $0.int(5)) }
            }
            var whole: [String: Bool] = [:]
            let update = try db.prepare("UPDATE manifests SET held = ?3, checked = ?4 WHERE study = ?1 AND sender = ?2")
            for (study, sender, listed, counted, checked, instances) in open {
                var held = counted
                if instances != checked {
                    held = try heldOfManifest(study: study, sender: sender)
                    try update.run([.text(study), .text(sender), .integer(Int64(held)), .integer(instances)])
                }
                whole[study] = (whole[study] ?? true) && held >= listed
            }
            let ready = whole.filter(\.value).map(\.key)
            guard !ready.isEmpty else { return [] }
            let select = try db.prepare("SELECT uid, sample_path, origin, last_instance, stable_fired FROM studies WHERE uid = ?1")
            return try ready.sorted().compactMap { uid in
                try select.first([.text(uid)]) { row in
                    QuietStudy(uid: row.text(0) ?? "", samplePath: row.text(1) ?? "", origin: row.text(2) ?? "local", quietFor: now - row.double(3), stableFired: Int(row.int(4)))
                }
            }
        }
    }

    static let manifestColumns = "m.study, m.sender, m.final, m.instances, m.bytes, m.held, m.received, m.completed, s.last_instance"

    static func manifestState(_ row: Row) -> ManifestState {
        ManifestState(
            study: row.text(0) ?? "", sender: row.text(1) ?? "", final: row.int(2) != 0, listed: Int(row.int(3)), bytes: row.int(4), held: Int(row.int(5)),
            received: row.double(6), completed: row.isNull(7) ? nil : row.double(7), lastInstance: row.isNull(8) ? nil : row.double(8))
    }

    /// Final manifests not yet satisfied (oldest first): studies known to be missing instances.
    public func incompleteManifests(limit: Int = 100) throws -> (count: Int, manifests: [ManifestState]) {
        try read {
            let count = Int(try db.prepare("SELECT count(*) FROM manifests WHERE final = 1 AND completed IS NULL").first { $0.int(0) } ?? 0)
            let rows = try db.prepare("""
                SELECT \(Self.manifestColumns)
                FROM manifests m LEFT JOIN studies s ON s.uid = m.study WHERE m.final = 1 AND m.completed IS NULL ORDER BY m.received LIMIT ?1
                """).rows([.integer(Int64(limit))], Self.manifestState)
            return (count, rows)
        }
    }

    /// The manifests of one study, completed ones too (read by the tests; no command shows
    /// them yet beyond the incomplete ones in `consort status`).
    public func manifests(ofStudy study: String) throws -> [ManifestState] {
        try read {
            try db.prepare("""
                SELECT \(Self.manifestColumns)
                FROM manifests m LEFT JOIN studies s ON s.uid = m.study WHERE m.study = ?1 ORDER BY m.sender
                """).rows([.text(study)], Self.manifestState)
        }
    }
}
