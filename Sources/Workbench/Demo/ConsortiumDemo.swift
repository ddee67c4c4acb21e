import CommandSupport
import Exchange
import Foundation
import PKI
import Platform
import Routing
import Transport

/// `consort demo`: the whole consortium on this machine in about a minute — a coordinator, the
/// five trusts' agents and an AI triage service as real processes on loopback, a throwaway CA,
/// the consortium's rules — playing four stories, each checked from the receivers' files (never
/// from the agents' own claims), then the operator's views of the live processes.
final class ConsortiumDemo: @unchecked Sendable {
    static let trusts = ["RSCH", "ASPH", "ESHT", "QVH", "UHSX"]
    let folder: String
    let rulesSource: String
    let keep: Bool
    let consort = ChildProcess.ownExecutable
    /// The processes started (under `lock`: a Ctrl-C stops them from the main thread).
    private var children: [(name: String, process: ChildProcess)] = []
    private let lock = NSLock()
    var ports: [String: Int] = [:]
    let started = MonotonicClock.now
    var outcomes: [(story: String, ok: Bool)] = []

    init(folder: String, rules: String, keep: Bool) {
        self.folder = folder
        rulesSource = rules
        self.keep = keep
    }

    func say(_ text: String) {
        standardOutput.line(text)
        standardOutput.flush()
    }

    func elapsed(since start: Double) -> String { String(format: "%.1f s", MonotonicClock.now - start) }

    // MARK: - Setting up

    /// A free loopback port for a child to listen on (see `LoopbackPort`).
    static func freePort() -> Int { LoopbackPort.free() }

