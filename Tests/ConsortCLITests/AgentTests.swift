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
        #expect(try Run.consort("demo", "study", "--out", rsch.watch, "--instances", "12").status == 0)
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

extension AgentTests {
    /// A synthetic study written into a folder with `consort synth`; returns its UID.
    static func synth(into folder: String, seed: Int, instances: Int, size: String = "64x64", description: String = "CT HEAD WITHOUT CONTRAST", date: String? = nil) throws -> String {
        let outcome = try Run.program(
            Run.consort, ["synth", "--out", folder, "--seed", String(seed), "--instances", String(instances), "--size", size, "--description", description] + (date.map { ["--date", $0] } ?? []))
        #expect(outcome.status == 0, "\(outcome.stderr)")
        return outcome.stdout.trimmingCharacters(in: .whitespacesAndNewlines)
    }

    /// Receiver down: the job is deferred with the reason; receiver back: delivered within a
    /// backoff (retry-max 2 s here), nothing twice.
    @Test func aPeerThatIsDownDefersTheJobUntilItIsBack() throws {
        let consortium = try TestConsortium(members: ["RSCH", "UHSX"], rules: Self.pushAll)
        let uhsx = try consortium.site("UHSX")
        let rsch = try consortium.site("RSCH", peers: ["UHSX": uhsx.port])
        try rsch.start()
        defer { rsch.stop() }
        let study = try Self.synth(into: rsch.watch, seed: 11, instances: 5)
        let deferred = try AgentSite.eventually(within: 30, "the job deferred with the reason", logs: [rsch]) {
            try rsch.queue().contains { $0["state"] as? String == "deferred" && ($0["last_error"] as? String ?? "").contains("curl 7") }
        }
        #expect(deferred)
        #expect(rsch.log.contains("deferred"), "\(rsch.log)")
        try uhsx.start()
        defer { uhsx.stop() }
        let arrived = AgentSite.eventually(within: 30, "5 instances at UHSX once it is back", logs: [rsch, uhsx]) { uhsx.received.count == 5 }
        #expect(arrived)
        #expect(uhsx.received.allSatisfy { $0.hasPrefix(study + "/") })
    }

    /// The receiving agent's disk guard: below its free-space threshold it answers 503, the sender
    /// defers; once space is back (here: the threshold lowered and SIGHUP) it is delivered.
    @Test func aReceiverWithoutDiskSpaceRefusesAndTheSenderDefersUntilItHasRoom() throws {
        let consortium = try TestConsortium(members: ["RSCH", "UHSX"], rules: Self.pushAll)
        let uhsx = try consortium.site("UHSX", extra: "free-space 99.99 %\n")
        let rsch = try consortium.site("RSCH", peers: ["UHSX": uhsx.port])
        try uhsx.start()
        try rsch.start()
        defer {
            rsch.stop()
            uhsx.stop()
        }
        _ = try Self.synth(into: rsch.watch, seed: 12, instances: 4)
        let deferred = try AgentSite.eventually(within: 30, "deferred: the receiver's disk is nearly full", logs: [rsch, uhsx]) {
            try rsch.queue().contains { $0["state"] as? String == "deferred" && ($0["last_error"] as? String ?? "").contains("nearly full") }
        }
        #expect(deferred)
        #expect(uhsx.log.contains("error receiver: refusing incoming transfers: the disk is nearly full"), "\(uhsx.log)")
        #expect(uhsx.received.isEmpty)
        let text = try String(contentsOfFile: uhsx.config, encoding: .utf8).replacingOccurrences(of: "free-space 99.99 %", with: "free-space 1 %")
        try text.write(toFile: uhsx.config, atomically: true, encoding: .utf8)
        uhsx.program?.signal(SIGHUP)
        let arrived = AgentSite.eventually(within: 30, "4 instances at UHSX once it has room", logs: [rsch, uhsx]) { uhsx.received.count == 4 }
        #expect(arrived)
    }

