import DICOM
import Exchange
import Foundation
import Routing
import Testing

@testable import Agent

/// Study manifests at the receiving end: a study is whole when every instance its sender
/// listed is here with the listed size and SHA-256 — not sooner, whatever arrives instead.
@Suite("Study manifests")
struct ManifestTests {
    static func received(_ sop: String, study: String, size: Int, sha256: String?, sender: String = "RSCH") -> AgentStore.Taken {
        var taken = AgentStore.Taken(
            sop: sop, study: AgentStore.StudyFacts(uid: study), series: "1.2.3", path: "/inbound/\(study)/\(sop).dcm", size: size, mtime: 1, origin: sender, jobs: [])
        taken.sha256 = sha256
        return taken
    }

    static let a = String(repeating: "a", count: 64), b = String(repeating: "b", count: 64), c = String(repeating: "c", count: 64)

    @Test func aStudyIsWholeOnlyWhenEveryListedInstanceIsHereAsListed() throws {
        let path = SpoolCountsTests.scratch()
        defer { SpoolCountsTests.remove(path) }
        let store = try AgentStore(path: path)
        let listed = [("1.1", 100, Self.a), ("1.2", 200, Self.b), ("1.3", 300, Self.c)]
        // One instance is here before the manifest (a resumed transfer).
        try store.record(taken: [Self.received("1.1", study: "9.1", size: 100, sha256: Self.a)], problems: [], now: 10)
        #expect(try store.recordManifest(study: "9.1", sender: "RSCH", final: true, instances: listed, now: 11) == 1)
        #expect(try store.completedManifests(now: 12).isEmpty)
        // The quiet timer leaves a study known to be missing instances alone.
        #expect(try store.quietStudies(now: 10_000, minimum: 1, maximumFired: 60).isEmpty)
        // Rules fired for the study in the meantime (the timer, just before the manifest came)
        // do not mark an unsatisfied manifest complete.
        try store.recordStable(study: "9.1", quiet: 0, jobs: [], now: 12)
        #expect(try store.incompleteManifests().count == 1)
        // The second arrives with other bytes than listed: not held.
        try store.record(taken: [Self.received("1.2", study: "9.1", size: 200, sha256: Self.c)], problems: [], now: 13)
        #expect(try store.completedManifests(now: 14).isEmpty)
        #expect(try store.incompleteManifests().manifests.map { ($0.study, $0.listed, $0.held) }.elementsEqual([("9.1", 3, 1)], by: ==))
        // The sender sends the right copy under the listed bytes in a new manifest; the third arrives.
        try store.recordManifest(study: "9.1", sender: "RSCH", final: true, instances: [("1.1", 100, Self.a), ("1.2", 200, Self.c), ("1.3", 300, Self.c)], now: 15)
        try store.record(taken: [Self.received("1.3", study: "9.1", size: 300, sha256: Self.c)], problems: [], now: 16)
        let whole = try store.completedManifests(now: 17)
        #expect(whole.map(\.uid) == ["9.1"])
        // Fired (recorded stable): complete, not offered again, not shown as incomplete.
        try store.recordStable(study: "9.1", quiet: 60, jobs: [], now: 17)
        #expect(try store.completedManifests(now: 18).isEmpty)
        #expect(try store.incompleteManifests().count == 0)
        #expect(try store.manifests(ofStudy: "9.1").first?.completed == 17)
    }

    /// A sender hashes an instance once: the hash is kept in the inventory for the job's next
    /// manifest (a retry, another peer), a received instance brings its own, and a file of the
    /// archive taken again (rewritten) loses it.
    @Test func hashesForManifestsAreKeptAndForgottenWhenTheFileIsTakenAgain() throws {
        let path = SpoolCountsTests.scratch()
        defer { SpoolCountsTests.remove(path) }
        let store = try AgentStore(path: path)
        let local = SpoolCountsTests.taken("1.2.826.0.1.1", study: "9.3", size: 10)
        var received = SpoolCountsTests.taken("1.2.826.0.1.2", study: "9.3", size: 20, origin: "UHSX")
        received.sha256 = Self.b
        try store.record(taken: [local, received], problems: [], now: 1)
        let job = try #require(try store.jobs().first?.id)
        #expect(try store.hashes(ofJob: job) == ["1.2.826.0.1.2": Self.b])
        try store.recordHashes([("1.2.826.0.1.1", Self.a)])
        #expect(try store.hashes(ofJob: job) == ["1.2.826.0.1.1": Self.a, "1.2.826.0.1.2": Self.b])
        try store.record(taken: [local], problems: [], now: 2)
        #expect(try store.hashes(ofJob: job) == ["1.2.826.0.1.2": Self.b])
    }

    @Test func aManifestThatIsNotFinalLeavesTheQuietTimerInCharge() throws {
        let path = SpoolCountsTests.scratch()
        defer { SpoolCountsTests.remove(path) }
        let store = try AgentStore(path: path)
        try store.record(taken: [Self.received("2.1", study: "9.2", size: 10, sha256: Self.a)], problems: [], now: 10)
        try store.recordManifest(study: "9.2", sender: "RSCH", final: false, instances: [("2.1", 10, Self.a), ("2.2", 10, Self.b)], now: 11)
        #expect(try store.completedManifests(now: 12).isEmpty)
        #expect(try store.quietStudies(now: 100, minimum: 30, maximumFired: 60).map(\.uid) == ["9.2"])
    }

