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
}
