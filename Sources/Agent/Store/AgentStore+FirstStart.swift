import Foundation
import SQLite

/// The first start over an existing archive (issue 23): what the agent found in its watched
/// folders the first time it ran is history, indexed and announced without firing rules; only
/// `consort backfill` applies rules to it. When that first catch-up began, and whether it
/// finished, are kept here, in the same database as the inventory they describe, so the two
/// cannot disagree.
extension AgentStore {
    static let milestonesSchema = """
        CREATE TABLE IF NOT EXISTS milestones (name TEXT PRIMARY KEY, at REAL NOT NULL, detail TEXT) WITHOUT ROWID;
        """

    /// The `stable_fired` of a study indexed as history: above any quiet period a rule can
    /// name, so the stability tick never fires it. A new instance of the study resets it to 0
    /// (`recordInstance`), and the study then fires as any study does.
    public static let historyStable = Int(Int32.max)

    /// When the first catch-up finished (the name predates `firstCatchUpBegan`, and is kept so
    /// that a database that recorded it stays finished).
    static let firstCatchUp = "first-catch-up"
    /// When the first catch-up began: the line between history and new, for good (`Ingest.isHistory`).
    static let firstCatchUpBegan = "first-catch-up-began"

    /// Version 5: a database written by an earlier version belongs to an agent that has run
    /// before — whether or not it ever took a file (a receive-only site, an empty watch folder)
    /// — so its first start is behind it, and what appeared while it was stopped for the upgrade
    /// is new. Any `user_version` above 0 says an earlier agent made it; a database from before
    /// `user_version` was set (0) says so by holding anything at all. No begin time is recorded
    /// for it: nothing it finds is history.
    func migrateToFirstStart(from version: Int64) throws {
        var earlier = version > 0
        if !earlier {
            for table in ["files", "instances", "jobs"] where try db.prepare("SELECT 1 FROM \(table) LIMIT 1").first([], { _ in true }) ?? false {
                earlier = true
            }
        }
        guard earlier else { return }
        try db.prepare("INSERT INTO milestones (name, at, detail) VALUES (?1, ?2, ?3) ON CONFLICT(name) DO NOTHING")
            .run([.text(Self.firstCatchUp), .real(Date().timeIntervalSince1970), .text("an agent of an earlier version (schema \(version)) had run: taken as done")])
    }

    /// When the agent's first catch-up scan finished (nil: it never has, so the next catch-up is
    /// the first, whether or not one was begun and cut off).
    public func firstCatchUpFinished() throws -> Double? {
        try milestone(Self.firstCatchUp)
    }

    /// When the agent's first catch-up began (nil: never, or the database came from a version
    /// that had run before first starts were told apart).
    public func firstCatchUpBegan() throws -> Double? {
        try milestone(Self.firstCatchUpBegan)
    }

    private func milestone(_ name: String) throws -> Double? {
        try read { try db.prepare("SELECT at FROM milestones WHERE name = ?1").first([.text(name)]) { $0.double(0) } }
    }

    /// Records, durably and before the first scan reads a file, when the first catch-up began;
    /// one begun before and cut off (killed, stopped) keeps its time. Returns the time in force:
    /// a file written while the agent was down after that is new, however many starts it takes
    /// to finish.
    public func beginFirstCatchUp(now: Double) throws -> Double {
        try write {
            try db.prepare("INSERT INTO milestones (name, at, detail) VALUES (?1, ?2, ?3) ON CONFLICT(name) DO NOTHING")
                .run([.text(Self.firstCatchUpBegan), .real(now), .text("files changed before this are history")])
            return try db.prepare("SELECT at FROM milestones WHERE name = ?1").first([.text(Self.firstCatchUpBegan)]) { $0.double(0) } ?? now
        }
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
