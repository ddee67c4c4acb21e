import DICOM
import Foundation
import TestSupport
import Testing

/// Identity on delivery (issue 25): a study from another trust is placed in the receiving
/// trust's identity — its own number for the patient, from the coordinator — or held for its
/// identity, never placed under a guessed one. Agents, a coordinator and a real Orthanc as the
/// receiving trust's PACS, as processes on loopback; every wait has a deadline.
@Suite("identity on delivery", .serialized, .timeLimit(.minutes(10)))
struct IdentityOnDeliveryTests {
    /// The identity attributes of a file, read by the project's parser.
    struct Identity: Equatable, CustomStringConvertible {
        var patientID: String?
        var issuer: String?
        var others: [String]
        var accessionIssuer: String?
        var description: String { "\(patientID ?? "-") (\(issuer ?? "-")) others \(others) accession issuer \(accessionIssuer ?? "-")" }
    }

    static func identity(of path: String) throws -> Identity {
        let data = try DICOMFile.read(path: path).dataSet
        var others: [String] = []
        if case .sequence(let items)? = data[Tag(0x0010, 0x1002)]?.value {
            others = items.map { "\($0.string(.patientID) ?? "") (\($0.string(Tag(0x0010, 0x0021)) ?? ""))" }
        }
        var accessionIssuer: String?
        if case .sequence(let items)? = data[Tag(0x0008, 0x0051)]?.value { accessionIssuer = items.first?.string(Tag(0x0040, 0x0031)) }
        return Identity(patientID: data.string(.patientID), issuer: data.string(Tag(0x0010, 0x0021)), others: others, accessionIssuer: accessionIssuer)
    }

    static func files(_ folder: String) -> [String] {
        ((try? FileManager.default.contentsOfDirectory(atPath: folder)) ?? []).filter { $0.hasSuffix(".dcm") }.sorted().map { folder + "/" + $0 }
    }

    /// `consort identity list --json` at a site.
    static func held(_ site: AgentSite) throws -> [[String: Any]] {
        let outcome = try Run.consort("identity", "list", "--json", "--config", site.config)
        return outcome.stdout.split(separator: "\n").compactMap { try? JSONSerialization.jsonObject(with: Data($0.utf8)) as? [String: Any] }
    }

    static let pushRules = """
        rule "CTs to UHSX and ESHT" {
          purpose direct-care
          at RSCH
          on instance-arrival
          when origin is local and StudyDescription ~ "CT CHEST"
          push to UHSX, ESHT priority normal
        }
        """