    /// Urgent work never waits behind bulk to the same peer: with a bulk study crawling to UHSX
    /// (1 connection, capped at 2 MB/s), an urgent instance written later arrives while the bulk
    /// job is still sending; and a deadline that passes is logged at error level.
    @Test func urgentOvertakesBulkAndAMissedDeadlineIsAnError() throws {
        let rules = """
            rule "Urgent to UHSX" {
              purpose emergency
              at RSCH
              on instance-arrival
              when StudyDescription ~ "URGENT" and origin is local
              push to UHSX priority urgent deadline 20 s
            }
            rule "Bulk to UHSX" {
              purpose direct-care
              at RSCH
              on instance-arrival
              when StudyDescription ~ "ARCHIVE" and origin is local
              push to UHSX priority bulk
            }
            rule "Never reached" {
              purpose emergency
              at RSCH
              on instance-arrival
              when StudyDescription ~ "LOST" and origin is local
              push to ESHT priority urgent deadline 1 s
            }
            """
        let consortium = try TestConsortium(members: ["RSCH", "UHSX", "ESHT"], rules: rules)
        let uhsx = try consortium.site("UHSX")
        let rsch = try consortium.site("RSCH", peers: ["UHSX": uhsx.port, "ESHT": 9], extra: "")
        // One connection for normal and bulk work, capped: the bulk study takes ~10 s.
        let config = try String(contentsOfFile: rsch.config, encoding: .utf8)
            .replacingOccurrences(of: "peer UHSX https://localhost:\(uhsx.port)", with: "peer UHSX https://localhost:\(uhsx.port) { connections 1  bandwidth 2 MB/s }")
        try config.write(toFile: rsch.config, atomically: true, encoding: .utf8)
        try uhsx.start()
        try rsch.start()
        defer {
            rsch.stop()
            uhsx.stop()
        }
        let bulk = try Self.synth(into: consortium.root.path + "/staged", seed: 21, instances: 40, size: "512x512", description: "ARCHIVE CT")
        try FileManager.default.moveItem(atPath: consortium.root.path + "/staged/" + bulk, toPath: rsch.watch + "/" + bulk)
        // Under way: the bulk job active at RSCH, its request streaming into UHSX's staging.
        let staging = { (try? FileManager.default.contentsOfDirectory(atPath: uhsx.inbound + "/.staging"))?.contains { $0.hasPrefix("part-") } ?? false }
        let started = try AgentSite.eventually(within: 30, "the bulk study under way", logs: [rsch, uhsx]) {
            try rsch.queue().contains { $0["priority"] as? String == "bulk" && $0["state"] as? String == "active" } && staging()
        }
        #expect(started)
        let urgent = try Self.synth(into: rsch.watch, seed: 22, instances: 1, description: "URGENT HEAD CT")
        let overtook = AgentSite.eventually(within: 20, "the urgent instance at UHSX", logs: [rsch, uhsx]) { uhsx.received.contains { $0.hasPrefix(urgent) } }
        #expect(overtook)
        let bulkStillGoing = try rsch.queue().contains { $0["priority"] as? String == "bulk" && $0["state"] as? String == "active" }
        #expect(bulkStillGoing && !uhsx.received.contains { $0.hasPrefix(bulk) }, "the bulk study had finished first: the test proves nothing")
        let bulkArrived = AgentSite.eventually(within: 60, "the bulk study at UHSX in the end", logs: [rsch, uhsx]) { uhsx.received.filter { $0.hasPrefix(bulk) }.count == 40 }
        #expect(bulkArrived)
        // A study for a peer that never answers: its 1 s deadline passes, loudly.
        _ = try Self.synth(into: rsch.watch, seed: 23, instances: 1, description: "LOST")
        let alarmed = AgentSite.eventually(within: 20, "the missed deadline logged", logs: [rsch]) { rsch.log.contains("error spool: DEADLINE MISSED") }
        #expect(alarmed)
        #expect(rsch.log.contains("destination=ESHT"), "\(rsch.log)")
    }

    /// Three agents, each pushing every study to both others, each with its inbound inside its
    /// own watched folder: one copy of each instance at each trust, and then quiet.
    @Test func aFullMeshPushingEverythingEndsWithOneCopyEachAndGoesQuiet() throws {
        let rules = """
            rule "Everything to everyone" {
              purpose direct-care
              on instance-arrival
              push to trusts priority normal
            }
            """
        let consortium = try TestConsortium(members: ["RSCH", "UHSX", "ESHT"], rules: rules)
        let codes = ["RSCH", "UHSX", "ESHT"]
        var sites: [String: AgentSite] = [:]
        var ports: [String: Int] = [:]
        for code in codes { ports[code] = try OrthancInteropTests.freePort() }
        for code in codes {
            sites[code] = try consortium.site(code, port: ports[code], peers: ports.filter { $0.key != code }, inboundInsideWatch: true)
        }
        for code in codes { try sites[code]!.start() }
        defer { for code in codes { sites[code]!.stop() } }
        var studies: [String: String] = [:]
        for (index, code) in codes.enumerated() {
            studies[code] = try Self.synth(into: sites[code]!.watch + "/local", seed: 31 + index, instances: 3)
        }
        // Each trust ends with the two others' studies in its inbound, 3 instances each.
        for code in codes {
            let site = sites[code]!
            let others = codes.filter { $0 != code }.map { studies[$0]! }
            let complete = AgentSite.eventually(within: 60, "\(code) holds the others' studies", logs: Array(sites.values)) {
                others.allSatisfy { study in site.received.filter { $0.hasPrefix(study + "/") }.count == 3 }
            }
            #expect(complete)
        }
        // Quiet: every job done, nothing more arrives, nothing bounced back to its origin.
        let quiet = try AgentSite.eventually(within: 30, "every queue quiet", logs: Array(sites.values)) {
            try codes.allSatisfy { code in try sites[code]!.queue().allSatisfy { ($0["state"] as? String) == "done" } }
        }
        #expect(quiet)
        for code in codes {
            let site = sites[code]!
            #expect(site.received.count == 6, "\(code) holds \(site.received)")
            #expect(!site.received.contains { $0.hasPrefix(studies[code]! + "/") }, "\(code)'s own study came back to it")
        }
    }

