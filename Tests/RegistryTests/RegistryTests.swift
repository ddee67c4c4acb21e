@testable import Coordinator
import Foundation
import Platform
import Routing
import SQLite
import TestSupport
import Testing

/// The registry's behaviour, the same tests on both its stores: SQLite (embedded) and
/// PostgreSQL 15 (a throwaway server started from the Debian packages; the suite says so when it
/// skips, and refuses to skip in CI).
@Suite("Registry", .serialized, .timeLimit(.minutes(3)))
struct RegistryTests {
    enum Store: String, CaseIterable, CustomStringConvertible {
        case sqlite, postgresql
        var description: String { rawValue }
    }

    /// A fresh registry of the kind asked for, and what to do when the test is done.
    static func registry(_ store: Store) throws -> (Registry, () -> Void) {
        let folder = NSTemporaryDirectory() + "consort-registry-\(UUID().uuidString)"
        switch store {
        case .sqlite:
            return (try SQLRegistry.sqlite(path: folder + "/registry.sqlite"), { try? FileManager.default.removeItem(atPath: folder) })
        case .postgresql:
            let server = try throwawayPostgreSQL(in: folder)
            return (try SQLRegistry.postgresql(server.conninfo), server.stop)
        }
    }

    /// A throwaway PostgreSQL server in `folder` (skipped, saying why, where it is not installed).
    static func throwawayPostgreSQL(in folder: String) throws -> (conninfo: String, stop: () -> Void) {
        let script = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent().appendingPathComponent("Support/throwaway-postgres.sh").path
        let started = try runProgram("/bin/bash", [script, "start", folder], timeout: 60)
        try Skip.unless(started.status != 77, "PostgreSQL 15 is not installed (Debian package postgresql-15; Tests/install-test-dependencies.sh installs it)")
        try #require(started.status == 0, "throwaway PostgreSQL did not start: \(started.stderr)")
        return (started.stdout.trimmingCharacters(in: .whitespacesAndNewlines), { _ = try? runProgram("/bin/bash", [script, "stop", folder], timeout: 60) })
    }

    static let first = "9990000018", second = "9990000026"

    static func holding(_ study: String, patient: String = "P1", issuer: String = "RSCH", nhs: String? = first, date: String = "20260101",
                        sex: String? = "F", birth: String? = "19700101", instances: Int = 3, origin: String? = nil) -> (Holding, NHSIdentity.Resolution) {
        var holding = Holding(study: study)
        holding.origin = origin
        holding.patient = NHSIdentity.Identifier(id: patient, issuer: issuer)
        holding.nhs = nhs
        holding.date = date
        holding.sex = sex
        holding.birthDate = birth
        holding.modalities = ["CT"]
        holding.instances = instances
        holding.bytes = Int64(instances * 1000)
        let resolution: NHSIdentity.Resolution = nhs.map { NHSNumber($0).map { .valid($0) } ?? .invalid($0) } ?? .absent
        return (holding, resolution)
    }

    @Test(arguments: Store.allCases) func announcementsAreIdempotentAndAnswerNewestFirst(store: Store) throws {
        let (registry, done) = try Self.registry(store)
        defer { done() }
        let batch = [Self.holding("1.1", date: "20240101"), Self.holding("1.2", date: "20260101"), Self.holding("1.3", date: "20250101")]
        let first = try registry.announce(trust: "RSCH", holdings: batch, now: 1)
        let again = try registry.announce(trust: "RSCH", holdings: batch, now: 2)
        #expect(first.recorded == 3 && first.conflicts.isEmpty && first.trustStudies == 3)
        #expect(again.conflicts.isEmpty && again.trustStudies == 3, "the same batch twice changes nothing")
        _ = try registry.announce(trust: "UHSX", holdings: [Self.holding("1.2", patient: "U7", issuer: "UHSX")], now: 3)
        let (studies, conflicts) = try registry.patientStudies(nhs: Self.first)
        #expect(conflicts.isEmpty)
        #expect(studies.map(\.uid) == ["1.2", "1.3", "1.1"], "newest first")
        #expect(studies[0].locations.map(\.trust) == ["RSCH", "UHSX"] && studies[0].locations[0].since == 1)
        #expect(try registry.totals() == (patients: 1, studies: 3, locations: 4))
        #expect(try registry.withdraw(trust: "UHSX", studies: ["1.2", "9.9"]) == 1)
        #expect(try registry.study(uid: "1.2")?.locations.map(\.trust) == ["RSCH"])
        #expect(try registry.study(uid: "7.7") == nil)
    }

