import Foundation
import TestSupport
import Testing

/// The coordinator, prefetch of priors and MDT gathering, end to end (issue 12): agents and a
/// coordinator as processes on loopback, real TLS, real SQLite; every check on the receivers'
/// files, not on the agents' own claims.
@Suite("coordinator, prefetch and gather", .serialized, .timeLimit(.minutes(10)))
struct CoordinatorTests {
    static let patient = "9990000018"  // NHSNumber.testNumber(seed: 1): the 999 range is never issued

    /// YYYYMMDD, `days` before today (UTC).
    static func daysAgo(_ days: Int) -> String {
        var calendar = Calendar(identifier: .gregorian)
        calendar.timeZone = TimeZone(identifier: "UTC")!
        let parts = calendar.dateComponents([.year, .month, .day], from: Date().addingTimeInterval(-Double(days) * 86_400))
        return String(format: "%04d%02d%02d", parts.year!, parts.month!, parts.day!)
    }

    /// A study in a folder with `consort synth`; its UID.
    @discardableResult
    static func study(_ folder: String, seed: Int, nhs: String = patient, modality: String = "CT", date: String, description: String = "CT CHEST",
                      trust: String, instances: Int = 3, extra: [String] = []) throws -> String {
        let outcome = try Run.program(Run.consort, [
            "synth", "--out", folder, "--seed", String(seed), "--instances", String(instances), "--modality", modality, "--date", date,
            "--description", description, "--trust", trust, "--nhs", nhs, "--body-part", "CHEST",
        ] + extra)
        #expect(outcome.status == 0, "\(outcome.stderr)")
        return outcome.stdout.trimmingCharacters(in: .whitespacesAndNewlines)
    }

    static let prefetchRules = """
        rule "Oncology priors" {
          purpose direct-care
          at ASPH
          on instance-arrival
          when origin is local and StudyDescription ~ "ONC"
          prefetch priors from any member same modality within 3 years at most 3 priority normal
        }
        """