    /// Configuration errors name file:line:column; a rule set with errors on SIGHUP is refused
    /// and the old one kept.
    @Test func configErrorsArePlacedAndABadRuleSetOnSighupKeepsTheOld() throws {
        let consortium = try TestConsortium(members: ["RSCH", "UHSX"], rules: Self.pushAll)
        let uhsx = try consortium.site("UHSX")
        let rsch = try consortium.site("RSCH", peers: ["UHSX": uhsx.port])
        let broken = consortium.root.path + "/broken.conf"
        try (try String(contentsOfFile: rsch.config, encoding: .utf8) + "wacth /srv\npeer UHSX ftp://nowhere\n").write(toFile: broken, atomically: true, encoding: .utf8)
        let check = try Run.consort("config", "check", broken)
        #expect(check.status == 1)
        #expect(check.stderr.contains("broken.conf:13:1: error: unknown setting \"wacth\""), "\(check.stderr)")
        #expect(check.stderr.contains("did you mean \"watch\"?"), "\(check.stderr)")
        #expect(check.stderr.contains("broken.conf:14:11: error: a peer's address is an https:// URL"), "\(check.stderr)")
        let good = try Run.consort("config", "check", rsch.config)
        #expect(good.status == 0, "\(good.stderr)")
        // The certificate of another trust is caught.
        let wrong = consortium.root.path + "/wrong.conf"
        let uhsxCert = try consortium.pki.site("UHSX")
        try (try String(contentsOfFile: rsch.config, encoding: .utf8).replacingOccurrences(of: "site-rsch.pem", with: "site-uhsx.pem").replacingOccurrences(of: "site-rsch.key", with: "site-uhsx.key"))
            .write(toFile: wrong, atomically: true, encoding: .utf8)
        _ = uhsxCert
        let wrongCheck = try Run.consort("config", "check", wrong)
        #expect(wrongCheck.status == 1)
        #expect(wrongCheck.stderr.contains("the certificate is for UHSX, not for this trust (RSCH)"), "\(wrongCheck.stderr)")
        // SIGHUP with a broken rule set: refused, the old rules stay in force and still route.
        try uhsx.start()
        try rsch.start()
        defer {
            rsch.stop()
            uhsx.stop()
        }
        try "rule \"Broken\" {\n  purpose direct-care\n  on instance-arival\n}\n".write(toFile: consortium.rules + "/zz-broken.rules", atomically: true, encoding: .utf8)
        rsch.program?.signal(SIGHUP)
        let refused = AgentSite.eventually(within: 20, "the reload refused", logs: [rsch]) { rsch.log.contains("rules NOT reloaded") }
        #expect(refused)
        _ = try Self.synth(into: rsch.watch, seed: 41, instances: 2)
        let routed = AgentSite.eventually(within: 30, "routed by the old rules", logs: [rsch, uhsx]) { uhsx.received.count == 2 }
        #expect(routed)
    }
}

extension AgentTests {
    /// kill -9 of the sending agent at random moments of a transfer, four times, restarting each
    /// time: every instance arrives, none is stored twice at the peer, nothing is left in
    /// staging, and the one job ends done.
    @Test func aSenderKilledAtRandomMomentsLosesAndRepeatsNothing() throws {
        let consortium = try TestConsortium(members: ["RSCH", "UHSX"], rules: Self.pushAll)
        let uhsx = try consortium.site("UHSX")
        let rsch = try consortium.site("RSCH", peers: ["UHSX": uhsx.port])
        let config = try String(contentsOfFile: rsch.config, encoding: .utf8)
            .replacingOccurrences(of: "peer UHSX https://localhost:\(uhsx.port)", with: "peer UHSX https://localhost:\(uhsx.port) { connections 2  bandwidth 12 MB/s  batch 5 }")
        try config.write(toFile: rsch.config, atomically: true, encoding: .utf8)
        try uhsx.start()
        defer { uhsx.stop() }
        let staged = consortium.root.path + "/staged"
        let study = try Self.synth(into: staged, seed: 51, instances: 60, size: "512x512")
        try rsch.start()
        try FileManager.default.moveItem(atPath: staged + "/" + study, toPath: rsch.watch + "/" + study)
        var generator = SystemRandomNumberGenerator()
        var midway = 0
        for _ in 1...4 {
            // A random moment of the transfer (not a wait for a condition: any moment will do).
            Thread.sleep(forTimeInterval: Double.random(in: 0.4...1.6, using: &generator))
            rsch.kill()
            if (1..<60).contains(uhsx.received.count) { midway += 1 }
            try rsch.start()
        }
        #expect(midway >= 1, "no kill landed while instances were arriving: the test proved nothing")
        let all = AgentSite.eventually(within: 120, "60 instances at UHSX", logs: [rsch, uhsx]) { uhsx.received.count == 60 }
        #expect(all)
        let done = try AgentSite.eventually(within: 30, "the job done", logs: [rsch]) {
            let jobs = try rsch.queue()
            return jobs.count == 1 && jobs[0]["state"] as? String == "done" && jobs[0]["instances_sent"] as? Int == 60
        }
        #expect(done)
        rsch.stop()
        // None stored twice: each instance's "stored" line appears once in UHSX's log.
        let stored = uhsx.log.split(separator: "\n").filter { $0.contains(": stored ") }
        let uids = stored.compactMap { line in line.split(separator: " ").first { $0.hasPrefix("2.25.") }.map(String.init) }
        #expect(uids.count == 60 && Set(uids).count == 60, "\(uids.count) stored lines for \(Set(uids).count) instances")
        let leftovers = (try? FileManager.default.contentsOfDirectory(atPath: uhsx.inbound + "/.staging"))?.filter { $0.hasPrefix("part-") } ?? []
        #expect(leftovers.isEmpty, "\(leftovers)")
    }
}