    /// What an agent delivers a study from another trust under: its own trust's identifiers for
    /// the patient, never another trust's; none for a patient it has not seen; and the conflicts
    /// about the patient, so that nothing is delivered under an unsettled identity.
    /// Corrections follow (issue 25): a copy's holder hears when the study's origin announces it
    /// again under another patient, or withdraws it while copies remain; the origin hears nothing
    /// of its own studies, and a holder of nothing affected hears nothing.
    @Test(arguments: Store.allCases) func aCopysHolderHearsOfACorrectionOrAWithdrawalAtTheOrigin(store: Store) throws {
        let (registry, done) = try Self.registry(store)
        defer { done() }
        // UHSX's copies, pushed by RSCH, are announced before RSCH announces its originals (an
        // announcer's turn can come either way): the copies name their origin.
        let copies = ["5.1", "5.2", "5.4"].map { Self.holding($0, patient: "U7", issuer: "UHSX", origin: "RSCH") }
        _ = try registry.announce(trust: "UHSX", holdings: copies, now: 1)
        _ = try registry.announce(trust: "RSCH", holdings: [Self.holding("5.1"), Self.holding("5.2"), Self.holding("5.3"), Self.holding("5.4")], now: 2)
        #expect(try registry.attention(trust: "UHSX").isEmpty)
        // A conflict a copy's holder makes (UHSX announces its copy of 5.4 under another patient)
        // is held as a conflict, and is not a correction at the origin for anyone.
        _ = try registry.announce(trust: "UHSX", holdings: [Self.holding("5.4", patient: "U8", issuer: "UHSX", nhs: Self.second, origin: "RSCH")], now: 2.5)
        #expect(try registry.attention(trust: "RSCH").isEmpty)
        // The origin corrects 5.1 (another patient) and deletes 5.2; a holder's own withdrawal of
        // a copy (5.3 is RSCH's alone) is no news to anyone.
        _ = try registry.announce(trust: "RSCH", holdings: [Self.holding("5.1", patient: "P2", nhs: Self.second)], now: 3)
        #expect(try registry.withdraw(trust: "RSCH", studies: ["5.2", "5.3"]) == 2)
        let heard = try registry.attention(trust: "UHSX").sorted { $0.study < $1.study }
        #expect(heard.map(\.study) == ["5.1", "5.2"], "\(heard)")
        #expect(heard.map(\.kind) == [.identityChanged, .withdrawnAtOrigin] && heard.allSatisfy { $0.origin == "RSCH" }, "\(heard)")
        #expect(try registry.attention(trust: "RSCH").isEmpty, "the origin is not told of its own corrections")
        #expect(try registry.attention(trust: "ASPH").isEmpty)
        // UHSX lets its copy of 5.2 go: no longer its concern.
        _ = try registry.withdraw(trust: "UHSX", studies: ["5.2"])
        #expect(try registry.attention(trust: "UHSX").map(\.study) == ["5.1"])
        // A withdrawal the origin takes back (the study restored to its archive, announced
        // again) is no news either.
        _ = try registry.announce(trust: "UHSX", holdings: [Self.holding("5.2", patient: "U7", issuer: "UHSX", origin: "RSCH")], now: 4)
        _ = try registry.announce(trust: "RSCH", holdings: [Self.holding("5.2")], now: 4)
        #expect(try registry.attention(trust: "UHSX").map(\.study) == ["5.1"], "the withdrawal went with the last holder")
        #expect(try registry.withdraw(trust: "RSCH", studies: ["5.2"]) == 1)
        #expect(try registry.attention(trust: "UHSX").map(\.study) == ["5.1", "5.2"])
        _ = try registry.announce(trust: "RSCH", holdings: [Self.holding("5.2")], now: 6)
        #expect(try registry.attention(trust: "UHSX").map(\.study) == ["5.1"])
        // A relay: ASPH, given 6.1 by UHSX, announces it before RSCH (whose study it is) does.
        // RSCH announcing it as its own makes RSCH the origin, and its withdrawal is heard.
        _ = try registry.announce(trust: "ASPH", holdings: [Self.holding("6.1", patient: "A1", issuer: "ASPH", origin: "UHSX")], now: 7)
        _ = try registry.announce(trust: "UHSX", holdings: [Self.holding("6.1", patient: "U7", issuer: "UHSX", origin: "RSCH")], now: 7)
        _ = try registry.announce(trust: "RSCH", holdings: [Self.holding("6.1")], now: 8)
        #expect(try registry.withdraw(trust: "RSCH", studies: ["6.1"]) == 1)
        #expect(try registry.attention(trust: "ASPH").map(\.study) == ["6.1"] && registry.attention(trust: "UHSX").map(\.study).contains("6.1"))
    }

    @Test(arguments: Store.allCases) func aTrustIsToldItsOwnIdentifiersForAPatientAndNoOthers(store: Store) throws {
        let (registry, done) = try Self.registry(store)
        defer { done() }
        _ = try registry.announce(trust: "RSCH", holdings: [Self.holding("8.1", patient: "R123", issuer: "RSCH"), Self.holding("8.2", patient: "R123", issuer: "RSCH")], now: 1)
        _ = try registry.announce(trust: "UHSX", holdings: [Self.holding("8.3", patient: "U987", issuer: "UHSX")], now: 2)
        // A second number at UHSX for the same patient (a merged record there), given later.
        _ = try registry.announce(trust: "UHSX", holdings: [Self.holding("8.4", patient: "U555", issuer: "")], now: 3)
        let rsch = try registry.identity(trust: "RSCH", nhs: Self.first)
        #expect(rsch.identifiers == [NHSIdentity.Identifier(id: "R123", issuer: "RSCH")] && rsch.conflicts.isEmpty)
        let uhsx = try registry.identity(trust: "UHSX", nhs: Self.first)
        #expect(uhsx.identifiers == [NHSIdentity.Identifier(id: "U987", issuer: "UHSX"), NHSIdentity.Identifier(id: "U555", issuer: nil)], "oldest first; no issuer is none, not an empty one")
        #expect(try registry.identity(trust: "ASPH", nhs: Self.first).identifiers.isEmpty, "never seen at ASPH: nothing, and never another trust's")
        #expect(try registry.identity(trust: "RSCH", nhs: Self.second).identifiers.isEmpty)
        // The same RSCH number announced for another patient: a conflict, answered with both.
        _ = try registry.announce(trust: "RSCH", holdings: [Self.holding("8.5", patient: "R123", issuer: "RSCH", nhs: Self.second)], now: 4)
        #expect(try registry.identity(trust: "RSCH", nhs: Self.first).conflicts.count == 1)
        #expect(try registry.identity(trust: "ASPH", nhs: Self.second).conflicts.count == 1, "whoever asks: the patient is in a conflict")
    }

    @Test(arguments: Store.allCases) func identityConflictsAreHeldNotMerged(store: Store) throws {
        let (registry, done) = try Self.registry(store)
        defer { done() }
        _ = try registry.announce(trust: "RSCH", holdings: [Self.holding("2.1")], now: 1)
        // The same local identifier with another NHS number.
        let localID = try registry.announce(trust: "RSCH", holdings: [Self.holding("2.2", nhs: Self.second)], now: 2)
        #expect(localID.conflicts.count == 1 && localID.conflicts[0].hasPrefix("local-id RSCH P1"), "\(localID.conflicts)")
        // The same study for another patient, from another trust.
        let study = try registry.announce(trust: "UHSX", holdings: [Self.holding("2.1", patient: "U1", issuer: "UHSX", nhs: Self.second)], now: 3)
        #expect(study.conflicts.count == 1 && study.conflicts[0].hasPrefix("study 2.1"), "\(study.conflicts)")
        #expect(try registry.study(uid: "2.1")?.nhs == Self.first, "never merged: the study keeps its first patient")
        #expect(try registry.study(uid: "2.1")?.conflicted == true)
        // One NHS number, another birth date at another trust.
        let demographics = try registry.announce(trust: "ESHT", holdings: [Self.holding("2.3", patient: "E1", issuer: "ESHT", birth: "19710101")], now: 4)
        #expect(demographics.conflicts.count == 1 && demographics.conflicts[0].hasPrefix("demographics \(Self.first)"), "\(demographics.conflicts)")
        // Every conflict listed once, with both sides; the patient answered with them.
        let all = try registry.conflicts()
        #expect(all.map(\.kind) == ["local-id", "study", "demographics"])
        #expect(all[0].first == Self.first && all[0].second == Self.second && all[0].secondFrom.contains("study 2.2"))
        #expect(try registry.patientStudies(nhs: Self.first).conflicts.count == 3)
        _ = try registry.announce(trust: "RSCH", holdings: [Self.holding("2.2", nhs: Self.second)], now: 5)
        #expect(try registry.conflicts().count == 3, "a conflict announced again is not listed twice")
    }

