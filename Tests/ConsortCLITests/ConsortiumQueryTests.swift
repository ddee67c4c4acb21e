import DICOM
import Foundation
import TestSupport
import Testing
import DIMSE
import Transport

/// On demand (issue 27): a trust's PACS asks its agent, by DIMSE, for a patient's imaging
/// anywhere in the consortium — DCMTK's findscu and movescu as the PACS, storescp as where the
/// move sends, agents and a coordinator as processes on loopback; every wait has a deadline.
@Suite("query and retrieve across the consortium", .serialized, .timeLimit(.minutes(10)))
struct ConsortiumQueryTests {
    static func requireDCMTK() throws {
        for tool in ["findscu", "movescu", "storescp"] {
            try Skip.unless(FileManager.default.isExecutableFile(atPath: "/usr/bin/" + tool), "DCMTK's \(tool) is not installed (Debian package dcmtk)")
        }
    }

    /// findscu against `port`, study root, as PACS; the answers it extracted, read.
    static func find(_ port: Int, _ keys: [String], into folder: String, calling: String = "PACS") throws -> (status: Int32, answers: [DataSet], output: String) {
        try? FileManager.default.removeItem(atPath: folder)
        try FileManager.default.createDirectory(atPath: folder, withIntermediateDirectories: true)
        let asked = ["QueryRetrieveLevel=STUDY", "StudyInstanceUID", "StudyDate", "ModalitiesInStudy", "StudyDescription", "NumberOfStudyRelatedInstances",
                     "RetrieveAETitle", "PatientName", "IssuerOfPatientID", "InstanceAvailability"] + keys
        let outcome = try Run.program("/usr/bin/findscu", ["-v", "-S", "-aet", calling, "-aec", "CONSORT_ASPH", "-X", "-od", folder] + asked.flatMap { ["-k", $0] } + ["127.0.0.1", String(port)])
        let answers = try ((try? FileManager.default.contentsOfDirectory(atPath: folder)) ?? []).sorted().map { try DICOMFile.read(path: folder + "/" + $0).dataSet }
        return (outcome.status, answers, outcome.stdout + outcome.stderr)
    }