    @Test func aManifestIsCheckedBeforeItIsKept() {
        func parse(_ text: String, study: String = "1.2.3") -> String {
            switch StudyManifest.parse(Array(text.utf8), study: study) {
            case .success(let manifest): return "ok \(manifest.instances.count) final=\(manifest.final)"
            case .failure(let problem): return problem.description
            }
        }
        let good = #"{"study": "1.2.3", "final": true, "instances": [{"sop": "1.2.3.4", "size": 10, "sha256": "\#(Self.a)"}]}"#
        #expect(parse(good) == "ok 1 final=true")
        #expect(parse(good, study: "1.2.4") == "the manifest's study is not the one in the path")
        #expect(parse("[1]") == "the body is not a JSON object")
        #expect(parse(#"{"study": "1.2.3"}"#) == #"no "instances" array"#)
        #expect(parse(#"{"study": "1.2.3", "instances": []}"#) == "a manifest lists at least one instance")
        let twice = #"{"sop": "1.2.3.4", "size": 10, "sha256": "\#(Self.a)"}"#
        #expect(parse(#"{"study": "1.2.3", "instances": [\#(twice), \#(twice)]}"#) == "an instance is listed twice")
        #expect(parse(good.replacingOccurrences(of: Self.a, with: "XYZ")).hasPrefix("instance 1: needs"))
        #expect(parse(good.replacingOccurrences(of: "1.2.3.4", with: "1.2.3.04")).hasPrefix("instance 1: needs"))
        #expect(parse(good.replacingOccurrences(of: "\"size\": 10", with: "\"size\": -1")).hasPrefix("instance 1: needs"))
        let many = (0...StudyManifest.maximumInstances).map { #"{"sop": "1.\#($0)", "size": 1, "sha256": "\#(Self.a)"}"# }.joined(separator: ",")
        #expect(parse(#"{"study": "1.2.3", "instances": [\#(many)]}"#) == "more than \(StudyManifest.maximumInstances) instances")
        // Made from files: each file's SHA-256 as it is on disk.
        let file = NSTemporaryDirectory() + "consort-manifest-\(UUID().uuidString)"
        defer { try? FileManager.default.removeItem(atPath: file) }
        FileManager.default.createFile(atPath: file, contents: Data("abc".utf8))
        let made = try? StudyManifest.make(study: "1.2.3", final: true, files: [("1.2.3.4", file, 3)])
        #expect(made?.instances.first?.sha256 == "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad")
        // A hash known already is taken as it is: the file is not read (here it is gone).
        let knownHash = try? StudyManifest.make(study: "1.2.3", final: true, files: [("1.2.3.6", file + ".gone", 3)], known: ["1.2.3.6": Self.c])
        #expect(knownHash?.instances.first?.sha256 == Self.c)
        #expect(throws: (any Error).self) { try StudyManifest.make(study: "1.2.3", final: true, files: [("1.2.3.5", file + ".gone", 3)]) }
    }
}

/// Where a trust keeps the NHS number in OtherPatientIDs (0010,1000), without an issuer: the
/// agent reads the attribute's values, keeps them through its inventory apart from the
/// sequence's items, and announces them as `otherPatientIDValues` for the coordinator to use
/// where that trust's exception names the attribute (and nowhere else).
@Suite("OtherPatientIDs")
struct OtherPatientIDsTests {
    @Test func theValuesGoFromTheHeaderThroughTheInventoryToTheAnnouncement() throws {
        var header = DataSet()
        header.set(DICOMWriter.textElement(.patientID, .LO, "QVH00042"))
        header.set(DICOMWriter.textElement(Tag(0x0010, 0x1000), .LO, "9990000026\\OLD123 "))
        let facts = Ingest.facts(of: header, study: "1.2.3")
        #expect(facts.otherPatientIDValues == ["9990000026", "OLD123"] && facts.otherIDs.isEmpty)
        let path = SpoolCountsTests.scratch()
        defer { SpoolCountsTests.remove(path) }
        let store = try AgentStore(path: path)
        var taken = AgentStore.Taken(sop: "1.2.3.4", study: facts, series: "1.2.3.5", path: "/archive/x.dcm", size: 10, mtime: 1, origin: "local", jobs: [])
        taken.study.otherIDs = [("9990000018", "NHS")]
        try store.record(taken: [taken], problems: [], now: 1)
        let announcement = try #require(try store.unannounced(limit: 10).first)
        #expect(announcement.facts.otherPatientIDValues == ["9990000026", "OLD123"])
        #expect(announcement.facts.otherIDs.map(\.id) == ["9990000018"])
        let item = Announcer.item(announcement).serialized()
        #expect(item.contains(#""otherPatientIDValues":["9990000026","OLD123"]"#), "\(item)")
        // The agent's own reading (the default place) does not look there.
        #expect(Announcer.nhs(announcement.facts) == .valid(NHSNumber("9990000018")!))
        // An empty first value stays first: the first value is the one a trust's exception reads.
        var emptyFirst = DataSet()
        emptyFirst.set(DICOMWriter.textElement(Tag(0x0010, 0x1000), .LO, "\\9990000026"))
        #expect(Ingest.facts(of: emptyFirst, study: "1.2.3").otherPatientIDValues == ["", "9990000026"])
    }
}
