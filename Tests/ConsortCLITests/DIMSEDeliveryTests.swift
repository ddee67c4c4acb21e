import DICOM
import Foundation
import TestSupport
import Testing

/// `local PACS dimse AET@HOST:PORT` (issue 26): a trust whose PACS takes only DIMSE gets the
/// studies `deliver to local PACS` sends it, by C-STORE — against DCMTK's storescp (down at
/// first, then up: retried as a peer is) and a pynetdicom PACS that refuses one instance for good
/// and is out of resources for another once.
@Suite("delivery to a PACS by DIMSE", .serialized, .timeLimit(.minutes(5)))
struct DIMSEDeliveryTests {
    static let rules = AgentTests.pushAll + """

        rule "Received studies into our PACS" {
          purpose direct-care
          at UHSX
          on instance-arrival
          when origin is received from RSCH
          deliver to local PACS priority normal
        }
        """

    /// A PACS made with pynetdicom (Interop/pynetdicom_pacs.py).
    static let pacsScript = URL(fileURLWithPath: #filePath).deletingLastPathComponent().path + "/Interop/pynetdicom_pacs.py"

    static func deliveries(_ site: AgentSite) throws -> [[String: Any]] {
        try site.queue().filter { $0["kind"] as? String == "deliver" && $0["peer"] as? String == "PACS" }
    }

    static func dcmFiles(_ folder: String) -> [String] {
        ((try? FileManager.default.subpathsOfDirectory(atPath: folder)) ?? []).filter { $0.hasSuffix(".dcm") }.map { folder + "/" + $0 }
    }

    @Test func aStudyReceivedFromAPeerReachesAPACSThatSpeaksOnlyDIMSEOnceItIsUp() throws {
        try Skip.unless(FileManager.default.isExecutableFile(atPath: "/usr/bin/storescp"), "DCMTK's storescp is not installed (Debian package dcmtk)")
        let consortium = try TestConsortium(members: ["RSCH", "UHSX"], rules: Self.rules)
        let port = try OrthancInteropTests.freePort()
        let pacs = consortium.root.path + "/pacs"
        try FileManager.default.createDirectory(atPath: pacs, withIntermediateDirectories: true)
        let uhsx = try consortium.site("UHSX", extra: "local PACS dimse STORESCP@127.0.0.1:\(port) { connections 2 calling-aet CONSORT_UHSX timeout 10 }\n")
        let rsch = try consortium.site("RSCH", peers: ["UHSX": uhsx.port])
        try uhsx.start()
        try rsch.start()
        defer {
            rsch.stop()
            uhsx.stop()
        }
        // 512x512 slices: each data set spans many PDUs under storescp's 16 kB maximum.
        let study = try AgentTests.synth(into: rsch.watch, seed: 81, instances: 6, size: "512x512")
        // The PACS is down: the delivery fails, is retried with backoff, and says why.
        #expect(try AgentSite.eventually(within: 60, "the delivery tried and failed while the PACS is down", logs: [rsch, uhsx]) {
            try Self.deliveries(uhsx).contains { ($0["last_error"] as? String ?? "").contains("connect") && $0["state"] as? String != "done" }
        })
        let storescp = try RunningProgram(["/usr/bin/storescp", "+B", "--aetitle", "STORESCP", "--max-pdu", "16384", "--output-directory", pacs, String(port)])
        defer { storescp.kill() }
        #expect(try AgentSite.eventually(within: 60, "the delivery done once the PACS is up", logs: [uhsx]) {
            try Self.deliveries(uhsx).contains { $0["state"] as? String == "done" && $0["instances_sent"] as? Int == 6 }
        })
        // Every instance in the PACS, its data set byte for byte as UHSX received it.
        let received = Self.dcmFiles(uhsx.inbound + "/" + study)
        // storescp names its files by modality and SOP Instance UID, without .dcm.
        let stored = try FileManager.default.contentsOfDirectory(atPath: pacs).map { pacs + "/" + $0 }
        #expect(received.count == 6 && stored.count == 6, "\(stored)")
        let expected = Set(try received.map(DIMSEInteropTests.dataSet))
        for file in stored { #expect(expected.contains(try DIMSEInteropTests.dataSet(file)), "\(file) differs from what UHSX received") }
        let audit = try String(contentsOfFile: uhsx.state + "/audit.log", encoding: .utf8)
        #expect(audit.contains("\"action\":\"deliver\"") && audit.contains("6 of 6 instances to PACS"), "the delivery audited")
    }

    /// `local PACS dimse … { tls }`: DICOM TLS to the PACS with the trust's certificate. The PACS
    /// here is another agent's TLS SCP (ASPH's), which takes only callers with a consortium
    /// certificate; UHSX checks its certificate against the CA and the host's name.
    @Test func aDeliveryByDIMSEGoesOverTLSWhenAsked() throws {
        let consortium = try TestConsortium(members: ["RSCH", "UHSX", "ASPH"], rules: Self.rules)
        let port = try OrthancInteropTests.freePort()
        let pacs = try consortium.site("ASPH", extra: "dimse 127.0.0.1:\(port) { aet PACS_TLS tls }\ndimse-peer UHSX CONSORT_UHSX@127.0.0.1:104\n")
        let uhsx = try consortium.site("UHSX", extra: "local PACS dimse PACS_TLS@localhost:\(port) { tls calling-aet CONSORT_UHSX }\n")
        let rsch = try consortium.site("RSCH", peers: ["UHSX": uhsx.port])
        for site in [pacs, uhsx, rsch] { try site.start() }
        defer { for site in [rsch, uhsx, pacs] { site.stop() } }
        let study = try AgentTests.synth(into: rsch.watch, seed: 86, instances: 3)
        #expect(try AgentSite.eventually(within: 60, "the delivery over TLS done", logs: [uhsx, pacs]) {
            try Self.deliveries(uhsx).contains { $0["state"] as? String == "done" && $0["instances_sent"] as? Int == 3 }
        })
        #expect(Self.dcmFiles(pacs.state + "/dimse-intake/" + study).count == 3)
        #expect(pacs.log.contains("tls=yes"), "\(pacs.log)")
    }

    /// Orthanc as the trust's PACS, taking C-STORE on its DIMSE port: the study is listed there.
    @Test func aStudyIsDeliveredToOrthancsDIMSEPort() throws {
        let consortium = try TestConsortium(members: ["RSCH", "UHSX"], rules: Self.rules)
        let dicomPort = try OrthancInteropTests.freePort()
        let orthanc = try OrthancInteropTests.Orthanc(folder: consortium.root.path + "/orthanc", consortReceiver: "http://127.0.0.1:1/none", dicomPort: dicomPort)
        defer { orthanc.stop() }
        let uhsx = try consortium.site("UHSX", extra: "local PACS dimse ORTHANC@127.0.0.1:\(dicomPort) { connections 2 }\n")
        let rsch = try consortium.site("RSCH", peers: ["UHSX": uhsx.port])
        try uhsx.start()
        try rsch.start()
        defer {
            rsch.stop()
            uhsx.stop()
        }
        let study = try AgentTests.synth(into: rsch.watch, seed: 84, instances: 5)
        #expect(AgentSite.eventually(within: 60, "the study in Orthanc", logs: [rsch, uhsx]) {
            let statistics = try? OrthancInteropTests.curl(["-s", "--max-time", "5", "\(orthanc.url)/statistics"])
            let found = try? OrthancInteropTests.curl(["-s", "--max-time", "5", "\(orthanc.url)/dicom-web/studies?StudyInstanceUID=\(study)"])
            return statistics?.stdout.replacingOccurrences(of: " ", with: "").contains("\"CountInstances\":5") == true && found?.stdout.contains(study) == true
        })
        #expect(try AgentSite.eventually(within: 30, "the delivery job done", logs: [uhsx]) {
            try Self.deliveries(uhsx).contains { $0["state"] as? String == "done" && $0["instances_sent"] as? Int == 5 }
        })
    }

    @Test func anInstanceThePACSRefusesIsFailedWithItsStatusAndOneItHadNoRoomForIsSentAgain() throws {
        try Skip.unless(Run.program("/usr/bin/env", ["python3", Self.pacsScript, "--check"]).status == 0, "pynetdicom is not installed (Tests/install-test-dependencies.sh installs it from PyPI)")
        let consortium = try TestConsortium(members: ["RSCH", "UHSX"], rules: Self.rules)
        let port = try OrthancInteropTests.freePort()
        let pacs = consortium.root.path + "/pacs/stored"
        let source = consortium.root.path + "/source"
        let study = try AgentTests.synth(into: source, seed: 82, instances: 4)
        // The SOP Instance UIDs, as pydicom reads them.
        let read = try Run.program("/usr/bin/env", ["python3", "-c", "import pydicom, sys\nfor p in sorted(sys.argv[1:]): print(pydicom.dcmread(p, stop_before_pixels=True).SOPInstanceUID)"]
            + Self.dcmFiles(source + "/" + study))
        let sops = read.stdout.split(separator: "\n").map(String.init)
        try #require(sops.count == 4, "\(read.stderr)")
        let script = Self.pacsScript
        let scp = try RunningProgram(["/usr/bin/env", "python3", script, "--port", String(port), "--aet", "PACS", "--out", pacs, "--refuse", sops[0], "--busy-once", sops[1]])
        defer { scp.kill() }
        #expect(try Poll.until(within: 20, every: 0.1) { try Run.consort("echo", "PACS@127.0.0.1:\(port)", "--timeout", "2").status == 0 }, "\(scp.log)")
        let uhsx = try consortium.site("UHSX", extra: "local PACS dimse PACS@127.0.0.1:\(port)\n")
        let rsch = try consortium.site("RSCH", peers: ["UHSX": uhsx.port])
        try uhsx.start()
        try rsch.start()
        defer {
            rsch.stop()
            uhsx.stop()
        }
        for file in Self.dcmFiles(source + "/" + study) {
            try FileManager.default.createDirectory(atPath: rsch.watch + "/" + study, withIntermediateDirectories: true)
            try FileManager.default.copyItem(atPath: file, toPath: rsch.watch + "/" + study + "/" + (file as NSString).lastPathComponent)
        }
        var job: [String: Any] = [:]
        #expect(try AgentSite.eventually(within: 60, "the delivery finished, one instance refused", logs: [uhsx]) {
            job = try Self.deliveries(uhsx).first { ["done", "failed"].contains($0["state"] as? String ?? "") } ?? [:]
            return !job.isEmpty
        })
        #expect(job["state"] as? String == "failed" && job["instances_sent"] as? Int == 3 && job["instances_refused"] as? Int == 1, "\(job)")
        #expect(AgentSite.eventually(within: 10, "the line in the log (read by a thread of the test, it may lag the answer)", logs: [uhsx]) { uhsx.log.contains("0xC000") && uhsx.log.contains("cannot understand") })
        // The one it had no room for went again and is there; the refused one is not.
        let stored = Set(Self.dcmFiles(pacs).map { ($0 as NSString).lastPathComponent.replacingOccurrences(of: ".dcm", with: "") })
        #expect(stored == Set(sops.dropFirst()), "\(stored)")
        let log = try String(contentsOfFile: consortium.root.path + "/pacs/pacs.log", encoding: .utf8)
        #expect(log.contains("0xA700 \(sops[1])") && log.contains("0x0000 \(sops[1])"), "\(log)")
    }

    @Test func aSOPClassTheNodeDoesNotTakeIsNamedAndTheRestGo() throws {
        try Skip.unless(Run.program("/usr/bin/env", ["python3", Self.pacsScript, "--check"]).status == 0, "pynetdicom is not installed (Tests/install-test-dependencies.sh installs it from PyPI)")
        let root = NSTemporaryDirectory() + "consort-dimse-\(UUID().uuidString)"
        defer { try? FileManager.default.removeItem(atPath: root) }
        let source = root + "/study"
        let study = try AgentTests.synth(into: source, seed: 83, instances: 2)
        let port = try OrthancInteropTests.freePort()
        let script = Self.pacsScript
        // An MR-only node: the CT context is rejected; the association is still made.
        let scp = try RunningProgram(["/usr/bin/env", "python3", script, "--port", String(port), "--aet", "MRONLY", "--out", root + "/pacs/stored", "--sop-class", "1.2.840.10008.5.1.4.1.1.4"])
        defer { scp.kill() }
        #expect(try Poll.until(within: 20, every: 0.1) { try Run.consort("echo", "MRONLY@127.0.0.1:\(port)", "--timeout", "2").status == 0 }, "\(scp.log)")
        let store = try Run.consort("store", "MRONLY@127.0.0.1:\(port)", source + "/" + study)
        #expect(store.status == 1 && store.stdout.contains("does not accept 1.2.840.10008.5.1.4.1.1.2"), "\(store.stdout)\(store.stderr)")
        // A called AE title the node is not: rejected, with the reason.
        let wrong = try Run.consort("store", "NOTPACS@127.0.0.1:\(port)", source + "/" + study)
        #expect(wrong.status == 1 && wrong.stderr.contains("called AE title not recognised"), "\(wrong.stderr)")
    }

    /// A PACS that takes CT only in explicit VR gets instances stored in implicit VR, and one
    /// that takes only implicit gets explicit ones: the other syntax proposed in a context of its
    /// own, the data set converted as it is sent — pydicom finds the same elements and values
    /// (pixel data byte for byte) in what the PACS stored, in the syntax it takes.
    @Test func aPACSThatTakesOnlyTheOtherUncompressedSyntaxGetsTheSameDataSetConverted() throws {
        try Skip.unless(Run.program("/usr/bin/env", ["python3", Self.pacsScript, "--check"]).status == 0, "pynetdicom is not installed (Tests/install-test-dependencies.sh installs it from PyPI)")
        try Skip.unless(FileManager.default.isExecutableFile(atPath: "/usr/bin/dcmconv"), "DCMTK's dcmconv is not installed (Debian package dcmtk)")
        let root = NSTemporaryDirectory() + "consort-dimse-\(UUID().uuidString)"
        defer { try? FileManager.default.removeItem(atPath: root) }
        let explicitFolder = root + "/explicit", implicitFolder = root + "/implicit"
        // 128x128 slices: pixel data past the converter's 16 kB, so copied from the file.
        let study = try AgentTests.synth(into: explicitFolder, seed: 87, instances: 3, size: "128x128")
        try FileManager.default.createDirectory(atPath: implicitFolder, withIntermediateDirectories: true)
        for file in Self.dcmFiles(explicitFolder + "/" + study) {
            let made = try Run.program("/usr/bin/dcmconv", ["+ti", file, implicitFolder + "/" + (file as NSString).lastPathComponent])
            #expect(made.status == 0, "\(made.stderr)")
        }
        let compare = URL(fileURLWithPath: Self.pacsScript).deletingLastPathComponent().path + "/same_data_set.py"
        let implicit = "1.2.840.10008.1.2", explicit = "1.2.840.10008.1.2.1"
        for (folder, only) in [(implicitFolder, explicit), (explicitFolder + "/" + study, implicit)] {
            let port = try OrthancInteropTests.freePort()
            let stored = root + "/pacs-\(port)/stored"
            let scp = try RunningProgram(["/usr/bin/env", "python3", Self.pacsScript, "--port", String(port), "--out", stored, "--syntax", only])
            defer { scp.kill() }
            #expect(try Poll.until(within: 20, every: 0.1) { try Run.consort("echo", "PACS@127.0.0.1:\(port)", "--timeout", "2").status == 0 }, "\(scp.log)")
            let store = try Run.consort("store", "PACS@127.0.0.1:\(port)", folder)
            #expect(store.status == 0 && store.stdout.contains("3 of 3 stored"), "\(store.stdout)\(store.stderr)")
            let sent = Self.dcmFiles(folder)
            #expect(sent.count == 3)
            for file in sent {
                let sop = try DICOMFile.read(path: file).dataSet.string(.sopInstanceUID) ?? "?"
                let same = try Run.program("/usr/bin/env", ["python3", compare, file, stored + "/" + sop + ".dcm"])
                #expect(same.status == 0, "\(same.stdout)\(same.stderr)")
                #expect(same.stdout.split(separator: " ").last.map { $0.trimmingCharacters(in: .whitespacesAndNewlines) } == only, "\(same.stdout)")
            }
        }
    }

    /// `consort store --associations 3`: the files dealt out among three associations at once
    /// (storescp --fork takes each in a process of its own); every file stored once.
    @Test func consortStoreSharesTheFilesAmongSeveralAssociations() throws {
        try Skip.unless(FileManager.default.isExecutableFile(atPath: "/usr/bin/storescp"), "DCMTK's storescp is not installed (Debian package dcmtk)")
        let root = NSTemporaryDirectory() + "consort-dimse-\(UUID().uuidString)"
        defer { try? FileManager.default.removeItem(atPath: root) }
        let source = root + "/study", received = root + "/received"
        try FileManager.default.createDirectory(atPath: received, withIntermediateDirectories: true)
        let study = try AgentTests.synth(into: source, seed: 85, instances: 10)
        let (storescp, port) = try DIMSEInteropTests.storescp(received, extra: ["--fork"])
        defer { storescp.kill() }
        let store = try Run.consort("store", "STORESCP@127.0.0.1:\(port)", source + "/" + study, "--associations", "3")
        #expect(store.status == 0 && store.stdout.contains("10 of 10 stored"), "\(store.stdout)\(store.stderr)")
        #expect(try Poll.until(within: 10, every: 0.05) { try FileManager.default.contentsOfDirectory(atPath: received).count == 10 })
        let bad = try Run.consort("store", "STORESCP@127.0.0.1:\(port)", source, "--associations", "17")
        #expect(bad.status == 2, "usage: 1 to 16")
    }
}