extension AgentTests {
    /// `deliver to local PACS`: a study received from a peer becomes a job in the receiving
    /// agent's spool and lands in the trust's own PACS — a real Orthanc taking STOW-RS.
    @Test func aStudyReceivedFromAPeerIsDeliveredToTheLocalPACS() throws {
        let rules = Self.pushAll + """

            rule "Received studies into our PACS" {
              purpose direct-care
              at UHSX
              on instance-arrival
              when origin is received from RSCH
              deliver to local PACS priority normal
            }
            """
        let consortium = try TestConsortium(members: ["RSCH", "UHSX"], rules: rules)
        let orthanc = try OrthancInteropTests.Orthanc(folder: consortium.root.path + "/orthanc", consortReceiver: "http://127.0.0.1:1/none")
        defer { orthanc.stop() }
        let uhsx = try consortium.site("UHSX", extra: "local PACS dicomweb \(orthanc.url)/dicom-web\n")
        let rsch = try consortium.site("RSCH", peers: ["UHSX": uhsx.port])
        try uhsx.start()
        try rsch.start()
        defer {
            rsch.stop()
            uhsx.stop()
        }
        let study = try Self.synth(into: rsch.watch, seed: 61, instances: 5)
        let inPACS = AgentSite.eventually(within: 60, "the study in Orthanc", logs: [rsch, uhsx]) {
            // Orthanc's own count, and the study found by its UID through Orthanc's QIDO-RS.
            let statistics = try? OrthancInteropTests.curl(["-s", "--max-time", "5", "\(orthanc.url)/statistics"])
            let found = try? OrthancInteropTests.curl(["-s", "--max-time", "5", "\(orthanc.url)/dicom-web/studies?StudyInstanceUID=\(study)"])
            return statistics?.stdout.replacingOccurrences(of: " ", with: "").contains("\"CountInstances\":5") == true && found?.stdout.contains(study) == true
        }
        #expect(inPACS)
        let delivered = try AgentSite.eventually(within: 30, "the delivery job done at UHSX", logs: [uhsx]) {
            try uhsx.queue().contains { $0["kind"] as? String == "deliver" && $0["peer"] as? String == "PACS" && $0["state"] as? String == "done" && $0["instances_sent"] as? Int == 5 }
        }
        #expect(delivered)
    }