    /// Pushed studies at UHSX (`unknown-patient hold`, the default) and ESHT (`unknown-patient
    /// nhs-number`): a patient UHSX has never seen waits, listed by status (exit 1), queue and
    /// identity, outside inbound; it is placed as UHSX's own number once UHSX announces a study of
    /// the patient. ESHT places it under the NHS number at once. A study with an NHS number that
    /// fails Modulus 11 is held with the reason, and stays held when a person releases it; a
    /// patient in a registry conflict is held and never placed; a person's release of an unknown
    /// patient places it under the NHS number.
    @Test func unknownPatientsWaitConflictsAndBadNumbersAreHeldAndNothingIsGuessed() throws {
        let consortium = try TestConsortium(members: ["RSCH", "UHSX", "ESHT"], rules: Self.pushRules)
        let coordinator = try CoordinatorSite(consortium)
        let uhsx = try consortium.site("UHSX", extra: coordinator.agentLine)
        let esht = try consortium.site("ESHT", extra: coordinator.agentLine + "unknown-patient nhs-number\n")
        let rsch = try consortium.site("RSCH", peers: ["UHSX": uhsx.port, "ESHT": esht.port], extra: coordinator.agentLine)
        try coordinator.start()
        defer { coordinator.stop() }
        for site in [uhsx, esht, rsch] { try site.start() }
        defer { for site in [rsch, esht, uhsx] { site.stop() } }
        let patient = CoordinatorTests.patient
        let study = try CoordinatorTests.study(rsch.watch, seed: 401, date: CoordinatorTests.daysAgo(20), trust: "RSCH", instances: 3, extra: ["--patient-id", "R123"])

        // UHSX: held, outside inbound, listed everywhere a person looks.
        #expect(AgentSite.eventually(within: 60, "the study held at UHSX", logs: [rsch, uhsx]) {
            Self.files(uhsx.inbound + "/.held/" + study).count == 3 && ((try? Self.held(uhsx)) ?? []).contains { $0["study"] as? String == study }
        })
        #expect(!FileManager.default.fileExists(atPath: uhsx.inbound + "/" + study), "nothing in inbound while held")
        let hold = try Self.held(uhsx).first { $0["study"] as? String == study } ?? [:]
        #expect(hold["kind"] as? String == "unknown patient" && hold["from"] as? String == "RSCH" && hold["nhs"] as? String == patient, "\(hold)")
        let status = try Run.consort("status", "--config", uhsx.config)
        #expect(status.status == 1 && status.stdout.contains(study) && status.stdout.contains("waiting for identity"), "\(status.stdout)")
        let queue = try Run.consort("queue", "--config", uhsx.config)
        #expect(queue.stdout.contains("waiting for identity") && queue.stdout.contains(study), "\(queue.stdout)")
        // RSCH's push is done: held here is received (acknowledged), not refused.
        #expect(AgentSite.eventually(within: 30, "RSCH's push to UHSX done", logs: [rsch]) {
            ((try? rsch.queue()) ?? []).contains { $0["peer"] as? String == "UHSX" && $0["state"] as? String == "done" }
        })

        // ESHT (`unknown-patient nhs-number`): placed at once under the NHS number.
        #expect(AgentSite.eventually(within: 60, "the study placed at ESHT", logs: [rsch, esht]) { Self.files(esht.inbound + "/" + study).count == 3 })
        for file in Self.files(esht.inbound + "/" + study) {
            let identity = try Self.identity(of: file)
            #expect(identity.patientID == patient && identity.issuer == "NHS" && identity.others == ["\(patient) (NHS)", "R123 (RSCH)"] && identity.accessionIssuer == "RSCH", "\(identity)")
        }

        // UHSX registers the patient (a study of its own, announced): the held study is placed
        // under UHSX's number, without a person.
        try CoordinatorTests.study(uhsx.watch, seed: 402, date: CoordinatorTests.daysAgo(400), trust: "UHSX", instances: 1, extra: ["--patient-id", "U987"])
        #expect(AgentSite.eventually(within: 90, "the held study placed at UHSX as U987", logs: [uhsx]) {
            Self.files(uhsx.inbound + "/" + study).count == 3 && ((try? Self.held(uhsx)) ?? [[:]]).isEmpty
        })
        for file in Self.files(uhsx.inbound + "/" + study) {
            let identity = try Self.identity(of: file)
            #expect(identity.patientID == "U987" && identity.issuer == "UHSX" && identity.others == ["\(patient) (NHS)", "R123 (RSCH)"], "\(identity)")
        }
        #expect(Self.files(uhsx.inbound + "/.held/" + study).isEmpty)
        let audit = try String(contentsOfFile: uhsx.state + "/audit.log", encoding: .utf8)
        #expect(audit.contains("\"action\":\"identity\"") && audit.contains("from R123 (RSCH)") && audit.contains("identity-lookup"), "the rewrite and the lookups audited")

        // An NHS number that fails Modulus 11: held with the reason; a person's release keeps it held.
        let bad = try CoordinatorTests.study(rsch.watch, seed: 403, nhs: "9990000019", date: CoordinatorTests.daysAgo(5), trust: "RSCH", instances: 1, extra: ["--patient-id", "R124"])
        #expect(AgentSite.eventually(within: 60, "the bad study held at UHSX", logs: [rsch, uhsx]) {
            ((try? Self.held(uhsx)) ?? []).contains { $0["study"] as? String == bad && ($0["reason"] as? String ?? "").contains("Modulus 11") }
        })
        let refused = try Run.consort("identity", "release", bad, "--config", uhsx.config)
        #expect(refused.status == 1 && refused.stdout.contains("still held"), "\(refused.stdout)\(refused.stderr)")
        #expect(!FileManager.default.fileExists(atPath: uhsx.inbound + "/" + bad))

        // A patient in a registry conflict: RSCH's R123 names a second NHS number (in an MR its
        // rule does not push), then a CT of that patient is pushed: held, never placed.
        let other = "9990000026"
        try CoordinatorTests.study(
            rsch.watch, seed: 406, nhs: other, modality: "MR", date: CoordinatorTests.daysAgo(4), description: "MR HEAD", trust: "RSCH", instances: 1,
            extra: ["--patient-id", "R123"])
        #expect(try AgentSite.eventually(within: 30, "the conflict at the coordinator", logs: [rsch]) {
            try coordinator.call("/v1/patients/\(other)/identity", as: consortium.pki.site("UHSX"), ca: consortium.pki.ca).status == 409
        })
        let conflicted = try CoordinatorTests.study(rsch.watch, seed: 404, nhs: other, date: CoordinatorTests.daysAgo(3), trust: "RSCH", instances: 1, extra: ["--patient-id", "R123"])
        #expect(AgentSite.eventually(within: 60, "the conflicted study held at UHSX", logs: [rsch, uhsx]) {
            ((try? Self.held(uhsx)) ?? []).contains { $0["study"] as? String == conflicted && $0["kind"] as? String == "conflict" }
        })
        #expect(uhsx.log.contains("STUDY HELD FOR A PERSON"), "a conflict is loud")
        let stillHeld = try Run.consort("identity", "release", conflicted, "--config", uhsx.config)
        #expect(stillHeld.status == 1 && stillHeld.stdout.contains("still held"), "\(stillHeld.stdout)\(stillHeld.stderr)")
        #expect(!FileManager.default.fileExists(atPath: uhsx.inbound + "/" + conflicted), "never placed under any identity")
        #expect(!FileManager.default.fileExists(atPath: esht.inbound + "/" + conflicted), "not under the NHS number either")

        // A person releases a patient UHSX does not know: placed under the NHS number.
        let third = "9990000034"
        let unknown = try CoordinatorTests.study(rsch.watch, seed: 405, nhs: third, date: CoordinatorTests.daysAgo(2), trust: "RSCH", instances: 1, extra: ["--patient-id", "R125"])
        #expect(AgentSite.eventually(within: 60, "the unknown patient's study held at UHSX", logs: [rsch, uhsx]) {
            ((try? Self.held(uhsx)) ?? []).contains { $0["study"] as? String == unknown }
        })
        let released = try Run.consort("identity", "release", unknown, "--config", uhsx.config)
        #expect(released.status == 0 && released.stdout.contains("placed"), "\(released.stdout)\(released.stderr)")
        let placed = Self.files(uhsx.inbound + "/" + unknown)
        #expect(placed.count == 1)
        if let file = placed.first {
            let identity = try Self.identity(of: file)
            #expect(identity.patientID == third && identity.issuer == "NHS" && identity.others == ["\(third) (NHS)", "R125 (RSCH)"], "\(identity)")
        }
        let released_audit = try String(contentsOfFile: uhsx.state + "/audit.log", encoding: .utf8)
        #expect(released_audit.contains("released by a person"), "a person's release is audited")
    }
}