    @Test(arguments: Store.allCases) func anInvalidNHSNumberIsRecordedNotUsed(store: Store) throws {
        let (registry, done) = try Self.registry(store)
        defer { done() }
        let outcome = try registry.announce(trust: "QVH", holdings: [Self.holding("3.1", patient: "Q1", issuer: "QVH", nhs: "1234567890")], now: 1)
        #expect(outcome.invalid == ["3.1"])
        #expect(try registry.identityErrors().map(\.value) == ["1234567890"])
        #expect(try registry.totals().patients == 0, "no patient made of it")
        #expect(try registry.study(uid: "3.1")?.nhs == nil)
    }

    /// A batch is decided as if its holdings came one by one, though it is read and written in
    /// a few statements: a conflict inside one batch is found, a study named twice is one study
    /// with the larger count, a patient new in the batch is made once; and batches larger than
    /// one statement's rows (600 here) come out whole.
    @Test(arguments: Store.allCases) func aBatchIsDecidedAsIfItsHoldingsCameOneByOne(store: Store) throws {
        let (registry, done) = try Self.registry(store)
        defer { done() }
        let outcome = try registry.announce(trust: "RSCH", holdings: [
            Self.holding("6.1", instances: 3),
            Self.holding("6.1", instances: 7),
            Self.holding("6.2", nhs: Self.second, sex: nil, birth: nil),  // P1 again, with another NHS number
            Self.holding("6.3", patient: "P3", nhs: Self.second, sex: "M", birth: nil),
            Self.holding("6.4", patient: "P3", nhs: Self.second, sex: "M", birth: "19900101"),  // fills in the birth date
            Self.holding("6.5", patient: "P3", nhs: Self.second, sex: "F", birth: "19900101"),  // then disagrees
        ], now: 1)
        #expect(outcome.recorded == 6 && outcome.trustStudies == 5)
        #expect(outcome.conflicts.count == 2 && outcome.conflicts[0].hasPrefix("local-id RSCH P1") && outcome.conflicts[1].hasPrefix("demographics \(Self.second)"), "\(outcome.conflicts)")
        #expect(try registry.study(uid: "6.1")?.instances == 7 && registry.study(uid: "6.1")?.locations.count == 1)
        // The patient new in the batch was written with what the batch filled in: another
        // birth date now is a conflict, not a fill.
        let later = try registry.announce(trust: "ESHT", holdings: [Self.holding("6.9", patient: "E9", issuer: "ESHT", nhs: Self.second, sex: "M", birth: "19900102")], now: 1.5)
        #expect(later.conflicts.count == 1 && later.conflicts[0].contains("born 19900101") && later.conflicts[0].contains("born 19900102"), "\(later.conflicts)")
        #expect(try registry.totals() == (patients: 2, studies: 6, locations: 6))
        let many = (0..<600).map { Self.holding("7.\($0)", patient: "M\($0 % 40)", nhs: $0 % 2 == 0 ? Self.first : Self.second, sex: nil, birth: nil) }
        let big = try registry.announce(trust: "UHSX", holdings: many, now: 2)
        #expect(big.recorded == 600 && big.trustStudies == 600 && big.conflicts.isEmpty, "\(big.conflicts.prefix(3))")
        #expect(try registry.patientStudies(nhs: Self.first).studies.count == 300 + 1)
        #expect(try registry.announce(trust: "UHSX", holdings: many, now: 3).trustStudies == 600)
        #expect(try registry.totals() == (patients: 2, studies: 606, locations: 606))
    }

