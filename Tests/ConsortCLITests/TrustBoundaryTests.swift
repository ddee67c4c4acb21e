import Foundation
import TestSupport
import Testing

/// The trust boundary, tried from outside as a security reviewer would: real agents and a
/// coordinator on loopback, certificates and CRLs from a throwaway CA made in the test. A peer
/// is not a member; a request names its purpose; a revoked certificate, a rotated one and a CRL
/// all take effect on SIGHUP; expiry is shouted weeks ahead.
@Suite("the trust boundary", .serialized, .timeLimit(.minutes(10)))
struct TrustBoundaryTests {
    static let rules = """
        peer AI-CXR "Chest X-ray AI test service" roles ai
        member QVH "A trust that may send to UHSX, and receive nothing from it"

        agreement "QVH sends" {
          purposes direct-care
          from QVH
          to UHSX
        }

        agreement "AI triage" {
          purposes ai-triage
          from RSCH
          to AI-CXR
        }

        agreement "Research, de-identified" {
          purposes research
          from UHSX
          to RSCH
          requires deidentification
        }

        agreement "Research from QVH" {
          purposes research
          from QVH
          to RSCH
        }

        rule "Everything to UHSX" {
          purpose direct-care
          at RSCH
          on instance-arrival
          when origin is local
          push to UHSX priority normal
        }
        """

    /// One HTTPS request with curl as `cert`'s holder: its status and body.
    static func request(
        _ url: String, as cert: (certificate: String, key: String), ca: String, purpose: String? = "direct-care", method: String = "GET", extra: [String] = []
    ) throws -> (status: Int, body: String) {
        var arguments = ["-s", "--max-time", "20", "--cert", cert.certificate, "--key", cert.key, "--cacert", ca, "-w", "\n%{http_code}", "-X", method]
        if let purpose { arguments += ["-H", "X-Consort-Purpose: \(purpose)"] }
        let outcome = try Run.program("/usr/bin/curl", arguments + extra + [url])
        let lines = outcome.stdout.split(separator: "\n", omittingEmptySubsequences: false)
        return (Int(lines.last ?? "") ?? 0, lines.dropLast().joined(separator: "\n"))
    }

    /// RSCH pushing to UHSX (the rules above), both started: UHSX has a CRL (a fresh, empty one
    /// the test rewrites), RSCH too when `crlAtRSCH`. The caller stops them.
    static func startedPair(crlAtRSCH: Bool = false) throws -> (TestConsortium, crl: String, uhsx: AgentSite, rsch: AgentSite) {
        let consortium = try TestConsortium(members: ["RSCH", "UHSX"], rules: rules)
        let crl = consortium.root.path + "/crl.pem"
        try consortium.pki.writeCRL(to: crl)
        let uhsx = try consortium.site("UHSX", extra: "crl \(crl)\n")
        let rsch = try consortium.site("RSCH", peers: ["UHSX": uhsx.port], extra: crlAtRSCH ? "crl \(crl)\n" : "")
        try uhsx.start()
        do { try rsch.start() } catch {
            uhsx.stop()
            throw error
        }
        return (consortium, crl, uhsx, rsch)
    }

    /// A Prometheus page's sample value, or nil if the series is not there.
    static func sample(_ page: String, _ series: String) -> Double? {
        for line in page.split(separator: "\n") where line.hasPrefix(series + " ") { return Double(line.dropFirst(series.count + 1)) }
        return nil
    }

    static func metrics(_ port: Int) throws -> String {
        try Run.program("/usr/bin/curl", ["-s", "--max-time", "10", "http://127.0.0.1:\(port)/metrics"]).stdout
    }

    /// The audit log's records, as JSON objects.
    static func audit(_ path: String) -> [[String: Any]] {
        ((try? String(contentsOfFile: path, encoding: .utf8)) ?? "").split(separator: "\n").compactMap {
            try? JSONSerialization.jsonObject(with: Data($0.utf8)) as? [String: Any]
        }
    }

