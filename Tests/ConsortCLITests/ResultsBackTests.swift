import DICOM
import Foundation
import TestSupport
import Testing

/// Results back (issue 29), tried for real: RSCH's agent pushes studies to a test AI service
/// (`consort receive` with AI-CXR's certificate); the service answers one with a Structured
/// Report built by pydicom and posted by Python's own TLS client with that certificate
/// (`Interop/ai_service.py`). The report lands in RSCH's PACS — a real Orthanc — in the same
/// study and patient; a report on a study never sent is refused (403, 0xA900, the reason); the
/// study never answered raises its alarm; `consort status` and `/metrics` count it all.
@Suite("results back", .serialized, .timeLimit(.minutes(10)))
struct ResultsBackTests {
    static let rules = """
        peer AI-CXR "Chest X-ray AI test service" roles ai

        agreement "AI triage" {
          purposes ai-triage
          from RSCH
          to AI-CXR
          results back
        }

        rule "Studies to the AI" {
          purpose ai-triage
          at RSCH
          on study-stable after 2 s
          when origin is local
          push to AI-CXR priority normal expect result within 20 s
        }

        rule "AI results into our PACS" {
          purpose ai-triage
          at RSCH
          on instance-arrival
          when origin is received from AI-CXR
          deliver to local PACS priority normal
        }
        """