    /// The writes and lists every announcement goes through, with values chosen to break an
    /// array literal or a list (PostgreSQL sends each column as one array): quotes, backslashes,
    /// braces, commas, the word NULL, empty text, non-ASCII, a real NULL, numbers at the ends of
    /// their ranges. Each value comes back as it went in, and the count of rows written is right.
    /// (SQLite gives its REAL columns back as text of 15 digits: times to 10 µs, which is fine
    /// for when a row was written; the value here is exact in both.)
    @Test(arguments: Store.allCases) func setBasedWritesAndListsKeepEveryValueAsItWas(store: Store) throws {
        let (registry, done) = try Self.registry(store)
        defer { done() }
        let db = try #require(registry as? SQLRegistry).db
        try db.execute("CREATE TABLE scratch (k TEXT PRIMARY KEY, t TEXT, n BIGINT NOT NULL, d DOUBLE PRECISION NOT NULL)")
        let awkward = [#"say "hi""#, #"back\slash\"#, "{braces}", "a,b", "NULL", "", "Zoë 東京 🩻", #""},{"#, " spaced ", "'quote'"]
        var rows: [[SQLValue]] = awkward.enumerated().map { index, text in
            [.text("k\(index) \(text)"), .text(text), .integer(index % 2 == 0 ? Int64.max : Int64.min), .real(index % 2 == 0 ? 1_733_000_000.25 : -0.5)]
        }
        rows.append([.text("null row"), .null, .integer(0), .real(0)])
        let written = try db.transaction { try db.insertRows(rows, into: "scratch (k, t, n, d)", then: "ON CONFLICT DO NOTHING") }
        #expect(written == rows.count)
        // Again: nothing new, nothing counted.
        #expect(try db.transaction { try db.insertRows(rows, into: "scratch (k, t, n, d)", then: "ON CONFLICT DO NOTHING") } == 0)
        var read: [String: (t: String?, n: Int64, d: Double)] = [:]
        // More keys than one SQLite list holds, the awkward ones among them.
        let keys = rows.compactMap { if case .text(let k) = $0[0] { return k } else { return nil } } + (0..<700).map { "absent \($0)" }
        try db.inLists(keys) { list, values in
            for row in try db.prepare("SELECT k, t, n, d FROM scratch WHERE k IN (\(list))").rows(values, { $0 }) {
                read[row.text(0) ?? ""] = (row.text(1), row.int(2), row.double(3))
            }
        }
        #expect(read.count == rows.count)
        for (index, text) in awkward.enumerated() {
            let got = read["k\(index) \(text)"]
            #expect(got?.t == text, "value \(index): \(String(describing: got?.t)) for \(text)")
            #expect(got?.n == (index % 2 == 0 ? Int64.max : Int64.min))
            #expect(got?.d == (index % 2 == 0 ? 1_733_000_000.25 : -0.5))
        }
        #expect(read["null row"].map { $0.t == nil } == true)
    }

    /// Statements sent together (a lookup's two reads, one round trip in PostgreSQL's pipeline
    /// mode): each one's rows, in order; a failing one's error thrown, and the connection still
    /// answering after it (a pipeline left half read would refuse every later statement).
    @Test(arguments: Store.allCases) func statementsSentTogetherAnswerInOrderAndFailCleanly(store: Store) throws {
        let (registry, done) = try Self.registry(store)
        defer { done() }
        let db = try #require(registry as? SQLRegistry).db
        let answers = try db.together([("SELECT 1, 'a'", []), ("SELECT CAST(?1 AS TEXT) || 'b'", [.text("x")]), ("SELECT 3 WHERE 1 = 0", [])])
        #expect(answers.count == 3 && answers[0].first?.text(1) == "a" && answers[1].first?.text(0) == "xb" && answers[2].isEmpty, "\(answers)")
        #expect(throws: (any Error).self) { try db.together([("SELECT 1", []), ("SELECT * FROM no_such_table", []), ("SELECT 2", [])]) }
        #expect(try db.together([("SELECT 5", []), ("SELECT 6", [])]).map { $0.first?.int(0) } == [5, 6])
        #expect(try db.prepare("SELECT 7").first([]) { $0.int(0) } == 7)
        // The server ends the session under it (a restart, a failover, an administrator): the
        // next statements sent together find a new session and answer.
        guard store == .postgresql, let pg = db as? PostgreSQLConnection else { return }
        let pid = try #require(try pg.prepare("SELECT pg_backend_pid()").first([]) { $0.text(0) } ?? nil)
        let other = try PostgreSQLConnection(pg.conninfo)
        #expect(try other.prepare("SELECT pg_terminate_backend(CAST(?1 AS integer))").first([.text(pid)]) { $0.text(0) } == "t")
        #expect(try db.together([("SELECT 8", []), ("SELECT 9", [])]).map { $0.first?.int(0) } == [8, 9])
        #expect(try pg.prepare("SELECT pg_backend_pid()").first([]) { $0.text(0) } ?? nil != pid)
    }

    /// A database machine that goes silent (lost, not refusing) must fail a statement within
    /// seconds, not when Linux gives up on the connection: the registry's connections carry
    /// keepalive, user-timeout and connect limits where the connection string names none, and
    /// the operator's own words win where it does.
    @Test func theRegistrysConnectionLimitsApplyWhereTheConnectionStringNamesNone() throws {
        let server = try Self.throwawayPostgreSQL(in: NSTemporaryDirectory() + "consort-registry-\(UUID().uuidString)")
        defer { server.stop() }
        let plain = try PostgreSQLConnection(server.conninfo)
        #expect(plain.setting("keepalives_idle") == "5" && plain.setting("keepalives_count") == "3" && plain.setting("tcp_user_timeout") == "10000")
        #expect(plain.setting("connect_timeout") == "10" && plain.setting("dbname") == "consort")
        let own = try PostgreSQLConnection(server.conninfo + " keepalives_idle=60 connect_timeout=3")
        #expect(own.setting("keepalives_idle") == "60" && own.setting("connect_timeout") == "3" && own.setting("keepalives_interval") == "2")
        #expect(try own.prepare("SELECT 1").first([]) { $0.int(0) } == 1)
    }

    /// A NUL in an announced field: PostgreSQL cannot keep one in text, and it would end the C
    /// string carrying a whole column of the batch. Free text loses it; an identifier with one
    /// is refused, the field named.
    @Test func aNULInAnAnnouncedFieldIsRemovedFromTextAndRefusedInAnIdentifier() throws {
        let cleaned = try CoordinatorService.holding(["study": "1.2.3", "description": "CT\u{0} CHEST", "nhs": Self.first])
        #expect(cleaned.description == "CT CHEST")
        #expect(throws: CoordinatorService.FieldRefusal.self) {
            try CoordinatorService.holding(["study": "1.2.3", "patient": ["id": "P\u{0}1"], "nhs": Self.first])
        }
    }

    /// The coordinator's file names each trust's exception to where the NHS number is; a place
    /// it does not know is an error at its line and column, not a silent default.
    @Test func nhsNumberExceptionsAreReadAndCheckedFromTheConfiguration() {
        let base = "listen 0.0.0.0:8444\ncertificate /c.pem\nkey /c.key\nca /ca.pem\nregistry /r.sqlite\nrules /rules\n"
        let good = CoordinatorConfigurationParser.parse(base + "nhs-number ESHT from OtherPatientIDsSequence\nnhs-number QVH from OtherPatientIDs\n", file: "c.conf")
        #expect(good.errors.isEmpty, "\(good.report())")
        #expect(good.configuration?.nhsNumberSources == ["ESHT": .otherPatientIDs, "QVH": .otherPatientIDValues])
        let bad = CoordinatorConfigurationParser.parse(base + "nhs-number QVH from PatientName\n", file: "c.conf")
        #expect(bad.report().contains("c.conf:7:21") && bad.report().contains("not \"PatientName\""), "\(bad.report())")
    }

    /// The totals (and each trust's count, which every announcement answers with) are kept in
    /// step with the rows rather than counted: re-announcing changes nothing, withdrawing
    /// subtracts, and a registry from before the totals were kept is counted when opened.
    @Test(arguments: Store.allCases) func theTotalsAreKeptInStepAndCountedOnceForAnOlderRegistry(store: Store) throws {
        let (registry, done) = try Self.registry(store)
        defer { done() }
        let batch = [Self.holding("5.1"), Self.holding("5.2"), Self.holding("5.3", patient: "P2", nhs: Self.second, birth: "19800101")]
        _ = try registry.announce(trust: "RSCH", holdings: batch, now: 1)
        _ = try registry.announce(trust: "RSCH", holdings: batch, now: 2)
        let uhsx = try registry.announce(trust: "UHSX", holdings: [Self.holding("5.1", patient: "U1", issuer: "UHSX")], now: 3)
        #expect(uhsx.trustStudies == 1)
        #expect(try registry.withdraw(trust: "RSCH", studies: ["5.2", "5.2", "6.6"]) == 1)
        #expect(try registry.studyCount(trust: "RSCH") == 2 && registry.studyCount(trust: "UHSX") == 1 && registry.studyCount(trust: "QVH") == 0)
        #expect(try registry.totals() == (patients: 2, studies: 3, locations: 3))
        let sql = try #require(registry as? SQLRegistry)
        if store == .postgresql {
            // Every statement bounded: a server that hangs fails the request, not the coordinator.
            #expect(try sql.db.prepare("SHOW statement_timeout").first([]) { $0.text(0) } == "30s")
        } else {
            // A new SQLite registry's pages are 16 KB (fewer writes for the same rows at scale).
            #expect(try sql.db.prepare("PRAGMA page_size").first([]) { $0.int(0) } == 16_384)
        }
        // As if made before the totals were kept.
        try sql.db.execute("DELETE FROM registry_counts")
        #expect(try registry.totals() == (patients: 0, studies: 0, locations: 0))
        try sql.countIfUncounted()
        #expect(try registry.totals() == (patients: 2, studies: 3, locations: 3))
        #expect(try registry.studyCount(trust: "RSCH") == 2 && registry.studyCount(trust: "UHSX") == 1)
        // Counted once: a second open counts nothing again, and announcing goes on from there.
        try sql.countIfUncounted()
        #expect(try registry.announce(trust: "RSCH", holdings: [Self.holding("5.4")], now: 4).trustStudies == 3)
        #expect(try registry.totals() == (patients: 2, studies: 4, locations: 4))
    }