    /// Watch folder abuse at the agent: a file written slowly over a second and a half is taken
    /// once, when closed, and arrives whole; a non-DICOM file and a truncated DICOM file are
    /// recorded with their problem and sent nowhere; the agent carries on.
    @Test func slowNonDICOMAndTruncatedFilesInTheWatchFolderAreHandledAndNothingStops() throws {
        let consortium = try TestConsortium(members: ["RSCH", "UHSX"], rules: Self.pushAll)
        let uhsx = try consortium.site("UHSX")
        let rsch = try consortium.site("RSCH", peers: ["UHSX": uhsx.port])
        try uhsx.start()
        try rsch.start()
        defer {
            rsch.stop()
            uhsx.stop()
        }
        let source = consortium.root.path + "/source"
        let study = try Self.synth(into: source, seed: 71, instances: 3)
        let files = try FileManager.default.contentsOfDirectory(atPath: source + "/" + study).sorted().map { source + "/\(study)/\($0)" }
        try "not an image at all".write(toFile: rsch.watch + "/notes.txt", atomically: false, encoding: .utf8)
        let whole = try Data(contentsOf: URL(fileURLWithPath: files[1]))
        try whole.prefix(whole.count - 2000).write(to: URL(fileURLWithPath: rsch.watch + "/cut.dcm"))
        // Written in three pieces over 1.5 s: never taken before it is closed.
        let slow = rsch.watch + "/slow.dcm"
        let bytes = try Data(contentsOf: URL(fileURLWithPath: files[0]))
        let handle = try #require(FileHandle(forWritingAtPath: { _ = FileManager.default.createFile(atPath: slow, contents: nil); return slow }()))
        for piece in 0..<3 {
            let range = (bytes.count * piece / 3)..<(bytes.count * (piece + 1) / 3)
            try handle.write(contentsOf: bytes[range])
            Thread.sleep(forTimeInterval: 0.5)  // a slow writer, not a wait for a condition
            #expect(uhsx.received.isEmpty, "taken while still being written")
        }
        try handle.close()
        let arrived = AgentSite.eventually(within: 30, "the slowly written instance at UHSX", logs: [rsch, uhsx]) { uhsx.received.count == 1 }
        #expect(arrived)
        if let copy = uhsx.received.first {
            #expect(try Data(contentsOf: URL(fileURLWithPath: uhsx.inbound + "/" + copy)) == bytes)
        }
        let recorded = AgentSite.eventually(within: 10, "the cut file recorded as malformed", logs: [rsch]) {
            rsch.log.contains("malformed DICOM file recorded, not taken") && rsch.log.contains("cut.dcm")
        }
        #expect(recorded)
        // Still working: a whole instance written after all that goes too.
        try FileManager.default.copyItem(atPath: files[2], toPath: rsch.watch + "/later.dcm")
        let later = AgentSite.eventually(within: 30, "the later instance at UHSX", logs: [rsch, uhsx]) { uhsx.received.count == 2 }
        #expect(later)
        #expect(!uhsx.log.contains(": refused "), "a bad file reached UHSX: \(uhsx.log)")
    }
}

extension AgentTests {
    /// A job tried before asks the receiving agent which instances of the study it already holds
    /// (QIDO-RS at instance level) and sends only the rest: 6 of 10 reached UHSX another way
    /// while it was down for RSCH; the retry sends 4.
    @Test func aRetriedJobAsksThePeerWhatItHoldsAndSendsOnlyTheRest() throws {
        let consortium = try TestConsortium(members: ["RSCH", "UHSX"], rules: Self.pushAll)
        let uhsx = try consortium.site("UHSX")
        let rsch = try consortium.site("RSCH", peers: ["UHSX": uhsx.port])
        let source = consortium.root.path + "/source"
        let study = try Self.synth(into: source, seed: 81, instances: 10)
        let files = try FileManager.default.contentsOfDirectory(atPath: source + "/" + study).sorted().map { source + "/\(study)/\($0)" }
        // Six instances reach UHSX first, sent by hand with RSCH's certificate.
        try uhsx.start()
        let cert = try consortium.pki.site("RSCH")
        let early = try Run.program(Run.consort, ["send", uhsx.url] + files.prefix(6) + ["--cert", cert.certificate, "--key", cert.key, "--ca", consortium.pki.ca])
        #expect(early.status == 0, "\(early.stderr)")
        uhsx.stop()
        // RSCH takes the study while UHSX is down: its job is tried, and deferred.
        try rsch.start()
        defer { rsch.stop() }
        try FileManager.default.moveItem(atPath: source + "/" + study, toPath: rsch.watch + "/" + study)
        let deferred = try AgentSite.eventually(within: 30, "the job deferred", logs: [rsch]) {
            try rsch.queue().contains { $0["state"] as? String == "deferred" }
        }
        #expect(deferred)
        try uhsx.start()
        defer { uhsx.stop() }
        let all = AgentSite.eventually(within: 30, "10 instances at UHSX", logs: [rsch, uhsx]) { uhsx.received.count == 10 }
        #expect(all)
        let done = try AgentSite.eventually(within: 30, "the job done", logs: [rsch]) { try rsch.queue().contains { $0["state"] as? String == "done" } }
        #expect(done)
        #expect(rsch.log.contains("resuming: the peer already holds part of the study") && rsch.log.contains("held=6"), "\(rsch.log)")
        // UHSX's second run stored exactly the four missing instances and was sent nothing twice.
        let log = uhsx.log
        #expect(log.split(separator: "\n").filter { $0.contains(": stored 2.25.") }.count == 4, "\(log)")
        #expect(!log.contains("already held"), "\(log)")
    }
}

extension AgentTests {
    /// RSCH pushes each local study to UHSX once it has been quiet for 1 s.
    static let wholeStudiesToUHSX = """
        rule "Whole studies to UHSX" {
          purpose direct-care
          at RSCH
          on study-stable after 1 s
          when origin is local
          push to UHSX priority normal
        }
        """