    static let script = URL(fileURLWithPath: #filePath).deletingLastPathComponent().path + "/Interop/ai_service.py"

    /// The AI service's answer for the study in `folder`: the JSON line ai_service.py prints.
    static func answer(
        _ folder: String, to rsch: AgentSite, as peer: (certificate: String, key: String), ca: String, otherStudy: Bool = false, patient: String? = nil,
        ownStudy: String? = nil
    ) throws -> [String: Any] {
        let outcome = try Run.program(
            "/usr/bin/env",
            ["python3", script, folder, rsch.url + "/studies", peer.certificate, peer.key, ca] + (otherStudy ? ["--other-study"] : []) + (patient.map { ["--patient", $0] } ?? [])
                + (ownStudy.map { ["--own-study", $0] } ?? []))
        #expect(outcome.status == 0, "\(outcome.stderr)")
        return try #require(try JSONSerialization.jsonObject(with: Data(outcome.stdout.utf8)) as? [String: Any], "\(outcome.stdout)\(outcome.stderr)")
    }

    @Test func aReportOnAStudySentComesBackIntoThePACSAndAnythingElseIsRefused() throws {
        let consortium = try TestConsortium(members: ["RSCH"], rules: Self.rules)
        let peer = try consortium.pki.site("AI-CXR")
        let ai = try ReceiverProcess(store: consortium.root.path + "/ai-store", pki: consortium.pki, identity: peer)
        defer { _ = ai.stop() }
        let orthanc = try OrthancInteropTests.Orthanc(folder: consortium.root.path + "/orthanc", consortReceiver: "http://127.0.0.1:1/none")
        defer { orthanc.stop() }
        let metricsPort = try OrthancInteropTests.freePort()
        let rsch = try consortium.site("RSCH", peers: ["AI-CXR": ai.port], extra: "local PACS dicomweb \(orthanc.url)/dicom-web\nmetrics 127.0.0.1:\(metricsPort)\n")

        // Two studies in RSCH's PACS already (they were acquired there), then exported.
        let source = consortium.root.path + "/source"
        let answered = try AgentTests.synth(into: source, seed: 291, instances: 3, description: "XR CHEST PA")
        let unanswered = try AgentTests.synth(into: source, seed: 292, instances: 2, description: "XR CHEST PA")
        for study in [answered, unanswered] {
            for file in try FileManager.default.contentsOfDirectory(atPath: source + "/" + study).sorted() {
                let upload = try OrthancInteropTests.curl(["-s", "--max-time", "20", "-X", "POST", "--data-binary", "@\(source)/\(study)/\(file)", "\(orthanc.url)/instances"])
                #expect(upload.stdout.contains("\"Status\""), "\(upload.stdout)")
            }
        }
        try rsch.start()
        defer { rsch.stop() }
        for study in [answered, unanswered] { try FileManager.default.copyItem(atPath: "\(source)/\(study)", toPath: "\(rsch.watch)/\(study)") }
        let atAI = AgentSite.eventually(within: 60, "both studies at the AI service", logs: [rsch]) {
            [answered: 3, unanswered: 2].allSatisfy { study, count in
                ((try? FileManager.default.contentsOfDirectory(atPath: ai.store + "/" + study)) ?? []).filter { $0.hasSuffix(".dcm") }.count == count
            }
        }
        try #require(atAI)

        // The report on the first study: accepted, placed, delivered to Orthanc.
        let report = try Self.answer(ai.store + "/" + answered, to: rsch, as: peer, ca: consortium.pki.ca)
        #expect(report["status"] as? Int == 200, "\(report)")
        let sop = try #require(report["sop"] as? String)
        #expect(report["study"] as? String == answered)
        let inPACS = AgentSite.eventually(within: 60, "the report in Orthanc, in the study", logs: [rsch]) {
            let instances = try? OrthancInteropTests.curl(["-s", "--max-time", "5", "\(orthanc.url)/dicom-web/studies/\(answered)/instances"])
            return instances?.stdout.contains(sop) == true
        }
        #expect(inPACS)
        // One study in Orthanc with that UID (a report under another patient would have made a
        // second), holding the three images and the report, under the study's own patient.
        let found = try OrthancInteropTests.curl([
            "-s", "--max-time", "10", "-X", "POST", "\(orthanc.url)/tools/find", "-d", #"{"Level":"Study","Query":{"StudyInstanceUID":"\#(answered)"},"Expand":true}"#,
        ])
        let studies = try #require(try JSONSerialization.jsonObject(with: Data(found.stdout.utf8)) as? [[String: Any]], "\(found.stdout)")
        #expect(studies.count == 1, "\(found.stdout)")
        // (Orthanc keys a study by its patient and its UID: the report filed under another
        // patient would be a second study.)
        let series = studies.first?["Series"] as? [String] ?? []
        #expect(series.count == 2, "the image series and the report's: \(found.stdout)")
        let patient = try #require(report["patient"] as? String)
        #expect(!patient.isEmpty && (studies.first?["PatientMainDicomTags"] as? [String: Any])?["PatientID"] as? String == patient, "\(found.stdout)")
        let reportSeries = try OrthancInteropTests.curl(["-s", "--max-time", "5", "\(orthanc.url)/dicom-web/studies/\(answered)/series?Modality=SR"])
        #expect(reportSeries.stdout.contains("\"SR\""), "\(reportSeries.stdout)")

        // A report on a study never sent to AI-CXR: refused, with the reason and 0xA900.
        let stray = try Self.answer(ai.store + "/" + answered, to: rsch, as: peer, ca: consortium.pki.ca, otherStudy: true)
        #expect(stray["status"] as? Int == 403, "\(stray)")
        let body = stray["body"] as? String ?? ""
        #expect(body.contains("43264") && body.contains("refers to no study RSCH sent to AI-CXR"), "\(body)")
        let straySOP = try #require(stray["sop"] as? String)
        #expect(!rsch.received.contains { $0.contains(straySOP) }, "a refused report was kept")

        // The study never answered: its alarm, after the 20 s its rule allows; not the other's.
        let alarmed = AgentSite.eventually(within: 60, "the overdue result's alarm", logs: [rsch]) {
            rsch.log.contains("RESULT OVERDUE") && rsch.log.contains(unanswered)
        }
        #expect(alarmed)
        let overdueLines = rsch.log.split(separator: "\n").filter { $0.contains("RESULT OVERDUE") }
        #expect(overdueLines.count == 1 && !overdueLines.contains { $0.contains(answered) }, "\(overdueLines)")

        // Counted: in the status and the metrics, per peer.
        let status = try Run.consort("status", "--json", "--config", rsch.config)
        let fields = try #require(try JSONSerialization.jsonObject(with: Data(status.stdout.utf8)) as? [String: Any], "\(status.stdout)")
        let results = (fields["results"] as? [[String: Any]])?.first { $0["peer"] as? String == "AI-CXR" }
        #expect(results?["received"] as? Int == 1 && results?["refused"] as? Int == 1 && results?["overdue"] as? Int == 1, "\(fields["results"] ?? "none")")
        #expect((fields["results_overdue"] as? [[String: Any]])?.map { $0["study"] as? String } == [unanswered])
        #expect((fields["needs_attention"] as? [String])?.contains { $0.contains("1 result overdue from AI-CXR") } == true, "\(fields["needs_attention"] ?? "")")
        let page = try TrustBoundaryTests.metrics(metricsPort)
        #expect(TrustBoundaryTests.sample(page, #"consort_results_total{outcome="received",peer="AI-CXR"}"#) == 1, "\(page)")
        #expect(TrustBoundaryTests.sample(page, #"consort_results_total{outcome="refused",peer="AI-CXR"}"#) == 1)
        #expect(TrustBoundaryTests.sample(page, #"consort_results_overdue{peer="AI-CXR"}"#) == 1)
        let text = try Run.consort("status", "--config", rsch.config)
        #expect(text.stdout.contains("Results back") && text.stdout.contains("1 received, 1 refused") && text.stdout.contains("1 OVERDUE"), "\(text.stdout)")

        // Audited: the result with the rule that sent the study, the refusal with its reason.
        let audit = TrustBoundaryTests.audit(rsch.state + "/audit.log")
        #expect(audit.contains { $0["who"] as? String == "AI-CXR" && $0["action"] as? String == "result" && $0["study"] as? String == answered
            && ($0["detail"] as? String ?? "").contains("Studies to the AI") })
        #expect(audit.contains { $0["who"] as? String == "AI-CXR" && $0["action"] as? String == "refused" && ($0["detail"] as? String ?? "").contains(straySOP) })