    /// PostgreSQL plans from statistics, and a registry that grew from nothing has none until
    /// autovacuum's next visit: a lookup then scanned every location (45 ms at 100,000 studies).
    /// The coordinator analyses as the studies double, so a lookup right after a first load of
    /// 1,200 studies already goes through the index by patient.
    @Test func postgreSQLPlansLookupsFromStatisticsKeptUpAsTheRegistryGrows() throws {
        let (registry, done) = try Self.registry(.postgresql)
        defer { done() }
        for batch in 0..<3 {
            let holdings = (0..<400).map { index -> (Holding, NHSIdentity.Resolution) in
                let number = batch * 400 + index
                let nhs = NHSNumber.testNumber(seed: UInt64(number / 2)).digits
                return Self.holding("7.\(number)", patient: "P\(number / 2)", nhs: nhs)
            }
            _ = try registry.announce(trust: "RSCH", holdings: holdings, now: Double(batch))
        }
        let sql = try #require(registry as? SQLRegistry)
        // The statistics describe the tables as they are now, not as they were when empty.
        let rows = try sql.db.prepare("SELECT relname, reltuples FROM pg_class WHERE relname IN ('patient_studies', 'study_keys') ORDER BY relname").rows([]) { ($0.text(0) ?? "", $0.double(1)) }
        #expect(rows.count == 2 && rows.allSatisfy { $0.1 >= 1_000 }, "\(rows)")
        #expect(sql.lastStatisticsProblem == nil)
        let nhs = NHSNumber.testNumber(seed: 7).digits
        let plan = try sql.db.prepare("EXPLAIN SELECT \(SQLRegistry.studyColumns) FROM patient_studies s WHERE s.nhs = ?1").rows([.text(nhs)]) { $0.text(0) ?? "" }.joined(separator: "\n")
        #expect(!plan.contains("Seq Scan"), "\(plan)")
        #expect(try registry.patientStudies(nhs: nhs).studies.count == 2)
    }

    /// The number the agent read (by the default place) is a fallback only for trusts with no
    /// exception: where a trust keeps its NHS numbers elsewhere, a local PatientID that passes
    /// Modulus 11 must not become one.
    @Test func theAgentsReadingIsNotUsedWhereATrustKeepsItsNumberElsewhere() {
        var holding = Holding(study: "4.1")
        holding.patient = NHSIdentity.Identifier(id: "9990000018", issuer: "NHS")
        holding.nhs = "9990000018"
        #expect(CoordinatorService.resolve(holding, exception: nil) == .valid(NHSNumber("9990000018")!))
        #expect(CoordinatorService.resolve(holding, exception: .otherPatientIDs) == .absent)
        holding.otherIDs = [NHSIdentity.Identifier(id: "9990000026", issuer: "NHS")]
        #expect(CoordinatorService.resolve(holding, exception: .otherPatientIDs) == .valid(NHSNumber("9990000026")!))
        // OtherPatientIDs (0010,1000), only where a trust's exception names it.
        var attribute = Holding(study: "4.3")
        attribute.patient = NHSIdentity.Identifier(id: "QVH00042", issuer: "QVH")
        attribute.otherPatientIDValues = ["9990000026", "OLD123"]
        #expect(CoordinatorService.resolve(attribute, exception: .otherPatientIDValues) == .valid(NHSNumber("9990000026")!))
        #expect(CoordinatorService.resolve(attribute, exception: nil) == .absent)
        attribute.otherPatientIDValues = ["OLD123", "9990000026"]
        #expect(CoordinatorService.resolve(attribute, exception: .otherPatientIDValues) == .invalid("OLD123"), "the first value, never a guess among them")
        var unlabelled = Holding(study: "4.2")
        unlabelled.nhs = "1234567890"
        #expect(CoordinatorService.resolve(unlabelled, exception: nil) == .invalid("1234567890"))
    }

    /// A study first announced without an NHS number, then given one by another trust, is
    /// found under the patient with both its locations; announced again without the number, it
    /// stays there.
    @Test(arguments: Store.allCases) func aStudyGivenItsNHSNumberLaterIsFoundWithEveryLocation(store: Store) throws {
        let (registry, done) = try Self.registry(store)
        defer { done() }
        _ = try registry.announce(trust: "RSCH", holdings: [Self.holding("8.1", nhs: nil), Self.holding("8.2")], now: 1)
        #expect(try registry.patientStudies(nhs: Self.first).studies.map(\.uid) == ["8.2"])
        _ = try registry.announce(trust: "UHSX", holdings: [Self.holding("8.1", patient: "U1", issuer: "UHSX")], now: 2)
        let found = try registry.patientStudies(nhs: Self.first).studies
        #expect(found.map(\.uid) == ["8.1", "8.2"] && found[0].locations.map(\.trust) == ["RSCH", "UHSX"], "\(found)")
        _ = try registry.announce(trust: "RSCH", holdings: [Self.holding("8.1", nhs: nil, instances: 5)], now: 3)
        let again = try registry.patientStudies(nhs: Self.first).studies
        #expect(again.first?.locations.map(\.trust) == ["RSCH", "UHSX"] && again.first?.instances == 5, "\(again)")
    }

