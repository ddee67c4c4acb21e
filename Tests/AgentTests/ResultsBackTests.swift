import DICOM
import Foundation
import SQLite
import Spool
import Testing

@testable import Agent

/// Results back (issue 29), the decisions: which objects a peer sends are results for a study
/// this trust sent it (`ResultCheck`), and what the spool remembers — what was sent, which
/// results came, which a rule expected and are overdue (under a clock the test sets: each call
/// is given its time) — and that a result is never sent back to the peer it came from.
@Suite("Results back")
struct ResultsBackTests {
    static let sr = "1.2.840.10008.5.1.4.1.1.88.22"
    static let ct = "1.2.840.10008.5.1.4.1.1.2"
    static let sent = ResultCheck.SentStudy(study: "1.2.826.0.1.7", patientID: "RSCH0001", issuer: "RSCH", rule: "AI", purpose: "ai-triage")

    static func header(_ values: [DICOM.Tag: String], evidence: [String] = [], referencedStudy: [String] = []) -> DataSet {
        var data = DataSet()
        for (tag, value) in values { data.set(DICOMWriter.textElement(tag, DataDictionary.entry(for: tag)!.vr, value)) }
        if !evidence.isEmpty {
            let items = evidence.map { study -> DataSet in
                var item = DataSet()
                item.set(DICOMWriter.textElement(.studyInstanceUID, .UI, study))
                return item
            }
            data.set(DataElement(tag: DICOM.Tag(0x0040, 0xA375), vr: .SQ, length: nil, value: .sequence(items)))
        }
        if !referencedStudy.isEmpty {
            let items = referencedStudy.map { study -> DataSet in
                var item = DataSet()
                item.set(DICOMWriter.textElement(DICOM.Tag(0x0008, 0x1150), .UI, "1.2.840.10008.3.1.2.3.1"))
                item.set(DICOMWriter.textElement(DICOM.Tag(0x0008, 0x1155), .UI, study))
                return item
            }
            data.set(DataElement(tag: DICOM.Tag(0x0008, 0x1110), vr: .SQ, length: nil, value: .sequence(items)))
        }
        return data
    }

    /// Held at RSCH: the study sent, and another patient's study never sent anywhere.
    static let heldHere: Set<String> = [sent.study, "2.25.4242"]

    static func decide(_ data: DataSet, sentAs purpose: String = "ai-triage") -> ResultCheck.Verdict {
        var pushed = sent
        pushed.purpose = purpose
        return ResultCheck.decide(
            data, from: "AI-CXR", trust: "RSCH", sent: { $0 == sent.study ? [pushed] : [] }, resultsBack: { $0 == "ai-triage" },
            heldHere: { heldHere.contains($0) })
    }

    @Test func aReportInTheStudySentOrNamingItInItsEvidenceIsAResult() {
        let same = Self.header([.sopClassUID: Self.sr, .studyInstanceUID: Self.sent.study, .patientID: "RSCH0001", DICOM.Tag(0x0010, 0x0021): "RSCH"])
        #expect(Self.decide(same) == .accepted(Self.sent, .sameStudy))
        // A report in a study of its own that names the study sent in its evidence.
        let evidence = Self.header([.sopClassUID: Self.sr, .studyInstanceUID: "2.25.99", .patientID: "RSCH0001"], evidence: ["2.25.98", Self.sent.study])
        #expect(Self.decide(evidence) == .accepted(Self.sent, .evidence))
        let referenced = Self.header([.sopClassUID: "1.2.840.10008.5.1.4.1.1.66.4", .studyInstanceUID: "2.25.99", .patientID: "RSCH0001"], referencedStudy: [Self.sent.study])
        #expect(Self.decide(referenced) == .accepted(Self.sent, .evidence))
        for kind in ["1.2.840.10008.5.1.4.1.1.11.1", "1.2.840.10008.5.1.4.1.1.7", "1.2.840.10008.5.1.4.1.1.7.4", "1.2.840.10008.5.1.4.1.1.104.1", "1.2.840.10008.5.1.4.1.1.88.59"] {
            #expect(Self.decide(Self.header([.sopClassUID: kind, .studyInstanceUID: Self.sent.study, .patientID: "RSCH0001"])) == .accepted(Self.sent, .sameStudy), "\(kind)")
        }
    }