    static let forwardWhole = wholeStudiesToUHSX + "\n" + """
        rule "UHSX passes RSCH's studies on to ASPH once they are whole" {
          purpose direct-care
          at UHSX
          on study-stable after 1 h
          when origin is received from RSCH
          push to ASPH priority normal
        }
        """

    /// Completeness without guessing: RSCH's study-stable push first sends UHSX the study's
    /// manifest. UHSX's own study-stable rule (quiet for an hour) fires the moment the last
    /// listed instance is here, not an hour later; while RSCH is killed halfway, UHSX shows the
    /// study as missing instances and fires nothing; once RSCH is back the rest arrives and the
    /// rule fires. A plain DICOMweb peer answers 404 to the manifest and just gets STOW-RS.
    @Test func aManifestTellsTheReceiverWhenAStudyIsWhole() throws {
        let consortium = try TestConsortium(members: ["RSCH", "UHSX", "ASPH"], rules: Self.forwardWhole)
        let asph = try consortium.site("ASPH")
        let uhsx = try consortium.site("UHSX", peers: ["ASPH": asph.port])
        let rsch = try consortium.site("RSCH", peers: ["UHSX": uhsx.port])
        // Slow enough to be cut halfway: 30 instances of about 130 kB at 400 kB/s, one a request.
        try String(contentsOfFile: rsch.config, encoding: .utf8)
            .replacingOccurrences(of: "peer UHSX https://localhost:\(uhsx.port)", with: "peer UHSX https://localhost:\(uhsx.port) { connections 1  bandwidth 400 kB/s  batch 1 }")
            .write(toFile: rsch.config, atomically: true, encoding: .utf8)
        try asph.start()
        try uhsx.start()
        defer {
            asph.stop()
            uhsx.stop()
        }
        let source = consortium.root.path + "/source"
        let study = try Self.synth(into: source, seed: 91, instances: 30, size: "256x256")
        try rsch.start()
        try FileManager.default.moveItem(atPath: source + "/" + study, toPath: rsch.watch + "/" + study)
        func incomplete() throws -> [[String: Any]] {
            let status = try Run.consort("status", "--json", "--config", uhsx.config)
            let object = try JSONSerialization.jsonObject(with: Data(status.stdout.utf8)) as? [String: Any]
            return (object?["incomplete_studies"] as? [String: Any])?["studies"] as? [[String: Any]] ?? []
        }
        // The manifest is at UHSX and part of the study: RSCH is killed mid-transfer.
        #expect(try AgentSite.eventually(within: 60, "UHSX holds part of a study it has the manifest of", logs: [rsch, uhsx]) {
            try incomplete().contains { $0["study"] as? String == study && $0["listed"] as? Int == 30 && ($0["held"] as? Int ?? 0) >= 3 }
        })
        rsch.kill()
        let cut = try incomplete().first { $0["study"] as? String == study }
        let heldAtCut = cut?["held"] as? Int ?? 0
        #expect(heldAtCut < 30 && uhsx.received.count < 30, "cut halfway: \(String(describing: cut))")
        let text = try Run.consort("status", "--config", uhsx.config)
        #expect(text.stdout.contains("Received studies incomplete") && text.stdout.contains("of 30 instances here"), "\(text.stdout)")
        // (That UHSX's rule waits while the study is incomplete is shown by the store's tests;
        // here it would wait an hour anyway. What only a manifest can do is below: it fires at
        // once when the study is whole.)
        try rsch.start()
        defer { rsch.stop() }
        #expect(AgentSite.eventually(within: 90, "all 30 at UHSX and passed on to ASPH within the test, not after the rule's hour", logs: [rsch, uhsx, asph]) {
            asph.received.count == 30
        })
        #expect(uhsx.log.contains("study stable: jobs queued") && uhsx.log.contains("manifest is satisfied"), "\(uhsx.log)")
        #expect(try incomplete().isEmpty)
        // Byte for byte at UHSX, as listed.
        let originals = Set(try FileManager.default.contentsOfDirectory(atPath: rsch.watch + "/" + study).map { try Data(contentsOf: URL(fileURLWithPath: rsch.watch + "/\(study)/\($0)")) })
        let copies = Set(try uhsx.received.map { try Data(contentsOf: URL(fileURLWithPath: uhsx.inbound + "/" + $0)) })
        #expect(originals == copies && copies.count == 30)
    }
}