    /// Descriptive header values longer than DICOM allows are clipped to 64 characters as they
    /// arrive; a study date, which the index by patient holds (PostgreSQL refuses an entry of a
    /// few kilobytes), must be a real date or the batch is refused (AnnouncementFieldTests).
    @Test(arguments: Store.allCases) func overlongHeaderValuesAreClippedNotRefused(store: Store) throws {
        let (registry, done) = try Self.registry(store)
        defer { done() }
        // Random, so PostgreSQL cannot compress it under its limit (a repeated letter it can).
        let alphabet = Array("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789éüøß^&*")
        let long = String((0..<10_000).map { _ in alphabet.randomElement()! })
        let holding = try CoordinatorService.holding(["study": "1.2.3", "nhs": Self.first, "description": long, "bodyPart": long, "accession": long, "date": "20261128",
                                                      "modalities": Array(repeating: long, count: 40), "instances": 1, "bytes": 1])
        #expect(throws: CoordinatorService.FieldRefusal.self) { try CoordinatorService.holding(["study": "1.2.3", "date": long]) }
        #expect(holding.description?.count == 64 && holding.accession?.count == 64 && holding.modalities.count == 16 && holding.modalities.allSatisfy { $0.count == 16 })
        let outcome = try registry.announce(trust: "RSCH", holdings: [(holding, .valid(NHSNumber(Self.first)!))], now: 1)
        #expect(outcome.recorded == 1 && outcome.invalid.isEmpty)
        let stored = try registry.patientStudies(nhs: Self.first).studies.first
        #expect(stored?.description == String(long.prefix(64)) && stored?.date == "20261128", "\(String(describing: stored))")
    }
    /// A registry made before a study's holdings were kept in its row by patient (a `studies`
    /// table with a row id, `locations` by study, and no totals kept yet) is moved to the new
    /// layout when the coordinator opens it: the same answers after, a study without a patient
    /// still found by UID and moved under its patient when one is announced, and a second
    /// open changes nothing.
    @Test(arguments: Store.allCases) func aRegistryInTheEarlierLayoutIsMovedWithTheSameAnswers(store: Store) throws {
        let folder = NSTemporaryDirectory() + "consort-registry-\(UUID().uuidString)"
        let open: () throws -> SQLRegistry
        let older: RegistryConnection
        var done: () -> Void = { try? FileManager.default.removeItem(atPath: folder) }
        switch store {
        case .sqlite:
            try FileManager.default.createDirectory(atPath: folder, withIntermediateDirectories: true)
            older = SQLiteConnection(try Database(path: folder + "/registry.sqlite"))
            open = { try SQLRegistry.sqlite(path: folder + "/registry.sqlite") }
        case .postgresql:
            let server = try Self.throwawayPostgreSQL(in: folder)
            done = server.stop
            older = try PostgreSQLConnection(server.conninfo)
            open = { try SQLRegistry.postgresql(server.conninfo) }
        }
        defer { done() }
        // The earlier layout, as its coordinator wrote it (these type names mean the same to both stores).
        try older.execute("""
            CREATE TABLE patients (nhs TEXT PRIMARY KEY, sex TEXT, birth_date TEXT, demographics_from TEXT, first_seen DOUBLE PRECISION NOT NULL);
            CREATE TABLE studies (uid TEXT PRIMARY KEY, nhs TEXT, announced_by TEXT NOT NULL, study_date TEXT, modalities TEXT, body_part TEXT,
                description TEXT, accession TEXT, instances BIGINT NOT NULL, bytes BIGINT NOT NULL, updated DOUBLE PRECISION NOT NULL);
            CREATE INDEX studies_by_patient ON studies(nhs, study_date);
            CREATE TABLE locations (study TEXT NOT NULL, trust TEXT NOT NULL, complete INTEGER NOT NULL, instances BIGINT NOT NULL,
                since DOUBLE PRECISION NOT NULL, PRIMARY KEY (study, trust));
            INSERT INTO patients VALUES ('\(Self.first)', 'F', '19700101', 'RSCH', 1);
            INSERT INTO studies VALUES ('1.1', '\(Self.first)', 'RSCH', '20250101', 'CT', 'CHEST', 'CT chest', 'A1', 100, 5000, 1),
                ('1.2', '\(Self.first)', 'UHSX', '20260101', 'MR', NULL, NULL, NULL, 20, 900, 2),
                ('1.3', NULL, 'RSCH', '20240101', 'CR', NULL, NULL, NULL, 5, 50, 1.5),
                ('1.4', '\(Self.first)', 'RSCH', '20230101', 'CT', NULL, NULL, NULL, 7, 70, 1);
            INSERT INTO locations VALUES ('1.1', 'RSCH', 1, 100, 1), ('1.1', 'UHSX', 0, 40, 3.25), ('1.2', 'UHSX', 1, 20, 2), ('1.3', 'RSCH', 1, 5, 1.5);
            """)
        let registry = try open()
        #expect(try !registry.db.hasTable("locations") && !registry.db.hasTable("studies"))
        let studies = try registry.patientStudies(nhs: Self.first).studies
        #expect(studies.map(\.uid) == ["1.2", "1.1"], "the study nobody holds is not shown, the one without a patient not under one")
        let chest = try #require(studies.last)
        #expect(chest.description == "CT chest" && chest.bodyPart == "CHEST" && chest.accession == "A1" && chest.modalities == ["CT"] && chest.instances == 100 && chest.bytes == 5000)
        #expect(chest.locations.map { "\($0.trust) \($0.complete) \($0.instances) \($0.since)" } == ["RSCH true 100 1.0", "UHSX false 40 3.25"])
        let unknown = try #require(try registry.study(uid: "1.3"))
        #expect(unknown.nhs == nil && unknown.locations.map(\.trust) == ["RSCH"])
        // The totals were never kept: counted from the moved rows.
        #expect(try registry.totals() == (patients: 1, studies: 4, locations: 4))
        #expect(try registry.studyCount(trust: "RSCH") == 2 && registry.studyCount(trust: "UHSX") == 2)
        // The study without a patient, announced with one: found under it with both holdings.
        _ = try registry.announce(trust: "UHSX", holdings: [Self.holding("1.3", patient: "U1", issuer: "UHSX")], now: 4)
        let after = try registry.patientStudies(nhs: Self.first).studies
        #expect(after.map(\.uid) == ["1.2", "1.1", "1.3"] && after[2].locations.map(\.trust) == ["RSCH", "UHSX"] && after[2].modalities == ["CR"], "\(after)")
        // Opened again: nothing moved twice, nothing counted twice.
        let again = try open()
        #expect(try again.patientStudies(nhs: Self.first).studies.map(\.uid) == ["1.2", "1.1", "1.3"])
        #expect(try again.totals() == (patients: 1, studies: 4, locations: 5))
    }