    @Test func anythingElseIsRefusedWithItsReason() {
        func refusal(_ data: DataSet) -> String? {
            if case .refused(let why) = Self.decide(data) { return why }
            return nil
        }
        // A study never sent to the peer, with nothing in its evidence either.
        let unsent = refusal(Self.header([.sopClassUID: Self.sr, .studyInstanceUID: "2.25.5", .patientID: "RSCH0001"], evidence: ["2.25.6"]))
        #expect(unsent?.contains("refers to no study RSCH sent to AI-CXR: its study 2.25.5; the evidence names 2.25.6") == true, "\(unsent ?? "accepted")")
        // An image is not a result, even in the study sent (an AI must not add acquisitions).
        let image = refusal(Self.header([.sopClassUID: Self.ct, .studyInstanceUID: Self.sent.study, .patientID: "RSCH0001"]))
        #expect(image?.contains("SOP class \(Self.ct) is not a result") == true, "\(image ?? "accepted")")
        // Raw data sits beside segmentations in the UID tree, and is not one.
        #expect(refusal(Self.header([.sopClassUID: "1.2.840.10008.5.1.4.1.1.66", .studyInstanceUID: Self.sent.study, .patientID: "RSCH0001"])) != nil)
        // The study's patient is RSCH0001: a report naming anyone else is refused, never moved.
        let other = refusal(Self.header([.sopClassUID: Self.sr, .studyInstanceUID: Self.sent.study, .patientID: "RSCH0002"]))
        #expect(other?.contains("names patient RSCH0002, but study \(Self.sent.study), which RSCH sent to AI-CXR, is patient RSCH0001 (RSCH)") == true, "\(other ?? "accepted")")
        let otherIssuer = refusal(Self.header([.sopClassUID: Self.sr, .studyInstanceUID: Self.sent.study, .patientID: "RSCH0001", DICOM.Tag(0x0010, 0x0021): "UHSX"]))
        #expect(otherIssuer != nil)
        let nobody = refusal(Self.header([.sopClassUID: Self.sr, .studyInstanceUID: Self.sent.study]))
        #expect(nobody?.contains("names no patient") == true, "\(nobody ?? "accepted")")
        // Naming the study sent in its evidence, but itself in another study held here (another
        // patient's): it would be filed there. Refused.
        let intoAnother = refusal(Self.header([.sopClassUID: Self.sr, .studyInstanceUID: "2.25.4242", .patientID: "RSCH0001"], evidence: [Self.sent.study]))
        #expect(intoAnother?.contains("its own study 2.25.4242 is another study held at RSCH") == true, "\(intoAnother ?? "accepted")")
        // Sent to the peer for a purpose whose agreement does not say results back.
        if case .refused(let why) = Self.decide(Self.header([.sopClassUID: Self.sr, .studyInstanceUID: Self.sent.study, .patientID: "RSCH0001"]), sentAs: "research") {
            #expect(why.contains("went to AI-CXR for research (rule \"AI\"), and no agreement for that purpose says results back"), "\(why)")
        } else {
            Issue.record("a result for a study sent under an agreement without results back was accepted")
        }
    }

    // MARK: - The spool

    static func scratch() -> String { NSTemporaryDirectory() + "consort-results-\(UUID().uuidString).sqlite" }
    static func remove(_ path: String) { for suffix in ["", "-wal", "-shm"] { try? FileManager.default.removeItem(atPath: path + suffix) } }

    static func taken(_ sop: String, study: String, origin: String = "local", expect: Double? = 1800) -> AgentStore.Taken {
        var facts = AgentStore.StudyFacts(uid: study)
        facts.patientID = "RSCH0001"
        facts.patientIssuer = "RSCH"
        return AgentStore.Taken(
            sop: sop, study: facts, series: "1.2.3", path: "/archive/\(study)/\(sop).dcm", size: 1000, mtime: 1, origin: origin,
            jobs: origin == "local" ? [AgentStore.NewJob(kind: .push, destination: "AI-CXR", rule: "AI", purpose: "ai-triage", priority: .normal, expectResult: expect)] : [])
    }

    /// A push of `study` to AI-CXR taken, sent and done at `now`.
    static func pushDone(_ store: AgentStore, study: String, sop: String, now: Double, expect: Double? = 1800) throws -> Int64 {
        try store.record(taken: [taken(sop, study: study, expect: expect)], problems: [], now: now)
        let job = try #require(try store.jobs().first { $0.study == study })
        _ = try store.start(job: job.id, now: now)
        try store.recordAnswers(job: job.id, acknowledged: [sop], refused: [], attempt: (now, now, 1000, "1 stored"))
        #expect(try store.finish(job: job.id, now: now, deliveredLate: nil) == "done")
        return job.id
    }

