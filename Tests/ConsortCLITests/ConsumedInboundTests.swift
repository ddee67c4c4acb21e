import Foundation
import TestSupport
import Testing

/// A PACS that takes its imports away (issue 25): it files what arrives in the agent's inbound
/// folder and deletes it. The agent must keep its inventory true, withdraw what it no longer
/// holds from the registry, answer 404 (not 500) for it, and a prefetch elsewhere must then take
/// the study from another holder, with no circuit opened. Agents, a coordinator and curl as
/// processes on loopback; every wait has a deadline.
@Suite("a consuming PACS: inbound files leaving", .serialized, .timeLimit(.minutes(10)))
struct ConsumedInboundTests {
    static let rules = """
        rule "CTs to UHSX" {
          purpose direct-care
          at RSCH
          on instance-arrival
          when origin is local and StudyDescription ~ "CT CHEST"
          push to UHSX priority normal
        }
        """ + "\n" + CoordinatorTests.prefetchRules

    /// The study's holders, as the coordinator lists them (asked with `site`'s certificate).
    static func holders(of study: String, asking site: AgentSite) -> [String] {
        let studies = (try? site.locate(CoordinatorTests.patient).answer["studies"] as? [[String: Any]]) ?? []
        let locations = studies.first { $0["study"] as? String == study }?["locations"] as? [[String: Any]] ?? []
        return locations.compactMap { $0["trust"] as? String }.sorted()
    }

    /// `consort status --json`'s inventory.
    static func inventory(_ site: AgentSite) throws -> (studies: Int, instances: Int) {
        let status = try Run.consort("status", "--json", "--config", site.config)
        let object = try JSONSerialization.jsonObject(with: Data(status.stdout.utf8)) as? [String: Any]
        let inventory = object?["inventory"] as? [String: Any] ?? [:]
        return (inventory["studies"] as? Int ?? -1, inventory["instances"] as? Int ?? -1)
    }

    /// RSCH, UHSX and ASPH with a coordinator; a CT at RSCH that its rule pushes to UHSX,
    /// pushed and announced by both once `waitUntilHeldByBoth` says so. ASPH is made, not started.
    final class PushedStudy {
        let consortium: TestConsortium
        let coordinator: CoordinatorSite
        let uhsx: AgentSite
        let rsch: AgentSite
        let asph: AgentSite
        let study: String
        let instances: Int

        init(seed: Int, instances: Int, uhsxExtra: String = "", asphExtra: String = "") throws {
            consortium = try TestConsortium(members: ["RSCH", "UHSX", "ASPH"], rules: ConsumedInboundTests.rules)
            coordinator = try CoordinatorSite(consortium)
            // `identity keep` at the receivers: these tests are about received copies leaving
            // inbound, and UHSX has never seen the patient (it would hold the study for its
            // identity: IdentityOnDeliveryTests).
            uhsx = try consortium.site("UHSX", extra: coordinator.agentLine + "identity keep\n" + uhsxExtra)
            rsch = try consortium.site("RSCH", peers: ["UHSX": uhsx.port], extra: coordinator.agentLine)
            asph = try consortium.site("ASPH", peers: ["RSCH": rsch.port, "UHSX": uhsx.port], extra: coordinator.agentLine + "identity keep\n" + asphExtra)
            self.instances = instances
            try coordinator.start()
            try uhsx.start()
            try rsch.start()
            // After the start: files there at a first start are history, indexed without rules.
            study = try CoordinatorTests.study(rsch.watch, seed: seed, date: CoordinatorTests.daysAgo(200), trust: "RSCH", instances: instances)
        }

        /// Waits until it is pushed to UHSX and both trusts hold it in the registry.
        func waitUntilHeldByBoth() -> Bool {
            AgentSite.eventually(within: 60, "the study pushed to UHSX and announced by both", logs: [rsch, uhsx]) {
                uhsx.received.count == instances && ConsumedInboundTests.holders(of: study, asking: asph) == ["RSCH", "UHSX"]
            }
        }

        func stop() {
            asph.stop()
            rsch.stop()
            uhsx.stop()
            coordinator.stop()
        }
    }