    /// Two coordinators on one PostgreSQL (what the README offers for a standby, or a second
    /// coordinator during an upgrade) announcing the same studies at the same moment from two
    /// trusts. An announcement reads a study's row, decides, and writes back every trust holding
    /// it; without the writers' lock each could read the row before the other wrote, and write
    /// back its own trust only, so that a trust holding a study would silently vanish from it —
    /// a prior never fetched. Every study must end held by both.
    @Test func twoCoordinatorsOnOnePostgreSQLAnnouncingTheSameStudiesKeepEveryTrust() throws {
        let folder = NSTemporaryDirectory() + "consort-registry-\(UUID().uuidString)"
        let server = try Self.throwawayPostgreSQL(in: folder)
        defer { server.stop() }
        let one = try SQLRegistry.postgresql(server.conninfo), other = try SQLRegistry.postgresql(server.conninfo)
        let studies = (1...300).map { "8.\($0)" }
        final class Failures: @unchecked Sendable {
            let lock = NSLock()
            var list: [String] = []
            func add(_ text: String) { lock.withLock { list.append(text) } }
        }
        let failures = Failures()
        let ready = DispatchGroup(), go = DispatchSemaphore(value: 0), finished = DispatchGroup()
        for (registry, trust) in [(one, "RSCH"), (other, "UHSX")] {
            ready.enter()
            finished.enter()
            Thread {
                defer { finished.leave() }
                ready.leave()
                go.wait()
                // One study a transaction: as many chances as there are studies for the two to
                // interleave between a read and its write.
                for study in studies {
                    do {
                        _ = try registry.announce(trust: trust, holdings: [Self.holding(study, patient: "\(trust)-\(study)", issuer: trust)], now: 1)
                    } catch {
                        failures.add("\(trust) \(study): \(error)")
                    }
                }
            }.start()
        }
        ready.wait()
        go.signal()
        go.signal()
        #expect(finished.wait(timeout: .now() + 120) == .success, "the two announcers did not finish within 120 s")
        #expect(failures.list.isEmpty, "\(failures.list.prefix(3))")
        var lost: [String] = []
        for study in studies where try one.study(uid: study)?.locations.map(\.trust).sorted() != ["RSCH", "UHSX"] { lost.append(study) }
        let example = try lost.first.map { try one.study(uid: $0)?.locations.map(\.trust) ?? [] } ?? []
        #expect(lost.isEmpty, "\(lost.count) of \(studies.count) studies lost a trust, e.g. \(lost.prefix(3)), the first held by \(example)")
        #expect(try other.totals() == (patients: 1, studies: 300, locations: 600))
    }

    /// A move that fails half-way (a statement refused, as a killed process or a full disk
    /// would end it) leaves the earlier tables whole and the new ones empty; the next open moves
    /// everything.
    @Test func aMoveThatFailsHalfWayLeavesTheEarlierTablesWhole() throws {
        let folder = NSTemporaryDirectory() + "consort-registry-\(UUID().uuidString)"
        try FileManager.default.createDirectory(atPath: folder, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(atPath: folder) }
        let path = folder + "/registry.sqlite"
        let inner = SQLiteConnection(try Database(path: path))
        // 12,000 studies, the study the test store refuses among the last: the move fails after
        // two of its pages of 5,000 have been written into the new tables.
        let values = (0..<12_000).map { "('2.25.\(100_000 + $0)', '\(Self.first)', 'RSCH', '20250101', 'CT', NULL, NULL, NULL, 3, 300, 1)" }.joined(separator: ", ")
        try inner.execute("""
            CREATE TABLE studies (uid TEXT PRIMARY KEY, nhs TEXT, announced_by TEXT NOT NULL, study_date TEXT, modalities TEXT, body_part TEXT,
                description TEXT, accession TEXT, instances BIGINT NOT NULL, bytes BIGINT NOT NULL, updated DOUBLE PRECISION NOT NULL);
            CREATE TABLE locations (study TEXT NOT NULL, trust TEXT NOT NULL, complete INTEGER NOT NULL, instances BIGINT NOT NULL,
                since DOUBLE PRECISION NOT NULL, PRIMARY KEY (study, trust));
            INSERT INTO studies VALUES \(values), ('9.9.9', '\(Self.first)', 'RSCH', '20250101', 'CT', NULL, NULL, NULL, 3, 300, 1);
            INSERT INTO locations SELECT uid, 'RSCH', 1, 3, 1 FROM studies;
            """)
        try inner.execute(Schema.sqlite)
        let failing = SQLRegistry(GatedConnection(inner))
        #expect(throws: RegistryError.self) { try failing.moveToPatientRows(log: Logger("test")) }
        #expect(try inner.hasTable("locations") && inner.hasTable("studies"))
        #expect(try inner.prepare("SELECT count(*) FROM locations").first([]) { $0.int(0) } == 12_001)
        #expect(try inner.prepare("SELECT count(*) FROM patient_studies").first([]) { $0.int(0) } == 0)
        // Opened as the coordinator opens it: everything moved.
        let registry = try SQLRegistry.sqlite(path: path)
        #expect(try !registry.db.hasTable("locations"))
        #expect(try registry.totals() == (patients: 0, studies: 12_001, locations: 12_001))
        #expect(try registry.study(uid: "9.9.9")?.locations.map(\.trust) == ["RSCH"])
    }

    /// A study's holdings as its row keeps them: in the order lookups answer, each field back as
    /// it was, whatever a trust's name holds; a holding announced again keeps its `since`.
    @Test func holdingsKeptInTheStudysRowReadBackAsWritten() {
        var held: [Location] = []
        #expect(RegistryHoldings.hold(&held, trust: "UHSX", complete: true, instances: 3, now: 1_733_000_000.123456))
        #expect(RegistryHoldings.hold(&held, trust: "Royal\tSurrey 2", complete: false, instances: 1, now: 5))
        #expect(!RegistryHoldings.hold(&held, trust: "UHSX", complete: false, instances: 4, now: 9))
        let read = RegistryHoldings.decode(RegistryHoldings.encode(held))
        #expect(read.map(\.trust) == ["Royal\tSurrey 2", "UHSX"])
        #expect(read.map(\.since) == [5, 1_733_000_000.123456] && read.map(\.complete) == [false, false] && read.map(\.instances) == [1, 4])
        #expect(RegistryHoldings.decode("").isEmpty && RegistryHoldings.decode(nil).isEmpty && RegistryHoldings.encode([]) == "")
    }
}

/// The registry's store with a gate and a fault, for the group commit: counts transactions,
/// can hold the next one open until released, and refuses any statement naming study 9.9.9.
final class GatedConnection: RegistryConnection, @unchecked Sendable {
    let inner: RegistryConnection
    private let lock = NSLock()
    private var counted = 0, holdNext = false, holding = false
    private let gate = DispatchSemaphore(value: 0)
    init(_ inner: RegistryConnection) { self.inner = inner }

    var transactions: Int { lock.withLock { counted } }
    var isHolding: Bool { lock.withLock { holding } }
    func holdTheNextTransaction() { lock.withLock { holdNext = true } }
    func release() { gate.signal() }

