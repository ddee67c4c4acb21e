import Foundation
import SQLite

/// The first start over an existing archive (issue 23): what the agent found in its watched
/// folders the first time it ran is history, indexed and announced without firing rules; only
/// `consort backfill` applies rules to it. Whether that first catch-up ever finished is kept
/// here, in the same database as the inventory it describes, so the two cannot disagree.
extension AgentStore {
    static let milestonesSchema = """
        CREATE TABLE IF NOT EXISTS milestones (name TEXT PRIMARY KEY, at REAL NOT NULL, detail TEXT) WITHOUT ROWID;
        """

    /// The `stable_fired` of a study indexed as history: above any quiet period a rule can
    /// name, so the stability tick never fires it. A new instance of the study resets it to 0
    /// (`recordInstance`), and the study then fires as any study does.
    public static let historyStable = Int(Int32.max)

    static let firstCatchUp = "first-catch-up"

    /// Version 5: a database written by an earlier version belongs to an agent that has started
    /// before (it has taken files): its first start is behind it, and what appeared while it was
    /// stopped for the upgrade is new.
    func migrateToFirstStart() throws {
        let used = try db.prepare("SELECT 1 FROM files LIMIT 1").first { _ in true } ?? false
        guard used else { return }
        try db.prepare("INSERT INTO milestones (name, at, detail) VALUES (?1, ?2, ?3) ON CONFLICT(name) DO NOTHING")
            .run([.text(Self.firstCatchUp), .real(Date().timeIntervalSince1970), .text("an agent of an earlier version had run: taken as done")])
    }

    /// When the agent's first catch-up scan finished (nil: it never has, so the next catch-up is
    /// the first, whether or not one was begun and cut off).
    public func firstCatchUpFinished() throws -> Double? {
        try read { try db.prepare("SELECT at FROM milestones WHERE name = ?1").first([.text(Self.firstCatchUp)]) { $0.double(0) } }
    }

    /// Records, durably (a committed transaction, synchronous=FULL), that the first catch-up
    /// scan finished, having indexed `files` files as history.
    public func recordFirstCatchUp(files: Int, now: Double) throws {
        try write {
            try db.prepare("INSERT INTO milestones (name, at, detail) VALUES (?1, ?2, ?3) ON CONFLICT(name) DO NOTHING")
                .run([.text(Self.firstCatchUp), .real(now), .text("\(files) files scanned")])
        }
    }
}