        // The study was stable again once the report joined it, and its push rule fired again:
        // the report was not sent back to the service it came from.
        let refired = AgentSite.eventually(within: 30, "the study's stable rules fired again after the report", logs: [rsch]) {
            rsch.log.split(separator: "\n").filter { $0.contains("study stable: jobs queued") && $0.contains(answered) }.count >= 2
        }
        #expect(refired)
        // A peer that sends results back stores results, nothing else: not a study manifest.
        let manifest = try TrustBoundaryTests.request(
            "\(rsch.url)/consort/v1/studies/\(answered)/manifest", as: peer, ca: consortium.pki.ca, purpose: "ai-triage", method: "PUT",
            extra: ["-H", "Content-Type: application/json", "-d", #"{"final":true,"instances":[]}"#])
        #expect(manifest.status == 403 && manifest.body.contains("is a peer"), "\(manifest)")
        // The report was delivered to the PACS, and never sent back to the service.
        let queue = try rsch.queue()
        #expect(queue.contains { $0["kind"] as? String == "deliver" && $0["state"] as? String == "done" && $0["instances_sent"] as? Int == 1 }, "\(queue)")
        #expect(!FileManager.default.fileExists(atPath: ai.store + "/" + answered + "/" + sop + ".dcm"), "the report went back to the AI")

        // A late report clears the alarm.
        let late = try Self.answer(ai.store + "/" + unanswered, to: rsch, as: peer, ca: consortium.pki.ca)
        #expect(late["status"] as? Int == 200, "\(late)")
        let cleared = AgentSite.eventually(within: 20, "the alarm cleared", logs: [rsch]) {
            TrustBoundaryTests.sample((try? TrustBoundaryTests.metrics(metricsPort)) ?? "", #"consort_results_overdue{peer="AI-CXR"}"#) == 0
        }
        #expect(cleared)
    }

    /// A study RSCH sent ASPH goes from ASPH to the AI service; the service's report comes back
    /// to ASPH and, because a rule there says `push to origin`, on to RSCH, which holds the
    /// original — the report alone, not the study RSCH already has.
    @Test func aReportOnAStudyFromAnotherTrustGoesBackToThatTrustToo() throws {
        let rules = """
            peer AI-CXR "Chest X-ray AI test service" roles ai

            agreement "AI triage" {
              purposes ai-triage
              from ASPH
              to AI-CXR
              results back
            }

            rule "Everything to ASPH" {
              purpose direct-care
              at RSCH
              on instance-arrival
              when origin is local
              push to ASPH
            }

            rule "Studies from RSCH to the AI" {
              purpose ai-triage
              at ASPH
              on instance-arrival
              when origin is received from RSCH
              push to AI-CXR expect result within 10 min
            }

            rule "AI reports to the trust that holds the study" {
              purpose direct-care
              at ASPH
              on instance-arrival
              when origin is received from AI-CXR
              push to origin priority urgent
            }
            """
        let consortium = try TestConsortium(members: ["RSCH", "ASPH"], rules: rules)
        let peer = try consortium.pki.site("AI-CXR")
        let ai = try ReceiverProcess(store: consortium.root.path + "/ai-store", pki: consortium.pki, identity: peer)
        defer { _ = ai.stop() }
        let rschPort = try OrthancInteropTests.freePort()
        let asph = try consortium.site("ASPH", peers: ["AI-CXR": ai.port, "RSCH": rschPort])
        let rsch = try consortium.site("RSCH", port: rschPort, peers: ["ASPH": asph.port])
        try asph.start()
        defer { asph.stop() }
        try rsch.start()
        defer { rsch.stop() }
        let study = try AgentTests.synth(into: rsch.watch, seed: 293, instances: 2, description: "XR CHEST PA")
        let atAI = AgentSite.eventually(within: 60, "the study at the AI service, by way of ASPH", logs: [rsch, asph]) {
            ((try? FileManager.default.contentsOfDirectory(atPath: ai.store + "/" + study)) ?? []).filter { $0.hasSuffix(".dcm") }.count == 2
        }
        try #require(atAI)
        let report = try Self.answer(ai.store + "/" + study, to: asph, as: peer, ca: consortium.pki.ca)
        #expect(report["status"] as? Int == 200, "\(report)")
        let sop = try #require(report["sop"] as? String)
        let atRSCH = AgentSite.eventually(within: 60, "the report at RSCH", logs: [rsch, asph]) {
            rsch.received.contains("\(study)/\(sop).dcm")
        }
        #expect(atRSCH, "\(rsch.received)")
        // Only the report went back: RSCH's own images were not sent to it again.
        let back = try asph.queue().filter { $0["peer"] as? String == "RSCH" }
        #expect(back.count == 1 && back.first?["instances_total"] as? Int == 1, "\(back)")
    }

    /// A push to a peer whose agreement requires de-identification goes de-identified: what the
    /// peer receives, checked by pydicom against the standard's table, holds nothing the Basic
    /// Profile takes, the pixel data as it was, the study's instances one study under new UIDs;
    /// an ultrasound instance (burned-in text) is not sent at all; the de-identification is
    /// audited without the key.
    @Test func aPushToAPeerThatRequiresDeidentificationGoesDeidentified() throws {
        let rules = """
            peer RESEARCH-AI "A research AI" roles ai

            agreement "Research" {
              purposes research
              from RSCH
              to RESEARCH-AI
              requires deidentification
              results back
            }

            rule "Studies to research, de-identified" {
              purpose research
              at RSCH
              on study-stable after 2 s
              when origin is local
              push to RESEARCH-AI priority normal deidentified with clean-descriptors expect result within 10 min
            }

            rule "Research results into our PACS" {
              purpose research
              at RSCH
              on instance-arrival
              when origin is received from RESEARCH-AI
              deliver to local PACS priority normal
            }
            """
        let table = (ProcessInfo.processInfo.environment["XDG_CACHE_HOME"] ?? NSHomeDirectory() + "/.cache") + "/consort-tests/confidentiality_profile_attributes.json"
        try #require(FileManager.default.fileExists(atPath: table), "run Tests/install-test-dependencies.sh")
        let consortium = try TestConsortium(members: ["RSCH"], rules: rules)
        let peer = try consortium.pki.site("RESEARCH-AI")
        let ai = try ReceiverProcess(store: consortium.root.path + "/research-store", pki: consortium.pki, identity: peer)
        defer { _ = ai.stop() }
        let orthanc = try OrthancInteropTests.Orthanc(folder: consortium.root.path + "/orthanc", consortReceiver: "http://127.0.0.1:1/none")
        defer { orthanc.stop() }
        let rsch = try consortium.site("RSCH", peers: ["RESEARCH-AI": ai.port], extra: "local PACS dicomweb \(orthanc.url)/dicom-web\n")
        let source = consortium.root.path + "/source"
        let study = try AgentTests.synth(into: source, seed: 294, instances: 4, description: "CT CHEST")
        // The study is in RSCH's PACS already (it was acquired there), then exported.
        for file in try FileManager.default.contentsOfDirectory(atPath: source + "/" + study).sorted() {
            let upload = try OrthancInteropTests.curl(["-s", "--max-time", "20", "-X", "POST", "--data-binary", "@\(source)/\(study)/\(file)", "\(orthanc.url)/instances"])
            #expect(upload.stdout.contains("\"Status\""), "\(upload.stdout)")
        }
        try rsch.start()
        defer { rsch.stop() }
        let made = try Run.program(Run.consort, ["synth", "--out", source, "--seed", "295", "--instances", "2", "--size", "32x32", "--modality", "US", "--description", "US ABDOMEN"])
        let ultrasound = made.stdout.trimmingCharacters(in: .whitespacesAndNewlines)
        for uid in [study, ultrasound] { try FileManager.default.copyItem(atPath: "\(source)/\(uid)", toPath: "\(rsch.watch)/\(uid)") }
        let received = AgentSite.eventually(within: 60, "four de-identified instances at the research AI", logs: [rsch]) {
            TransferTests.files(under: ai.store).count == 4
        }
        try #require(received)
        let files = TransferTests.files(under: ai.store)
        #expect(!files.contains { $0.contains(study) }, "the study's own UID reached the peer: \(files)")
        #expect(Set(files.map { $0.split(separator: "/").first! }).count == 1, "one study: \(files)")
        // Pairs by Instance Number (kept by the profile) for the independent check.
        func number(_ path: String) throws -> String { try DICOMFile.read(path: path).dataSet.string(Tag(0x0020, 0x0013)) ?? "" }
        let originals = try FileManager.default.contentsOfDirectory(atPath: source + "/" + study).map { source + "/" + study + "/" + $0 }
        var pairs: [String] = []
        for file in files.map({ ai.store + "/" + $0 }) {
            let n = try number(file)
            let original = try #require(try originals.first { try number($0) == n })
            pairs += [original, file]
        }
        let check = try Run.program("/usr/bin/env", ["python3", Run.packageRoot + "/Tests/DeidentificationTests/check_deidentified.py", table] + pairs)
        #expect(check.status == 0, "\(check.stdout)\(check.stderr)")
        // The ultrasound study: refused instance by instance, never sent.
        let refused = try AgentSite.eventually(within: 60, "the ultrasound study's push finished, refused", logs: [rsch]) {
            try rsch.queue().contains { $0["study"] as? String == ultrasound && $0["instances_refused"] as? Int == 2 }
        }
        #expect(refused)
        #expect(TransferTests.files(under: ai.store).count == 4 && rsch.log.contains("ultrasound may carry burned-in text"))
        let audit = TrustBoundaryTests.audit(rsch.state + "/audit.log")
        let line = audit.first { $0["action"] as? String == "deidentify" && $0["study"] as? String == study }
        #expect(line != nil && (line?["detail"] as? String ?? "").contains("RESEARCH-AI") && (line?["detail"] as? String ?? "").contains(#"under agreement "Research""#), "\(audit.suffix(5))")
        let key = try Data(contentsOf: URL(fileURLWithPath: rsch.state + "/deidentification.key"))
        let hex = key.map { String(format: "%02x", $0) }.joined()
        let auditText = try String(contentsOfFile: rsch.state + "/audit.log", encoding: .utf8)
        #expect(key.count == 32 && !auditText.contains(hex) && !rsch.log.contains(hex))
        let mode = try FileManager.default.attributesOfItem(atPath: rsch.state + "/deidentification.key")[.posixPermissions] as? Int
        #expect(mode == 0o600)

        // The research AI answers the study as it knows it — no patient, the UIDs it was given
        // (ai_service.py copies the patient module and lists every instance as evidence). The
        // report lands in RSCH's PACS in the original study, under the original patient, its
        // evidence naming the original images.
        let atPeer = try #require(files.first.map { String($0.split(separator: "/").first!) })
        let report = try Self.answer(ai.store + "/" + atPeer, to: rsch, as: peer, ca: consortium.pki.ca)
        #expect(report["status"] as? Int == 200 && report["study"] as? String == atPeer && report["patient"] as? String == "", "\(report)")
        let sop = try #require(report["sop"] as? String)
        let inPACS = AgentSite.eventually(within: 60, "the re-identified report in Orthanc, in the original study", logs: [rsch]) {
            let instances = try? OrthancInteropTests.curl(["-s", "--max-time", "5", "\(orthanc.url)/dicom-web/studies/\(study)/instances"])
            return instances?.stdout.contains(sop) == true
        }
        try #require(inPACS)
        let found = try OrthancInteropTests.curl([
            "-s", "--max-time", "10", "-X", "POST", "\(orthanc.url)/tools/find", "-d", #"{"Level":"Study","Query":{"StudyInstanceUID":"\#(study)"},"Expand":true}"#,
        ])
        let studies = try #require(try JSONSerialization.jsonObject(with: Data(found.stdout.utf8)) as? [[String: Any]], "\(found.stdout)")
        #expect(studies.count == 1 && (studies.first?["Series"] as? [String])?.count == 2, "one study, the images' series and the report's: \(found.stdout)")
        let original = try DICOMFile.read(path: originals[0]).dataSet
        #expect((studies.first?["PatientMainDicomTags"] as? [String: Any])?["PatientID"] as? String == original.string(.patientID), "\(found.stdout)")
        let instance = try OrthancInteropTests.curl([
            "-s", "--max-time", "10", "-X", "POST", "\(orthanc.url)/tools/find", "-d", #"{"Level":"Instance","Query":{"SOPInstanceUID":"\#(sop)"}}"#,
        ])
        let id = try #require((try JSONSerialization.jsonObject(with: Data(instance.stdout.utf8)) as? [String])?.first, "\(instance.stdout)")
        let tags = try OrthancInteropTests.curl(["-s", "--max-time", "10", "\(orthanc.url)/instances/\(id)/simplified-tags"])
        let sr = try #require(try JSONSerialization.jsonObject(with: Data(tags.stdout.utf8)) as? [String: Any], "\(tags.stdout)")
        #expect(sr["PatientID"] as? String == original.string(.patientID) && sr["PatientName"] as? String == original.string(Tag(0x0010, 0x0010)), "\(tags.stdout)")
        #expect(sr["AccessionNumber"] as? String == original.string(Tag(0x0008, 0x0050)) && sr["PatientIdentityRemoved"] == nil, "\(tags.stdout)")
        let evidence = (sr["CurrentRequestedProcedureEvidenceSequence"] as? [[String: Any]])?.first
        let referenced = ((evidence?["ReferencedSeriesSequence"] as? [[String: Any]]) ?? []).flatMap { ($0["ReferencedSOPSequence"] as? [[String: Any]]) ?? [] }
            .compactMap { $0["ReferencedSOPInstanceUID"] as? String }
        let originalSOPs = try originals.map { try DICOMFile.read(path: $0).dataSet.string(.sopInstanceUID) ?? "" }
        #expect(evidence?["StudyInstanceUID"] as? String == study && Set(referenced) == Set(originalSOPs), "\(tags.stdout)")
        // Counted as a result, its rule's expectation met; the re-identification audited with
        // the UID the peer knew, never the key.
        let status = try Run.consort("status", "--json", "--config", rsch.config)
        let fields = try #require(try JSONSerialization.jsonObject(with: Data(status.stdout.utf8)) as? [String: Any], "\(status.stdout)")
        let results = (fields["results"] as? [[String: Any]])?.first { $0["peer"] as? String == "RESEARCH-AI" }
        #expect(results?["received"] as? Int == 1 && results?["awaited"] as? Int == 0, "\(fields["results"] ?? "none")")
        let after = TrustBoundaryTests.audit(rsch.state + "/audit.log")
        let reidentified = after.first { $0["action"] as? String == "reidentify" && $0["study"] as? String == study }
        let reidentifiedDetail = reidentified?["detail"] as? String ?? ""
        #expect(reidentifiedDetail.contains(atPeer) && reidentifiedDetail.contains("clean-descriptors") && reidentifiedDetail.contains(#"under agreement "Research""#), "\(after.suffix(4))")
        let afterText = try String(contentsOfFile: rsch.state + "/audit.log", encoding: .utf8)
        #expect(!afterText.contains(hex))
        // The same report naming a patient, as if the service had been sent one: refused, and
        // the answer names neither the study's own UID nor its patient.
        let named = try Self.answer(ai.store + "/" + atPeer, to: rsch, as: peer, ca: consortium.pki.ca, patient: "SOMEONE")
        let namedBody = named["body"] as? String ?? ""
        #expect(named["status"] as? Int == 403 && namedBody.contains("de-identified"), "\(named)")
        #expect(!namedBody.contains(study) && !namedBody.contains(original.string(.patientID) ?? "?"), "\(namedBody)")
        // A service that files its results in a study of its own, naming the study it answers
        // in its evidence: two reports into that study, in two requests. Both placed in it,
        // under the original patient, and both counted — the second is not refused because the
        // first made the study "held here".
        let ownStudy = "2.25.\(UInt64.random(in: 1...UInt64.max))"
        var ownSOPs: [String] = []
        for _ in 0..<2 {
            let filed = try Self.answer(ai.store + "/" + atPeer, to: rsch, as: peer, ca: consortium.pki.ca, ownStudy: ownStudy)
            #expect(filed["status"] as? Int == 200, "\(filed)")
            if let sop = filed["sop"] as? String { ownSOPs.append(sop) }
        }
        let filedApart = AgentSite.eventually(within: 60, "both reports in their own study in Orthanc", logs: [rsch]) {
            let instances = try? OrthancInteropTests.curl(["-s", "--max-time", "5", "\(orthanc.url)/dicom-web/studies/\(ownStudy)/instances"])
            return ownSOPs.count == 2 && ownSOPs.allSatisfy { instances?.stdout.contains($0) == true }
        }
        #expect(filedApart)
        let apart = try OrthancInteropTests.curl([
            "-s", "--max-time", "10", "-X", "POST", "\(orthanc.url)/tools/find", "-d", #"{"Level":"Study","Query":{"StudyInstanceUID":"\#(ownStudy)"},"Expand":true}"#,
        ])
        let apartStudies = try #require(try JSONSerialization.jsonObject(with: Data(apart.stdout.utf8)) as? [[String: Any]], "\(apart.stdout)")
        #expect((apartStudies.first?["PatientMainDicomTags"] as? [String: Any])?["PatientID"] as? String == original.string(.patientID), "\(apart.stdout)")
        let counted = try Run.consort("status", "--json", "--config", rsch.config)
        let countedFields = try #require(try JSONSerialization.jsonObject(with: Data(counted.stdout.utf8)) as? [String: Any], "\(counted.stdout)")
        let countedResults = (countedFields["results"] as? [[String: Any]])?.first { $0["peer"] as? String == "RESEARCH-AI" }
        #expect(countedResults?["received"] as? Int == 3, "\(countedFields["results"] ?? "none")")
        let reidentifications = TrustBoundaryTests.audit(rsch.state + "/audit.log").filter { $0["action"] as? String == "reidentify" }
        #expect(reidentifications.count == 3, "\(reidentifications)")
    }
}