    func prepare(_ sql: String) throws -> RegistryStatement {
        let statement = try inner.prepare(sql)
        return RegistryStatement { values in
            if values.contains(.text("9.9.9")) { throw RegistryError("refused by the test: study 9.9.9") }
            return try statement.execute(values)
        }
    }
    var changes: Int { inner.changes }
    func execute(_ script: String) throws { try inner.execute(script) }
    func readTransaction<T>(_ body: () throws -> T) throws -> T { try inner.readTransaction(body) }
    func hasTable(_ name: String) throws -> Bool { try inner.hasTable(name) }
    func transaction<T>(_ body: () throws -> T) throws -> T {
        let hold = lock.withLock { () -> Bool in
            counted += 1
            defer { holdNext = false }
            holding = holdNext
            return holdNext
        }
        return try inner.transaction {
            if hold {
                gate.wait()
                lock.withLock { holding = false }
            }
            return try body()
        }
    }
}

extension RegistryTests {
    /// Announcements that arrive while one is being written are written together in the next
    /// transaction (group commit), each decided as if it came alone and in order; if one of them
    /// cannot be written, it alone fails and the others are written.
    @Test func announcementsArrivingTogetherAreWrittenInOneTransactionEachAsIfAlone() throws {
        let folder = NSTemporaryDirectory() + "consort-registry-\(UUID().uuidString)"
        try FileManager.default.createDirectory(atPath: folder, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(atPath: folder) }
        let inner = SQLiteConnection(try Database(path: folder + "/registry.sqlite"))
        try inner.execute(Schema.sqlite)
        let store = GatedConnection(inner)
        let registry = SQLRegistry(store)

        /// Announces each batch on its own thread while a first announcement holds the writer,
        /// and waits until all are queued behind it before letting it go.
        func together(_ first: (String, [(Holding, NHSIdentity.Resolution)]), then batches: [(String, [(Holding, NHSIdentity.Resolution)])]) throws -> [Result<AnnounceOutcome, Error>] {
            let results = ResultBox(count: batches.count + 1)
            let group = DispatchGroup()
            store.holdTheNextTransaction()
            // Released whatever happens: a check that fails below must not leave the first
            // announcement's thread waiting at the gate for ever, holding the writer.
            var released = false
            defer { if !released { store.release() } }
            for (index, batch) in ([first] + batches).enumerated() {
                group.enter()
                Thread {
                    results.set(index, Result { try registry.announce(trust: batch.0, holdings: batch.1, now: Double(10 + index)) })
                    group.leave()
                }.start()
                // In order: the first holds the writer, then each waits behind the one before.
                let deadline = Date().addingTimeInterval(20)
                if index == 0 {
                    while !store.isHolding, Date() < deadline { Thread.sleep(forTimeInterval: 0.005) }
                    try #require(store.isHolding, "the first announcement is being written")
                } else {
                    while registry.waitingCount < index, Date() < deadline { Thread.sleep(forTimeInterval: 0.005) }
                    try #require(registry.waitingCount == index, "announcement \(index) waits")
                }
            }
            store.release()
            released = true
            #expect(group.wait(timeout: .now() + 30) == .success)
            return results.values
        }

        let before = store.transactions
        let outcomes = try together(("RSCH", [Self.holding("1.1")]), then: [
            ("UHSX", [Self.holding("1.1", patient: "U1", issuer: "UHSX"), Self.holding("2.1", patient: "U2", issuer: "UHSX", nhs: Self.second, birth: "19800101")]),
            ("RSCH", [Self.holding("1.2"), Self.holding("1.1")]),
            ("UHSX", [Self.holding("2.1", patient: "U2", issuer: "UHSX", nhs: Self.second, birth: "19800101")]),
        ]).map { try $0.get() }
        #expect(store.transactions - before == 2, "the first alone, the three waiting in one")
        // Each decided in turn: the counts each caller heard are those of its own moment.
        #expect(outcomes.map(\.trustStudies) == [1, 2, 2, 2] && outcomes.map(\.newStudies) == [1, 1, 1, 0], "\(outcomes)")
        #expect(try registry.totals() == (patients: 2, studies: 3, locations: 4))
        #expect(try registry.patientStudies(nhs: Self.first).studies.map { $0.locations.map(\.trust) } == [["RSCH", "UHSX"], ["RSCH"]])

        // One that cannot be written fails alone; the others of its group are written.
        let second = store.transactions
        let mixed = try together(("ASPH", [Self.holding("3.1", patient: "A1", issuer: "ASPH")]), then: [
            ("QVH", [Self.holding("4.1", patient: "Q1", issuer: "QVH")]),
            ("QVH", [Self.holding("9.9.9", patient: "Q1", issuer: "QVH")]),
            ("ESHT", [Self.holding("5.1", patient: "E1", issuer: "ESHT")]),
        ])
        #expect(store.transactions - second == 1 + 1 + 3, "the group failed, then each was tried alone")
        #expect((try? mixed[0].get()) != nil && (try? mixed[1].get()) != nil && (try? mixed[3].get()) != nil)
        #expect((try? mixed[2].get()) == nil, "the announcement naming the refused study fails")
        #expect(try registry.studyCount(trust: "QVH") == 1 && registry.studyCount(trust: "ESHT") == 1 && registry.studyCount(trust: "ASPH") == 1)
        #expect(try registry.patientStudies(nhs: Self.first).studies.map(\.uid) == ["1.1", "1.2", "3.1", "4.1", "5.1"])

        // More waiting than one transaction takes (three of 1,500 studies against 4,000): two
        // transactions after the first, and every caller answered. (Which waiting thread gets
        // the writer first is the system's choice: here usually the first to wait; the writer
        // writes group after group until its own announcement is done, whichever it is.)
        func many(_ prefix: String) -> [(Holding, NHSIdentity.Resolution)] {
            (0..<1_500).map { Self.holding("\(prefix).\($0)", patient: "P\(prefix)", issuer: "RSCH", nhs: Self.second, birth: "19800101") }
        }
        let third = store.transactions
        let large = try together(("RSCH", [Self.holding("6.1")]), then: [("RSCH", many("7")), ("RSCH", many("8")), ("RSCH", many("9"))])
        #expect(store.transactions - third == 1 + 2, "the first, then two groups")
        #expect(large.compactMap { try? $0.get().trustStudies } == [3, 1_503, 3_003, 4_503], "\(large)")
    }
}

final class ResultBox: @unchecked Sendable {
    private let lock = NSLock()
    private var stored: [Result<AnnounceOutcome, Error>?]
    init(count: Int) { stored = Array(repeating: nil, count: count) }
    func set(_ index: Int, _ value: Result<AnnounceOutcome, Error>) { lock.withLock { stored[index] = value } }
    var values: [Result<AnnounceOutcome, Error>] { lock.withLock { stored.map { $0 ?? .failure(RegistryError("no answer")) } } }
}