    /// An oncology CT at ASPH brings exactly the priors the rule asks for from RSCH and UHSX,
    /// byte for byte: the three newest CTs within three years, not an MR, not one older than
    /// the period, not a fourth. The coordinator is down when the study arrives: the prefetch
    /// waits, then completes once it is back.
    @Test func anOncologyStudyBringsExactlyThePriorsTheRuleAsksFor() throws {
        let consortium = try TestConsortium(members: ["RSCH", "UHSX", "ASPH"], rules: Self.prefetchRules)
        let coordinator = try CoordinatorSite(consortium)
        let rsch = try consortium.site("RSCH", extra: coordinator.agentLine)
        let uhsx = try consortium.site("UHSX", extra: coordinator.agentLine)
        // `identity keep`: the priors are compared byte for byte with the originals here (their
        // placing in ASPH's identity is IdentityOnDeliveryTests').
        let asph = try consortium.site("ASPH", peers: ["RSCH": rsch.port, "UHSX": uhsx.port], extra: coordinator.agentLine + "identity keep\n")
        // The patient's history: what the rule wants, and what it must leave.
        let wanted = [
            try Self.study(uhsx.watch, seed: 51, date: Self.daysAgo(180), trust: "UHSX"),
            try Self.study(uhsx.watch, seed: 52, date: Self.daysAgo(365), trust: "UHSX"),
            try Self.study(rsch.watch, seed: 53, date: Self.daysAgo(730), trust: "RSCH"),
        ]
        let unwanted = [
            try Self.study(uhsx.watch, seed: 54, date: Self.daysAgo(900), trust: "UHSX"),  // a fourth: at most 3
            try Self.study(rsch.watch, seed: 55, modality: "MR", date: Self.daysAgo(100), description: "MR CHEST", trust: "RSCH"),  // another modality
            try Self.study(rsch.watch, seed: 56, date: Self.daysAgo(1500), trust: "RSCH"),  // outside the period
            try Self.study(rsch.watch, seed: 57, nhs: "9990000026", date: Self.daysAgo(30), trust: "RSCH", extra: ["--patient-id", "RSCH0000002"]),  // another patient
        ]
        try coordinator.start()
        try rsch.start()
        try uhsx.start()
        try asph.start()
        defer {
            asph.stop()
            uhsx.stop()
            rsch.stop()
            coordinator.stop()
        }
        // The coordinator learns the history, then goes down (its registry kept, as in a
        // restart). The history must be known first: a plan made while RSCH's announcement is
        // still in its backoff would rightly take UHSX's older CT instead of RSCH's.
        #expect(AgentSite.eventually(within: 60, "the patient's six studies known", logs: [rsch, uhsx]) {
            ((try? asph.locate(Self.patient).answer["studies"] as? [[String: Any]]) ?? []).count == 6
        })
        coordinator.stop()
        // The coordinator down: the trigger arrives, the prefetch is deferred with the reason.
        let trigger = try Self.study(asph.watch, seed: 58, date: Self.daysAgo(0), description: "ONC CT CHEST RESTAGING", trust: "ASPH")
        #expect(try AgentSite.eventually(within: 30, "the prefetch deferred: the coordinator is down", logs: [asph]) {
            try asph.queue().contains { $0["kind"] as? String == "prefetch" && $0["state"] as? String == "deferred" && ($0["last_error"] as? String ?? "").contains("coordinator") }
        })
        try coordinator.start()
        // Then: the coordinator back, the priors fetched.
        #expect(AgentSite.eventually(within: 60, "the three priors in ASPH's inbound", logs: [asph, rsch, uhsx]) {
            Set(wanted).isSubset(of: asph.receivedStudies)
        })
        // Byte for byte, and nothing else.
        for (study, source) in zip(wanted, [uhsx, uhsx, rsch]) {
            let originals = try FileManager.default.contentsOfDirectory(atPath: "\(source.watch)/\(study)").map { try Data(contentsOf: URL(fileURLWithPath: "\(source.watch)/\(study)/\($0)")) }
            let copies = asph.received.filter { $0.hasPrefix(study + "/") }.map { try? Data(contentsOf: URL(fileURLWithPath: asph.inbound + "/" + $0)) }
            #expect(Set(originals) == Set(copies.compactMap { $0 }) && copies.count == 3, "study \(study)")
        }
        #expect(asph.receivedStudies.isDisjoint(with: unwanted), "\(asph.receivedStudies)")
        #expect(!asph.receivedStudies.contains(trigger))
        // The fetches are jobs like any other, done; the coordinator now knows ASPH holds them too.
        let fetches = try asph.queue().filter { $0["kind"] as? String == "fetch" }
        #expect(fetches.count == 3 && fetches.allSatisfy { $0["state"] as? String == "done" && $0["instances_sent"] as? Int == 3 }, "\(fetches)")
        #expect(AgentSite.eventually(within: 30, "the coordinator knows ASPH holds the priors", logs: [asph]) {
            let studies = (try? asph.locate(Self.patient).answer["studies"] as? [[String: Any]]) ?? []
            let atASPH = studies.filter { ($0["locations"] as? [[String: Any]] ?? []).contains { $0["trust"] as? String == "ASPH" } }.compactMap { $0["study"] as? String }
            return Set(wanted + [trigger]).isSubset(of: Set(atASPH))
        })
        // Audited at both ends: the lookup and the fetch at ASPH, the retrieves served.
        let asphAudit = try String(contentsOfFile: asph.state + "/audit.log", encoding: .utf8)
        #expect(asphAudit.contains("\"action\":\"lookup\"") && asphAudit.contains("\"action\":\"fetch\""), "\(asphAudit)")
        let uhsxAudit = try String(contentsOfFile: uhsx.state + "/audit.log", encoding: .utf8)
        #expect(uhsxAudit.components(separatedBy: "\"action\":\"retrieve\"").count - 1 == 2, "\(uhsxAudit)")
        for log in [asph.state + "/audit.log", uhsx.state + "/audit.log", coordinator.audit] {
            let verify = try Run.consort("audit", "verify", log)
            #expect(verify.status == 0 && verify.stdout.contains("intact"), "\(verify.stdout)\(verify.stderr)")
        }
        for config in [asph.config, coordinator.config] {
            let byConfig = try Run.consort("audit", "verify", "--config", config)
            #expect(byConfig.status == 0 && byConfig.stdout.contains("intact"), "\(byConfig.stdout)\(byConfig.stderr)")
        }
        let shown = try Run.consort("audit", "show", asph.state + "/audit.log", "--nhs", "999 000 0018")
        #expect(shown.status == 0 && shown.stdout.contains("fetch"), "\(shown.stdout)")
        // consort locate, as a person would read it.
        let located = try Run.consort("locate", "--nhs", "999 000 0018", "--config", rsch.config)
        #expect(located.status == 0 && located.stdout.contains("7 studies") && located.stdout.contains("UHSX"), "\(located.stdout)\(located.stderr)")
    }
}

extension CoordinatorTests {
    static let gatherRules = """
        rule "Gather for the MDT" {
          purpose direct-care
          at RSCH
          on list-arrival in "lists" lead-time 48 h
          gather imaging from any member within 2 years to host priority normal
        }
        """