    /// The consortium's rules, made quick for a demo: quiet periods of seconds rather than
    /// minutes, overnight windows lifted. Everything else as written.
    func copyRules() throws -> [String] {
        let target = folder + "/rules"
        try FileManager.default.createDirectory(atPath: target, withIntermediateDirectories: true)
        var changes: [String] = []
        for name in try FileManager.default.contentsOfDirectory(atPath: rulesSource).sorted() where name.hasSuffix(".rules") {
            var text = try String(contentsOfFile: rulesSource + "/" + name, encoding: .utf8)
            let quick = text.replacingOccurrences(of: #"on study-stable after [0-9]+ ?(min|h|s)"#, with: "on study-stable after 2 s", options: .regularExpression)
            let unwindowed = quick.replacingOccurrences(of: #" window [0-9]{2}:[0-9]{2}-[0-9]{2}:[0-9]{2}"#, with: "", options: .regularExpression)
            if quick != text { changes.append("\(name): quiet periods 2 s") }
            if unwindowed != quick { changes.append("\(name): overnight window lifted") }
            text = unwindowed
            try text.write(toFile: target + "/" + name, atomically: true, encoding: .utf8)
        }
        return changes
    }

    func site(_ trust: String) -> String { folder + "/" + trust.lowercased() }

    func writeConfigurations(ca: CertificateAuthority) throws {
        for trust in Self.trusts + ["COORDINATOR", "AI-CXR"] { ports[trust] = Self.freePort() }
        let pki = folder + "/pki"
        for name in Self.trusts + ["COORDINATOR", "AI-CXR"] { _ = try ca.issue(name, hosts: ["localhost", "127.0.0.1"], into: pki) }
        try """
            listen 127.0.0.1:\(ports["COORDINATOR"]!)
            certificate \(pki)/coordinator.pem
            key \(pki)/coordinator.key
            ca \(ca.certificatePath)
            registry \(folder)/coordinator/registry.sqlite
            rules \(folder)/rules
            """.write(toFile: folder + "/coordinator.conf", atomically: true, encoding: .utf8)
        for trust in Self.trusts {
            let base = site(trust)
            for sub in ["export", "import", "state", "lists"] { try FileManager.default.createDirectory(atPath: base + "/" + sub, withIntermediateDirectories: true) }
            var text = """
                trust \(trust)
                state \(base)/state
                watch \(base)/export
                inbound \(base)/import
                listen 127.0.0.1:\(ports[trust]!)
                certificate \(pki)/\(trust.lowercased()).pem
                key \(pki)/\(trust.lowercased()).key
                ca \(ca.certificatePath)
                rules \(folder)/rules
                coordinator https://localhost:\(ports["COORDINATOR"]!)
                lists \(base)/lists
                retry-min 1 s
                retry-max 5 s
                stable-after 2 s
                # An emergency referral or an MDT gather for a patient this trust has not
                # registered yet: placed under the NHS number rather than held for a person.
                unknown-patient nhs-number

                """
            for peer in Self.trusts + ["AI-CXR"] where peer != trust { text += "peer \(peer) https://localhost:\(ports[peer]!)\n" }
            try text.write(toFile: base + "/agent.conf", atomically: true, encoding: .utf8)
        }
    }

    func start(_ name: String, _ arguments: [String]) throws {
        let logs = folder + "/logs"
        try FileManager.default.createDirectory(atPath: logs, withIntermediateDirectories: true)
        let child = try ChildProcess(consort, arguments, stdout: "\(logs)/\(name.lowercased()).out", stderr: "\(logs)/\(name.lowercased()).log")
        lock.withLock { children.append((name, child)) }
    }

    /// Polls `condition` every 50 ms until it holds or `timeout` passes.
    func eventually(_ timeout: Double, _ condition: () -> Bool) -> Bool {
        let end = MonotonicClock.now + timeout
        while MonotonicClock.now < end {
            if condition() { return true }
            Thread.sleep(forTimeInterval: 0.05)
        }
        return condition()
    }

    func ready(_ name: String) -> Bool {
        ((try? String(contentsOfFile: "\(folder)/logs/\(name.lowercased()).out", encoding: .utf8)) ?? "").contains("listening on")
    }

    /// Study UIDs in a trust's inbound (or a receiver's store), with their instance counts.
    func received(_ store: String) -> [String: Int] {
        var out: [String: Int] = [:]
        for study in (try? FileManager.default.contentsOfDirectory(atPath: store)) ?? [] where !study.hasPrefix(".") {
            out[study] = ((try? FileManager.default.contentsOfDirectory(atPath: store + "/" + study)) ?? []).filter { $0.hasSuffix(".dcm") }.count
        }
        return out
    }

    // MARK: - The patients

    static func patient(_ seed: UInt64) -> String { NHSNumber.testNumber(seed: seed).digits }

    /// A synthetic study of a patient, written into a trust's archive export.
    @discardableResult
    func study(at trust: String, seed: UInt64, patient: UInt64, modality: String, bodyPart: String, description: String, daysAgo: Int,
               instances: Int = 4, size: Int = 64, department: String? = nil, requested: String? = nil) throws -> SyntheticStudy {
        var study = SyntheticStudy()
        study.seed = seed
        study.trust = trust
        study.nhsNumber = Self.patient(patient)
        study.hospitalNumber = "\(trust)\(String(format: "%07d", patient))"
        study.patientName = "DEMO^PATIENT\(patient)"
        study.modality = modality
        study.bodyPart = bodyPart
        study.description = description
        study.instances = instances
        study.rows = size
        study.columns = size
        study.department = department
        study.requestedProcedure = requested
        study.institution = trust
        study.studyDate = CalendarDay.text(Date().addingTimeInterval(-Double(daysAgo) * 86_400))
        _ = try study.write(into: site(trust) + "/export/" + study.studyInstanceUID)
        return study
    }

    // MARK: - Running

    func run() throws -> Bool {
        say("Consort demo: five trusts, a coordinator and an AI triage service, as processes on this machine")
        say("  folder \(folder)")
        try FileManager.default.createDirectory(atPath: folder, withIntermediateDirectories: true)
        let ca = try CertificateAuthority.create(in: folder + "/pki/ca", name: "Consort demo CA", days: 2)
        let changes = try copyRules()
        try writeConfigurations(ca: ca)
        say("  a throwaway CA and a certificate for each site (consort pki); the rules of \(rulesSource)")
        say("  made quick for a demo: \(changes.isEmpty ? "nothing changed" : changes.joined(separator: "; "))")

        // The patients' history, in the trusts' archives before the agents start.
        let oncology: UInt64 = 101, mdtFirst: UInt64 = 102, mdtSecond: UInt64 = 103
        let priors = [
            try study(at: "RSCH", seed: 1001, patient: oncology, modality: "CT", bodyPart: "CHEST", description: "CT CHEST ABDOMEN PELVIS", daysAgo: 380),
            try study(at: "UHSX", seed: 1002, patient: oncology, modality: "CT", bodyPart: "CHEST", description: "CT CHEST WITH CONTRAST", daysAgo: 720),
        ].map(\.studyInstanceUID)
        let notPriors = [
            try study(at: "UHSX", seed: 1003, patient: oncology, modality: "MR", bodyPart: "LIVER", description: "MR LIVER", daysAgo: 200),
            try study(at: "RSCH", seed: 1004, patient: oncology, modality: "CT", bodyPart: "CHEST", description: "CT CHEST", daysAgo: 1500),
        ].map(\.studyInstanceUID)
        let mdtImaging = [
            try study(at: "ASPH", seed: 1011, patient: mdtFirst, modality: "CT", bodyPart: "ABDOMEN", description: "CT ABDOMEN", daysAgo: 90),
            try study(at: "ESHT", seed: 1012, patient: mdtFirst, modality: "MR", bodyPart: "PELVIS", description: "MR PELVIS", daysAgo: 200),
            try study(at: "QVH", seed: 1013, patient: mdtSecond, modality: "CT", bodyPart: "NECK", description: "CT NECK", daysAgo: 60),
            try study(at: "ESHT", seed: 1014, patient: mdtSecond, modality: "MR", bodyPart: "HEAD", description: "MR HEAD", daysAgo: 300),
        ].map(\.studyInstanceUID)
        say("  archives: 8 earlier studies of three patients (test-range NHS numbers) spread over the trusts")
        say("")

        let clock = MonotonicClock.now
        try start("COORDINATOR", ["coordinator", "--config", folder + "/coordinator.conf"])
        try start("AI-CXR", ["receive", "--listen", "127.0.0.1:\(ports["AI-CXR"]!)", "--store", folder + "/ai-cxr",
            "--cert", folder + "/pki/ai-cxr.pem", "--key", folder + "/pki/ai-cxr.key", "--ca", ca.certificatePath])
        for trust in Self.trusts { try start(trust, ["agent", "--config", site(trust) + "/agent.conf"]) }
        guard eventually(60, { (Self.trusts + ["COORDINATOR", "AI-CXR"]).allSatisfy(ready) }) else {
            say("Not every process started; see \(folder)/logs")
            return false
        }
        say("Started in \(elapsed(since: clock)): coordinator :\(ports["COORDINATOR"]!), agents " + Self.trusts.map { "\($0) :\(ports[$0]!)" }.joined(separator: ", ")
            + ", AI-CXR :\(ports["AI-CXR"]!)")
        let client = try CoordinatorClient(
            base: "https://localhost:\(ports["COORDINATOR"]!)",
            tls: TLSConfiguration(certificateChain: folder + "/pki/rsch.pem", privateKey: folder + "/pki/rsch.key", trustedCA: ca.certificatePath))
        let announced = eventually(30) {
            [oncology, mdtFirst, mdtSecond].map { ((try? client.call("GET", "/v1/patients/\(Self.patient($0))/studies", purpose: "direct-care"))?["studies"] as? [Any])?.count ?? 0 } == [4, 2, 2]
        }
        // A first start: each archive is history, indexed and announced, no rule fired for it
        // (nothing is copied between trusts at start); the stories below are new studies.
        say("Each agent indexed its archive (a first start fires no rules for history) and announced it to the coordinator: \(announced ? "8 studies known" : "NOT all known") after \(elapsed(since: clock))")
        say("")

        // Story 1: an ED head CT at ESHT streams to UHSX neurosurgery, under its deadline.
        say("1. A head CT in ESHT's emergency department, for UHSX neurosurgery (urgent, deadline 2 minutes)")
        let storyOne = MonotonicClock.now
        let head = try study(at: "ESHT", seed: 2001, patient: 104, modality: "CT", bodyPart: "HEAD", description: "CT HEAD", daysAgo: 0,
                             instances: 40, size: 256, department: "Emergency Department")
        var firstArrived: Double?
        let headArrived = eventually(120) {
            let count = received(site("UHSX") + "/import")[head.studyInstanceUID] ?? 0
            if count > 0 && firstArrived == nil { firstArrived = MonotonicClock.now - storyOne }
            return count == head.instances
        }
        let headTime = MonotonicClock.now - storyOne
        let elsewhere = ["RSCH", "ASPH", "QVH"].filter { received(site($0) + "/import")[head.studyInstanceUID] != nil }
        let oneOK = headArrived && headTime < 120 && elsewhere.isEmpty
        say(oneOK
            ? String(format: "   at UHSX: the first image after %.1f s, all %d (%.1f MB) after %.1f s; deadline met. Nowhere else.", firstArrived ?? 0, head.instances, Double(head.instances * 256 * 256 * 2) / 1e6, headTime)
            : "   NOT as it should be: \(received(site("UHSX") + "/import")[head.studyInstanceUID] ?? 0) of \(head.instances) at UHSX; elsewhere: \(elsewhere)")
        outcomes.append(("ED head CT to UHSX", oneOK))

        // Story 2: an oncology CT at ASPH brings the patient's CT priors from RSCH and UHSX.
        say("2. A restaging CT at ASPH for a patient with earlier CTs at RSCH and UHSX (and an MR, and a CT from 4 years ago)")
        let storyTwo = MonotonicClock.now
        let restaging = try study(at: "ASPH", seed: 2002, patient: oncology, modality: "CT", bodyPart: "CHEST", description: "CT CHEST RESTAGING", daysAgo: 0,
                                  requested: "ONCOLOGY RESTAGING")
        let priorsArrived = eventually(60) { Set(priors).isSubset(of: received(site("ASPH") + "/import").keys) }
        let brought = Set(received(site("ASPH") + "/import").keys)
        let twoOK = priorsArrived && brought.isDisjoint(with: notPriors)
        say(twoOK
            ? "   the study was quiet, the rule asked for CT priors within 3 years: both at ASPH after \(elapsed(since: storyTwo)) (RSCH's and UHSX's); the MR and the old CT left where they are."
            : "   NOT as it should be: ASPH holds \(brought.count) received studies; expected \(priors)")
        outcomes.append(("oncology priors to ASPH", twoOK))
        _ = restaging

        // Story 3: an MDT list at RSCH gathers its patients' imaging from three trusts.
        say("3. An MDT list for tomorrow's meeting at RSCH: two patients, imaging at ASPH, ESHT and QVH")
        let storyThree = MonotonicClock.now
        let tomorrow = CalendarDay.text(Date().addingTimeInterval(86_400))
        let list = "nhs_number,meeting_date,host\n\(Self.patient(mdtFirst)),\(tomorrow),RSCH\n\(Self.patient(mdtSecond)),\(tomorrow),RSCH\n"
        try list.write(toFile: site("RSCH") + "/lists/.mdt.csv.tmp", atomically: true, encoding: .utf8)
        try FileManager.default.moveItem(atPath: site("RSCH") + "/lists/.mdt.csv.tmp", toPath: site("RSCH") + "/lists/mdt-\(tomorrow).csv")
        let gathered = eventually(60) { Set(mdtImaging).isSubset(of: received(site("RSCH") + "/import").keys) }
        say(gathered
            ? "   all four studies at RSCH after \(elapsed(since: storyThree)), fetched by RSCH from ASPH, ESHT and QVH (gather jobs in RSCH's queue)."
            : "   NOT as it should be: \(Set(mdtImaging).intersection(received(site("RSCH") + "/import").keys).count) of 4 at RSCH")
        outcomes.append(("MDT gather at RSCH", gathered))

        // Story 4: a chest X-ray at ESHT reaches the AI service, and nothing else does.
        say("4. A chest X-ray at ESHT, for the AI triage service")
        let storyFour = MonotonicClock.now
        let chest = try study(at: "ESHT", seed: 2004, patient: 105, modality: "DX", bodyPart: "CHEST", description: "XR CHEST PA", daysAgo: 0, instances: 1, size: 256)
        let atAI = eventually(60) { received(folder + "/ai-cxr")[chest.studyInstanceUID] == 1 }
        let aiHolds = Set(received(folder + "/ai-cxr").keys)
        let cxrElsewhere = Self.trusts.filter { $0 != "ESHT" && received(site($0) + "/import")[chest.studyInstanceUID] != nil }
        let fourOK = atAI && aiHolds == [chest.studyInstanceUID] && cxrElsewhere.isEmpty
        say(fourOK
            ? "   at the AI service after \(elapsed(since: storyFour)); it holds that study and nothing else, and no trust received it."
            : "   NOT as it should be: the AI service holds \(aiHolds.count) studies; the X-ray also at \(cxrElsewhere)")
        outcomes.append(("chest X-ray to AI only", fourOK))
        say("")

        // The operator's views, from the live processes.
        for (title, arguments) in [
            ("consort queue (RSCH)", ["queue", "--config", site("RSCH") + "/agent.conf"]),
            ("consort status (ESHT)", ["status", "--config", site("ESHT") + "/agent.conf"]),
            ("consort locate (from ASPH)", ["locate", "--nhs", NHSNumber(Self.patient(oncology))!.description, "--config", site("ASPH") + "/agent.conf"]),
        ] {
            say("$ \(title)")
            let out = folder + "/logs/view.out"
            let child = try ChildProcess(consort, arguments, stdout: out, stderr: out + ".err")
            _ = child.wait()
            let text = (try? String(contentsOfFile: out, encoding: .utf8)) ?? ""
            for line in text.split(separator: "\n", omittingEmptySubsequences: false).dropLast() { say("  " + line) }
        }
        let allOK = outcomes.allSatisfy(\.ok)
        say("")
        say(allOK
            ? "Every story ended as it should, checked from the receivers' files, in \(elapsed(since: started)) in all."
            : "NOT every story ended as it should: " + outcomes.filter { !$0.ok }.map(\.story).joined(separator: "; ") + " (logs in \(folder)/logs)")
        return allOK
    }

    /// SIGTERM to every process, then wait for them (bounded).
    func stopAll() {
        let running = lock.withLock {
            defer { children = [] }
            return children
        }
        for (_, child) in running.reversed() { child.signal(SIGTERM) }
        let end = MonotonicClock.now + 20
        for (_, child) in running {
            while child.isRunning && MonotonicClock.now < end { Thread.sleep(forTimeInterval: 0.05) }
            if child.isRunning { child.signal(SIGKILL) }
            _ = child.wait()
        }
    }
}
