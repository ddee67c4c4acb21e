import Foundation
import Routing

/// Announcements, written by group commit: those that arrive while one transaction is being
/// written wait together (`waiting`), and the next transaction writes them all.
extension SQLRegistry {
    /// A batch in a handful of statements, whatever its size: what the batch touches is read
    /// first (a statement for each table, UIDs in `IN` lists), each holding is decided in order
    /// against that view — kept up to date as it goes, so a batch naming one thing twice is
    /// decided as if its holdings came one by one — and the rows are written with multi-row
    /// statements. One statement a row made PostgreSQL pay a network round trip for each of
    /// about eight statements a study (727 studies a second); rare paths (conflicts, invalid
    /// numbers, filling in a patient's sex or birth date) keep a statement each.
    ///
    /// Announcements that arrive while one is being written wait together, and the next
    /// transaction writes them all (group commit), each decided in turn as if alone: one commit
    /// and one sync instead of one each, and the pages of the patients they share written once.
    /// At 10 million studies a batch dirties a page of the tree by patient for most of its
    /// studies, and each commit copies every dirtied page to the log (32 GB written for the
    /// first gigabyte of registry, one batch a transaction). A transaction takes at most
    /// `groupLimit` studies (or one announcement of more, alone), so a lookup on SQLite (the
    /// writer's connection) waits for one such transaction at most. If a group fails, each of its announcements is tried alone, so one
    /// that cannot be written fails only itself.
    public func announce(trust: String, holdings: [(Holding, NHSIdentity.Resolution)], now: Double) throws -> AnnounceOutcome {
        let mine = WaitingAnnouncement(trust: trust, holdings: holdings, now: now)
        waitingLock.withLock { waiting.append(mine) }
        return try locked {
            // The oldest waiting announcements go first, up to the limit; ours may be among the
            // later ones (any waiting thread may get the lock first), so write until it is done.
            while mine.result == nil { write(nextGroup()) }
            guard let result = mine.result else { throw RegistryError("the announcement was not written (a fault of the registry's group commit)") }
            return try result.get()
        }
    }

    static let groupLimit = 4_000

    final class WaitingAnnouncement: @unchecked Sendable {
        let trust: String
        let holdings: [(Holding, NHSIdentity.Resolution)]
        let now: Double
        /// Set under the writer's lock, read under it.
        var result: Result<AnnounceOutcome, Error>?
        init(trust: String, holdings: [(Holding, NHSIdentity.Resolution)], now: Double) { (self.trust, self.holdings, self.now) = (trust, holdings, now) }
    }

    /// How many announcements wait for the writer (for tests).
    var waitingCount: Int { waitingLock.withLock { waiting.count } }

    /// The oldest waiting announcements, up to `groupLimit` studies (at least one).
    private func nextGroup() -> [WaitingAnnouncement] {
        waitingLock.withLock {
            var taken = 0, studies = 0
            while taken < waiting.count, taken == 0 || studies + waiting[taken].holdings.count <= Self.groupLimit {
                studies += waiting[taken].holdings.count
                taken += 1
            }
            defer { waiting.removeFirst(taken) }
            return Array(waiting.prefix(taken))
        }
    }

    /// Called with the writer's lock held.
    private func write(_ group: [WaitingAnnouncement]) {
        do {
            let outcomes = try db.transaction { try group.map { try decide(trust: $0.trust, holdings: $0.holdings, now: $0.now) } }
            for (announcement, outcome) in zip(group, outcomes) { announcement.result = .success(outcome) }
        } catch {
            if group.count == 1 {
                group[0].result = .failure(error)
            } else {
                for announcement in group {
                    announcement.result = Result { try db.transaction { try decide(trust: announcement.trust, holdings: announcement.holdings, now: announcement.now) } }
                }
            }
        }
        keepStatistics(added: group.reduce(0) { $0 + ((try? $1.result?.get())?.newStudies ?? 0) })
    }
}
