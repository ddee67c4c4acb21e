import DIMSE
import Foundation
import TestSupport
import Testing

#if canImport(Glibc)
    import Glibc
#endif

/// The agent's DIMSE C-STORE SCP (`dimse` and `dimse-peer` in agent.conf), as processes on
/// loopback: DCMTK's `storescu` and `echoscu` against `consort agent`, the rules firing on what
/// arrives as they do for a watched folder, who may associate, a peer that stalls mid-PDU, and
/// kill -9 in the middle of a C-STORE run.
@Suite("consort agent: DIMSE C-STORE SCP", .serialized, .timeLimit(.minutes(6)))
struct DIMSEReceiveTests {
    /// RSCH with a C-STORE SCP that STORESCU (from 127.0.0.1) may store to, pushing everything
    /// local to UHSX; `options`: more of the dimse line's options.
    static func consortium(options: String = "", extra: String = "") throws -> (TestConsortium, rsch: AgentSite, uhsx: AgentSite, port: Int) {
        let consortium = try TestConsortium(members: ["RSCH", "UHSX"], rules: AgentTests.pushAll)
        let port = try OrthancInteropTests.freePort()
        let uhsx = try consortium.site("UHSX")
        let rsch = try consortium.site(
            "RSCH", peers: ["UHSX": uhsx.port],
            extra: "dimse 127.0.0.1:\(port) { aet CONSORT_RSCH \(options) }\ndimse-peer MODALITY STORESCU@127.0.0.1:104\ndimse-peer ELSEWHERE CT_ELSEWHERE@127.0.0.2:104\n" + extra)
        return (consortium, rsch, uhsx, port)
    }

    static func intake(_ site: AgentSite) -> String { site.state + "/dimse-intake" }

    /// The instances in the intake, as `<Study>/<SOP>.dcm` (the hidden `.incoming` left out).
    static func intakeFiles(_ site: AgentSite) -> [String] { TransferTests.files(under: intake(site)) }

    /// What is half-received in the intake's `.incoming`.
    static func incoming(_ site: AgentSite) -> [String] { (try? FileManager.default.contentsOfDirectory(atPath: intake(site) + "/.incoming")) ?? [] }

