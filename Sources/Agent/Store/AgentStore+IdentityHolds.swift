import Foundation
import SQLite

/// Studies from other trusts held aside, not placed under any identity, until their identity is
/// settled (issue 25): their files wait in `inbound/.held/<StudyUID>/`, outside the inventory
/// and the rules (nothing is routed, announced or served of them), and each has one row here —
/// what `consort status`, `consort queue` and `consort identity` list as waiting for identity.
///
/// Contract: a row is written, in the receiver's transaction, before the instances are
/// acknowledged; it is removed only once every file of the study is placed in the store and
/// recorded (`IdentityReleaser`), so a crash between the two releases it again, idempotently.
extension AgentStore {
    static let identityHoldSchema = """
        CREATE TABLE IF NOT EXISTS identity_holds (
            study TEXT PRIMARY KEY, sender TEXT NOT NULL, nhs TEXT, patient_id TEXT, kind TEXT NOT NULL,
            reason TEXT NOT NULL, instances INTEGER NOT NULL, since REAL NOT NULL, checked REAL NOT NULL) WITHOUT ROWID;
        CREATE TABLE IF NOT EXISTS copy_flags (
            study TEXT NOT NULL, kind TEXT NOT NULL, origin TEXT NOT NULL, detail TEXT NOT NULL, since REAL NOT NULL,
            seen_by TEXT, seen REAL, PRIMARY KEY (study, kind)) WITHOUT ROWID;
        """

    public struct IdentityHold: Sendable, Equatable {
        public var study: String
        /// The trust that sent it (its certificate's name).
        public var sender: String
        public var nhs: String?
        /// The sender's Patient ID, as the files carry it.
        public var patientID: String?
        /// `IdentityDecision.Hold.Kind`'s words.
        public var kind: String
        public var reason: String
        /// Instances held (as far as the receiver has recorded; the folder is the truth).
        public var instances: Int
        public var since: Double
        /// When the reason was last looked at again.
        public var checked: Double
    }

    /// Records instances of `study` held for their identity: a new row, or more instances and
    /// the latest reason on the existing one.
    public func recordIdentityHold(
        study: String, sender: String, nhs: String?, patientID: String?, kind: String, reason: String, instances: Int, now: Double
    ) throws {
        try write {
            try db.prepare("""
                INSERT INTO identity_holds (study, sender, nhs, patient_id, kind, reason, instances, since, checked)
                VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?8)
                ON CONFLICT (study) DO UPDATE SET instances = instances + excluded.instances, kind = excluded.kind,
                    reason = excluded.reason, checked = excluded.checked
                """).run(Self.holdRow(study, sender, nhs, patientID, kind, reason, instances, now))
        }
    }

    private static func holdRow(
        _ study: String, _ sender: String, _ nhs: String?, _ patientID: String?, _ kind: String, _ reason: String, _ instances: Int, _ now: Double
    ) -> [SQLValue] {
        let optional: (String?) -> SQLValue = { $0.map { SQLValue.text($0) } ?? .null }
        return [.text(study), .text(sender), optional(nhs), optional(patientID), .text(kind), .text(reason), .integer(Int64(instances)), .real(now)]
    }

    /// The reason, looked at again and still holding.
    public func updateIdentityHold(study: String, kind: String, reason: String, now: Double) throws {
        try write {
            try db.prepare("UPDATE identity_holds SET kind = ?2, reason = ?3, checked = ?4 WHERE study = ?1")
                .run([.text(study), .text(kind), .text(reason), .real(now)])
        }
    }

    /// The study is placed in the store and recorded: no longer held.
    public func removeIdentityHold(study: String) throws {
        try write { try db.prepare("DELETE FROM identity_holds WHERE study = ?1").run([.text(study)]) }
    }

    /// Every study waiting for identity, oldest first (none from a database an older agent wrote).
    public func identityHolds() throws -> [IdentityHold] {
        try read {
            guard try db.prepare("SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'identity_holds'").first([], { _ in true }) == true else {
                return []
            }
            return try db.prepare("SELECT study, sender, nhs, patient_id, kind, reason, instances, since, checked FROM identity_holds ORDER BY since, study")
                .rows([]) { row in
                    IdentityHold(
                        study: row.text(0) ?? "", sender: row.text(1) ?? "", nhs: row.text(2), patientID: row.text(3), kind: row.text(4) ?? "",
                        reason: row.text(5) ?? "", instances: Int(row.int(6)), since: row.double(7), checked: row.double(8))
                }
        }
    }

