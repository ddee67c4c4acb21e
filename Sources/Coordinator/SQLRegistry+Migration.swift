import Foundation
import Platform
import SQLite

/// Bringing a registry made by an earlier version up to date when it is opened: its totals
/// counted once, its studies moved into the layout by patient. Both run before the registry
/// serves anything, and both are written to be safe to repeat at every start.
extension SQLRegistry {
    /// A registry made before the totals were kept is counted once, when it is opened.
    func countIfUncounted() throws {
        try locked {
            try db.transaction {
                let kept = try db.prepare("SELECT count(*) FROM registry_counts").first([]) { $0.int(0) } ?? 0
                guard kept == 0 else { return }
                // A marker row, so an empty registry is not counted again at each start.
                var counts: [(String, Int)] = [("counted", 1)]
                counts.append(("patients", Int(try db.prepare("SELECT count(*) FROM patients").first([]) { $0.int(0) } ?? 0)))
                counts.append(("studies", Int(try db.prepare("SELECT count(*) FROM patient_studies").first([]) { $0.int(0) } ?? 0)))
                // The holdings are in their studies' rows, read a page of rows at a time.
                var trusts: [String: Int] = [:]
                try pages(of: "held") { row in
                    for location in RegistryHoldings.decode(row.text(2)) { trusts[location.trust, default: 0] += 1 }
                }
                counts.append(("locations", trusts.values.reduce(0, +)))
                counts += trusts.sorted { $0.key < $1.key }.map { ("trust \($0.key)", $0.value) }
                let insert = try db.prepare("INSERT INTO registry_counts (name, n) VALUES (?1, ?2) ON CONFLICT (name) DO NOTHING")
                for (name, n) in counts { try insert.run([.text(name), .integer(Int64(n))]) }
            }
        }
    }

    /// Every study row in key order, `columns` after its key (nhs 0, uid 1), 10,000 rows a
    /// statement: a registry of millions is never held in memory at once.
    private func pages(of columns: String, _ body: (RegistryRow) throws -> Void) throws {
        var after = ("", "")  // before every key: no study has an empty UID
        while true {
            let rows = try db.prepare("SELECT nhs, uid, \(columns) FROM patient_studies WHERE (nhs, uid) > (?1, ?2) ORDER BY nhs, uid LIMIT 10000")
                .rows([.text(after.0), .text(after.1)], { $0 })
            for row in rows { try body(row) }
            guard rows.count == 10_000, let last = rows.last else { return }
            after = (last.text(0) ?? "", last.text(1) ?? "")
        }
    }

    /// A registry made before a study's holdings were kept in its row (2026-12-02): `studies`
    /// with a row id, its index by patient, and `locations` by study. Its rows move to
    /// `patient_studies` and `study_keys` in one transaction — a coordinator stopped half-way
    /// finds the old tables whole — and the old tables go. The totals stay as they were: the
    /// same studies and holdings. With two coordinators on one PostgreSQL, the one that gets
    /// the writers' lock first moves them; the other waits for the lock, and finds nothing
    /// left to move — or, if the move outlasts its 30 s statement timeout, fails to start and
    /// is started again by systemd until the move is done (the README says to upgrade with
    /// every coordinator stopped, and start one first).
    func moveToPatientRows(log: Logger, progress: (String) -> Void = { _ in }) throws {
        guard try db.hasTable("locations") else { return }
        let start = MonotonicClock.now
        let moved: Int = try locked {
            try db.transaction {
                guard try db.hasTable("locations") else { return 0 }
                let total = try db.prepare("SELECT count(*) FROM studies").first([]) { $0.int(0) } ?? 0
                log.info("moving each study's holdings into its row, by patient (once; the old tables stay whole until it is done)", ["studies": total])
                progress("moving the registry to its layout by patient: 0 of \(total) studies")
                var told = MonotonicClock.now
                var moved = 0
                var after = ""
                while true {
                    let rows = try db.prepare("""
                        SELECT uid, nhs, announced_by, study_date, modalities, body_part, description, accession, instances, bytes, updated
                        FROM studies WHERE uid > ?1 ORDER BY uid LIMIT 5000
                        """).rows([.text(after)], { $0 })
                    guard let last = rows.last?.text(0) else { break }
                    var held: [String: [Location]] = [:]
                    for (uid, location) in try db.prepare("SELECT study, trust, complete, instances, since FROM locations WHERE study > ?1 AND study <= ?2").rows([.text(after), .text(last)], {
                        ($0.text(0) ?? "", Location(trust: $0.text(1) ?? "", complete: $0.int(2) != 0, instances: Int($0.int(3)), since: $0.double(4)))
                    }) { held[uid, default: []].append(location) }
                    func value(_ cell: String?) -> SQLValue { cell.map(SQLValue.text) ?? .null }
                    try db.insertRows(rows.map { row in
                        [.text(row.text(1) ?? ""), value(row.text(0))] + (2...7).map { value(row.text(Int32($0))) }
                            + [.integer(row.int(8)), .integer(row.int(9)), .real(row.double(10)), .text(RegistryHoldings.encode(held[row.text(0) ?? ""] ?? []))]
                    }, into: "patient_studies (\(Self.rowColumns))", then: "ON CONFLICT DO NOTHING")
                    try db.insertRows(rows.map { [value($0.text(0)), .text($0.text(1) ?? "")] }, into: "study_keys (uid, nhs)", then: "ON CONFLICT DO NOTHING")
                    moved += rows.count
                    after = last
                    if MonotonicClock.now - told >= 5 {
                        told = MonotonicClock.now
                        progress("moving the registry to its layout by patient: \(moved) of \(total) studies")
                    }
                }
                progress("moving the registry to its layout by patient: \(moved) of \(total) studies moved; removing the earlier tables")
                try db.execute("DROP TABLE locations")
                try db.execute("DROP TABLE studies")
                return moved
            }
        }
        if moved > 0 {
            log.info("each study's holdings now kept in its row, by patient", ["studies": moved, "seconds": String(format: "%.1f", MonotonicClock.now - start)])
        }
    }
}