    /// pynetdicom as the modality: C-ECHO and C-STORE of a study into the agent's SCP, each
    /// answered success; the instances in the intake and then at the peer, byte for byte as the
    /// intake holds them.
    @Test func aStudyStoredByPynetdicomIsAnsweredAndKept() throws {
        let script = URL(fileURLWithPath: #filePath).deletingLastPathComponent().path + "/Interop/pynetdicom_send.py"
        let pacs = URL(fileURLWithPath: #filePath).deletingLastPathComponent().path + "/Interop/pynetdicom_pacs.py"
        try Skip.unless(try Run.program("/usr/bin/env", ["python3", pacs, "--check"]).status == 0, "pynetdicom is not installed (Tests/install-test-dependencies.sh installs it from PyPI)")
        let (consortium, rsch, uhsx, port) = try Self.consortium(extra: "dimse-peer PYNETDICOM PYNETDICOM@127.0.0.1:104\n")
        let source = consortium.root.path + "/modality"
        let study = try AgentTests.synth(into: source, seed: 33, instances: 4, size: "256x256")
        try uhsx.start()
        try rsch.start()
        defer {
            rsch.stop()
            uhsx.stop()
        }
        let files = try FileManager.default.contentsOfDirectory(atPath: source + "/" + study).sorted().map { source + "/\(study)/\($0)" }
        let sent = try Run.program("/usr/bin/env", ["python3", script, "--port", String(port), "--called", "CONSORT_RSCH"] + files)
        #expect(sent.status == 0, "\(sent.stdout)\(sent.stderr)")
        let lines = sent.stdout.split(separator: "\n").map(String.init)
        #expect(lines.first == "echo 0x0000" && lines.dropFirst().count == 4 && lines.dropFirst().allSatisfy { $0.hasPrefix("0x0000 ") }, "\(sent.stdout)")
        #expect(Self.intakeFiles(rsch).count == 4, "every instance answered success is in the intake")
        #expect(AgentSite.eventually(within: 30, "the study at UHSX", logs: [rsch, uhsx]) { uhsx.received.count == 4 })
        for name in uhsx.received {
            let copy = try Data(contentsOf: URL(fileURLWithPath: uhsx.inbound + "/" + name))
            #expect(copy == (try Data(contentsOf: URL(fileURLWithPath: Self.intake(rsch) + "/" + name))), "\(name) byte for byte")
        }
    }

    static func requireDCMTK() throws {
        try Skip.unless(FileManager.default.isExecutableFile(atPath: "/usr/bin/storescu"), "DCMTK's storescu is not installed (Debian package dcmtk)")
    }

    @Test func aStudyStoredByStorescuFiresTheRulesAndArrivesAtThePeerByteForByte() throws {
        try Self.requireDCMTK()
        let metricsPort = try OrthancInteropTests.freePort()
        let (consortium, rsch, uhsx, port) = try Self.consortium(extra: "metrics 127.0.0.1:\(metricsPort)\n")
        let source = consortium.root.path + "/modality"
        try FileManager.default.createDirectory(atPath: source, withIntermediateDirectories: true)
        let study = try AgentTests.synth(into: source, seed: 31, instances: 6, size: "256x256")
        try uhsx.start()
        try rsch.start()
        defer {
            rsch.stop()
            uhsx.stop()
        }
        #expect(rsch.log.contains("C-STORE SCP listening"), "\(rsch.log)")
        // PDUs of 16 kB: every data set comes in many fragments.
        let storescu = try Run.program("/usr/bin/storescu", ["-aet", "STORESCU", "-aec", "CONSORT_RSCH", "--max-pdu", "16384", "+sd", "+r", "127.0.0.1", String(port), source])
        #expect(storescu.status == 0, "\(storescu.stdout)\n\(storescu.stderr)\n\(rsch.log)")
        let kept = Self.intakeFiles(rsch)
        #expect(kept.count == 6 && kept.allSatisfy { $0.hasPrefix(study + "/") }, "\(kept)")
        #expect(Self.incoming(rsch).isEmpty)
        // Each instance the modality had is kept under its own SOP Instance UID (storescu
        // re-encodes what it sends, so its data sets are compared byte for byte in the kill -9
        // test, which stores with `consort store`: it sends each data set as stored).
        let sops = try TransferTests.files(under: source).map { try #require(try Run.consort("dump", source + "/" + $0).stdout.firstMatch(of: /\(0008,0018\)[^\[]*\[([0-9.]+)\]/)?.1) }
        #expect(Set(sops.map { String($0) + ".dcm" }) == Set(kept.map { ($0 as NSString).lastPathComponent }), "\(sops)")
        // Taken as a file closed in a watched folder: the push rule fired, UHSX holds them byte for byte.
        let arrived = AgentSite.eventually(within: 60, "6 instances at UHSX", logs: [rsch, uhsx]) { uhsx.received.count == 6 }
        #expect(arrived)
        let originals = Set(try kept.map { try Data(contentsOf: URL(fileURLWithPath: Self.intake(rsch) + "/" + $0)) })
        let copies = Set(try uhsx.received.map { try Data(contentsOf: URL(fileURLWithPath: uhsx.inbound + "/" + $0)) })
        #expect(originals == copies)
        // Every instance audited, as received from the dimse-peer.
        let audit = try String(contentsOfFile: rsch.state + "/audit.log", encoding: .utf8)
        #expect(audit.components(separatedBy: "\"dimse\"").count - 1 == 6, "\(audit)")
        #expect(audit.contains("MODALITY"))
        let metrics = try OperatorTests.get("http://127.0.0.1:\(metricsPort)/metrics").body
        #expect(metrics.contains("consort_dimse_stores_total{status=\"0x0000\"} 6"), "\(metrics)")
        #expect(metrics.contains("consort_dimse_associations_total{result=\"accepted\"} 1"))
        #expect(metrics.contains("/rsch/state/dimse-intake\"} 6"), "the intake is a watched folder on the metrics page too")
        let dump = try Run.consort("dump", Self.intake(rsch) + "/" + kept[0])
        #expect(dump.stdout.contains("STORESCU"), "the source AE title in the file meta: \(dump.stdout)")
    }

    /// Compressed instances (JPEG lossless, RLE, made by DCMTK from a synthetic study) are
    /// accepted in their own transfer syntax, so storescu sends them as they are, and kept so.
    @Test func compressedInstancesAreKeptInTheirOwnTransferSyntax() throws {
        try Self.requireDCMTK()
        let (consortium, rsch, _, port) = try Self.consortium()
        let plain = consortium.root.path + "/plain", source = consortium.root.path + "/modality"
        for folder in [plain, source] { try FileManager.default.createDirectory(atPath: folder, withIntermediateDirectories: true) }
        _ = try AgentTests.synth(into: plain, seed: 36, instances: 2)
        let files = TransferTests.files(under: plain).map { plain + "/" + $0 }
        for (tool, file, name) in [("/usr/bin/dcmcjpeg", files[0], "jpeg.dcm"), ("/usr/bin/dcmcrle", files[1], "rle.dcm")] {
            let made = try Run.program(tool, [file, source + "/" + name])
            try #require(made.status == 0, "\(tool): \(made.stderr)")
        }
        try rsch.start()
        defer { rsch.stop() }
        // Each proposed in its compressed syntax first, then the uncompressed ones (-xs: JPEG
        // lossless; -xr: RLE); the first the agent reads is accepted, so nothing is converted.
        for (option, name) in [("-xs", "jpeg.dcm"), ("-xr", "rle.dcm")] {
            let storescu = try Run.program("/usr/bin/storescu", [option, "-aet", "STORESCU", "-aec", "CONSORT_RSCH", "127.0.0.1", String(port), source + "/" + name])
            #expect(storescu.status == 0, "\(storescu.stdout)\(storescu.stderr)\n\(rsch.log)")
        }
        let kept = Self.intakeFiles(rsch)
        let syntaxes = try Set(kept.map { try Run.consort("dump", Self.intake(rsch) + "/" + $0).stdout.firstMatch(of: /transfer syntax ([0-9.]+)/).map { String($0.1) } ?? "?" })
        #expect(syntaxes == ["1.2.840.10008.1.2.4.70", "1.2.840.10008.1.2.5"], "\(kept) \(syntaxes)")
    }

    @Test func echoscuIsAnsweredAndWhoMayAssociateIsChecked() throws {
        try Self.requireDCMTK()
        let (consortium, rsch, _, port) = try Self.consortium()
        let source = consortium.root.path + "/modality"
        try FileManager.default.createDirectory(atPath: source, withIntermediateDirectories: true)
        _ = try AgentTests.synth(into: source, seed: 32, instances: 2)
        // `consort config check` says what the SCP is and who may use it.
        let check = try Run.consort("config", "check", rsch.config)
        #expect(check.stdout.contains("dimse: a C-STORE SCP on 127.0.0.1:\(port) as CONSORT_RSCH") && check.stdout.contains("MODALITY (STORESCU@127.0.0.1)"), "\(check.stdout)\(check.stderr)")
        try rsch.start()
        defer { rsch.stop() }
        let echo = try Run.program("/usr/bin/echoscu", ["-aet", "STORESCU", "-aec", "CONSORT_RSCH", "127.0.0.1", String(port)])
        #expect(echo.status == 0, "\(echo.stderr)\n\(rsch.log)")
        let ours = try Run.consort("echo", "CONSORT_RSCH@127.0.0.1:\(port)", "--calling-aet", "STORESCU")
        #expect(ours.status == 0 && ours.stdout.contains("success"), "\(ours.stdout)\(ours.stderr)")
        // An unknown calling AE title, and an unknown called one: rejected at association.
        let stranger = try Run.program("/usr/bin/storescu", ["-aet", "STRANGER", "-aec", "CONSORT_RSCH", "+sd", "+r", "127.0.0.1", String(port), source])
        #expect(stranger.status != 0)
        #expect((stranger.stdout + stranger.stderr).contains("Calling AE Title Not Recognized"), "\(stranger.stdout)\(stranger.stderr)")
        // A dimse-peer's title from another address than its own.
        let elsewhere = try Run.program("/usr/bin/echoscu", ["-aet", "CT_ELSEWHERE", "-aec", "CONSORT_RSCH", "127.0.0.1", String(port)])
        #expect(elsewhere.status != 0 && (elsewhere.stdout + elsewhere.stderr).contains("Calling AE Title Not Recognized"), "\(elsewhere.stdout)\(elsewhere.stderr)")
        #expect(AgentSite.eventually(within: 10, "the line in the log (read by a thread of the test, it may lag the answer)", logs: [rsch]) { rsch.log.contains("calling AE title CT_ELSEWHERE from 127.0.0.1, not from its dimse-peer address") })
        let wrongCalled = try Run.consort("echo", "SOMEONE_ELSE@127.0.0.1:\(port)", "--calling-aet", "STORESCU")
        #expect(wrongCalled.status == 1 && wrongCalled.stderr.contains("called AE title not recognised"), "\(wrongCalled.stderr)")
        #expect(Self.intakeFiles(rsch).isEmpty)
        #expect(rsch.log.contains("association rejected: calling AE title not recognised"), "\(rsch.log)")
        // A dimse-peer line added, and SIGHUP: STRANGER may store now, without a restart.
        try (String(contentsOfFile: rsch.config, encoding: .utf8) + "dimse-peer NEWCOMER STRANGER@127.0.0.1:104\n").write(toFile: rsch.config, atomically: true, encoding: .utf8)
        rsch.program?.signal(SIGHUP)
        let reread = AgentSite.eventually(within: 10, "the dimse peers re-read", logs: [rsch]) { rsch.log.contains("dimse peers re-read") }
        #expect(reread)
        let welcome = try Run.program("/usr/bin/storescu", ["-aet", "STRANGER", "-aec", "CONSORT_RSCH", "+sd", "+r", "127.0.0.1", String(port), source])
        #expect(welcome.status == 0, "\(welcome.stdout)\(welcome.stderr)\n\(rsch.log)")
        #expect(Self.intakeFiles(rsch).count == 2)
        // `consort status`: the SCP, what it stored and from whom, and the callers turned away in
        // the last hour as something a person must look at (a modality's studies are not coming).
        let status = try Run.consort("status", "--config", rsch.config, "--json")
        #expect(status.status == 1, "\(status.stdout)")
        let json = OperatorTests.json(status.stdout)
        let dimse = json["dimse"] as? [String: Any] ?? [:]
        #expect(dimse["aet"] as? String == "CONSORT_RSCH" && dimse["address"] as? String == "127.0.0.1:\(port)", "\(dimse)")
        #expect(dimse["stored"] as? Int == 2 && dimse["rejected"] as? Int == 3 && dimse["rejected_last_hour"] as? Int == 3, "\(dimse)")
        #expect((dimse["last_stored"] as? [String: Any])?["calling"] as? String == "STRANGER", "\(dimse)")
        // The last turned away: STORESCU calling an AE title that is not this SCP's.
        #expect(((dimse["last_rejected"] as? [String: Any])?["detail"] as? String ?? "").contains("called AE title not recognised"), "\(dimse)")
        #expect((json["needs_attention"] as? [String] ?? []).contains { $0.hasPrefix("the DIMSE SCP rejected 3 associations in the last hour (last: STORESCU from 127.0.0.1") }, "\(json)")
        let text = try Run.consort("status", "--config", rsch.config)
        #expect(text.stdout.contains("DIMSE SCP: CONSORT_RSCH on 127.0.0.1:\(port)") && text.stdout.contains("2 instances stored") && text.stdout.contains("last stored"), "\(text.stdout)")
    }

    /// A connection to `port` on loopback.
    static func connect(_ port: Int) throws -> Int32 {
        let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
        var address = sockaddr_in()
        address.sin_family = sa_family_t(AF_INET)
        address.sin_port = UInt16(port).bigEndian
        address.sin_addr.s_addr = inet_addr("127.0.0.1")
        let ok = withUnsafePointer(to: &address) { $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { Glibc.connect(fd, $0, socklen_t(MemoryLayout<sockaddr_in>.size)) } }
        guard ok == 0 else { throw ChildWaitError(description: "cannot connect to \(port)") }
        return fd
    }

    static func send(_ fd: Int32, _ bytes: [UInt8]) {
        _ = bytes.withUnsafeBytes { Glibc.send(fd, $0.baseAddress, $0.count, Int32(MSG_NOSIGNAL)) }
    }

    /// A connection that associates as STORESCU, sends a C-STORE-RQ and the first 200 bytes of
    /// its data set, and then a P-DATA-TF that announces 1,000 bytes and stops after 10.
    static func halfAnInstance(_ port: Int) throws -> Int32 {
        let fd = try Self.connect(port)
        let ct = "1.2.840.10008.5.1.4.1.1.2"
        let request = AssociateRequest(
            calledAE: "CONSORT_RSCH", callingAE: "STORESCU", contexts: [ProposedContext(id: 1, abstractSyntax: ct, transferSyntaxes: [TransferSyntax.explicitLittle])],
            userInformation: UserInformation(maximumLength: 16_384, implementationClassUID: "1.2.3", implementationVersionName: nil))
        Self.send(fd, PDU.associateRequest(request).encoded())
        var answer = [UInt8](repeating: 0, count: 4096)
        let n = recv(fd, &answer, answer.count, 0)
        #expect(n > 0 && answer[0] == 0x02, "an A-ASSOCIATE-AC")
        let command = Command.storeRequest(messageID: 1, sopClass: ct, sopInstance: "1.2.826.0.1.3680043.10.1484.99.1")
        for pdu in dataPDUs(contextID: 1, isCommand: true, command.encoded(), maximumLength: 16_384) { Self.send(fd, pdu.encoded()) }
        Self.send(fd, PDU.data([PresentationDataValue(contextID: 1, isCommand: false, isLast: false, fragment: Array(repeating: 0, count: 200))]).encoded())
        Self.send(fd, [0x04, 0x00, 0x00, 0x00, 0x03, 0xE8] + [0, 0, 0x03, 0xE4, 1, 0] + Array(repeating: 0, count: 4))
        return fd
    }

    @Test func aPeerThatStallsInTheMiddleOfAPDUIsAbortedAtTheDeadlineAndNothingIsStored() throws {
        let (consortium, rsch, _, port) = try Self.consortium(options: "timeout 2 s")
        try rsch.start()
        defer { withExtendedLifetime(consortium) {} }
        defer { rsch.stop() }
        let fd = try Self.halfAnInstance(port)
        defer { close(fd) }
        var answer = [UInt8](repeating: 0, count: 4096)
        let began = Date()
        let aborted = AgentSite.eventually(within: 10, "the association aborted at the deadline", logs: [rsch]) {
            rsch.log.contains("association aborted: no PDU within 2 s in the middle of a PDU")
        }
        #expect(aborted)
        #expect(Date().timeIntervalSince(began) >= 1.5, "not before the deadline")
        // The abort reached the peer, and nothing was stored.
        let got = recv(fd, &answer, answer.count, 0)
        #expect(got >= 10 && answer[0] == 0x07, "an A-ABORT, then the close")
        #expect(Self.intakeFiles(rsch).isEmpty)
        #expect(Self.incoming(rsch).isEmpty, "the temporary file removed")
    }

    /// A connection cut in the middle of an instance: nothing is kept, the temporary file goes,
    /// and the SCP goes on with the next association.
    @Test func aConnectionCutInTheMiddleOfAnInstanceLeavesNothing() throws {
        let (consortium, rsch, _, port) = try Self.consortium()
        defer { withExtendedLifetime(consortium) {} }
        try rsch.start()
        defer { rsch.stop() }
        let fd = try Self.halfAnInstance(port)
        let begun = AgentSite.eventually(within: 10, "the instance begun", logs: [rsch]) { Self.incoming(rsch).count == 1 }
        #expect(begun)
        close(fd)
        let dropped = AgentSite.eventually(within: 10, "the instance dropped", logs: [rsch]) {
            rsch.log.contains("connection closed without a release; the instance being received is dropped") && Self.incoming(rsch).isEmpty
        }
        #expect(dropped)
        #expect(Self.intakeFiles(rsch).isEmpty)
        #expect(try Run.consort("echo", "CONSORT_RSCH@127.0.0.1:\(port)", "--calling-aet", "STORESCU").status == 0)
    }

    /// Four `consort store` runs at once, one association each: every instance kept, once.
    @Test func fourAssociationsAtOnceKeepEveryInstance() throws {
        let (consortium, rsch, _, port) = try Self.consortium()
        try rsch.start()
        defer { rsch.stop() }
        var runs: [RunningProgram] = []
        for seed in 0..<4 {
            let folder = consortium.root.path + "/modality\(seed)"
            try FileManager.default.createDirectory(atPath: folder, withIntermediateDirectories: true)
            _ = try AgentTests.synth(into: folder, seed: 50 + seed, instances: 10, size: "256x256")
            runs.append(try RunningProgram([Run.consort, "store", "CONSORT_RSCH@127.0.0.1:\(port)", folder, "--calling-aet", "STORESCU"]))
        }
        for run in runs {
            let (status, _) = try run.waitForExit(within: 60)
            #expect(status == 0 && run.standardOutput.contains("10 of 10 stored"), "\(run.log)")
        }
        #expect(Self.intakeFiles(rsch).count == 40 && Self.incoming(rsch).isEmpty)
        #expect(rsch.log.components(separatedBy: "association accepted").count - 1 == 4)
    }

    /// `dimse … { tls }`: DICOM TLS with the trust's certificate. A C-ECHO over TLS (openssl
    /// s_client carrying the PDUs, with a certificate from the consortium CA) is answered;
    /// plain TCP to the same port, or TLS without a client certificate, is refused.
    @Test func overTLSAnEchoIsAnsweredAndPlainTCPIsRefused() throws {
        let openssl = try Run.require("openssl", package: "openssl")
        let (consortium, rsch, _, port) = try Self.consortium(options: "tls")
        try rsch.start()
        defer { rsch.stop() }
        let client = try consortium.pki.site("MODALITY")
        let request = AssociateRequest(
            calledAE: "CONSORT_RSCH", callingAE: "STORESCU",
            contexts: [ProposedContext(id: 1, abstractSyntax: Command.verificationSOPClass, transferSyntaxes: [TransferSyntax.implicitLittle])],
            userInformation: UserInformation(maximumLength: 16_384, implementationClassUID: "1.2.3", implementationVersionName: nil))
        // The whole exchange at once: the acceptor takes PDUs as they come.
        let bytes = PDU.associateRequest(request).encoded() + dataPDUs(contextID: 1, isCommand: true, Command.echoRequest(messageID: 5).encoded(), maximumLength: 0).flatMap { $0.encoded() }
            + PDU.releaseRequest.encoded()
        let input = consortium.root.path + "/echo.in", output = consortium.root.path + "/echo.out"
        try Data(bytes).write(to: URL(fileURLWithPath: input))
        func exchange(_ credentials: [String]) throws -> [PDU] {
            _ = try Run.program("/bin/sh", ["-c", #""$1" s_client -connect "127.0.0.1:$2" -CAfile "$3" -verify_return_error -quiet $4 < "$5" > "$6""#, "sh", openssl, String(port), consortium.pki.ca, credentials.joined(separator: " "), input, output], timeout: 30)
            var reader = PDUReader(maximumLength: 1 << 20)
            reader.append([UInt8](try Data(contentsOf: URL(fileURLWithPath: output))))
            var pdus: [PDU] = []
            while let pdu = try reader.next() { pdus.append(pdu) }
            return pdus
        }
        let answered = try exchange(["-cert", client.certificate, "-key", client.key])
        #expect(answered.map(\.kind) == [.associateAccept, .data, .releaseResponse], "\(answered)\n\(rsch.log)")
        if case .data(let values) = answered.dropFirst().first {
            let response = try Command.decode(values.flatMap(\.fragment))
            #expect(response.field == .echoResponse && response.respondingTo == 5 && response.status == 0)
        }
        #expect(rsch.log.contains("tls=yes"))
        // Without a client certificate: no association.
        #expect(try exchange([]).isEmpty)
        // Plain TCP to the TLS port: refused, the reason in the agent's log.
        let plain = try Run.consort("echo", "CONSORT_RSCH@127.0.0.1:\(port)", "--calling-aet", "STORESCU", "--timeout", "5")
        #expect(plain.status == 1, "\(plain.stdout)")
        #expect(AgentSite.eventually(within: 10, "the line in the log (read by a thread of the test, it may lag the answer)", logs: [rsch]) { rsch.log.contains("TLS handshake refused") })
        // consort echo and consort store over DICOM TLS, as a modality with a consortium
        // certificate; the agent's certificate is checked against the CA and the host's name.
        let tls = ["--tls", "--cert", client.certificate, "--key", client.key, "--ca", consortium.pki.ca]
        let echo = try Run.program(Run.consort, ["echo", "CONSORT_RSCH@localhost:\(port)", "--calling-aet", "STORESCU", "--timeout", "10"] + tls)
        #expect(echo.status == 0 && echo.stdout.contains("success"), "\(echo.stdout)\(echo.stderr)")
        let source = consortium.root.path + "/over-tls"
        let study = try AgentTests.synth(into: source, seed: 95, instances: 3)
        let store = try Run.program(Run.consort, ["store", "CONSORT_RSCH@localhost:\(port)", source, "--calling-aet", "STORESCU"] + tls)
        #expect(store.status == 0 && store.stdout.contains("3 of 3 stored"), "\(store.stdout)\(store.stderr)")
        #expect(FileManager.default.fileExists(atPath: rsch.state + "/dimse-intake/" + study))
        // Another CA's view of the agent: its certificate is not trusted, nothing is said.
        let stranger = try TestPKI()
        let refused = try Run.program(Run.consort, ["echo", "CONSORT_RSCH@localhost:\(port)", "--calling-aet", "STORESCU", "--timeout", "10", "--tls",
            "--cert", try stranger.site("MODALITY").certificate, "--key", try stranger.site("MODALITY").key, "--ca", stranger.ca])
        #expect(refused.status == 1 && refused.stderr.contains("certificate"), "\(refused.stderr)")
        #expect(try Run.consort("echo", "CONSORT_RSCH@localhost:\(port)", "--tls").status == 2, "--tls needs the certificates")
    }

    /// One association at most: a second is rejected (transient, local limit exceeded) while the
    /// first is open; the first, idle past `idle`, is aborted, and then the next is accepted.
    @Test func theAssociationLimitAndTheIdleTimeoutAreKept() throws {
        try Self.requireDCMTK()
        let (consortium, rsch, _, port) = try Self.consortium(options: "associations 1 idle 2 s")
        defer { withExtendedLifetime(consortium) {} }
        try rsch.start()
        defer { rsch.stop() }
        let fd = try Self.connect(port)
        defer { close(fd) }
        let request = AssociateRequest(
            calledAE: "CONSORT_RSCH", callingAE: "STORESCU",
            contexts: [ProposedContext(id: 1, abstractSyntax: Command.verificationSOPClass, transferSyntaxes: [TransferSyntax.implicitLittle])],
            userInformation: UserInformation(maximumLength: 16_384, implementationClassUID: "1.2.3", implementationVersionName: nil))
        Self.send(fd, PDU.associateRequest(request).encoded())
        var answer = [UInt8](repeating: 0, count: 4096)
        #expect(recv(fd, &answer, answer.count, 0) > 0 && answer[0] == 0x02, "an A-ASSOCIATE-AC")
        let second = try Run.program("/usr/bin/echoscu", ["-aet", "STORESCU", "-aec", "CONSORT_RSCH", "127.0.0.1", String(port)])
        #expect(second.status != 0 && (second.stdout + second.stderr).contains("Local Limit Exceeded"), "\(second.stdout)\(second.stderr)")
        let idled = AgentSite.eventually(within: 10, "the idle association aborted", logs: [rsch]) { rsch.log.contains("association aborted: no PDU within 2 s idle") }
        #expect(idled)
        let third = try Poll.until(within: 10, every: 0.05) {
            try Run.program("/usr/bin/echoscu", ["-aet", "STORESCU", "-aec", "CONSORT_RSCH", "127.0.0.1", String(port)]).status == 0
        }
        #expect(third, "\(rsch.log)")
    }

    /// kill -9 of the agent while `consort store` sends 60 instances: every instance answered
    /// success is in the intake after the restart, taken (the push rule fires for it), and
    /// nothing half-received is left.
    @Test func everyInstanceAnsweredSuccessSurvivesKill9OfTheAgent() throws {
        let (consortium, rsch, uhsx, port) = try Self.consortium()
        let source = consortium.root.path + "/modality"
        try FileManager.default.createDirectory(atPath: source, withIntermediateDirectories: true)
        _ = try AgentTests.synth(into: source, seed: 33, instances: 60, size: "512x512")
        try rsch.start()
        let store = try RunningProgram([Run.consort, "store", "CONSORT_RSCH@127.0.0.1:\(port)", source, "--calling-aet", "STORESCU", "--json", "--timeout", "10"])
        let some = AgentSite.eventually(within: 60, "a few instances kept", logs: [rsch]) { Self.intakeFiles(rsch).count >= 5 }
        #expect(some)
        rsch.kill()
        _ = try store.waitForExit(within: 60)
        let answered = store.standardOutput.split(separator: "\n").compactMap { try? JSONSerialization.jsonObject(with: Data($0.utf8)) as? [String: Any] }
        let succeeded = Set(answered.filter { $0["status"] as? Int == 0 }.compactMap { $0["sop"] as? String })
        #expect(succeeded.count >= 5 && succeeded.count < 60, "\(store.log)")
        try uhsx.start()
        try rsch.start()
        defer {
            rsch.stop()
            uhsx.stop()
        }
        let kept = Set(Self.intakeFiles(rsch).map { (($0 as NSString).lastPathComponent as NSString).deletingPathExtension })
        #expect(succeeded.isSubset(of: kept), "answered success but not kept: \(succeeded.subtracting(kept))")
        // Each data set kept is the one sent, byte for byte (`consort store` sends them as stored).
        let sent = Set(try TransferTests.files(under: source).map { try DIMSEInteropTests.dataSet(source + "/" + $0) })
        for file in Self.intakeFiles(rsch) { #expect(sent.contains(try DIMSEInteropTests.dataSet(Self.intake(rsch) + "/" + file)), "\(file)") }
        #expect(Self.incoming(rsch).isEmpty, "what was half-received is removed at start")
        // The catch-up scan at the restart walks the intake like any watched folder.
        let scanned = AgentSite.eventually(within: 30, "the catch-up scan of the intake", logs: [rsch]) {
            rsch.log.split(separator: "\n").contains { $0.contains("catch-up scan done") && $0.contains("/dimse-intake") && $0.contains("files=\(kept.count)") }
        }
        #expect(scanned)
        // Taken after the restart like any file in a watched folder: every one kept is pushed.
        let pushed = AgentSite.eventually(within: 60, "every kept instance at UHSX", logs: [rsch, uhsx]) { uhsx.received.count == kept.count }
        #expect(pushed)
    }

    /// A copy of `file` (a CT) whose File Meta Information names another SOP class UID of the
    /// same length, `sopClass` (`consort store` proposes and commands what the meta says).
    static func claiming(_ sopClass: String, _ file: String, to path: String) throws {
        var bytes = [UInt8](try Data(contentsOf: URL(fileURLWithPath: file)))
        let ct = Array("1.2.840.10008.5.1.4.1.1.2".utf8)
        let at = try #require((132..<400).first { Array(bytes[$0..<($0 + ct.count)]) == ct }, "the media storage SOP class in the meta")
        bytes.replaceSubrange(at..<(at + ct.count), with: Array(sopClass.utf8))
        try Data(bytes).write(to: URL(fileURLWithPath: path))
    }

    @Test func aDataSetThatDoesNotMatchOrCannotBeReadIsRefusedWithItsStatusAndNothingIsKept() throws {
        let (consortium, rsch, _, port) = try Self.consortium()
        let source = consortium.root.path + "/modality", bad = consortium.root.path + "/bad"
        for folder in [source, bad] { try FileManager.default.createDirectory(atPath: folder, withIntermediateDirectories: true) }
        _ = try AgentTests.synth(into: source, seed: 34, instances: 3)
        let files = TransferTests.files(under: source).map { source + "/" + $0 }
        // One whose meta says MR over a CT data set; one cut short inside its Pixel Data; one of
        // a SOP class that is no storage class (its context is rejected, the rest go on); one good.
        try Self.claiming("1.2.840.10008.5.1.4.1.1.4", files[0], to: bad + "/mismatch.dcm")
        try Self.claiming("1.2.840.10008.5.1.4.1.2.2", files[0], to: bad + "/unsupported.dcm")
        let whole = try Data(contentsOf: URL(fileURLWithPath: files[1]))
        try whole.prefix(whole.count - 100).write(to: URL(fileURLWithPath: bad + "/cut.dcm"))
        try FileManager.default.copyItem(atPath: files[2], toPath: bad + "/good.dcm")
        try rsch.start()
        defer { rsch.stop() }
        let store = try Run.consort("store", "CONSORT_RSCH@127.0.0.1:\(port)", bad, "--calling-aet", "STORESCU", "--json")
        let answers = store.stdout.split(separator: "\n").compactMap { try? JSONSerialization.jsonObject(with: Data($0.utf8)) as? [String: Any] }
        let status = Dictionary(uniqueKeysWithValues: answers.compactMap { answer in
            (answer["file"] as? String).map { (($0 as NSString).lastPathComponent, answer["status"] as? Int ?? -1) }
        })
        #expect(status == ["mismatch.dcm": 0xA900, "cut.dcm": 0xC000, "unsupported.dcm": -1, "good.dcm": 0], "\(store.stdout)\(store.stderr)\n\(rsch.log)")
        #expect(answers.contains { ($0["result"] as? String ?? "").contains("does not accept 1.2.840.10008.5.1.4.1.2.2") }, "\(store.stdout)")
        #expect(AgentSite.eventually(within: 10, "the line in the log (read by a thread of the test, it may lag the answer)", logs: [rsch]) { rsch.log.contains("contexts=\"4 of 6\"") }, "each SOP class in its stored syntax and in the other uncompressed one: the query class's two rejected")
        #expect(store.status == 1)
        #expect(Self.intakeFiles(rsch).count == 1 && Self.incoming(rsch).isEmpty, "\(Self.intakeFiles(rsch)) \(Self.incoming(rsch))")
        #expect(AgentSite.eventually(within: 10, "the line in the log (read by a thread of the test, it may lag the answer)", logs: [rsch]) { rsch.log.contains("C-STORE refused: refused 0xA900: data set does not match SOP class") })
    }

    /// A disk that really fills: the intake is a 1 MB tmpfs in the agent's own mount namespace.
    /// The instances that fit are answered success and kept; the next meets ENOSPC and is
    /// answered 0xA700 (out of resources), its partial file removed; the association goes on.
    @Test func aFullDiskIsOutOfResourcesAndLeavesNothingBehind() throws {
        let unshare = try Run.require("unshare", package: "util-linux"), nsenter = try Run.require("nsenter", package: "util-linux")
        let probe = try Run.program(unshare, ["-m", "--", "true"])
        try Skip.unless(probe.status == 0, "mount namespaces are not allowed here (unshare -m: \(probe.stderr.trimmingCharacters(in: .whitespacesAndNewlines)))")
        let (consortium, rsch, _, port) = try Self.consortium()
        let source = consortium.root.path + "/modality"
        try FileManager.default.createDirectory(atPath: source, withIntermediateDirectories: true)
        try FileManager.default.createDirectory(atPath: Self.intake(rsch), withIntermediateDirectories: true)
        // 512x512 slices, about 0.5 MB each: two fit in 1 MB, not four.
        _ = try AgentTests.synth(into: source, seed: 35, instances: 4, size: "512x512")
        try rsch.start(through: [unshare, "-m", "--", "/bin/sh", "-c", #"mount -t tmpfs -o size=1m consort-test "$1" && exec "$2" agent --config "$3""#,
            "sh", Self.intake(rsch), Run.consort, rsch.config])
        let pid = try #require(rsch.program?.pid)
        defer { rsch.stop() }
        let store = try Run.consort("store", "CONSORT_RSCH@127.0.0.1:\(port)", source, "--calling-aet", "STORESCU", "--json")
        let statuses = store.stdout.split(separator: "\n").compactMap { try? JSONSerialization.jsonObject(with: Data($0.utf8)) as? [String: Any] }.map { $0["status"] as? Int ?? -1 }
        #expect(statuses.count == 4 && statuses.contains(0) && statuses.contains(0xA700) && statuses.allSatisfy { $0 == 0 || $0 == 0xA700 }, "\(store.stdout)\(store.stderr)\n\(rsch.log)")
        // Inside the agent's namespace: the instances answered success, and nothing else.
        let listing = try Run.program(nsenter, ["-t", String(pid), "-m", "--", "find", Self.intake(rsch), "-type", "f"])
        let found = listing.stdout.split(separator: "\n")
        #expect(found.count == statuses.filter { $0 == 0 }.count && !found.contains { $0.contains("/.incoming/") }, "\(listing.stdout)")
        #expect(AgentSite.eventually(within: 10, "the line in the log (read by a thread of the test, it may lag the answer)", logs: [rsch]) { rsch.log.contains("No space left on device") })
    }
}