    /// A copy this trust received whose origin has since announced the study under another
    /// patient, or withdrawn it (the coordinator's `GET /v1/holdings/attention`): the copy, and
    /// what the PACS filed of it, need a person.
    public struct CopyFlag: Sendable, Equatable {
        public var study: String
        public var origin: String
        public var kind: String
        public var detail: String
        public var since: Double
        /// Who acknowledged it (`consort identity acknowledge`), and when: listed, no longer
        /// counted as needing a person.
        public var seenBy: String?
        public var seen: Double?
        public init(study: String, origin: String, kind: String, detail: String, since: Double, seenBy: String? = nil, seen: Double? = nil) {
            self.seenBy = seenBy
            self.seen = seen
            self.study = study
            self.origin = origin
            self.kind = kind
            self.detail = detail
            self.since = since
        }
    }

    /// The flags among `flags` not recorded yet, by study and kind (a study corrected, then
    /// withdrawn, is news twice): the caller says and audits them before `replaceCopyFlags`.
    public func newCopyFlags(_ flags: [CopyFlag]) throws -> [CopyFlag] {
        try read {
            let known = Set(try db.prepare("SELECT study, kind FROM copy_flags").rows([]) { ($0.text(0) ?? "") + "\u{1}" + ($0.text(1) ?? "") })
            return flags.filter { !known.contains($0.study + "\u{1}" + $0.kind) }
        }
    }

    /// The coordinator's whole answer replaces the flags (one it no longer gives is settled; an
    /// acknowledgement stays with its flag, study and kind, while the flag is given).
    public func replaceCopyFlags(_ flags: [CopyFlag]) throws {
        try write {
            var seen: [String: (String?, Double?)] = [:]
            for (key, by, at) in try db.prepare("SELECT study, kind, seen_by, seen FROM copy_flags").rows([], {
                (($0.text(0) ?? "") + "\u{1}" + ($0.text(1) ?? ""), $0.text(2), $0.isNull(3) ? nil : $0.double(3))
            }) {
                seen[key] = (by, at)
            }
            try db.execute("DELETE FROM copy_flags")
            let insert = try db.prepare("INSERT OR REPLACE INTO copy_flags (study, kind, origin, detail, since, seen_by, seen) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)")
            for flag in flags {
                let (by, at) = seen[flag.study + "\u{1}" + flag.kind] ?? (nil, nil)
                try insert.run([.text(flag.study), .text(flag.kind), .text(flag.origin), .text(flag.detail), .real(flag.since),
                                by.map(SQLValue.text) ?? .null, at.map(SQLValue.real) ?? .null])
            }
        }
    }

    /// A person has looked at these flagged copies (and what the PACS filed of them): which of
    /// them were flagged.
    public func acknowledgeCopyFlags(_ studies: [String], by who: String, now: Double) throws -> [String] {
        try write {
            let update = try db.prepare("UPDATE copy_flags SET seen_by = ?2, seen = ?3 WHERE study = ?1")
            return try studies.filter { study in
                try update.run([.text(study), .text(who), .real(now)])
                return db.changes > 0
            }
        }
    }

    /// Every flagged copy, oldest first (none from a database an older agent wrote).
    public func copyFlags() throws -> [CopyFlag] {
        try read {
            guard try db.prepare("SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'copy_flags'").first([], { _ in true }) == true else { return [] }
            return try db.prepare("SELECT study, origin, kind, detail, since, seen_by, seen FROM copy_flags ORDER BY since, study").rows([]) { row in
                CopyFlag(study: row.text(0) ?? "", origin: row.text(1) ?? "", kind: row.text(2) ?? "", detail: row.text(3) ?? "", since: row.double(4),
                         seenBy: row.text(5), seen: row.isNull(6) ? nil : row.double(6))
            }
        }
    }
}
