import Foundation
import SQLite

/// What `consort status` and the tests read of the inventory: its kept totals, files with
/// problems, a study's instances.
extension AgentStore {
    // MARK: - Status

    public struct Counts: Sendable {
        public var studies = 0, instances = 0, receivedInstances = 0
        public var bytes: Int64 = 0
        public var receivedBytes: Int64 = 0
        public var malformedFiles = 0
    }

    /// The inventory's size, from its kept totals (a count over a million instances is too slow
    /// for `consort status`).
    public func counts() throws -> Counts {
        try read {
            var counts = Counts()
            let totals = Dictionary(uniqueKeysWithValues: try db.prepare("SELECT name, value FROM totals").rows { ($0.text(0) ?? "", $0.int(1)) })
            counts.instances = Int((totals["instances_local"] ?? 0) + (totals["instances_received"] ?? 0))
            counts.receivedInstances = Int(totals["instances_received"] ?? 0)
            counts.bytes = (totals["bytes_local"] ?? 0) + (totals["bytes_received"] ?? 0)
            counts.receivedBytes = totals["bytes_received"] ?? 0
            counts.studies = Int(try db.prepare("SELECT count(*) FROM studies").first { $0.int(0) } ?? 0)
            counts.malformedFiles = Int(try db.prepare("SELECT count(*) FROM files WHERE problem IS NOT NULL").first { $0.int(0) } ?? 0)
            return counts
        }
    }

    /// Files recorded with a problem (malformed DICOM, not DICOM), newest first.
    public func problems(limit: Int = 100) throws -> [(path: String, problem: String)] {
        try read {
            try db.prepare("SELECT path, problem FROM files WHERE problem IS NOT NULL ORDER BY taken DESC LIMIT ?1").rows([.integer(Int64(limit))]) { ($0.text(0) ?? "", $0.text(1) ?? "") }
        }
    }

    /// The instances recorded as received from a peer, for tests and status.
    public func instances(ofStudy study: String) throws -> [(sop: String, path: String, origin: String)] {
        try read {
            try db.prepare("SELECT sop, path, origin FROM instances WHERE study = ?1 ORDER BY sop").rows([.text(study)]) { ($0.text(0) ?? "", $0.text(1) ?? "", $0.text(2) ?? "") }
        }
    }
}