    /// A patient with studies at three trusts and one at the asking trust (ASPH, whose number for
    /// them is A777): a C-FIND by ASPH's number, or by NHS number, answers all four in ASPH's
    /// identity, filtered by modality and date as asked; no patient key, or a wildcard one, is
    /// refused; a caller not listed is rejected. A C-MOVE of a study held at UHSX fetches it and
    /// sends every instance to the PACS in ASPH's identity; with UHSX down the move reports its
    /// instances failed, and once UHSX is back a second move sends them.
    @Test func aPatientsStudiesAcrossTheConsortiumAreFoundAndMovedInTheAskingTrustsIdentity() throws {
        try Self.requireDCMTK()
        let consortium = try TestConsortium(members: ["RSCH", "UHSX", "ESHT", "ASPH"], rules: "")
        let coordinator = try CoordinatorSite(consortium)
        let pacsFolder = consortium.root.path + "/pacs"
        try FileManager.default.createDirectory(atPath: pacsFolder, withIntermediateDirectories: true)
        let pacsPort = try OrthancInteropTests.freePort()
        let storescp = try RunningProgram(["/usr/bin/storescp", "+B", "--aetitle", "PACS", "--output-directory", pacsFolder, String(pacsPort)])
        defer { storescp.kill() }
        let rsch = try consortium.site("RSCH", extra: coordinator.agentLine)
        let uhsx = try consortium.site("UHSX", extra: coordinator.agentLine)
        let esht = try consortium.site("ESHT", extra: coordinator.agentLine)
        let scpPort = try OrthancInteropTests.freePort()
        let asph = try consortium.site("ASPH", peers: ["RSCH": rsch.port, "UHSX": uhsx.port, "ESHT": esht.port], extra: coordinator.agentLine + """
            dimse 127.0.0.1:\(scpPort) { aet CONSORT_ASPH move-wait 8 s }
            dimse-peer PACS PACS@127.0.0.1:\(pacsPort) { query }
            dimse-peer CT1 CT1@127.0.0.1:104

            """)
        let studies = [
            "RSCH": try CoordinatorTests.study(rsch.watch, seed: 601, date: "20240110", trust: "RSCH", instances: 3, extra: ["--patient-id", "R100"]),
            "UHSX": try CoordinatorTests.study(uhsx.watch, seed: 602, modality: "MR", date: "20250220", description: "MR HEAD", trust: "UHSX", instances: 4, extra: ["--patient-id", "U200"]),
            "ESHT": try CoordinatorTests.study(esht.watch, seed: 603, date: "20260315", trust: "ESHT", instances: 2, extra: ["--patient-id", "E300"]),
            "ASPH": try CoordinatorTests.study(asph.watch, seed: 604, date: "20261101", description: "CT CHEST FOLLOW UP", trust: "ASPH", instances: 2, extra: ["--patient-id", "A777"]),
        ]
        try coordinator.start()
        defer { coordinator.stop() }
        for site in [rsch, uhsx, esht, asph] { try site.start() }
        defer { for site in [asph, esht, uhsx, rsch] { site.stop() } }
        let folder = consortium.root.path + "/answers"

        // Once every trust has announced: four answers, each in ASPH's identity.
        var found: (status: Int32, answers: [DataSet], output: String) = (0, [], "")
        #expect(AgentSite.eventually(within: 90, "four studies found for A777", logs: [asph]) {
            found = (try? Self.find(scpPort, ["PatientID=A777"], into: folder)) ?? found
            return found.answers.count == 4
        }, "\(found.output)")
        #expect(found.status == 0, "\(found.output)")
        #expect(Set(found.answers.compactMap { $0.string(.studyInstanceUID) }) == Set(studies.values))
        #expect(found.answers.allSatisfy { $0.string(.patientID) == "A777" && $0.string(Tag(0x0008, 0x0054)) == "CONSORT_ASPH" }, "\(found.answers.map { $0.string(.patientID) ?? "" })")
        let mr = found.answers.first { $0.string(.studyInstanceUID) == studies["UHSX"] }
        #expect(mr?.string(Tag(0x0008, 0x0061)) == "MR" && mr?.string(.studyDate) == "20250220" && mr?.string(Tag(0x0020, 0x1208)) == "4", "\(String(describing: mr))")
        #expect(mr?.string(Tag(0x0008, 0x0056)) == "NEARLINE" && found.answers.first { $0.string(.studyInstanceUID) == studies["ASPH"] }?.string(Tag(0x0008, 0x0056)) == "ONLINE")

        // Matching: a modality, a date range; by NHS number, answered under ASPH's own number.
        #expect(try Self.find(scpPort, ["PatientID=A777", "ModalitiesInStudy=MR"], into: folder).answers.compactMap { $0.string(.studyInstanceUID) } == [studies["UHSX"]!])
        #expect(Set(try Self.find(scpPort, ["PatientID=A777", "StudyDate=20250101-20261231"], into: folder).answers.compactMap { $0.string(.studyInstanceUID) })
            == Set([studies["UHSX"]!, studies["ESHT"]!, studies["ASPH"]!]))
        let byNHS = try Self.find(scpPort, ["PatientID=\(CoordinatorTests.patient)", "IssuerOfPatientID=NHS"], into: folder)
        #expect(byNHS.answers.count == 4 && byNHS.answers.allSatisfy { $0.string(.patientID) == "A777" }, "\(byNHS.output)")

        // SERIES level within a study held here: its one series, with its modality and count.
        let seriesFolder = consortium.root.path + "/series"
        try FileManager.default.createDirectory(atPath: seriesFolder, withIntermediateDirectories: true)
        let seriesFind = try Run.program("/usr/bin/findscu", ["-S", "-aet", "PACS", "-aec", "CONSORT_ASPH", "-X", "-od", seriesFolder,
            "-k", "QueryRetrieveLevel=SERIES", "-k", "StudyInstanceUID=\(studies["ASPH"]!)", "-k", "SeriesInstanceUID", "-k", "Modality", "-k", "NumberOfSeriesRelatedInstances",
            "127.0.0.1", String(scpPort)])
        let series = try ((try? FileManager.default.contentsOfDirectory(atPath: seriesFolder)) ?? []).map { try DICOMFile.read(path: seriesFolder + "/" + $0).dataSet }
        #expect(seriesFind.status == 0 && series.count == 1 && series.first?.string(.modality) == "CT" && series.first?.string(Tag(0x0020, 0x1209)) == "2",
                "\(seriesFind.stdout)\(seriesFind.stderr)")

        // Refused: no patient key, a wildcard one (no trawls); rejected: a caller not listed.
        let trawl = try Self.find(scpPort, [], into: folder)
        #expect(trawl.answers.isEmpty && Self.unableToProcess(trawl.output), "\(trawl.output)")
        let wildcard = try Self.find(scpPort, ["PatientID=A*"], into: folder)
        #expect(wildcard.answers.isEmpty && Self.unableToProcess(wildcard.output), "\(wildcard.output)")
        // A modality may store but not ask: its query context is rejected.
        let modality = try Self.find(scpPort, ["PatientID=A777"], into: folder, calling: "CT1")
        #expect(modality.status != 0 && modality.answers.isEmpty, "\(modality.output)")
        let stranger = try Self.find(scpPort, ["PatientID=A777"], into: folder, calling: "STRANGER")
        #expect(stranger.status != 0 && stranger.answers.isEmpty && stranger.output.contains("Calling AE Title Not Recognized"), "\(stranger.output)")
        // Audited at ASPH: who asked, for which patient.
        let audit = try String(contentsOfFile: asph.state + "/audit.log", encoding: .utf8)
        #expect(audit.contains("\"query\"") && audit.contains("C-FIND from PACS@127.0.0.1: 4 of 4 studies answered (3 held elsewhere)"), "\(audit.suffix(2000))")

        // C-MOVE of UHSX's study with UHSX down: its instances failed; the fetch stays queued.
        uhsx.stop()
        let uid = studies["UHSX"]!
        let moveArguments = ["-S", "-aet", "PACS", "-aec", "CONSORT_ASPH", "-aem", "PACS", "-k", "QueryRetrieveLevel=STUDY", "-k", "StudyInstanceUID=\(uid)", "127.0.0.1", String(scpPort)]
        let down = try Run.program("/usr/bin/movescu", moveArguments)
        #expect((down.stdout + down.stderr).contains("OutOfResourcesSubOperations"), "\(down.stdout)\(down.stderr)\n\(asph.log)")
        #expect(Self.received(pacsFolder).isEmpty)
        #expect(try asph.queue().contains { $0["kind"] as? String == "fetch" && $0["study"] as? String == uid && $0["state"] as? String != "done" })
        // UHSX back: the spool's fetch completes; a second move sends every instance.
        try uhsx.start()
        #expect(AgentSite.eventually(within: 60, "the fetch done once UHSX is back", logs: [asph, uhsx]) {
            (try? asph.queue())?.contains { $0["kind"] as? String == "fetch" && $0["study"] as? String == uid && $0["state"] as? String == "done" } ?? false
        })
        let moved = try Run.program("/usr/bin/movescu", moveArguments)
        #expect(moved.status == 0, "\(moved.stdout)\(moved.stderr)\n\(asph.log)")
        #expect(Poll.until(within: 10, every: 0.05) { Self.received(pacsFolder).count == 4 }, "\(Self.received(pacsFolder))")
        for file in Self.received(pacsFolder) {
            let data = try DICOMFile.read(path: file).dataSet
            #expect(data.string(.studyInstanceUID) == uid && data.string(.patientID) == "A777", "delivered in ASPH's identity: \(data.string(.patientID) ?? "")")
        }
        // A move of ESHT's study, fetched as it goes: a pending response an instance, the
        // counts adding up; each instance at the PACS the same data set as ESHT's outside the
        // identity attributes (pydicom's word).
        try? FileManager.default.removeItem(atPath: pacsFolder)
        try FileManager.default.createDirectory(atPath: pacsFolder, withIntermediateDirectories: true)
        var keys = DataSet()
        keys.set(DICOMWriter.textElement(Tag(0x0008, 0x0052), .CS, "STUDY"))
        keys.set(DICOMWriter.textElement(.studyInstanceUID, .UI, studies["ESHT"]!))
        let streamed = try DIMSEAssociation.query(
            try DICOMWriter.encodeDataSet(keys, explicitVR: false), moveDestination: "PACS", host: "127.0.0.1", port: UInt16(scpPort), called: "CONSORT_ASPH", calling: "PACS", timeout: 60)
        #expect(streamed.status == 0 && streamed.final == SubOperations(remaining: 0, completed: 2, failed: 0, warning: 0), "\(streamed.status) \(String(describing: streamed.final)) \(streamed.comment ?? "")")
        let completedInOrder = streamed.pending.compactMap { $0.counts }.filter { $0.completed > 0 }
        #expect(completedInOrder.map(\.completed) == [1, 2] && completedInOrder.allSatisfy { $0.completed + $0.remaining == 2 && $0.failed == 0 }, "\(streamed.pending.map { String(describing: $0.counts) })")
        let compare = URL(fileURLWithPath: #filePath).deletingLastPathComponent().path + "/Interop/same_data_set.py"
        let originals = TransferTests.files(under: esht.watch).map { esht.watch + "/" + $0 }
        #expect(originals.count == 2)
        for original in originals {
            let sop = try DICOMFile.read(path: original).dataSet.string(.sopInstanceUID) ?? "?"
            let copy = try #require(Self.received(pacsFolder).first { (try? DICOMFile.read(path: $0).dataSet.string(.sopInstanceUID)) == sop })
            // Patient ID, its issuer and qualifiers, Other Patient IDs Sequence, Issuer of Accession Number Sequence.
            let same = try Run.program("/usr/bin/env", ["python3", compare, original, copy, "--except", "00100020", "00100021", "00100024", "00101002", "00080051"])
            #expect(same.status == 0, "\(same.stdout)\(same.stderr)")
            #expect(try DICOMFile.read(path: copy).dataSet.string(.patientID) == "A777")
        }

        // A move to a destination nobody listed: refused.
        let nowhere = try Run.program("/usr/bin/movescu", ["-S", "-aet", "PACS", "-aec", "CONSORT_ASPH", "-aem", "ELSEWHERE", "-k", "QueryRetrieveLevel=STUDY", "-k", "StudyInstanceUID=\(uid)", "127.0.0.1", String(scpPort)])
        #expect((nowhere.stdout + nowhere.stderr).contains("MoveDestinationUnknown"), "\(nowhere.stdout)\(nowhere.stderr)")

        // consort pull: the patient's CTs since 2024 fetched here by the spool (RSCH's and
        // ESHT's; UHSX's MR is not asked for), listed by consort queue, audited with who asked.
        #expect(try Run.consort("pull", "--config", asph.config, "--nhs", "9990000019").status == 2, "a number that fails its check digit")
        let pull = try Run.consort("pull", "--config", asph.config, "--nhs", CoordinatorTests.patient, "--modality", "CT", "--since", "20240101")
        #expect(pull.status == 0 && pull.stdout.contains("queued"), "\(pull.stdout)\(pull.stderr)")
        #expect(AgentSite.eventually(within: 60, "RSCH's and ESHT's studies fetched by the pull", logs: [asph]) {
            let jobs = (try? asph.queue()) ?? []
            return [studies["RSCH"]!, studies["ESHT"]!].allSatisfy { uid in jobs.contains { $0["kind"] as? String == "fetch" && $0["study"] as? String == uid && $0["state"] as? String == "done" } }
                && jobs.contains { $0["kind"] as? String == "gather" && $0["rule"] as? String == "pull" && $0["state"] as? String == "done" }
        })
        #expect(!(try asph.queue()).contains { $0["kind"] as? String == "fetch" && $0["study"] as? String == studies["UHSX"] && $0["rule"] as? String == "pull" })
        let pulled = try String(contentsOfFile: asph.state + "/audit.log", encoding: .utf8)
        #expect(pulled.contains("\"pull\"") && pulled.contains("consort pull --modality CT --since 20240101"), "\(pulled.suffix(1500))")
    }

    /// Orthanc as ASPH's PACS, with the agent as one of its DICOM modalities: its own REST query
    /// (`/modalities/consort/query`) finds the patient's study at RSCH under ASPH's number, and
    /// its retrieve (a C-MOVE to itself) brings the study into Orthanc under that number.
    @Test func orthancQueriesTheConsortiumAndRetrievesAStudyUnderItsOwnPatient() throws {
        let consortium = try TestConsortium(members: ["RSCH", "ASPH"], rules: "")
        let coordinator = try CoordinatorSite(consortium)
        let rsch = try consortium.site("RSCH", extra: coordinator.agentLine)
        let scpPort = try OrthancInteropTests.freePort(), orthancDICOM = try OrthancInteropTests.freePort()
        let asph = try consortium.site("ASPH", peers: ["RSCH": rsch.port], extra: coordinator.agentLine + """
            dimse 127.0.0.1:\(scpPort) { aet CONSORT_ASPH }
            dimse-peer PACS ORTHANC@127.0.0.1:\(orthancDICOM) { query }

            """)
        let remote = try CoordinatorTests.study(rsch.watch, seed: 611, date: "20250505", trust: "RSCH", instances: 3, extra: ["--patient-id", "R100"])
        _ = try CoordinatorTests.study(asph.watch, seed: 612, date: "20261101", trust: "ASPH", instances: 1, extra: ["--patient-id", "A777"])
        let orthanc = try OrthancInteropTests.Orthanc(
            folder: consortium.root.path + "/orthanc", consortReceiver: "http://127.0.0.1:1/none", dicomPort: orthancDICOM,
            modalities: ["consort": ["CONSORT_ASPH", "127.0.0.1", scpPort]])
        defer { orthanc.stop() }
        try coordinator.start()
        defer { coordinator.stop() }
        for site in [rsch, asph] { try site.start() }
        defer { for site in [asph, rsch] { site.stop() } }

        func post(_ path: String, _ body: String) throws -> [String: Any] {
            let out = try OrthancInteropTests.curl(["-s", "--max-time", "60", "-X", "POST", "-d", body, orthanc.url + path])
            return (try? JSONSerialization.jsonObject(with: Data(out.stdout.utf8)) as? [String: Any]) ?? ["raw": out.stdout + out.stderr]
        }
        func get(_ path: String) throws -> Any? {
            try JSONSerialization.jsonObject(with: Data(OrthancInteropTests.curl(["-s", "--max-time", "10", orthanc.url + path]).stdout.utf8))
        }
        // Orthanc's own query, until both trusts have announced.
        var query = ""
        var answers: [[String: Any]] = []
        #expect(AgentSite.eventually(within: 90, "Orthanc's query finds both studies", logs: [asph]) {
            let made = (try? post("/modalities/consort/query", #"{"Level": "Study", "Query": {"PatientID": "A777", "StudyDate": "", "StudyDescription": ""}}"#)) ?? [:]
            query = made["ID"] as? String ?? ""
            answers = (try? get("/queries/\(query)/answers?expand&simplify")) as? [[String: Any]] ?? []
            return answers.count == 2
        }, "\(answers)")
        #expect(answers.allSatisfy { $0["PatientID"] as? String == "A777" }, "\(answers)")
        let index = try #require(answers.firstIndex { $0["StudyInstanceUID"] as? String == remote })
        // Its retrieve: a C-MOVE to itself; the study arrives filed under ASPH's number.
        let retrieved = try OrthancInteropTests.curl(["-s", "--max-time", "120", "-X", "POST", "-d", #"{"TargetAet": "ORTHANC", "Synchronous": true}"#, orthanc.url + "/queries/\(query)/answers/\(index)/retrieve"])
        #expect(retrieved.status == 0, "\(retrieved.stdout)\(retrieved.stderr)")
        /// Orthanc's record of the study, if it has it.
        func stored() -> [String: Any]? {
            let body = #"{"Level": "Study", "Query": {"StudyInstanceUID": "\#(remote)"}, "Expand": true}"#
            guard let out = try? OrthancInteropTests.curl(["-s", "--max-time", "10", "-X", "POST", "-d", body, orthanc.url + "/tools/find"]) else { return nil }
            return ((try? JSONSerialization.jsonObject(with: Data(out.stdout.utf8))) as? [[String: Any]])?.first
        }
        #expect(AgentSite.eventually(within: 60, "the study in Orthanc under A777", logs: [asph]) {
            (stored()?["PatientMainDicomTags"] as? [String: Any])?["PatientID"] as? String == "A777"
        })
        let id = try #require(stored()?["ID"] as? String)
        let statistics = try get("/studies/\(id)/statistics") as? [String: Any]
        #expect((statistics?["CountInstances"] as? NSNumber)?.intValue == 3, "\(String(describing: statistics))\n\(asph.log.suffix(3000))")
    }

    /// DCMTK's words for status 0xC000 (or the number itself).
    static func unableToProcess(_ output: String) -> Bool { output.contains("UnableToProcess") || output.lowercased().contains("c000") }

    static func received(_ folder: String) -> [String] {
        ((try? FileManager.default.contentsOfDirectory(atPath: folder)) ?? []).filter { !$0.hasPrefix(".") }.map { folder + "/" + $0 }
    }
}