extension IdentityOnDeliveryTests {
    static let prefetchIntoPACS = CoordinatorTests.prefetchRules + """

        rule "ASPH's oncology studies into its PACS" {
          purpose direct-care
          at ASPH
          on instance-arrival
          when origin is local and StudyDescription ~ "ONC"
          deliver to local PACS priority normal
        }
        rule "Priors into ASPH's PACS" {
          purpose direct-care
          at ASPH
          on instance-arrival
          when origin is received
          deliver to local PACS priority normal
        }
        """

    /// The issue's test: a patient with CTs at RSCH (R123) and UHSX (U987) and a new oncology CT
    /// at ASPH (A555). After the prefetch, ASPH's PACS — a real Orthanc taking STOW-RS — lists one
    /// patient, A555, with three studies; each prior carries its trust's number with its issuer,
    /// and the NHS number, in Other Patient IDs Sequence.
    @Test func aPatientsPriorsArriveAtTheFollowUpAsTheReceivingTrustsOwnPatient() throws {
        let consortium = try TestConsortium(members: ["RSCH", "UHSX", "ASPH"], rules: Self.prefetchIntoPACS)
        let orthanc = try OrthancInteropTests.Orthanc(folder: consortium.root.path + "/orthanc", consortReceiver: "http://127.0.0.1:1/none")
        defer { orthanc.stop() }
        let coordinator = try CoordinatorSite(consortium)
        let rsch = try consortium.site("RSCH", extra: coordinator.agentLine)
        let uhsx = try consortium.site("UHSX", extra: coordinator.agentLine)
        let asph = try consortium.site(
            "ASPH", peers: ["RSCH": rsch.port, "UHSX": uhsx.port], extra: coordinator.agentLine + "local PACS dicomweb \(orthanc.url)/dicom-web\n")
        let fromRSCH = try CoordinatorTests.study(rsch.watch, seed: 501, date: CoordinatorTests.daysAgo(200), trust: "RSCH", extra: ["--patient-id", "R123"])
        let fromUHSX = try CoordinatorTests.study(uhsx.watch, seed: 502, date: CoordinatorTests.daysAgo(400), trust: "UHSX", extra: ["--patient-id", "U987"])
        try coordinator.start()
        defer { coordinator.stop() }
        for site in [rsch, uhsx, asph] { try site.start() }
        defer { for site in [asph, uhsx, rsch] { site.stop() } }
        #expect(AgentSite.eventually(within: 60, "both priors announced", logs: [rsch, uhsx]) {
            ((try? asph.locate(CoordinatorTests.patient).answer["studies"] as? [[String: Any]]) ?? []).count == 2
        })
        let today = try CoordinatorTests.study(
            asph.watch, seed: 503, date: CoordinatorTests.daysAgo(0), description: "ONC CT CHEST RESTAGING", trust: "ASPH", extra: ["--patient-id", "A555"])

        func orthancJSON(_ path: String) -> Any? {
            guard let outcome = try? OrthancInteropTests.curl(["-s", "--max-time", "5", "\(orthanc.url)\(path)"]) else { return nil }
            return try? JSONSerialization.jsonObject(with: Data(outcome.stdout.utf8))
        }
        var patients: [String] = []
        #expect(AgentSite.eventually(within: 120, "one patient with three studies in ASPH's Orthanc", logs: [asph, rsch, uhsx]) {
            patients = orthancJSON("/patients") as? [String] ?? []
            guard patients.count == 1 else { return false }
            return (orthancJSON("/patients/\(patients[0])/studies") as? [[String: Any]] ?? []).count == 3
        })
        #expect(patients.count == 1, "Orthanc lists \(patients.count) patients")
        if let id = patients.first {
            let patient = orthancJSON("/patients/\(id)") as? [String: Any] ?? [:]
            let tags = patient["MainDicomTags"] as? [String: Any] ?? [:]
            #expect(tags["PatientID"] as? String == "A555", "\(tags)")
            let studies = (orthancJSON("/patients/\(id)/studies") as? [[String: Any]] ?? []).compactMap { ($0["MainDicomTags"] as? [String: Any])?["StudyInstanceUID"] as? String }
            #expect(Set(studies) == [fromRSCH, fromUHSX, today], "\(studies)")
        }
        for (study, number) in [(fromRSCH, "R123 (RSCH)"), (fromUHSX, "U987 (UHSX)")] {
            let files = Self.files(asph.inbound + "/" + study)
            #expect(files.count == 3, "study \(study)")
            for file in files {
                let identity = try Self.identity(of: file)
                #expect(identity.patientID == "A555" && identity.issuer == "ASPH" && identity.others == ["\(CoordinatorTests.patient) (NHS)", number], "\(identity)")
            }
        }
    }
}