    @Test func theSpoolRemembersWhatWasSentAndWhichResultsCame() throws {
        let path = Self.scratch()
        defer { Self.remove(path) }
        let store = try AgentStore(path: path)
        #expect(try store.sentStudies("1.2.826.0.1.7", to: "AI-CXR").isEmpty)
        // Queued but nothing acknowledged: not sent yet, so nothing may come back for it.
        try store.record(taken: [Self.taken("1.2.826.0.1.7.1", study: "1.2.826.0.1.7")], problems: [], now: 100)
        #expect(try store.sentStudies("1.2.826.0.1.7", to: "AI-CXR").isEmpty)
        #expect(try store.holdsStudy("1.2.826.0.1.7") && !store.holdsStudy("2.25.404"))
        let job = try #require(try store.jobs().first)
        _ = try store.start(job: job.id, now: 100)
        try store.recordAnswers(job: job.id, acknowledged: ["1.2.826.0.1.7.1"], refused: [], attempt: (100, 101, 1000, "1 stored"))
        #expect(try store.sentStudies("1.2.826.0.1.7", to: "AI-CXR") == [Self.sent])
        #expect(try store.sentStudies("1.2.826.0.1.7", to: "UHSX").isEmpty, "sent to AI-CXR, not to UHSX")
        #expect(try store.finish(job: job.id, now: 101, deliveredLate: nil) == "done")

        try store.recordResults([("2.25.501", "1.2.826.0.1.7", "1.2.826.0.1.7")], from: "AI-CXR", now: 200)
        // The same result again (a retry) is counted once.
        try store.recordResults([("2.25.501", "1.2.826.0.1.7", "1.2.826.0.1.7")], from: "AI-CXR", now: 201)
        try store.recordRefusedResults(2, from: "AI-CXR")
        #expect(try store.resultCounts()["AI-CXR"] == AgentStore.ResultCounts(received: 1, refused: 2, awaited: 0, overdue: 0))
        // Answered: never overdue, however late the clock.
        #expect(try store.resultsNewlyOverdue(now: 1e9).isEmpty)
    }

    @Test func aResultNotBackInTimeIsOverdueOnceAndALateOneClearsIt() throws {
        let path = Self.scratch()
        defer { Self.remove(path) }
        let store = try AgentStore(path: path)
        let waiting = try Self.pushDone(store, study: "2.25.10", sop: "2.25.10.1", now: 1000)
        _ = try Self.pushDone(store, study: "2.25.20", sop: "2.25.20.1", now: 1000, expect: nil)
        #expect(try store.resultCounts()["AI-CXR"]?.awaited == 1, "only the push whose rule expects a result")
        #expect(try store.resultsNewlyOverdue(now: 2799).isEmpty, "1,800 s allowed from delivery at 1,000")
        let due = try store.resultsNewlyOverdue(now: 2800)
        #expect(due == [AgentStore.OverdueResult(job: waiting, study: "2.25.10", peer: "AI-CXR", rule: "AI", due: 2800)])
        #expect(try store.markResultOverdue(job: waiting, now: 2800))
        #expect(try !store.markResultOverdue(job: waiting, now: 2805), "raised once")
        #expect(try store.resultsNewlyOverdue(now: 9000).isEmpty)
        #expect(try store.resultCounts()["AI-CXR"] == AgentStore.ResultCounts(received: 0, refused: 0, awaited: 0, overdue: 1))
        #expect(try store.overdueResults().map(\.study) == ["2.25.10"])
        // The result comes late: the alarm clears, and the late job is named for the log.
        let late = try store.recordResults([("2.25.10.99", "2.25.10", "2.25.10")], from: "AI-CXR", now: 3000)
        #expect(late.map(\.id) == [waiting])
        #expect(try store.resultCounts()["AI-CXR"] == AgentStore.ResultCounts(received: 1, refused: 0, awaited: 0, overdue: 0))
        #expect(try store.overdueResults().isEmpty)
    }