    @Test func aStudyConsumedFromInboundIsForgottenWithdrawnAnswered404AndFetchedFromAnotherHolder() throws {
        let pushed = try PushedStudy(seed: 91, instances: 4, asphExtra: "circuit-after 1\n")
        defer { pushed.stop() }
        let (uhsx, rsch, asph, prior) = (pushed.uhsx, pushed.rsch, pushed.asph, pushed.study)
        #expect(pushed.waitUntilHeldByBoth())
        #expect(try Self.inventory(uhsx) == (1, 4))
        // UHSX's PACS files it and deletes its folder from the import folder.
        try FileManager.default.removeItem(atPath: uhsx.inbound + "/" + prior)
        #expect(try AgentSite.eventually(within: 30, "UHSX's inventory drops the study", logs: [uhsx]) { try Self.inventory(uhsx) == (0, 0) })
        #expect(AgentSite.eventually(within: 30, "the registry no longer lists UHSX as a holder", logs: [uhsx]) {
            Self.holders(of: prior, asking: asph) == ["RSCH"]
        })
        #expect(uhsx.log.contains("withdrawn from the registry"), "\(uhsx.log)")
        // Audited: the files forgotten (which study, why) and the withdrawal sent.
        let audit = TrustBoundaryTests.audit(uhsx.state + "/audit.log")
        #expect(audit.contains { $0["action"] as? String == "forget" && $0["study"] as? String == prior && ($0["why"] as? String ?? "").hasPrefix("left the disk") }, "\(audit)")
        #expect(audit.contains { $0["action"] as? String == "withdraw" && $0["study"] as? String == prior }, "\(audit)")
        // A retrieve of it from UHSX: 404, not 500 (which a requester counts against UHSX).
        let cert = try pushed.consortium.pki.site("ASPH")
        let retrieve = try Run.program("/usr/bin/curl", [
            "-s", "--max-time", "20", "--cert", cert.certificate, "--key", cert.key, "--cacert", pushed.consortium.pki.ca, "-H", "X-Consort-Purpose: direct-care",
            "-o", "/dev/null", "-w", "%{http_code}", uhsx.url + "/studies/" + prior,
        ])
        #expect(retrieve.stdout == "404", "\(retrieve.stdout) \(retrieve.stderr)")
        // A prefetch at ASPH takes it from RSCH, the trust that still holds it; no circuit opens.
        try asph.start()
        try CoordinatorTests.study(asph.watch, seed: 92, date: CoordinatorTests.daysAgo(0), description: "ONC CT", trust: "ASPH")
        #expect(AgentSite.eventually(within: 60, "the prior fetched at ASPH", logs: [asph, rsch, uhsx]) { asph.received.count == 4 })
        let fetches = try asph.queue().filter { $0["kind"] as? String == "fetch" }
        #expect(fetches.count == 1 && fetches.first?["peer"] as? String == "RSCH" && fetches.first?["state"] as? String == "done", "\(fetches)")
        #expect(!asph.log.contains("destination circuit opened"), "\(asph.log)")
        // A study deleted from RSCH's archive folder is withdrawn too: ASPH's copy is the one left.
        #expect(AgentSite.eventually(within: 30, "ASPH's copy announced", logs: [asph]) { Self.holders(of: prior, asking: asph) == ["ASPH", "RSCH"] })
        try FileManager.default.removeItem(atPath: rsch.watch + "/" + prior)
        #expect(AgentSite.eventually(within: 30, "the registry no longer lists RSCH as a holder", logs: [rsch]) {
            Self.holders(of: prior, asking: asph) == ["ASPH"]
        })
    }

    /// The inventory checked against the disk at start: a received study deleted while the agent
    /// was down is forgotten and withdrawn when it starts again — but not while the folder is
    /// empty (an unmounted share looks the same): then nothing is forgotten, and an error says so.
    @Test func aStudyConsumedWhileTheAgentWasDownIsWithdrawnAtStart() throws {
        let pushed = try PushedStudy(seed: 93, instances: 2)
        defer { pushed.stop() }
        let (uhsx, asph, prior) = (pushed.uhsx, pushed.asph, pushed.study)
        #expect(pushed.waitUntilHeldByBoth())
        uhsx.stop()
        try FileManager.default.removeItem(atPath: uhsx.inbound + "/" + prior)
        try uhsx.start()
        #expect(AgentSite.eventually(within: 30, "the sweep of the emptied inbound refused", logs: [uhsx]) {
            uhsx.log.contains("not forgetting 2 of 2 files under ") && uhsx.log.contains("an unmounted share?")
        })
        #expect(try Self.inventory(uhsx) == (1, 2))
        #expect(Self.holders(of: prior, asking: asph) == ["RSCH", "UHSX"])
        // The folder holds something again (another study the PACS has not filed yet).
        uhsx.stop()
        try FileManager.default.createDirectory(atPath: uhsx.inbound + "/1.2.3.4", withIntermediateDirectories: true)
        try uhsx.start()
        #expect(try AgentSite.eventually(within: 30, "UHSX's inventory drops the study at start", logs: [uhsx]) { try Self.inventory(uhsx) == (0, 0) })
        #expect(AgentSite.eventually(within: 30, "the registry no longer lists UHSX as a holder", logs: [uhsx]) {
            Self.holders(of: prior, asking: asph) == ["RSCH"]
        })
    }

    /// `inbound-keep`: an inbound folder the PACS does not consume is emptied by the agent of
    /// copies older than it, with the same forgetting and withdrawal. (A minute, the least it
    /// takes: this test waits for it.)
    @Test func receivedCopiesPastInboundKeepAreRemovedForgottenAndWithdrawn() throws {
        let pushed = try PushedStudy(seed: 94, instances: 2, uhsxExtra: "inbound-keep 1 min\n")
        defer { pushed.stop() }
        let (uhsx, asph, prior) = (pushed.uhsx, pushed.asph, pushed.study)
        #expect(pushed.waitUntilHeldByBoth())
        #expect(uhsx.received.count == 2, "kept until it is due")
        #expect(try AgentSite.eventually(within: 120, "UHSX's copy removed past inbound-keep and forgotten", logs: [uhsx]) {
            try uhsx.received.isEmpty && Self.inventory(uhsx) == (0, 0)
        })
        #expect(!FileManager.default.fileExists(atPath: uhsx.inbound + "/" + prior), "its emptied study folder removed too")
        #expect(AgentSite.eventually(within: 30, "the registry no longer lists UHSX as a holder", logs: [uhsx]) {
            Self.holders(of: prior, asking: asph) == ["RSCH"]
        })
        #expect(uhsx.log.contains("past inbound-keep"), "\(uhsx.log)")
        let audit = TrustBoundaryTests.audit(uhsx.state + "/audit.log")
        #expect(audit.contains { $0["action"] as? String == "delete" && $0["why"] as? String == "inbound-keep" }, "\(audit)")
        // Forgotten by inbound-keep, or by the inbound watcher seeing the removal first.
        #expect(audit.contains { $0["action"] as? String == "forget" && $0["study"] as? String == prior }, "\(audit)")
        #expect(audit.contains { $0["action"] as? String == "withdraw" && $0["study"] as? String == prior }, "\(audit)")
    }
}