extension IdentityOnDeliveryTests {
    static let pushToUHSX = """
        rule "CTs to UHSX" {
          purpose direct-care
          at RSCH
          on instance-arrival
          when origin is local and StudyDescription ~ "CT CHEST"
          push to UHSX priority normal
        }
        """

    /// Corrections follow: two studies RSCH pushed are placed at UHSX under its own number; RSCH
    /// then announces one again under another patient and deletes the other. UHSX hears of both
    /// from the coordinator within a minute: each copy listed as needing a person (status exit 1,
    /// consort identity), said at error level and audited.
    @Test func aCorrectionOrAWithdrawalAtTheOriginReachesTheCopies() throws {
        let consortium = try TestConsortium(members: ["RSCH", "UHSX"], rules: Self.pushToUHSX)
        let coordinator = try CoordinatorSite(consortium)
        let uhsx = try consortium.site("UHSX", extra: coordinator.agentLine)
        let rsch = try consortium.site("RSCH", peers: ["UHSX": uhsx.port], extra: coordinator.agentLine)
        try CoordinatorTests.study(uhsx.watch, seed: 601, date: CoordinatorTests.daysAgo(500), trust: "UHSX", instances: 1, extra: ["--patient-id", "U987"])
        try coordinator.start()
        defer { coordinator.stop() }
        // UHSX asks the coordinator about its copies every 3 s here, not every 60 s.
        try uhsx.start(through: ["/usr/bin/env", "CONSORT_TEST_ATTENTION_EVERY=3", Run.consort, "agent", "--config", uhsx.config])
        try rsch.start()
        defer { for site in [rsch, uhsx] { site.stop() } }
        #expect(try AgentSite.eventually(within: 30, "UHSX's number known", logs: [uhsx]) {
            try coordinator.call("/v1/patients/\(CoordinatorTests.patient)/identity", as: consortium.pki.site("UHSX"), ca: consortium.pki.ca).body.contains("U987")
        })
        let corrected = try CoordinatorTests.study(rsch.watch, seed: 602, date: CoordinatorTests.daysAgo(20), trust: "RSCH", instances: 2, extra: ["--patient-id", "R123"])
        let deleted = try CoordinatorTests.study(rsch.watch, seed: 603, date: CoordinatorTests.daysAgo(10), trust: "RSCH", instances: 2, extra: ["--patient-id", "R123"])
        #expect(AgentSite.eventually(within: 60, "both placed at UHSX, and held at both trusts in the registry", logs: [rsch, uhsx]) {
            let studies = (try? uhsx.locate(CoordinatorTests.patient).answer["studies"] as? [[String: Any]]) ?? []
            // Announced by both (an origin that deletes a study before announcing it has told
            // nobody of it, and has nothing to withdraw).
            let atBoth = studies.filter { study in
                let trusts = Set((study["locations"] as? [[String: Any]] ?? []).compactMap { $0["trust"] as? String })
                return trusts.isSuperset(of: ["UHSX", "RSCH"])
            }.compactMap { $0["study"] as? String }
            return Self.files(uhsx.inbound + "/" + corrected).count == 2 && Self.files(uhsx.inbound + "/" + deleted).count == 2
                && Set([corrected, deleted]).isSubset(of: Set(atBoth))
        })
        #expect(try Self.identity(of: Self.files(uhsx.inbound + "/" + corrected)[0]).patientID == "U987")
        // RSCH's PACS corrects one (announced again under another patient, as RSCH's agent would
        // once its files change) and deletes the other from its archive.
        let other = "9990000026"
        let reannounced = try coordinator.call(
            "/v1/holdings", as: consortium.pki.site("RSCH"), ca: consortium.pki.ca,
            body: #"{"trust": "RSCH", "studies": [{"study": "\#(corrected)", "patient": {"id": "R124", "issuer": "RSCH"}, "nhs": "\#(other)", "instances": 2, "bytes": 20}]}"#)
        #expect(reannounced.status == 200, "\(reannounced)")
        try FileManager.default.removeItem(atPath: rsch.watch + "/" + deleted)
        var flags: [[String: Any]] = []
        #expect(AgentSite.eventually(within: 60, "both copies flagged at UHSX", logs: [rsch, uhsx]) {
            flags = ((try? Self.held(uhsx)) ?? []).filter { $0["state"] as? String == "copy needs a person" }
            return Set(flags.compactMap { $0["study"] as? String }) == [corrected, deleted]
        })
        let kinds = Dictionary(uniqueKeysWithValues: flags.compactMap { flag in (flag["study"] as? String).map { ($0, flag["kind"] as? String ?? "") } })
        #expect(kinds[corrected] == "identity changed at origin" && kinds[deleted] == "withdrawn at origin", "\(kinds)")
        let status = try Run.consort("status", "--config", uhsx.config)
        #expect(status.status == 1 && status.stdout.contains("needs a person") && status.stdout.contains(corrected), "\(status.stdout)")
        #expect(uhsx.log.contains("A COPY HERE NEEDS A PERSON"))
        let audit = try String(contentsOfFile: uhsx.state + "/audit.log", encoding: .utf8)
        #expect(audit.contains("\"action\":\"copy-flagged\""), "flagging audited")
        #expect(try Self.identity(of: Self.files(uhsx.inbound + "/" + corrected)[0]).patientID == "U987", "the copy itself is left for the person")
        // A person sees to both: they stay listed, with who, and status no longer counts them.
        let acknowledged = try Run.consort("identity", "acknowledge", corrected, deleted, "--config", uhsx.config)
        #expect(acknowledged.status == 0 && acknowledged.stdout.contains("\(deleted): acknowledged"), "\(acknowledged)")
        #expect(try Run.consort("identity", "acknowledge", "1.2.3.4", "--config", uhsx.config).status == 1, "not a flagged copy")
        let after = try Run.consort("status", "--config", uhsx.config)
        #expect(!after.stdout.contains("needs a person"), "\(after.stdout)")
        let listed = try Run.consort("identity", "list", "--config", uhsx.config)
        #expect(listed.stdout.contains("seen to by") && listed.stdout.contains(corrected), "\(listed.stdout)")
        #expect(try String(contentsOfFile: uhsx.state + "/audit.log", encoding: .utf8).contains("\"action\":\"copy-acknowledge\""))
    }
}