    /// An MDT list dropped at the host gathers each listed patient's imaging from three trusts
    /// (within the rule's two years; an older study and an unlisted patient's are left).
    @Test func anMDTListGathersEachPatientsImagingFromThreeTrusts() throws {
        let consortium = try TestConsortium(members: ["RSCH", "ASPH", "UHSX", "ESHT"], rules: Self.gatherRules)
        let coordinator = try CoordinatorSite(consortium)
        let holders = try ["ASPH", "UHSX", "ESHT"].map { try consortium.site($0, extra: coordinator.agentLine) }
        let lists = consortium.root.path + "/rsch-lists"
        try FileManager.default.createDirectory(atPath: lists, withIntermediateDirectories: true)
        let rsch = try consortium.site("RSCH", peers: Dictionary(uniqueKeysWithValues: holders.map { ($0.code, $0.port) }), extra: coordinator.agentLine + "lists \(lists)\nunknown-patient nhs-number\n")
        let second = "9990000026"
        var wanted: [String] = []
        for (index, holder) in holders.enumerated() {
            wanted.append(try Self.study(holder.watch, seed: 60 + index, date: Self.daysAgo(100 + index), trust: holder.code))
            wanted.append(try Self.study(holder.watch, seed: 70 + index, nhs: second, date: Self.daysAgo(200 + index), trust: holder.code, extra: ["--patient-id", "\(holder.code)0000002"]))
        }
        let tooOld = try Self.study(holders[0].watch, seed: 80, date: Self.daysAgo(1000), trust: "ASPH")
        let unlisted = try Self.study(holders[1].watch, seed: 81, nhs: "9990000034", date: Self.daysAgo(10), trust: "UHSX", extra: ["--patient-id", "UHSX0000003"])
        try coordinator.start()
        for site in holders + [rsch] { try site.start() }
        defer {
            for site in [rsch] + holders { site.stop() }
            coordinator.stop()
        }
        #expect(AgentSite.eventually(within: 60, "every study announced", logs: holders) {
            let first = (try? rsch.locate(Self.patient).answer["studies"] as? [[String: Any]])?.count ?? 0
            let other = (try? rsch.locate(second).answer["studies"] as? [[String: Any]])?.count ?? 0
            return first == 4 && other == 3
        })
        // The meeting is tomorrow: 48 h ahead of it is now.
        let tomorrow = Self.daysAgo(-1)
        try "nhs_number,meeting_date,host\n\(Self.patient),\(tomorrow),RSCH\n\(second),\(tomorrow),RSCH\n".write(toFile: lists + "/mdt.csv.tmp", atomically: true, encoding: .utf8)
        try FileManager.default.moveItem(atPath: lists + "/mdt.csv.tmp", toPath: lists + "/mdt.csv")
        #expect(AgentSite.eventually(within: 60, "both patients' imaging from three trusts at RSCH", logs: [rsch] + holders) {
            Set(wanted).isSubset(of: rsch.receivedStudies)
        })
        #expect(!rsch.receivedStudies.contains(tooOld) && !rsch.receivedStudies.contains(unlisted), "\(rsch.receivedStudies)")
        // The work is visible at the host, as jobs: two gathers, six fetches from three trusts.
        let jobs = try rsch.queue()
        #expect(jobs.filter { $0["kind"] as? String == "gather" }.count == 2)
        let fetches = jobs.filter { $0["kind"] as? String == "fetch" }
        #expect(fetches.count == 6 && Set(fetches.compactMap { $0["peer"] as? String }) == ["ASPH", "UHSX", "ESHT"], "\(fetches)")
    }

    /// Patient safety at the coordinator: a trust announcing another's study is refused and
    /// audited; a local identifier announced with two NHS numbers is held as a conflict (409, not
    /// prefetched, listed by consort coordinator conflicts); an invalid NHS number is recorded,
    /// not used.
    @Test func forgeriesConflictsAndInvalidNumbersAreRefusedHeldAndRecorded() throws {
        let consortium = try TestConsortium(members: ["RSCH", "UHSX", "ASPH"], rules: Self.prefetchRules)
        let coordinator = try CoordinatorSite(consortium)
        try coordinator.start()
        defer { coordinator.stop() }
        let uhsx = try consortium.pki.site("UHSX")
        func post(_ path: String, _ body: String) throws -> (status: Int, body: String) {
            try coordinator.call(path, as: uhsx, ca: consortium.pki.ca, body: body)
        }
        // UHSX claims to be RSCH: refused, audited, nothing recorded.
        let forged = try post("/v1/holdings", #"{"trust": "RSCH", "studies": [{"study": "1.2.3.4", "nhs": "9990000018", "instances": 1, "bytes": 1}]}"#)
        #expect(forged.status == 403, "\(forged)")
        let audit = try String(contentsOfFile: coordinator.audit, encoding: .utf8)
        #expect(audit.contains("\"action\":\"refused\"") && audit.contains("UHSX") && audit.contains("RSCH"), "\(audit)")
        #expect(coordinator.log.contains("REFUSED"), "\(coordinator.log)")
        // A field out of its kind or range (Foundation once stored 1e308 instances as a negative
        // number): the batch refused with the field named, the good study beside it not recorded.
        for (field, value) in [("instances", "1e308"), ("instances", "99999999999999999999999"), ("bytes", "-5"), ("date", #""20261345""#)] {
            let hostile = try post("/v1/holdings", #"{"trust": "UHSX", "studies": [{"study": "1.2.3.8", "nhs": "9990000018", "instances": 1, "bytes": 1}, {"study": "1.2.3.9", "nhs": "9990000018", "\#(field)": \#(value)}]}"#)
            let said = (try? JSONSerialization.jsonObject(with: Data(hostile.body.utf8)) as? [String: Any])?["error"] as? String ?? ""
            #expect(hostile.status == 400 && said.hasPrefix("Study 1 of the batch (1.2.3.9): \"\(field)\" is "), "\(hostile)")
        }
        #expect(try coordinator.call("/v1/studies/1.2.3.8", as: uhsx, ca: consortium.pki.ca).status == 404, "nothing of a refused batch is recorded")
        // A study nobody holds is unknown.
        let unknown = try coordinator.call("/v1/studies/1.2.3.4", as: uhsx, ca: consortium.pki.ca)
        #expect(unknown.status == 404, "\(unknown)")
        // One local identifier, two NHS numbers: a conflict held for a person.
        let first = try post("/v1/holdings", #"{"trust": "UHSX", "studies": [{"study": "1.2.3.5", "patient": {"id": "U1", "issuer": "UHSX"}, "nhs": "9990000018", "instances": 2, "bytes": 20}]}"#)
        #expect(first.status == 200, "\(first)")
        let again = try post("/v1/holdings", #"{"trust": "UHSX", "studies": [{"study": "1.2.3.5", "patient": {"id": "U1", "issuer": "UHSX"}, "nhs": "9990000018", "instances": 2, "bytes": 20}]}"#)
        #expect(again.body == first.body, "the same batch twice changes nothing")
        let clash = try post("/v1/holdings", #"{"trust": "UHSX", "studies": [{"study": "1.2.3.6", "patient": {"id": "U1", "issuer": "UHSX"}, "nhs": "9990000026", "instances": 1, "bytes": 10}]}"#)
        #expect(clash.status == 200 && clash.body.contains("local-id"), "\(clash)")
        let held = try coordinator.call("/v1/patients/9990000018/studies", as: uhsx, ca: consortium.pki.ca)
        #expect(held.status == 409 && held.body.contains("identity conflict"), "\(held)")
        // An invalid NHS number: recorded, not used (no patient is made of it).
        let invalid = try post("/v1/holdings", #"{"trust": "UHSX", "studies": [{"study": "1.2.3.7", "patient": {"id": "U9", "issuer": "UHSX"}, "nhs": "1234567890", "instances": 1, "bytes": 10}]}"#)
        #expect(invalid.status == 200 && invalid.body.contains("1.2.3.7"), "\(invalid)")
        let listed = try Run.consort("coordinator", "conflicts", "--config", coordinator.config)
        #expect(listed.status == 1, "\(listed.stdout)\(listed.stderr)")
        #expect(listed.stdout.contains("local-id UHSX U1") && listed.stdout.contains("9990000018") && listed.stdout.contains("9990000026"), "\(listed.stdout)")
        #expect(listed.stdout.contains("\"1234567890\""), "\(listed.stdout)")
        // A prefetch for the conflicted patient is held at the agent for a person, nothing fetched.
        let asph = try consortium.site("ASPH", peers: [:], extra: coordinator.agentLine)
        try asph.start()
        defer { asph.stop() }
        try Self.study(asph.watch, seed: 90, date: Self.daysAgo(0), description: "ONC CT", trust: "ASPH")
        #expect(try AgentSite.eventually(within: 60, "the prefetch held for a person", logs: [asph]) {
            try asph.queue().contains { $0["kind"] as? String == "prefetch" && $0["state"] as? String == "held" && ($0["last_error"] as? String ?? "").contains("IDENTITY CONFLICT") }
        })
        #expect(asph.receivedStudies.isEmpty)
        #expect(AuditVerifies.intact(coordinator.audit))
    }

    /// Two coordinator lines: the first down, the agent announces to the second and says so in
    /// `consort status` (the first DOWN, the second in use, a line for a person); the second
    /// stopped and the first started, the agent moves back within its circuit's probe and the
    /// first coordinator's registry (its own SQLite here, as after a database failover it would
    /// be the same one) learns the agent's studies from it.
    @Test func anAgentWithTwoCoordinatorsUsesTheOneThatAnswers() throws {
        let consortium = try TestConsortium(members: ["RSCH", "UHSX"], rules: "")
        let first = try CoordinatorSite(consortium, name: "coordinator-a")
        let second = try CoordinatorSite(consortium, name: "coordinator-b")
        let rsch = try consortium.site("RSCH", extra: first.agentLine + second.agentLine)
        let uhsx = try consortium.pki.site("UHSX")
        let study = try Self.study(rsch.watch, seed: 95, date: Self.daysAgo(3), trust: "RSCH", instances: 2)
        try second.start()
        defer { second.stop() }
        try rsch.start()
        defer { rsch.stop() }
        func known(_ coordinator: CoordinatorSite) -> Bool {
            (try? coordinator.call("/v1/studies/\(study)", as: uhsx, ca: consortium.pki.ca).status) == 200
        }
        #expect(AgentSite.eventually(within: 60, "the study announced to the second coordinator", logs: [rsch]) { known(second) })
        let status = try Run.consort("status", "--config", rsch.config, "--json")
        let json = OperatorTests.json(status.stdout)
        let listed = json["coordinators"] as? [[String: Any]] ?? []
        #expect(listed.count == 2 && listed[0]["down"] as? Bool == true && listed[1]["in_use"] as? Bool == true, "\(listed)")
        #expect(status.status == 1 && (json["needs_attention"] as? [String] ?? []).contains { $0.hasPrefix("coordinator \(first.url) is down") }, "\(json)")
        // The second gone, the first up: the agent is back on the first, which learns the study.
        second.stop()
        try first.start()
        defer { first.stop() }
        #expect(AgentSite.eventually(within: 90, "the study announced to the first coordinator", logs: [rsch]) { known(first) })
        let after = OperatorTests.json(try Run.consort("status", "--config", rsch.config, "--json").stdout)["coordinators"] as? [[String: Any]] ?? []
        #expect(after.first?["in_use"] as? Bool == true && after.first?["down"] as? Bool == false, "\(after)")
    }

    /// The registry is soft state: wiped, it is rebuilt from the agents (one told by
    /// `consort agent resync`, the other, idle, noticing by itself at its next heartbeat) and
    /// answers as before — its SQLite file deleted, or every table of its PostgreSQL database
    /// dropped.
    @Test(arguments: ["sqlite", "postgresql"]) func aWipedRegistryIsRebuiltFromTheAgents(store: String) throws {
        let consortium = try TestConsortium(members: ["RSCH", "UHSX", "ASPH"], rules: Self.prefetchRules)
        var registryLine: String?
        var wipe: () throws -> Void = {}
        if store == "postgresql" {
            let database = consortium.root.path + "-postgres"
            let started = try Run.program("/bin/bash", [RegistryFailoverTests.script, "start", database], timeout: 60)
            try Skip.unless(started.status != 77, "PostgreSQL 15 is not installed (Debian package postgresql-15)")
            try #require(started.status == 0, "\(started.stderr)")
            let conninfo = started.stdout.trimmingCharacters(in: .whitespacesAndNewlines)
            registryLine = "registry postgresql \"\(conninfo)\""
            wipe = {
                let dropped = try Run.program("/usr/bin/psql", ["-X", "-q", "-v", "ON_ERROR_STOP=1", conninfo, "-c", "DROP SCHEMA public CASCADE", "-c", "CREATE SCHEMA public"], timeout: 30)
                #expect(dropped.status == 0, "\(dropped.stderr)")
            }
        }
        defer { if store == "postgresql" { _ = try? Run.program("/bin/bash", [RegistryFailoverTests.script, "stop", consortium.root.path + "-postgres"], timeout: 60) } }
        let coordinator = try CoordinatorSite(consortium, registryLine: registryLine)
        let rsch = try consortium.site("RSCH", extra: coordinator.agentLine)
        let uhsx = try consortium.site("UHSX", extra: coordinator.agentLine)
        try Self.study(rsch.watch, seed: 91, date: Self.daysAgo(10), trust: "RSCH")
        try Self.study(uhsx.watch, seed: 92, date: Self.daysAgo(20), trust: "UHSX")
        try coordinator.start()
        try rsch.start()
        try uhsx.start()
        defer {
            uhsx.stop()
            rsch.stop()
            coordinator.stop()
        }
        var before = ""
        #expect(AgentSite.eventually(within: 60, "both studies known", logs: [rsch, uhsx]) {
            guard let answer = try? rsch.locate(Self.patient), (answer.answer["studies"] as? [[String: Any]])?.count == 2 else { return false }
            before = answer.stdout
            return true
        })
        coordinator.stop()
        for suffix in ["", "-wal", "-shm"] { try? FileManager.default.removeItem(atPath: coordinator.registry + suffix) }
        try wipe()
        try coordinator.start()
        let emptied = (try rsch.locate(Self.patient).answer["studies"] as? [[String: Any]])?.count ?? 0
        #expect(emptied == 0, "the wiped registry knows nothing")
        let resync = try Run.consort("agent", "resync", "--config", rsch.config)
        #expect(resync.status == 0 && resync.stdout.contains("1 studies"), "\(resync.stdout)\(resync.stderr)")
        // UHSX, with nothing new, notices by itself: its heartbeat (an empty announcement every
        // 15 s) is answered with how many of its studies the coordinator knows.
        var after = ""
        #expect(AgentSite.eventually(within: 60, "the same answers after the rebuild", logs: [rsch, uhsx]) {
            guard let answer = try? rsch.locate(Self.patient) else { return false }
            after = answer.stdout
            return (answer.answer["studies"] as? [[String: Any]])?.count == 2
        })
        // The studies and their holders compared; not the times, nor which members were still
        // being waited for at each moment.
        func withoutTimes(_ text: String) -> String {
            text.replacingOccurrences(of: #""since":[0-9.e+]+"#, with: "", options: .regularExpression)
                .replacingOccurrences(of: #""announcing":\[[^\]]*\],?"#, with: "", options: .regularExpression)
        }
        #expect(withoutTimes(before) == withoutTimes(after), "before:\n\(before)\nafter:\n\(after)")
        #expect(uhsx.log.contains("announcing everything again"), "\(uhsx.log)")
    }
}

enum AuditVerifies {
    static func intact(_ path: String) -> Bool {
        (try? Run.consort("audit", "verify", path).status) == 0
    }
}

extension CoordinatorTests {
    /// Two coordinator processes on one PostgreSQL (a coordinator that must survive the loss of
    /// its machine): what an agent announces to one, the other answers.
    @Test func twoCoordinatorsOnOnePostgreSQLAnswerAlike() throws {
        let consortium = try TestConsortium(members: ["RSCH", "UHSX", "ASPH"], rules: Self.prefetchRules)
        let script = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent().appendingPathComponent("Support/throwaway-postgres.sh").path
        let database = consortium.root.path + "-postgres"
        let started = try Run.program("/bin/bash", [script, "start", database], timeout: 60)
        try Skip.unless(started.status != 77, "PostgreSQL 15 is not installed (Debian package postgresql-15)")
        try #require(started.status == 0, "\(started.stderr)")
        defer { _ = try? Run.program("/bin/bash", [script, "stop", database], timeout: 60) }
        let line = "registry postgresql \"\(started.stdout.trimmingCharacters(in: .whitespacesAndNewlines))\""
        let first = try CoordinatorSite(consortium, name: "coordinator-a", registryLine: line)
        let second = try CoordinatorSite(consortium, name: "coordinator-b", registryLine: line)
        try first.start()
        try second.start()
        let rsch = try consortium.site("RSCH", extra: first.agentLine)
        let uhsx = try consortium.site("UHSX", extra: second.agentLine)
        let study = try Self.study(rsch.watch, seed: 95, date: Self.daysAgo(3), trust: "RSCH")
        try rsch.start()
        try uhsx.start()
        defer {
            uhsx.stop()
            rsch.stop()
            second.stop()
            first.stop()
        }
        // UHSX asks the second coordinator about what RSCH announced to the first.
        #expect(AgentSite.eventually(within: 60, "the study known through the other coordinator", logs: [rsch, uhsx]) {
            ((try? uhsx.locate(Self.patient).answer["studies"] as? [[String: Any]]) ?? []).compactMap { $0["study"] as? String } == [study]
        })
        let conflicts = try Run.consort("coordinator", "conflicts", "--config", second.config)
        #expect(conflicts.status == 0 && conflicts.stdout.contains("0 identity conflicts"), "\(conflicts.stdout)\(conflicts.stderr)")
    }
}