    /// A push that failed with one instance refused for good still delivered the rest: its
    /// result is awaited and alarmed like a done one's. A push reopened by new instances
    /// expects a result afresh, even if one came for what it delivered before.
    @Test func aPartlyRefusedPushIsWatchedAndAReopenedOneExpectsAResultAfresh() throws {
        let path = Self.scratch()
        defer { Self.remove(path) }
        let store = try AgentStore(path: path)
        try store.record(taken: [Self.taken("2.25.40.1", study: "2.25.40"), Self.taken("2.25.40.2", study: "2.25.40")], problems: [], now: 1000)
        let job = try #require(try store.jobs().first)
        _ = try store.start(job: job.id, now: 1000)
        try store.recordAnswers(job: job.id, acknowledged: ["2.25.40.1"], refused: [("2.25.40.2", "refused")], attempt: (1000, 1000, 1000, "1 stored, 1 refused"))
        #expect(try store.finish(job: job.id, now: 1000, deliveredLate: nil) == "failed")
        #expect(try store.resultCounts()["AI-CXR"]?.awaited == 1)
        #expect(try store.resultsNewlyOverdue(now: 2800).map(\.job) == [job.id])
        // The result comes; then a third instance reopens the push, which delivers it.
        try store.recordResults([("2.25.40.99", "2.25.40", "2.25.40")], from: "AI-CXR", now: 1500)
        #expect(try store.resultCounts()["AI-CXR"]?.awaited == 0)
        try store.record(taken: [Self.taken("2.25.40.3", study: "2.25.40")], problems: [], now: 2000)
        _ = try store.start(job: job.id, now: 2000)
        try store.recordAnswers(job: job.id, acknowledged: ["2.25.40.3"], refused: [], attempt: (2000, 2000, 1000, "1 stored"))
        _ = try store.finish(job: job.id, now: 2000, deliveredLate: nil)
        #expect(try store.resultCounts()["AI-CXR"]?.awaited == 1, "the reopened push awaits a result for what it delivered since")
        #expect(try store.resultsNewlyOverdue(now: 3800).map(\.job) == [job.id])
    }

    /// The study is stable again once the AI's report has joined it, and its push rule fires
    /// again: the report must not go back to the AI service it came from.
    @Test func aResultIsNotSentBackToThePeerItCameFrom() throws {
        let path = Self.scratch()
        defer { Self.remove(path) }
        let store = try AgentStore(path: path)
        let job = try Self.pushDone(store, study: "2.25.30", sop: "2.25.30.1", now: 1000)
        try store.record(taken: [Self.taken("2.25.30.77", study: "2.25.30", origin: "AI-CXR")], problems: [], now: 1100)
        try store.recordStable(study: "2.25.30", quiet: 120, jobs: [
            AgentStore.NewJob(kind: .push, destination: "AI-CXR", rule: "AI", purpose: "ai-triage", priority: .normal),
            AgentStore.NewJob(kind: .deliver, destination: "PACS", rule: "results to PACS", purpose: "ai-triage", priority: .normal),
        ], now: 1300)
        let push = try #require(try store.job(job))
        #expect(push.state == .done && push.total == 1, "the push kept its one instance, and was not reopened: \(push.state) \(push.total)")
        let delivery = try #require(try store.jobs().first { $0.kind == .deliver })
        #expect(delivery.total == 2, "a delivery to the PACS takes the report with the study")
    }

    /// A spool written before results back (version 6) gains the columns, and keeps its jobs.
    @Test func anOlderSpoolIsUpgraded() throws {
        let path = Self.scratch()
        defer { Self.remove(path) }
        do {
            let db = try Database(path: path)
            let older = AgentStore.schema.replacingOccurrences(of: "expect_result REAL, result_at REAL, result_alarm REAL, deidentify INTEGER NOT NULL DEFAULT 0,\n", with: "")
                .replacingOccurrences(of: "deidentify_options TEXT NOT NULL DEFAULT '', deidentified_study TEXT,\n", with: "")
            try #require(!older.contains("deidentif"), "the schema no longer has the columns this test removes as it removes them")
            try #require(older != AgentStore.schema, "the schema no longer has the columns this test removes")
            try db.execute(older)
            try db.execute("INSERT INTO jobs (kind, destination, study, rule, purpose, priority, created, state, next_attempt, finished) VALUES ('push', 'AI-CXR', '2.25.1', 'AI', 'ai-triage', 1, 1, 'done', 1, 1)")
            try db.execute("PRAGMA user_version = 6")
        }
        let store = try AgentStore(path: path)
        #expect(try store.jobs(includingDoneSince: 0).count == 1)
        #expect(try store.resultsNewlyOverdue(now: 1e9).isEmpty)
        let columns = try Database(path: path, readOnly: true).prepare("PRAGMA table_info(jobs)").rows { $0.text(1) ?? "" }
        #expect(Set(["expect_result", "result_at", "result_alarm", "deidentify", "deidentify_options", "deidentified_study"]).isSubset(of: columns))
    }