extension IdentityOnDeliveryTests {
    static let wholeStudiesRewritten = AgentTests.wholeStudiesToUHSX + "\n" + """
        rule "Whole received studies into UHSX's PACS" {
          purpose direct-care
          at UHSX
          on study-stable after 1 h
          when origin is received from RSCH
          deliver to local PACS priority normal
        }
        """

    /// A study RSCH pushes whole (with its manifest) is placed at UHSX rewritten into UHSX's
    /// identity: other bytes, other sizes than the manifest lists. The manifest is still
    /// satisfied — each instance is matched by the hash of the bytes as sent — so UHSX's own
    /// study-stable rule fires at once, not after its hour, and nothing is listed as missing.
    /// (UHSX's PACS here takes DIMSE only: DCMTK's storescp.)
    @Test func aRewrittenStudyStillSatisfiesItsSendersManifest() throws {
        try Skip.unless(FileManager.default.isExecutableFile(atPath: "/usr/bin/storescp"), "DCMTK's storescp is not installed (Debian package dcmtk)")
        let consortium = try TestConsortium(members: ["RSCH", "UHSX"], rules: Self.wholeStudiesRewritten)
        let coordinator = try CoordinatorSite(consortium)
        let pacs = consortium.root.path + "/pacs"
        try FileManager.default.createDirectory(atPath: pacs, withIntermediateDirectories: true)
        let (storescp, pacsPort) = try DIMSEInteropTests.storescp(pacs)
        defer { storescp.kill() }
        let uhsx = try consortium.site("UHSX", extra: coordinator.agentLine + "local PACS dimse STORESCP@127.0.0.1:\(pacsPort)\n")
        let rsch = try consortium.site("RSCH", peers: ["UHSX": uhsx.port], extra: coordinator.agentLine)
        try CoordinatorTests.study(uhsx.watch, seed: 611, date: CoordinatorTests.daysAgo(300), trust: "UHSX", instances: 1, extra: ["--patient-id", "U555"])
        try coordinator.start()
        defer { coordinator.stop() }
        try uhsx.start()
        defer { uhsx.stop() }
        #expect(try AgentSite.eventually(within: 30, "UHSX's number known", logs: [uhsx]) {
            try coordinator.call("/v1/patients/\(CoordinatorTests.patient)/identity", as: consortium.pki.site("UHSX"), ca: consortium.pki.ca).body.contains("U555")
        })
        try rsch.start()
        defer { rsch.stop() }
        let study = try CoordinatorTests.study(rsch.watch, seed: 612, date: CoordinatorTests.daysAgo(5), trust: "RSCH", instances: 4, extra: ["--patient-id", "R777"])
        #expect(AgentSite.eventually(within: 60, "the whole study in UHSX's PACS within the test, not after the rule's hour", logs: [rsch, uhsx]) {
            ((try? FileManager.default.contentsOfDirectory(atPath: pacs)) ?? []).count == 4
        })
        #expect(uhsx.log.contains("manifest is satisfied"), "\(uhsx.log)")
        let placed = Self.files(uhsx.inbound + "/" + study)
        let ids = try placed.map { try Self.identity(of: $0).patientID }
        #expect(placed.count == 4 && ids.allSatisfy { $0 == "U555" }, "placed in UHSX's identity: \(ids)")
        let status = try Run.consort("status", "--json", "--config", uhsx.config)
        let object = try JSONSerialization.jsonObject(with: Data(status.stdout.utf8)) as? [String: Any]
        #expect(((object?["incomplete_studies"] as? [String: Any])?["studies"] as? [[String: Any]] ?? []).isEmpty, "nothing listed as missing")
    }
}