extension AgentTests {
    /// A disk that really fills: UHSX's inbound is a 1 MB tmpfs in its own mount namespace (its
    /// free-space guard set to 0 %, so the writes themselves meet ENOSPC). A 20-instance study
    /// (2.6 MB) from RSCH, two instances a request: the requests that fit are stored whole, the
    /// one that meets the full disk is refused (503) with nothing of it left, UHSX
    /// keeps running, RSCH defers the rest; the disk grows (remounted larger) and the rest
    /// arrives, byte for byte, each instance once.
    @Test func aDiskThatFillsLosesNothingAndTheRestArrivesWhenThereIsRoom() throws {
        let unshare = try Run.require("unshare", package: "util-linux"), nsenter = try Run.require("nsenter", package: "util-linux")
        let probe = try Run.program(unshare, ["-m", "--", "true"])
        try Skip.unless(probe.status == 0, "mount namespaces are not allowed here (unshare -m: \(probe.stderr.trimmingCharacters(in: .whitespacesAndNewlines)))")
        let consortium = try TestConsortium(members: ["RSCH", "UHSX"], rules: Self.pushAll)
        let uhsx = try consortium.site("UHSX", extra: "free-space 0 %\n")
        let rsch = try consortium.site("RSCH", peers: ["UHSX": uhsx.port])
        // Two instances a request: the first requests fit, a later one meets the full disk.
        try String(contentsOfFile: rsch.config, encoding: .utf8)
            .replacingOccurrences(of: "peer UHSX https://localhost:\(uhsx.port)", with: "peer UHSX https://localhost:\(uhsx.port) { batch 2 }")
            .write(toFile: rsch.config, atomically: true, encoding: .utf8)
        try uhsx.start(through: [unshare, "-m", "--", "/bin/sh", "-c", #"mount -t tmpfs -o size=1m consort-test "$1" && exec "$2" agent --config "$3""#,
            "sh", uhsx.inbound, Run.consort, uhsx.config])
        let pid = try #require(uhsx.program?.pid)
        try rsch.start()
        defer {
            rsch.stop()
            uhsx.stop()
        }
        // The inbound as UHSX sees it: every file under it, with its size (staging included).
        func inside() throws -> [String: Int] {
            let listing = try Run.program(nsenter, ["-t", String(pid), "-m", "--", "find", uhsx.inbound, "-type", "f", "-printf", "%P %s\n"])
            return Dictionary(uniqueKeysWithValues: listing.stdout.split(separator: "\n").map { line in
                let parts = line.split(separator: " ")
                return (String(parts[0]), Int(parts[1]) ?? -1)
            })
        }
        let source = consortium.root.path + "/source"
        let study = try Self.synth(into: source, seed: 31, instances: 20, size: "256x256")
        try FileManager.default.moveItem(atPath: source + "/" + study, toPath: rsch.watch + "/" + study)
        #expect(try AgentSite.eventually(within: 60, "RSCH's job deferred: UHSX's disk is full", logs: [rsch, uhsx]) {
            try rsch.queue().contains { $0["state"] as? String == "deferred" && $0["instances_sent"] as? Int ?? 0 < 20 }
        })
        let whileFull = try inside()
        let placed = whileFull.filter { !$0.key.hasPrefix(".") }
        #expect(placed.count < 20, "the disk could not hold the study: \(placed.count)")
        #expect(!placed.isEmpty, "what fits is stored")
        // Nothing half-written where a reader can see it: each placed instance has its full size.
        let sizes = Dictionary(uniqueKeysWithValues: try FileManager.default.contentsOfDirectory(atPath: rsch.watch + "/" + study).map { name in
            (name, try FileManager.default.attributesOfItem(atPath: rsch.watch + "/\(study)/\(name)")[.size] as? Int ?? 0)
        })
        for (path, size) in placed {
            #expect(path.hasPrefix(study + "/") && size > 0 && sizes.values.contains(size), "\(path) \(size)")
        }
        #expect(kill(pid, 0) == 0 && (uhsx.log.contains("No space left on device") || uhsx.log.contains("nearly full")), "\(uhsx.log)")
        // Room again: the tmpfs grows, and the rest arrives.
        let grown = try Run.program(nsenter, ["-t", String(pid), "-m", "--", "mount", "-o", "remount,size=16m", uhsx.inbound])
        #expect(grown.status == 0, "\(grown.stderr)")
        #expect(try AgentSite.eventually(within: 60, "RSCH's job done once UHSX has room", logs: [rsch, uhsx]) {
            try rsch.queue().contains { $0["state"] as? String == "done" && $0["instances_sent"] as? Int == 20 }
        })
        let after = try inside().filter { !$0.key.hasPrefix(".") }
        #expect(after.count == 20, "\(after.keys.sorted())")
        // Byte for byte: UHSX's copies hashed inside its namespace against the originals.
        let sums = try Run.program(nsenter, ["-t", String(pid), "-m", "--", "sh", "-c", #"cd "$1" && sha256sum */*.dcm"#, "sh", uhsx.inbound])
        let theirs = Set(sums.stdout.split(separator: "\n").map { String($0.prefix(64)) })
        let originals = try Run.program("/bin/sh", ["-c", #"cd "$1" && sha256sum */*.dcm"#, "sh", rsch.watch])
        let ours = Set(originals.stdout.split(separator: "\n").map { String($0.prefix(64)) })
        #expect(theirs == ours && theirs.count == 20)
    }
}

extension AgentTests {
    /// A socket address holds 107 bytes of path: an agent whose state folder is deeper than
    /// that (found when the demo ran under a user's scratch folder) still binds its admin socket,
    /// and the operator commands still reach it.
    @Test func anAdminSocketDeeperThanASocketAddressHoldsStillWorks() throws {
        let consortium = try TestConsortium(members: ["RSCH", "UHSX"], rules: Self.pushAll)
        let rsch = try consortium.site("RSCH")
        let deep = rsch.base + "/" + String(repeating: "deep-", count: 12) + "/state"
        try FileManager.default.createDirectory(atPath: deep, withIntermediateDirectories: true)
        #expect((deep + "/admin.sock").utf8.count > 107)
        try String(contentsOfFile: rsch.config, encoding: .utf8).replacingOccurrences(of: "state \(rsch.state)\n", with: "state \(deep)\n")
            .write(toFile: rsch.config, atomically: true, encoding: .utf8)
        try rsch.start()
        defer { rsch.stop() }
        #expect(FileManager.default.fileExists(atPath: deep + "/admin.sock"))
        let status = try Run.consort("status", "--json", "--config", rsch.config)
        let object = try JSONSerialization.jsonObject(with: Data(status.stdout.utf8)) as? [String: Any]
        #expect(object?["agent_running"] as? Bool == true, "\(status.stdout)\(status.stderr)")
    }
}

extension AgentTests {
    /// An archive already in the watched folder when the agent starts is indexed by the catch-up
    /// scan, which reads one batch while it records the one before: every instance counted once,
    /// one job per study holding all its instances, the bad files recorded. The agent is killed
    /// part-way through the scan (after a batch was recorded, before the scan ended) and started
    /// again: the second scan skips what the first recorded and the end state is the same.
    /// The agent has run once before, over an empty folder: the archive appeared while it was
    /// stopped, so it is new and fires the rules (a first start would only index it: see
    /// FirstStartTests).
    @Test func anArchiveThereAtStartIsIndexedOnceThoughTheAgentIsKilledMidScan() throws {
        let consortium = try TestConsortium(members: ["RSCH", "UHSX"], rules: Self.pushAll)
        // UHSX never runs: the jobs wait, so the queue shows exactly what the scan planned. The
        // scan is held to 1,500 files a second (batches of 500, a third of a second apart) so
        // that there is a moment between two batches to kill it in.
        let rsch = try consortium.site("RSCH", peers: ["UHSX": try OrthancInteropTests.freePort()], extra: "scan-rate 1500\n")
        try rsch.start()
        #expect(AgentSite.eventually(within: 30, "the first (empty) catch-up done", logs: [rsch]) { rsch.log.contains("catch-up scan done") })
        rsch.stop()
        var studies: [String] = []
        for seed in 0..<3 { studies.append(try Self.synth(into: rsch.watch, seed: 91 + seed, instances: 450)) }
        try "not an image at all".write(toFile: rsch.watch + "/notes.txt", atomically: false, encoding: .utf8)
        let whole = try Data(contentsOf: URL(fileURLWithPath: rsch.watch + "/\(studies[0])/" + (try FileManager.default.contentsOfDirectory(atPath: rsch.watch + "/" + studies[0]).sorted()[0])))
        try whole.prefix(whole.count - 500).write(to: URL(fileURLWithPath: rsch.watch + "/cut.dcm"))

        try rsch.start()
        let recordedSome = AgentSite.eventually(within: 30, "a first batch recorded", logs: [rsch]) { rsch.log.contains("instances queued") }
        #expect(recordedSome)
        let scanUnfinished = !rsch.log.contains("catch-up scan done")
        rsch.kill()
        #expect(scanUnfinished, "the scan ended before the kill: the test proved nothing")

        try rsch.start()
        defer { rsch.stop() }
        let scanned = AgentSite.eventually(within: 60, "the second catch-up scan done", logs: [rsch]) { rsch.log.contains("catch-up scan done") }
        #expect(scanned)
        let line = rsch.log.split(separator: "\n").first { $0.contains("catch-up scan done") } ?? ""
        #expect(line.contains("files=1352") && line.contains("seconds="), "\(line)")
        let status = try #require(try JSONSerialization.jsonObject(with: Data(Run.consort("status", "--json", "--config", rsch.config).stdout.utf8)) as? [String: Any])
        let inventory = status["inventory"] as? [String: Any]
        #expect(inventory?["studies"] as? Int == 3 && inventory?["instances"] as? Int == 1350, "\(inventory ?? [:])")
        #expect(status["malformed_files"] as? Int == 2, "\(status["malformed_files"] ?? "none")")
        let jobs = try rsch.queue()
        #expect(jobs.count == 3, "\(jobs)")
        #expect(Set(jobs.compactMap { $0["study"] as? String }) == Set(studies), "\(jobs)")
        for job in jobs { #expect(job["instances_total"] as? Int == 450, "\(job)") }
    }
}