extension CoordinatorTests {
    /// Patient safety at the fetching end: the registry says a study at UHSX is this patient's,
    /// but the copy UHSX serves names another patient. ASPH's prefetch refuses every instance
    /// before placing it, holds the fetch for a person and audits the refusal; nothing arrives.
    @Test func aFetchedStudyNamingAnotherPatientIsRefusedAndHeld() throws {
        let consortium = try TestConsortium(members: ["UHSX", "ASPH"], rules: Self.prefetchRules)
        let coordinator = try CoordinatorSite(consortium)
        try coordinator.start()
        defer { coordinator.stop() }
        let uhsx = try consortium.site("UHSX")  // not announcing: the registry is told by hand below
        let asph = try consortium.site("ASPH", peers: ["UHSX": uhsx.port], extra: coordinator.agentLine)
        let other = "9990000026"
        let prior = try Self.study(uhsx.watch, seed: 96, nhs: other, date: Self.daysAgo(100), trust: "UHSX", extra: ["--patient-id", "UHSX0000002"])
        try uhsx.start()
        defer { uhsx.stop() }
        // A wrong announcement: UHSX's study under this test's patient.
        let cert = try consortium.pki.site("UHSX")
        let body = #"{"trust": "UHSX", "studies": [{"study": "\#(prior)", "patient": {"id": "UHSX0000002", "issuer": "UHSX"}, "nhs": "\#(Self.patient)", "date": "\#(Self.daysAgo(100))", "modalities": ["CT"], "instances": 3, "bytes": 1}]}"#
        let announced = try coordinator.call("/v1/holdings", as: cert, ca: consortium.pki.ca, body: body)
        #expect(announced.status == 200, "\(announced)")
        try asph.start()
        defer { asph.stop() }
        try Self.study(asph.watch, seed: 97, date: Self.daysAgo(0), description: "ONC CT", trust: "ASPH")
        #expect(try AgentSite.eventually(within: 60, "the fetch held for a person: patient mismatch", logs: [asph, uhsx]) {
            try asph.queue().contains { $0["kind"] as? String == "fetch" && $0["state"] as? String == "held" && ($0["last_error"] as? String ?? "").contains("PATIENT MISMATCH") }
        })
        #expect(asph.receivedStudies.isEmpty, "nothing of the other patient placed: \(asph.receivedStudies)")
        let audit = try String(contentsOfFile: asph.state + "/audit.log", encoding: .utf8)
        #expect(audit.contains("\"action\":\"refused\"") && audit.contains("PATIENT MISMATCH"), "\(audit)")
    }
}