    /// AI-CXR holds a certificate from the consortium CA, but it is a `peer`: the coordinator
    /// and the agents refuse it everything but what rules push to it (403, with the reason,
    /// counted, audited under its certificate's name). A trust is served, but only for a
    /// purpose it names and an agreement allows; the purpose is recorded at both ends.
    @Test func aPeerIsRefusedWhatAMemberIsServedAndEveryRequestNamesItsPurpose() throws {
        let consortium = try TestConsortium(members: ["RSCH", "UHSX"], rules: Self.rules)
        let coordinatorMetrics = try OrthancInteropTests.freePort(), uhsxMetrics = try OrthancInteropTests.freePort()
        let coordinator = try CoordinatorSite(consortium, extra: "metrics 127.0.0.1:\(coordinatorMetrics)")
        try coordinator.start()
        defer { coordinator.stop() }
        // `identity keep`: UHSX has never seen the patient; what is tested here is who may send
        // and fetch, not the identity a study is placed under (IdentityOnDeliveryTests).
        let uhsx = try consortium.site("UHSX", extra: coordinator.agentLine + "identity keep\nmetrics 127.0.0.1:\(uhsxMetrics)\n")
        let rsch = try consortium.site("RSCH", peers: ["UHSX": uhsx.port], extra: coordinator.agentLine)
        try uhsx.start()
        try rsch.start()
        defer {
            rsch.stop()
            uhsx.stop()
        }
        let study = try AgentTests.synth(into: rsch.watch, seed: 41, instances: 3)
        #expect(AgentSite.eventually(within: 60, "RSCH's study at UHSX", logs: [rsch, uhsx]) { uhsx.received.count == 3 })
        let peer = try consortium.pki.site("AI-CXR"), rschCert = try consortium.pki.site("RSCH")
        let ca = consortium.pki.ca
        let patient = "9990000018"

        // The coordinator: no lookup, no study, no announcing as a holder.
        for (path, body) in [("/v1/patients/\(patient)/studies", nil), ("/v1/studies/\(study)", nil), ("/v1/holdings", #"{"trust":"AI-CXR","studies":[{"study":"1.2.3"}]}"#)] {
            let answer = try coordinator.call(path, as: peer, ca: ca, body: body)
            #expect(answer.status == 403 && answer.body.contains("is a peer, not a member"), "\(path): \(answer)")
        }
        // A trust: no purpose, a purpose no agreement gives it, then one that does.
        #expect(try coordinator.call("/v1/studies/\(study)", as: rschCert, ca: ca, purpose: nil).status == 403)
        #expect(try coordinator.call("/v1/studies/\(study)", as: rschCert, ca: ca, purpose: "ai-triage").status == 403)
        let found = try AgentSite.eventually(within: 30, "the study announced and found", logs: [uhsx, rsch]) {
            try coordinator.call("/v1/studies/\(study)", as: rschCert, ca: ca).status == 200
        }
        #expect(found)
        // For research, a lookup is let through (QVH may send RSCH imaging with identity), but
        // UHSX is not named as a holder: its imaging goes to RSCH for research only
        // de-identified — the study is "not announced by any trust that may give it" (404)
        // unless RSCH's own announcement is in, naming only RSCH.
        let held = try AgentSite.eventually(within: 30, "UHSX named as a holder for direct care", logs: [uhsx]) {
            try coordinator.call("/v1/studies/\(study)", as: rschCert, ca: ca).body.contains("UHSX")
        }
        #expect(held)
        let researchLookup = try coordinator.call("/v1/studies/\(study)", as: rschCert, ca: ca, purpose: "research")
        #expect([200, 404].contains(researchLookup.status) && !researchLookup.body.contains("UHSX"), "\(researchLookup)")
        let coordinatorPage = try Self.metrics(coordinatorMetrics)
        #expect(Self.sample(coordinatorPage, #"consort_coordinator_refused_requests_total{reason="peer_not_member"}"#) == 3, "\(coordinatorPage)")
        #expect(Self.sample(coordinatorPage, #"consort_coordinator_refused_requests_total{reason="no_purpose"}"#) == 1, "\(coordinatorPage)")
        #expect(Self.sample(coordinatorPage, #"consort_coordinator_refused_requests_total{reason="no_agreement"}"#) == 1, "\(coordinatorPage)")
        let coordinatorAudit = Self.audit(coordinator.audit)
        #expect(coordinatorAudit.filter { $0["who"] as? String == "AI-CXR" && $0["action"] as? String == "refused" }.count == 3)
        #expect(coordinatorAudit.contains { $0["who"] as? String == "RSCH" && $0["action"] as? String == "lookup" && $0["why"] as? String == "direct-care" })

        // An agent: no retrieve, no search, no store from the peer.
        let before = uhsx.received.count
        let retrieve = try Self.request("\(uhsx.url)/studies/\(study)", as: peer, ca: ca, purpose: "ai-triage")
        let search = try Self.request("\(uhsx.url)/studies?PatientID=RSCH0000001", as: peer, ca: ca, purpose: "ai-triage")
        let folder = try ScratchFolder()
        let report = try AgentTests.synth(into: folder.path, seed: 42, instances: 1)
        let stored = try Run.program(Run.consort, ["send", uhsx.url, folder.path + "/" + report, "--cert", peer.certificate, "--key", peer.key, "--ca", ca, "--purpose", "ai-triage"])
        #expect(retrieve.status == 403 && retrieve.body.contains("is a peer, not a member"), "\(retrieve)")
        #expect(search.status == 403, "\(search)")
        #expect(stored.status != 0 && stored.stdout.contains("0 stored"), "\(stored.stdout)\(stored.stderr)")
        #expect(uhsx.received.count == before)
        // A trust: served for a purpose an agreement gives it; refused with none.
        #expect(try Self.request("\(uhsx.url)/studies?PatientID=RSCH0000001", as: rschCert, ca: ca, purpose: nil).status == 403)
        #expect(try Self.request("\(uhsx.url)/studies/\(study)", as: rschCert, ca: ca, purpose: "ai-triage").status == 403)
        #expect(try Self.request("\(uhsx.url)/studies/\(study)/instances", as: rschCert, ca: ca).status == 200)
        // For research, UHSX's imaging may go to RSCH only de-identified: no retrieve, no search.
        let research = try Self.request("\(uhsx.url)/studies/\(study)", as: rschCert, ca: ca, purpose: "research")
        #expect(research.status == 403 && research.body.contains("requires de-identification"), "\(research)")
        #expect(try Self.request("\(uhsx.url)/studies?PatientID=RSCH0000001", as: rschCert, ca: ca, purpose: "research").status == 403)
        let page = try Self.metrics(uhsxMetrics)
        #expect(Self.sample(page, #"consort_refused_requests_total{reason="deidentification_required"}"#) == 2, "\(page)")
        #expect(Self.sample(page, #"consort_refused_requests_total{reason="peer_not_member"}"#) == 3, "\(page)")
        #expect(Self.sample(page, #"consort_refused_requests_total{reason="no_purpose"}"#) == 1, "\(page)")
        #expect(Self.sample(page, #"consort_refused_requests_total{reason="no_agreement"}"#) == 1, "\(page)")
        // A trust whose agreement lets it only send to UHSX: it may ask which instances of a
        // study it names are there (to resume a push), never search what UHSX holds.
        let qvh = try consortium.pki.site("QVH")
        let trawl = try Self.request("\(uhsx.url)/studies?PatientID=RSCH0000001", as: qvh, ca: ca)
        #expect(trawl.status == 403 && trawl.body.contains("no agreement allows imaging from UHSX to QVH"), "\(trawl)")
        #expect(try Self.request("\(uhsx.url)/studies", as: qvh, ca: ca).status == 403)
        #expect(try Self.request("\(uhsx.url)/studies/\(study)", as: qvh, ca: ca).status == 403)
        #expect(try Self.request("\(uhsx.url)/studies/\(study)/instances", as: qvh, ca: ca).status == 200)
        // The coordinator shows QVH no holder it could not receive from.
        let hidden = try coordinator.call("/v1/studies/\(study)", as: qvh, ca: ca)
        #expect(hidden.status == 403 || hidden.status == 404, "\(hidden)")
        let uhsxAudit = Self.audit(uhsx.state + "/audit.log")
        #expect(uhsxAudit.filter { $0["who"] as? String == "AI-CXR" && $0["action"] as? String == "refused" }.count == 3, "\(uhsxAudit)")
        // The purpose at both ends of the push.
        #expect(uhsxAudit.contains { $0["who"] as? String == "RSCH" && $0["action"] as? String == "receive" && $0["why"] as? String == "direct-care" }, "\(uhsxAudit)")
        let sentAudited = AgentSite.eventually(within: 30, "RSCH's send audited with its purpose", logs: [rsch]) {
            Self.audit(rsch.state + "/audit.log").contains { $0["action"] as? String == "send" && ($0["why"] as? String ?? "").hasPrefix("direct-care") }
        }
        #expect(sentAudited)
        // `consort config check` at a peer's name: an agent runs at a trust.
        let asPeer = try consortium.site("AI-CXR")
        let check = try Run.consort("config", "check", asPeer.config)
        #expect(check.status != 0 && check.stderr.contains("declared a peer"), "\(check.stdout)\(check.stderr)")
    }

    /// A trust's certificate revoked: the new CRL given to the agents and SIGHUP, and the next
    /// study does not cross — no restart. A CRL that does not load is refused and the one in
    /// force stays.
    @Test func aRevocationTakesEffectOnSIGHUPWithoutARestart() throws {
        let (consortium, crl, uhsx, rsch) = try Self.startedPair(crlAtRSCH: true)
        defer {
            rsch.stop()
            uhsx.stop()
        }
        _ = try AgentTests.synth(into: rsch.watch, seed: 51, instances: 2)
        #expect(AgentSite.eventually(within: 60, "the first study at UHSX", logs: [rsch, uhsx]) { uhsx.received.count == 2 })

        // A CRL that does not load: refused, the one in force stays.
        try "not a CRL\n".write(toFile: crl, atomically: true, encoding: .utf8)
        uhsx.program?.signal(SIGHUP)
        #expect(AgentSite.eventually(within: 20, "UHSX refuses the broken CRL", logs: [uhsx]) { uhsx.log.contains("TLS material NOT reloaded") })
        _ = try AgentTests.synth(into: rsch.watch, seed: 52, instances: 2)
        #expect(AgentSite.eventually(within: 60, "the second study at UHSX under the material in force", logs: [rsch, uhsx]) { uhsx.received.count == 4 })

        // RSCH's certificate revoked.
        try consortium.pki.writeCRL(to: crl, revoking: [try consortium.pki.site("RSCH").certificate])
        // Only the receiving side reloads: RSCH's kept-alive connection, verified under the old
        // CRL, must not carry the next study.
        uhsx.program?.signal(SIGHUP)
        let reloaded = AgentSite.eventually(within: 20, "UHSX reloads its TLS material", logs: [uhsx]) { uhsx.log.contains("TLS material reloaded") }
        #expect(reloaded)
        _ = try AgentTests.synth(into: rsch.watch, seed: 53, instances: 2)
        let refused = try AgentSite.eventually(within: 60, "RSCH's third study deferred: its certificate is revoked", logs: [rsch, uhsx]) {
            try rsch.queue().contains { $0["state"] as? String == "deferred" }
        }
        #expect(refused)
        #expect(uhsx.received.count == 4, "a study crossed with a revoked certificate")
        #expect(uhsx.log.contains("revoked"), "\(uhsx.log)")
        let status = try Run.consort("status", "--config", uhsx.config, "--json")
        let tls = (try? JSONSerialization.jsonObject(with: Data(status.stdout.utf8)) as? [String: Any])?["tls"] as? [String: Any]
        #expect(tls?["crl"] != nil, "\(status.stdout)")
    }

    /// A reload while a retrieve is streaming: the retrieve finishes under the handshake it began
    /// with, and the connection it came on serves nothing more — the client's next request on
    /// it (curl reuses the connection) must make a new handshake, which the revoked trust fails.
    @Test func aConnectionOpenAcrossAReloadServesNoFurtherRequest() throws {
        let (consortium, crl, uhsx, rsch) = try Self.startedPair()
        defer {
            rsch.stop()
            uhsx.stop()
        }
        // 32 MB: larger than what the kernel's socket buffers take on loopback, so that the
        // server is still writing the answer when the reload comes (not idle, to be closed then).
        let study = try AgentTests.synth(into: rsch.watch, seed: 71, instances: 16, size: "1024x1024")
        #expect(AgentSite.eventually(within: 60, "the study at UHSX", logs: [rsch, uhsx]) { uhsx.received.count == 16 })
        let cert = try consortium.pki.site("RSCH")
        let folder = try ScratchFolder()
        // Two requests on one connection: a retrieve read at 4 MB/s (about 8 s), then a search.
        let curl = try RunningProgram(["/usr/bin/curl", "-s", "--limit-rate", "4M", "--cert", cert.certificate, "--key", cert.key, "--cacert", consortium.pki.ca,
            "-H", "X-Consort-Purpose: direct-care", "-w", "%{http_code} %{num_connects}\n",
            "-o", folder.path + "/study", "\(uhsx.url)/studies/\(study)", "-o", folder.path + "/search", "\(uhsx.url)/studies?PatientID=RSCH0000001"])
        try curl.waitFor("the retrieve under way", within: 30) { (try? FileManager.default.attributesOfItem(atPath: folder.path + "/study")[.size] as? Int ?? 0) ?? 0 > 1_000_000 }
        try consortium.pki.writeCRL(to: crl, revoking: [cert.certificate])
        uhsx.program?.signal(SIGHUP)
        #expect(AgentSite.eventually(within: 20, "UHSX reloads", logs: [uhsx]) { uhsx.log.contains("TLS material reloaded") })
        _ = try curl.waitForExit(within: 60)
        let lines = curl.standardOutput.split(separator: "\n").map(String.init)
        #expect(uhsx.log.contains("WADO-RS study") && !uhsx.log.contains("answer not delivered"), "\(uhsx.log)")
        #expect(try FileManager.default.attributesOfItem(atPath: folder.path + "/study")[.size] as? Int ?? 0 > 16 * 2_000_000, "the whole study arrived")
        #expect(lines.first == "200 1", "the retrieve in flight finishes: \(curl.log)")
        #expect(lines.count == 2 && lines[1].hasPrefix("000"), "the next request on a connection made before the reload was served: \(curl.log)")
    }

    /// A trust's own client certificate rotated: after SIGHUP its pushes go with the new one.
    /// Shown by revoking the old one at the receiver: the pushes still arrive.
    @Test func aRotatedClientCertificateIsUsedForPushesAfterSIGHUP() throws {
        let (consortium, crl, uhsx, rsch) = try Self.startedPair()
        defer {
            rsch.stop()
            uhsx.stop()
        }
        _ = try AgentTests.synth(into: rsch.watch, seed: 81, instances: 2)
        #expect(AgentSite.eventually(within: 60, "a study before the rotation", logs: [rsch, uhsx]) { uhsx.received.count == 2 })
        let site = try consortium.pki.site("RSCH")
        let old = consortium.root.path + "/rsch-old.pem"
        try FileManager.default.copyItem(atPath: site.certificate, toPath: old)
        let rotated = try consortium.pki.anotherClient("rsch-rotated", cn: "RSCH")
        try Data(contentsOf: URL(fileURLWithPath: rotated.certificate)).write(to: URL(fileURLWithPath: site.certificate), options: .atomic)
        try Data(contentsOf: URL(fileURLWithPath: rotated.key)).write(to: URL(fileURLWithPath: site.key), options: .atomic)
        rsch.program?.signal(SIGHUP)
        #expect(AgentSite.eventually(within: 20, "RSCH loads its new pair", logs: [rsch]) { rsch.log.contains("TLS material reloaded") })
        try consortium.pki.writeCRL(to: crl, revoking: [old])
        uhsx.program?.signal(SIGHUP)
        #expect(AgentSite.eventually(within: 20, "UHSX loads the CRL", logs: [uhsx]) { uhsx.log.contains("TLS material reloaded") })
        _ = try AgentTests.synth(into: rsch.watch, seed: 82, instances: 2)
        #expect(AgentSite.eventually(within: 60, "a study after the rotation, with the new certificate", logs: [rsch, uhsx]) { uhsx.received.count == 4 })
        // Another trust's certificate put in place by mistake is refused: RSCH stays RSCH.
        let wrong = try consortium.pki.site("UHSX")
        try Data(contentsOf: URL(fileURLWithPath: wrong.certificate)).write(to: URL(fileURLWithPath: site.certificate), options: .atomic)
        try Data(contentsOf: URL(fileURLWithPath: wrong.key)).write(to: URL(fileURLWithPath: site.key), options: .atomic)
        rsch.program?.signal(SIGHUP)
        #expect(AgentSite.eventually(within: 20, "another trust's certificate refused", logs: [rsch]) { rsch.log.contains("is for UHSX, not for this trust (RSCH)") })
        let status = try Run.consort("status", "--config", rsch.config)
        #expect(status.status == 1 && status.stdout.contains("the last reload of the TLS material was REFUSED"), "\(status.stdout)")
    }

    /// The coordinator's listener reloads its CRL on SIGHUP too: a revoked trust is refused at
    /// the handshake from then on, without a restart; a CRL that does not load changes nothing.
    @Test func theCoordinatorRefusesARevokedTrustAfterSIGHUP() throws {
        let consortium = try TestConsortium(members: ["RSCH", "UHSX"], rules: Self.rules)
        let crl = consortium.root.path + "/crl.pem"
        try consortium.pki.writeCRL(to: crl)
        let coordinator = try CoordinatorSite(consortium, extra: "crl \(crl)")
        try coordinator.start()
        defer { coordinator.stop() }
        let rsch = try consortium.pki.site("RSCH"), uhsx = try consortium.pki.site("UHSX")
        let unknown = "/v1/studies/1.2.826.0.1.3680043.2.1125.1"
        #expect(try coordinator.call(unknown, as: rsch, ca: consortium.pki.ca).status == 404)
        try "garbage\n".write(toFile: crl, atomically: true, encoding: .utf8)
        coordinator.program?.signal(SIGHUP)
        #expect(AgentSite.eventually(within: 20, "the broken CRL refused") { coordinator.log.contains("TLS material NOT reloaded") })
        #expect(try coordinator.call(unknown, as: rsch, ca: consortium.pki.ca).status == 404)
        try consortium.pki.writeCRL(to: crl, revoking: [rsch.certificate])
        coordinator.program?.signal(SIGHUP)
        #expect(AgentSite.eventually(within: 20, "the new CRL loaded") { coordinator.log.contains("TLS material reloaded") })
        #expect(try coordinator.call(unknown, as: rsch, ca: consortium.pki.ca).status == 0, "a revoked trust got an answer")
        #expect(try coordinator.call(unknown, as: uhsx, ca: consortium.pki.ca).status == 404)
    }

    /// A trust's own certificate rotated: the new one written over the old, SIGHUP, and the
    /// agent presents it from the next handshake on while transfers go on; a key that does not
    /// match its certificate is refused and the pair in force stays.
    @Test func aRotatedCertificateIsPresentedAfterSIGHUPAndABadPairIsRefused() throws {
        let consortium = try TestConsortium(members: ["RSCH", "UHSX"], rules: Self.rules)
        let uhsx = try consortium.site("UHSX")
        let rsch = try consortium.site("RSCH", peers: ["UHSX": uhsx.port])
        try uhsx.start()
        try rsch.start()
        defer {
            rsch.stop()
            uhsx.stop()
        }
        let site = try consortium.pki.site("UHSX"), client = try consortium.pki.site("RSCH")
        func presentedSerial() throws -> String {
            let shown = try Run.program("/bin/sh", ["-c",
                "openssl s_client -connect 127.0.0.1:\(uhsx.port) -cert \(client.certificate) -key \(client.key) -CAfile \(consortium.pki.ca) </dev/null 2>/dev/null | openssl x509 -noout -serial"])
            return shown.stdout.trimmingCharacters(in: .whitespacesAndNewlines)
        }
        func serial(_ path: String) throws -> String {
            try Run.program("/usr/bin/openssl", ["x509", "-in", path, "-noout", "-serial"]).stdout.trimmingCharacters(in: .whitespacesAndNewlines)
        }
        let original = try serial(site.certificate)
        #expect(try presentedSerial() == original)
        _ = try AgentTests.synth(into: rsch.watch, seed: 61, instances: 2)
        #expect(AgentSite.eventually(within: 60, "a study before the rotation", logs: [rsch, uhsx]) { uhsx.received.count == 2 })

        // A key that does not match the certificate (an operator's half-done copy): refused.
        let other = try consortium.pki.anotherServer("uhsx-other")
        try Data(contentsOf: URL(fileURLWithPath: other.key)).write(to: URL(fileURLWithPath: site.key), options: .atomic)
        uhsx.program?.signal(SIGHUP)
        #expect(AgentSite.eventually(within: 20, "the mismatched pair refused", logs: [uhsx]) { uhsx.log.contains("TLS material NOT reloaded") && uhsx.log.contains("key values mismatch") })
        #expect(try presentedSerial() == original)

        // The rotation: a new certificate and its key in place, then SIGHUP.
        let rotated = try consortium.pki.anotherServer("uhsx-rotated")
        try Data(contentsOf: URL(fileURLWithPath: rotated.certificate)).write(to: URL(fileURLWithPath: site.certificate), options: .atomic)
        try Data(contentsOf: URL(fileURLWithPath: rotated.key)).write(to: URL(fileURLWithPath: site.key), options: .atomic)
        uhsx.program?.signal(SIGHUP)
        #expect(AgentSite.eventually(within: 20, "the rotated pair loaded", logs: [uhsx]) { uhsx.log.contains("TLS material reloaded") })
        let newSerial = try serial(rotated.certificate)
        #expect(newSerial != original)
        #expect(try presentedSerial() == newSerial)
        _ = try AgentTests.synth(into: rsch.watch, seed: 62, instances: 2)
        #expect(AgentSite.eventually(within: 60, "a study after the rotation", logs: [rsch, uhsx]) { uhsx.received.count == 4 })
    }

    /// A CRL three days from its next update: `consort status` exits 1 naming it, `--json`
    /// flags it, `/metrics` gives its time, the log warned at start, `consort config check`
    /// warns. With a fresh CRL all is well. Past its next update the receiver refuses every
    /// handshake (the documented choice: fail closed), and status says EXPIRED.
    @Test func anExpiringCRLIsShoutedAndAnExpiredOneRefusesHandshakes() throws {
        let consortium = try TestConsortium(members: ["RSCH", "UHSX"], rules: Self.rules)
        let crl = consortium.root.path + "/crl.pem"
        try consortium.pki.writeCRL(to: crl)
        let metrics = try OrthancInteropTests.freePort()
        let uhsx = try consortium.site("UHSX", extra: "crl \(crl)\nmetrics 127.0.0.1:\(metrics)\n")
        try uhsx.start()
        let fresh = try Run.consort("status", "--config", uhsx.config)
        #expect(fresh.status == 0, "\(fresh.stdout)")
        #expect(fresh.stdout.contains("next update"), "\(fresh.stdout)")
        uhsx.stop()

        let soon = Date().addingTimeInterval(3 * 86_400)
        try consortium.pki.writeCRL(to: crl, nextUpdate: Self.asn1(soon))
        try uhsx.start()
        let status = try Run.consort("status", "--config", uhsx.config)
        #expect(status.status == 1 && (status.stdout.contains("the CRL expires in 2.9 days") || status.stdout.contains("the CRL expires in 3.0 days")), "\(status.stdout)")
        let json = try Run.consort("status", "--config", uhsx.config, "--json")
        #expect(json.status == 1)
        let object = try #require(try JSONSerialization.jsonObject(with: Data(json.stdout.utf8)) as? [String: Any])
        #expect(((object["tls"] as? [String: Any])?["crl"] as? [String: Any])?["needs_attention"] as? Bool == true, "\(json.stdout)")
        #expect(((object["tls"] as? [String: Any])?["certificate"] as? [String: Any])?["needs_attention"] as? Bool == false, "\(json.stdout)")
        let page = try Self.metrics(metrics)
        let published = Self.sample(page, #"consort_tls_expiry_timestamp_seconds{item="crl"}"#) ?? 0
        #expect(abs(published - soon.timeIntervalSince1970) < 2, "\(page)")
        #expect(Self.sample(page, #"consort_tls_expiry_timestamp_seconds{item="certificate"}"#) ?? 0 > soon.timeIntervalSince1970)
        #expect(uhsx.log.contains("the CRL (its next update) expires in"), "\(uhsx.log)")
        let check = try Run.consort("config", "check", uhsx.config)
        #expect(check.status == 0 && check.stderr.contains("warning: the CRL's next update is in 2 days"), "\(check.stdout)\(check.stderr)")
        // With the agent down, status reads the files.
        uhsx.stop()
        let down = try Run.consort("status", "--config", uhsx.config)
        #expect(down.stdout.contains("read from the files") && down.stdout.contains("the CRL expires in"), "\(down.stdout)")

        // Past it: every handshake refused, and said so.
        try consortium.pki.writeCRL(to: crl, lastUpdate: Self.asn1(Date().addingTimeInterval(-3 * 86_400)), nextUpdate: Self.asn1(Date().addingTimeInterval(-86_400)))
        try uhsx.start()
        defer { uhsx.stop() }
        let rsch = try consortium.pki.site("RSCH")
        let answer = try Self.request("\(uhsx.url)/studies?PatientID=X", as: rsch, ca: consortium.pki.ca)
        #expect(answer.status == 0, "a handshake past the CRL's next update was accepted: \(answer)")
        let expired = try Run.consort("status", "--config", uhsx.config)
        #expect(expired.status == 1 && expired.stdout.contains("the CRL EXPIRED"), "\(expired.stdout)")
    }

    /// YYYYMMDDHHMMSSZ, as `openssl ca -crl_nextupdate` takes it.
    static func asn1(_ date: Date) -> String {
        let formatter = DateFormatter()
        formatter.locale = Locale(identifier: "en_US_POSIX")
        formatter.timeZone = TimeZone(identifier: "UTC")
        formatter.dateFormat = "yyyyMMddHHmmss'Z'"
        return formatter.string(from: date)
    }
}
