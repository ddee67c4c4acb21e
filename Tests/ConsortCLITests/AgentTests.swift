import Foundation
import TestSupport
import Testing

/// `consort agent`, the daemon, as processes on loopback: real certificates, real folders, real
/// SQLite, killed and restarted.
@Suite("consort agent", .serialized, .timeLimit(.minutes(10)))
struct AgentTests {
    static let pushAll = """
        rule "Everything to UHSX" {
          purpose direct-care
          at RSCH
          on instance-arrival
          when origin is local
          push to UHSX priority normal
        }
        """

    /// A study written into A's watched folder arrives in B's inbound, every instance byte for
    /// byte, recorded at B with origin A; A's queue shows the job done.
    @Test func aStudyDroppedAtOneTrustArrivesAtTheOther() throws {
        let consortium = try TestConsortium(members: ["RSCH", "UHSX"], rules: Self.pushAll)
        let uhsx = try consortium.site("UHSX")
        let rsch = try consortium.site("RSCH", peers: ["UHSX": uhsx.port])
        try uhsx.start()
        try rsch.start()
        defer {
            rsch.stop()
            uhsx.stop()
        }
        #expect(try Run.consort("demo", "--out", rsch.watch, "--instances", "12").status == 0)
        let study = try #require(try FileManager.default.contentsOfDirectory(atPath: rsch.watch).first)
        let sent = try FileManager.default.contentsOfDirectory(atPath: rsch.watch + "/" + study)
        let arrived = AgentSite.eventually(within: 60, "12 instances in UHSX's inbound", logs: [rsch, uhsx]) { uhsx.received.count == 12 }
        #expect(arrived)
        // Byte for byte.
        let originals = Set(try sent.map { try Data(contentsOf: URL(fileURLWithPath: rsch.watch + "/\(study)/\($0)")) })
        let copies = Set(try uhsx.received.map { try Data(contentsOf: URL(fileURLWithPath: uhsx.inbound + "/" + $0)) })
        #expect(originals == copies)
        // The job is done, everything acknowledged.
        let done = try AgentSite.eventually(within: 30, "RSCH's job done", logs: [rsch]) {
            try rsch.queue().contains { $0["state"] as? String == "done" && $0["instances_sent"] as? Int == 12 && $0["peer"] as? String == "UHSX" }
        }
        #expect(done)
        #expect(uhsx.log.contains("from RSCH"), "\(uhsx.log)")
    }
}