extension CoordinatorTests {
    /// A prefetch does not choose priors while a trust is still announcing what it holds (after
    /// the coordinator was down, or lost its registry): RSCH says it has studies to come, and
    /// ASPH's prefetch waits, with the reason in its queue, rather than settle for UHSX's older
    /// CT; once RSCH's newer CT is announced, the plan takes both. `consort locate` says the
    /// list is not complete meanwhile.
    @Test func aPrefetchWaitsForATrustStillAnnouncing() throws {
        let rules = Self.prefetchRules.replacingOccurrences(of: "at most 3", with: "at most 2")
        let consortium = try TestConsortium(members: ["RSCH", "UHSX", "ASPH"], rules: rules)
        let coordinator = try CoordinatorSite(consortium)
        let uhsx = try consortium.site("UHSX", extra: coordinator.agentLine)
        // RSCH has no agent here: the test speaks for it, with its certificate; its address is
        // a closed port (the fetch from it waits; what matters is that it is planned).
        let asph = try consortium.site("ASPH", peers: ["UHSX": uhsx.port, "RSCH": 9], extra: coordinator.agentLine)
        let older = try Self.study(uhsx.watch, seed: 101, date: Self.daysAgo(400), trust: "UHSX")
        let oldest = try Self.study(uhsx.watch, seed: 102, date: Self.daysAgo(800), trust: "UHSX")
        try coordinator.start()
        try uhsx.start()
        defer {
            asph.stop()
            uhsx.stop()
            coordinator.stop()
        }
        let rschCert = try consortium.pki.site("RSCH")
        func announceAsRSCH(_ studies: String, pending: Int) throws {
            let outcome = try coordinator.call("/v1/holdings", as: rschCert, ca: consortium.pki.ca, body: #"{"trust": "RSCH", "studies": [\#(studies)], "pending": \#(pending)}"#)
            #expect(outcome.status == 200, "\(outcome)")
        }
        try announceAsRSCH("", pending: 3)
        #expect(AgentSite.eventually(within: 30, "UHSX's two CTs known", logs: [uhsx]) {
            ((try? asph.locate(Self.patient).answer["studies"] as? [[String: Any]]) ?? []).count == 2
        })
        let located = try Run.consort("locate", "--nhs", Self.patient, "--config", asph.config)
        #expect(located.stdout.contains("Not complete yet: RSCH has 3 studies still to announce"), "\(located.stdout)\(located.stderr)")
        // An operator sees the backlog in the metrics (valid for Prometheus).
        let metrics = try coordinator.call("/metrics", as: rschCert, ca: consortium.pki.ca)
        #expect(metrics.status == 200 && metrics.body.contains("consort_coordinator_member_pending_studies{trust=\"RSCH\"} 3\n"), "\(metrics)")
        if let promtool = Run.find("promtool") {
            let saved = consortium.root.path + "/coordinator-metrics.txt"
            try (metrics.body + "\n").write(toFile: saved, atomically: true, encoding: .utf8)
            let check = try Run.program("/bin/sh", ["-c", "\"$0\" check metrics < \"$1\"", promtool, saved])
            #expect(check.status == 0 && check.stdout.isEmpty && check.stderr.isEmpty, "promtool check metrics:\n\(check.stdout)\(check.stderr)")
        }
        try asph.start()
        try Self.study(asph.watch, seed: 103, date: Self.daysAgo(0), description: "ONC CT", trust: "ASPH")
        #expect(try AgentSite.eventually(within: 30, "the prefetch waiting for RSCH, with the reason", logs: [asph]) {
            try asph.queue().contains {
                $0["kind"] as? String == "prefetch" && $0["state"] as? String == "deferred"
                    && ($0["last_error"] as? String ?? "").contains("waiting for announcements before choosing: RSCH has 3 studies still to announce")
            }
        })
        #expect(try asph.queue().filter { $0["kind"] as? String == "fetch" }.isEmpty, "nothing chosen while RSCH is announcing")
        // RSCH's newer CT arrives, and it has nothing more to announce.
        let newer = "2.25.990000000000000000000000000001"
        try announceAsRSCH(#"{"study": "\#(newer)", "patient": {"id": "RSCH0000001", "issuer": "RSCH"}, "nhs": "\#(Self.patient)", "date": "\#(Self.daysAgo(200))", "modalities": ["CT"], "bodyPart": "CHEST", "instances": 3, "bytes": 3000}"#, pending: 0)
        var fetches: [[String: Any]] = []
        #expect(try AgentSite.eventually(within: 30, "the plan made with RSCH's CT", logs: [asph]) {
            fetches = try asph.queue().filter { $0["kind"] as? String == "fetch" }
            return fetches.count == 2
        })
        #expect(Set(fetches.compactMap { $0["study"] as? String }) == [newer, older], "the two newest CTs: \(fetches)")
        #expect(AgentSite.eventually(within: 30, "UHSX's CT in ASPH's inbound", logs: [asph, uhsx]) { asph.receivedStudies.contains(older) })
        #expect(!asph.receivedStudies.contains(oldest))
    }

    /// A fetch goes through the same circuit as pushes to its peer: UHSX is down, ASPH's fetch
    /// from it fails `circuit-after` times and the circuit opens (said in the log and shown by
    /// `consort status`); once UHSX is back the probe succeeds, the circuit closes and the prior
    /// arrives whole.
    @Test func aFetchFromAPeerThatIsDownOpensItsCircuitAndCompletesWhenItIsBack() throws {
        let consortium = try TestConsortium(members: ["UHSX", "ASPH"], rules: Self.prefetchRules)
        let coordinator = try CoordinatorSite(consortium)
        try coordinator.start()
        defer { coordinator.stop() }
        let uhsx = try consortium.site("UHSX", extra: coordinator.agentLine)
        let asph = try consortium.site("ASPH", peers: ["UHSX": uhsx.port], extra: coordinator.agentLine + "\ncircuit-after 2\n")
        let prior = try Self.study(uhsx.watch, seed: 81, date: Self.daysAgo(200), trust: "UHSX")
        // UHSX announces its study, then goes down.
        try uhsx.start()
        #expect(AgentSite.eventually(within: 30, "the coordinator knows UHSX's study", logs: [uhsx]) {
            ((try? asph.locate(Self.patient).answer["studies"] as? [[String: Any]]) ?? []).contains { $0["study"] as? String == prior }
        })
        uhsx.stop()
        try asph.start()
        defer { asph.stop() }
        try Self.study(asph.watch, seed: 82, date: Self.daysAgo(0), description: "ONC CT", trust: "ASPH")
        #expect(AgentSite.eventually(within: 60, "the fetch failed twice and opened UHSX's circuit", logs: [asph]) {
            asph.log.split(separator: "\n").contains {
                $0.contains("destination circuit opened") && $0.contains("by=\"a fetch from it\"") && $0.contains("probe_in=")
            }
        })
        #expect(try AgentSite.eventually(within: 30, "consort status shows UHSX's circuit open", logs: [asph]) {
            let status = try Run.consort("status", "--json", "--config", asph.config)
            let object = try JSONSerialization.jsonObject(with: Data(status.stdout.utf8)) as? [String: Any]
            let peers = object?["peers"] as? [[String: Any]] ?? []
            return peers.contains { $0["name"] as? String == "UHSX" && ($0["circuit"] as? String ?? "").hasPrefix("open") }
        })
        #expect(asph.receivedStudies.isEmpty)
        try uhsx.start()
        defer { uhsx.stop() }
        #expect(AgentSite.eventually(within: 60, "the prior fetched once UHSX is back", logs: [asph, uhsx]) { asph.receivedStudies == [prior] })
        #expect(AgentSite.eventually(within: 10, "the circuit closed by the fetch", logs: [asph]) { asph.log.contains("destination circuit closed") })
        let fetches = try asph.queue().filter { $0["kind"] as? String == "fetch" }
        #expect(fetches.count == 1 && fetches[0]["state"] as? String == "done" && fetches[0]["instances_sent"] as? Int == 3, "\(fetches)")
    }

    /// `GET /v1/patients/{nhs}/identity`: each trust hears only its own local numbers for the
    /// patient (what it will deliver a study from another trust under); a trust that has not
    /// seen the patient hears none; a peer is refused; a number that fails Modulus 11 is a 400;
    /// every answer is audited at the coordinator.
    @Test func aTrustAsksForItsOwnIdentityOfAPatientAndHearsNoOtherTrusts() throws {
        let consortium = try TestConsortium(members: ["RSCH", "UHSX", "ASPH"], rules: Self.prefetchRules)
        let coordinator = try CoordinatorSite(consortium)
        try coordinator.start()
        defer { coordinator.stop() }
        let rsch = try consortium.site("RSCH", extra: coordinator.agentLine)
        let uhsx = try consortium.site("UHSX", extra: coordinator.agentLine)
        try Self.study(rsch.watch, seed: 91, date: Self.daysAgo(30), trust: "RSCH", extra: ["--patient-id", "R123"])
        try Self.study(uhsx.watch, seed: 92, date: Self.daysAgo(60), trust: "UHSX", extra: ["--patient-id", "U987"])
        try rsch.start()
        defer { rsch.stop() }
        try uhsx.start()
        defer { uhsx.stop() }
        #expect(AgentSite.eventually(within: 30, "both trusts' studies announced", logs: [rsch, uhsx]) {
            ((try? rsch.locate(Self.patient).answer["studies"] as? [[String: Any]]) ?? []).count == 2
        })
        let ca = consortium.pki.ca
        func identity(_ trust: String, _ nhs: String = Self.patient) throws -> (status: Int, object: [String: Any]) {
            let answer = try coordinator.call("/v1/patients/\(nhs)/identity", as: consortium.pki.site(trust), ca: ca)
            return (answer.status, (try? JSONSerialization.jsonObject(with: Data(answer.body.utf8)) as? [String: Any]) ?? [:])
        }
        let atRSCH = try identity("RSCH")
        #expect(atRSCH.status == 200 && atRSCH.object["trust"] as? String == "RSCH", "\(atRSCH)")
        let rschIDs = atRSCH.object["identifiers"] as? [[String: Any]] ?? []
        #expect(rschIDs.count == 1 && rschIDs.first?["id"] as? String == "R123" && rschIDs.first?["issuer"] as? String == "RSCH", "\(rschIDs)")
        let uhsxIDs = try identity("UHSX").object["identifiers"] as? [[String: Any]] ?? []
        #expect(uhsxIDs.map { $0["id"] as? String } == ["U987"], "\(uhsxIDs)")
        let atASPH = try identity("ASPH")
        #expect(atASPH.status == 200 && (atASPH.object["identifiers"] as? [Any])?.isEmpty == true, "never seen at ASPH: none, and not RSCH's or UHSX's: \(atASPH)")
        #expect(try identity("RSCH", "9990000019").status == 400, "fails Modulus 11")
        // RSCH announces R123 for another patient too: a conflict. ASPH asking about that patient
        // hears 409 and the conflict's kind, never RSCH's number.
        let other = "9990000026"
        try Self.study(rsch.watch, seed: 93, nhs: other, date: Self.daysAgo(10), trust: "RSCH", extra: ["--patient-id", "R123"])
        var conflicted: (status: Int, object: [String: Any]) = (0, [:])
        #expect(try AgentSite.eventually(within: 30, "the conflict at the coordinator", logs: [rsch]) {
            conflicted = try identity("ASPH", other)
            return conflicted.status == 409
        })
        let body = String(decoding: try JSONSerialization.data(withJSONObject: conflicted.object), as: UTF8.self)
        #expect(!body.contains("R123") && body.contains("local-id"), "\(body)")
        let audit = (try? String(contentsOfFile: coordinator.audit, encoding: .utf8)) ?? ""
        #expect(audit.contains("/identity") && audit.contains("\"who\":\"ASPH\""), "each identity lookup audited")
    }
}