    /// A study sent de-identified: its result comes back naming the study by the UID the peer
    /// was given, and no patient — to be re-identified. Anything else is refused, and the reason
    /// (which goes back to the peer) names neither the study's own UID nor its patient, and is
    /// the same whoever the result names: the answer must not confirm a guessed patient, not
    /// even the right one. Re-identified (the study's own UID, the patient as held here, as
    /// checked again when it is recorded) it is the trust's own result.
    @Test func aResultForAStudySentDeidentifiedIsReidentifiedOrRefusedWithoutTellingThePeerAnything() {
        for retainUIDs in [false, true] {
            var pushed = Self.sent
            pushed.atPeer = retainUIDs ? pushed.study : "2.25.123456"
            pushed.deidentifyOptions = retainUIDs ? "retain-uids" : "retain-full-dates"
            let atPeer = pushed.atPeer!
            func decide(_ data: DataSet, reidentified: Bool = false) -> ResultCheck.Verdict {
                ResultCheck.decide(
                    data, from: "RESEARCH-AI", trust: "RSCH", sent: { $0 == pushed.study || $0 == pushed.atPeer ? [pushed] : [] }, resultsBack: { _ in true },
                    heldHere: { Self.heldHere.contains($0) }, reidentified: reidentified)
            }
            #expect(decide(Self.header([.sopClassUID: Self.sr, .studyInstanceUID: atPeer, .patientID: ""])) == .reidentify(pushed, .sameStudy))
            #expect(decide(Self.header([.sopClassUID: Self.sr, .studyInstanceUID: "2.25.77"], evidence: [atPeer])) == .reidentify(pushed, .evidence))
            var reasons: Set<String> = []
            for patient in ["RSCH0002", "RSCH0001"] {
                guard case .refused(let why) = decide(Self.header([.sopClassUID: Self.sr, .studyInstanceUID: atPeer, .patientID: patient, DICOM.Tag(0x0010, 0x0021): "RSCH"])) else {
                    Issue.record("a result naming patient \(patient) for a study sent without one was not refused")
                    continue
                }
                reasons.insert(why)
                #expect(!why.contains("RSCH0001") && why.contains("de-identified"), "\(why)")
                #expect(retainUIDs || !why.contains(pushed.study), "the study's own UID told to the peer: \(why)")
            }
            #expect(reasons.count == 1, "a guessed patient must not change the answer: \(reasons)")
            if !retainUIDs {
                if case .refused(let why) = decide(Self.header([.sopClassUID: Self.sr, .studyInstanceUID: pushed.study, .patientID: ""])) {
                    #expect(!why.contains("RSCH0001"), "\(why)")
                } else {
                    Issue.record("a result naming the study's own UID, which the peer was never given, was not refused")
                }
            }
            let placed = Self.header([.sopClassUID: Self.sr, .studyInstanceUID: pushed.study, .patientID: "RSCH0001", DICOM.Tag(0x0010, 0x0021): "RSCH"])
            #expect(decide(placed, reidentified: true) == .accepted(pushed, .sameStudy))
        }
    }

    /// The spool keeps the UID the peer knows a de-identified study by, and the options it went
    /// under: a result naming either UID finds the push.
    @Test func theSpoolFindsAPushByTheUIDItsPeerKnows() throws {
        let path = Self.scratch()
        defer { Self.remove(path) }
        let store = try AgentStore(path: path)
        var taken = Self.taken("1.2.826.0.1.7.1", study: "1.2.826.0.1.7")
        taken.jobs = taken.jobs.map { job in
            var job = job
            job.deidentify = true
            job.deidentifyOptions = "retain-uids"
            return job
        }
        try store.record(taken: [taken], problems: [], now: 100)
        let job = try #require(try store.jobs().first)
        #expect(job.deidentify && job.deidentifyOptions == "retain-uids" && job.deidentifiedStudy == nil)
        _ = try store.start(job: job.id, now: 100)
        try store.setDeidentifiedStudy(job: job.id, "2.25.31337")
        try store.recordAnswers(job: job.id, acknowledged: ["1.2.826.0.1.7.1"], refused: [], attempt: (100, 101, 1000, "1 stored"))
        var expected = Self.sent
        expected.atPeer = "2.25.31337"
        expected.deidentifyOptions = "retain-uids"
        #expect(try store.sentStudies("2.25.31337", to: "AI-CXR") == [expected])
        #expect(try store.sentStudies("1.2.826.0.1.7", to: "AI-CXR") == [expected])
        #expect(try store.sentStudies("2.25.31337", to: "UHSX").isEmpty)
        let (uids, files) = try store.seriesOfStudy("1.2.826.0.1.7")
        #expect(uids.contains("1.2.826.0.1.7.1") && files.count == 1)
    }
}
