import CommandSupport
import DICOM
import Foundation
#if canImport(Glibc)
    import Glibc
#endif

/// `consort bench route`: two agents (RSCH → UHSX) as child processes over mutual TLS on
/// loopback. A bulk study is dropped into RSCH's watched folder; while it is in flight, urgent
/// instances are written one at a time, and each is timed from the moment its file appears
/// (renamed into the folder, closed) to the moment it is durably in UHSX's inbound. Then the
/// bulk study's speed against `consort send` → `consort receive` on the same study, and the
/// catch-up scan's speed (an agent started on a folder already holding the study and an archive) against
/// `consort bench parse` on it.
extension BenchCommand {
    static let routeHelp = """
        route   Two agents (RSCH → UHSX) as child processes, mutual TLS on loopback, a throwaway
                CA: --urgent N urgent instances (default 100, 512x512) written into RSCH's watch
                folder one at a time while a bulk study (--bulk-instances N, default 1200 of
                512x512, ~630 MB) is in flight to the same peer; prints each urgent instance's
                latency distribution (file closed at RSCH → durable in UHSX's inbound), the bulk
                study's MB/s, sent alone by a pair of agents of its own and again while the
                urgent instances go too, against consort send → receive on it in the same run
                (the median of three: one before the agents, two after), the catch-up
                scan's files/s (an agent started on the bulk study and an archive of
                --archive-instances N more, default 20000 of 64x64 in studies of 500) against
                consort bench parse on the same files, both agents' peak RSS, and the disk's
                durable writes before and after (bench disk) and while the urgent instances
                are timed (each urgent instance over 150 ms beside the slowest of those) and
                during the catch-up scan.
                --bandwidth MB caps RSCH's peer line at MB MB/s (bandwidth MB MB/s), where urgent
                bytes must not wait behind bulk's; --agent-binary PATH runs the agents from
                another build (an earlier commit's) so old and new are timed in one run.
                --identity: identity on delivery (a coordinator of the bench's own; UHSX knows
                the patient under its own number, so each instance it receives is rewritten as
                it is placed): the bulk study sent alone without and with the rewrite, the ratio
                reported, and the urgent instances timed with it on.
                --deidentified: the bulk study sent alone by fresh pairs of agents, plainly and
                with RSCH's rule saying push … deidentified (PS3.15 Annex E, each instance
                de-identified as it is sent), three of each in turn; the medians, their ratio,
                and the sender's peak RSS in each (memory flat: each instance's new header is
                made in memory, its pixel data streamed from the original file, no copy
                written). Only that is run.
                Tests/Benchmarks/bench-route.sh runs it beside two Orthancs routing by Lua.
        """

    /// How long an agent has to stop after SIGTERM before it is killed: its own drain is
    /// bounded at 10 s (the unit gives it 30).
    static let agentStopSeconds = 30.0

    /// Reads every file once, so that a timed run reads from the page cache as the run it is
    /// compared with does (`consort bench push` and `bench parse` warm their inputs first). A
    /// kernel may evict files left idle for minutes (this project's test machine runs DAMON's
    /// proactive reclaim): a cold bulk study went at 24–65 MB/s, a warm one at ~380.
    static func warm(_ paths: [String]) {
        var buffer = [UInt8](repeating: 0, count: 1 << 20)
        for path in paths {
            let fd = open(path, O_RDONLY | O_CLOEXEC)
            guard fd >= 0 else { continue }
            while buffer.withUnsafeMutableBytes({ read(fd, $0.baseAddress, $0.count) }) > 0 {}
            close(fd)
        }
    }

    static func route(_ args: [String]) throws -> ExitCode {
        let arguments = try Arguments(
            args, command: "bench route", flags: ["--json", "--identity", "--deidentified"], options: ["--urgent", "--bulk-instances", "--archive-instances", "--work", "--bandwidth", "--agent-binary"])
        // A capped peer (`bandwidth N MB/s` on RSCH's peer line): the case where the cap exists
        // because the link is scarce, and urgent bytes must not wait for bulk's.
        let bandwidth = arguments.option("--bandwidth") == nil ? nil : try arguments.integer("--bandwidth", default: 60, range: 1...100_000)
        // The agents from another build (an earlier commit's, say), timed by this one in the
        // same run: old and new side by side on the same machine, the same hour.
        let agentBinary = arguments.option("--agent-binary")
        if let agentBinary, !FileManager.default.isExecutableFile(atPath: agentBinary) {
            throw UsageError(message: "--agent-binary \(agentBinary) is not an executable file", command: "bench route")
        }
        let urgentCount = try arguments.integer("--urgent", default: 100, range: 1...10_000)
        let bulkCount = try arguments.integer("--bulk-instances", default: 1200, range: 1...100_000)
        let archiveCount = try arguments.integer("--archive-instances", default: 20_000, range: 0...1_000_000)
        guard let openssl = ChildProcess.find("openssl") else {
            standardError.line("consort bench route: needs the openssl command for its throwaway certificates")
            return .someFailed
        }
        let keepWork = arguments.option("--work") != nil
        let work = arguments.option("--work") ?? NSTemporaryDirectory() + "consort-bench-route-\(getpid())"
        try FileManager.default.createDirectory(atPath: work, withIntermediateDirectories: true)
        defer { if !keepWork { try? FileManager.default.removeItem(atPath: work) } }
        let pki = work + "/pki"
        let made = (try? FileManager.default.attributesOfItem(atPath: pki + "/complete"))?[.modificationDate] as? Date
        if made.map({ Date().timeIntervalSince($0) > 12 * 3600 }) ?? true || !FileManager.default.fileExists(atPath: pki + "/COORDINATOR.pem") {
            try makeThrowawayPKI(in: pki, openssl: openssl)
        }
        let identity = arguments.flag("--identity")
        let deidentified = arguments.flag("--deidentified")
        if identity && deidentified {
            throw UsageError(message: "--identity and --deidentified measure different things; run one, then the other", command: "bench route")
        }

        // The studies, written once and kept in the work folder.
        var bulk = SyntheticStudy()
        (bulk.instances, bulk.rows, bulk.columns, bulk.seed, bulk.description) = (bulkCount, 512, 512, 7001, "BULK ARCHIVE CT")
        var urgent = SyntheticStudy()
        (urgent.instances, urgent.rows, urgent.columns, urgent.seed, urgent.description) = (urgentCount, 512, 512, 7002, "URGENT HEAD CT")
        let bulkSource = work + "/bulk-\(bulkCount)", urgentSource = work + "/urgent-\(urgentCount)"
        for (study, folder) in [(bulk, bulkSource), (urgent, urgentSource)] where !FileManager.default.fileExists(atPath: folder + ".complete") {
            try? FileManager.default.removeItem(atPath: folder)
            _ = try study.write(into: folder + "/" + study.studyInstanceUID)
            try Data().write(to: URL(fileURLWithPath: folder + ".complete"))
        }
        let bulkFiles = FileWalker.expand([bulkSource]).files.map(\.path)
        let bulkBytes = bulkFiles.reduce(0) { total, path in
            var info = stat()
            return total + (stat(path, &info) == 0 ? Int(info.st_size) : 0)
        }
        let urgentFiles = FileWalker.expand([urgentSource]).files.map(\.path).sorted()
        // An archive for the catch-up scan to index besides the bulk study: an agent's first start
        // on a trust's export finds many studies already there. Small instances, so that the scan
        // is timed on its per-file work (a header read and a row), as bench parse is.
        let archiveSource = work + "/archive-\(archiveCount)"
        if archiveCount > 0 && !FileManager.default.fileExists(atPath: archiveSource + ".complete") {
            try? FileManager.default.removeItem(atPath: archiveSource)
            var made = 0
            while made < archiveCount {
                var study = SyntheticStudy()
                (study.instances, study.seed, study.description) = (min(500, archiveCount - made), 8001 + UInt64(made / 500), "BULK ARCHIVE CT")
                _ = try study.write(into: archiveSource + "/" + study.studyInstanceUID)
                made += study.instances
            }
            try Data().write(to: URL(fileURLWithPath: archiveSource + ".complete"))
        }

        // The disk's state before the run (and after it, below): the figures depend on it.
        let diskBefore = DiskProbe.measure(in: work)

        // A fresh run folder: rules, two sites.
        let run = work + "/run-\(getpid())-\(Int(monotonicSeconds() * 1000))"
        // Removed when the benchmark succeeds; kept when it fails, for the agents' logs its
        // messages point to.
        var finished = false
        defer {
            if finished {
                try? FileManager.default.removeItem(atPath: run)
            } else {
                standardError.line("consort bench route: kept \(run) for its logs")
            }
        }
        let rules = run + "/rules"
        try FileManager.default.createDirectory(atPath: rules, withIntermediateDirectories: true)
        try """
            member RSCH "bench sender"
            member UHSX "bench receiver"
            group trusts = RSCH, UHSX
            agreement "bench" {
              purposes direct-care, emergency
              between trusts
            }
            rule "Urgent" {
              purpose emergency
              at RSCH
              on instance-arrival
              when StudyDescription ~ "URGENT" and origin is local
              push to UHSX priority urgent deadline 120 s
            }
            rule "Bulk" {
              purpose direct-care
              at RSCH
              on instance-arrival
              when StudyDescription ~ "BULK" and origin is local
              push to UHSX priority bulk
            }
            """.write(toFile: rules + "/bench.rules", atomically: true, encoding: .utf8)
        // With --deidentified: the same rules, the bulk study's push de-identified.
        let deidentifiedRules = run + "/rules-deidentified"
        if deidentified {
            try FileManager.default.createDirectory(atPath: deidentifiedRules, withIntermediateDirectories: true)
            let text = try String(contentsOfFile: rules + "/bench.rules", encoding: .utf8)
            try text.replacingOccurrences(of: "push to UHSX priority bulk", with: "push to UHSX priority bulk deidentified")
                .write(toFile: deidentifiedRules + "/bench.rules", atomically: true, encoding: .utf8)
        }
        // With --identity: the coordinator both agents announce to, and UHSX asks for its number.
        let coordinator = identity ? try startBenchCoordinator(run: run, pki: pki, rules: rules, consort: ChildProcess.ownExecutable) : nil
        defer { coordinator?.stop() }
        func site(
            _ code: String, peer: (String, Int)?, scanRate: Int = 2000, folder: String? = nil, coordinator: BenchCoordinator? = nil, rules: String = rules
        ) throws -> (config: String, watch: String, inbound: String, state: String) {
            let base = run + "/" + (folder ?? code.lowercased())
            let (watch, inbound, state) = (base + "/export", base + "/import", base + "/state")
            for folder in [watch, inbound, state] { try FileManager.default.createDirectory(atPath: folder, withIntermediateDirectories: true) }
            var text = "trust \(code)\nstate \(state)\nwatch \(watch)\ninbound \(inbound)\nlisten 127.0.0.1:0\n"
            text += "certificate \(pki)/\(code).pem\nkey \(pki)/\(code).key\nca \(pki)/ca.pem\nrules \(rules)\nretry-min 1 s\nretry-max 2 s\nscan-rate \(scanRate)\n"
            // Four connections, as consort send uses by default: the comparison is like for like.
            if let (name, port) = peer { text += "peer \(name) https://127.0.0.1:\(port) { connections 4\(bandwidth.map { "  bandwidth \($0) MB/s" } ?? "") }\n" }
            text += coordinator?.agentLine ?? ""
            try text.write(toFile: base + "/agent.conf", atomically: true, encoding: .utf8)
            return (base + "/agent.conf", watch, inbound, state)
        }
        let consort = ChildProcess.ownExecutable
        let agentExecutable = agentBinary ?? consort
        func start(_ config: String, _ name: String) throws -> (ChildProcess, Int) {
            let child = try ChildProcess(agentExecutable, ["agent", "--config", config], stdout: run + "/\(name).out", stderr: run + "/\(name).log")
            let deadline = monotonicSeconds() + 30
            while monotonicSeconds() < deadline && child.isRunning {
                if let text = try? String(contentsOfFile: run + "/\(name).out", encoding: .utf8), let range = text.range(of: "listening on 127.0.0.1:") {
                    let digits = text[range.upperBound...].prefix { $0.isNumber }
                    if let port = Int(digits) { return (child, port) }
                }
                usleep(10_000)
            }
            child.signal(SIGKILL)
            _ = child.wait()
            throw UsageError(message: "the \(name) agent did not start: \((try? String(contentsOfFile: run + "/\(name).log", encoding: .utf8)) ?? "")", command: "bench route")
        }
        // The same study by consort send → consort receive, in this run: three times, once before
        // the agents and twice after, the median taken. One transfer of 630 MB lasts under two
        // seconds here, and on a shared two-CPU machine single runs of it ranged 181–376 MB/s
        // back to back: a ratio against one of them, taken after the agents' run, said more
        // about the machine at that moment than about the agent.
        func pushOnce(_ attempt: Int) throws -> Double? {
            let output = run + "/push-\(attempt).json"
            let push = try ChildProcess(consort, ["bench", "push", "--study", bulkSource, "--work", work + "/push", "--json"], stdout: output, stderr: run + "/push.err")
            guard push.wait(within: 600).succeeded else { return nil }
            return ((try? JSONSerialization.jsonObject(with: Data(contentsOf: URL(fileURLWithPath: output)))) as? [String: Any])?["mb_per_second"] as? Double
        }
        var pushRuns: [Double] = []
        if let rate = try pushOnce(1) { pushRuns.append(rate) }

        // Entries counted with readdir, no names made: the bench shares the agents' two CPUs,
        // and listing the bulk folder's 1,200 names with Foundation every 2 ms took CPU time
        // from the agents it measures.
        @Sendable func held(_ folder: String) -> Int {
            guard let dir = opendir(folder) else { return 0 }
            defer { closedir(dir) }
            var count = 0
            while let entry = readdir(dir) {
                let (a, b, c) = (entry.pointee.d_name.0, entry.pointee.d_name.1, entry.pointee.d_name.2)
                let dots = a == 0x2E && (b == 0 || (b == 0x2E && c == 0))  // "." and ".."
                if !dots { count += 1 }
            }
            return count
        }
        let bulkStudy = bulk.studyInstanceUID, urgentStudy = urgent.studyInstanceUID
        // The bulk study alone first, as the issue's target has it (a study dropped into A's
        // watched folder, until all of it is in B's inbound, against consort send → receive on
        // the same study): a pair of agents of its own, stopped after. The run below sends it
        // again while urgent instances go to the same peer, the bulk giving way to them.
        // UHSX's own number for the patient, when identity is on: its receiving agent is started
        // with a study of the patient under it, and sending waits until the coordinator has it.
        let patient = bulk.nhsNumber
        func receiverKnowsPatient(_ receiver: (config: String, watch: String, inbound: String, state: String), with coordinator: BenchCoordinator?) throws -> String? {
            guard let coordinator else { return nil }
            let number = try writeReceiversOwnStudy(into: receiver.watch, patient: patient)
            guard try waitForReceiversNumber(coordinator, patient: patient, number: number, timeout: 60) else {
                throw UsageError(message: "the coordinator did not learn UHSX's number for the patient within 60 s; see \(run)/coordinator.log", command: "bench route")
            }
            return number
        }
        // With `deidentify`, the study arrives under the UID RSCH's key gives it, de-identified.
        func sendAlone(_ prefix: String, coordinator: BenchCoordinator?, deidentify: Bool = false) throws -> (seconds: Double, senderPeakKiB: Int) {
            let receiver = try site("UHSX", peer: nil, folder: prefix + "-uhsx", coordinator: coordinator)
            var agents: [ChildProcess] = []
            var movedInto: String?
            // In this order, whatever throws: the agents stopped, then the study moved back
            // (never renamed away under a running sender).
            defer {
                for child in agents { child.signal(SIGTERM) }
                for child in agents { _ = child.wait(within: Self.agentStopSeconds) }
                if let movedInto { try? FileManager.default.moveItem(atPath: movedInto, toPath: bulkSource + "/" + bulkStudy) }
            }
            // Its 630 MB stay until the end: removing 1,200 files frees their blocks and inodes
            // at once, and on this machine that stalls durable writes (discard) and slows the
            // next files' creation (ext4 skips recently freed inodes) in the run measured next.
            let (uhsx, port) = try start(receiver.config, prefix + "-uhsx")
            agents.append(uhsx)
            let number = try receiverKnowsPatient(receiver, with: coordinator)
            let sender = try site("RSCH", peer: ("UHSX", port), folder: prefix + "-rsch", coordinator: coordinator, rules: deidentify ? deidentifiedRules : rules)
            let (rsch, _) = try start(sender.config, prefix + "-rsch")
            agents.append(rsch)
            // The key is made at the agent's first start, before it listens.
            let arrivesAs = deidentify ? try deidentifiedUID(of: bulkStudy, keyIn: sender.state) : bulkStudy
            warm(bulkFiles)
            let start = monotonicSeconds()
            try FileManager.default.moveItem(atPath: bulkSource + "/" + bulkStudy, toPath: sender.watch + "/" + bulkStudy)
            movedInto = sender.watch + "/" + bulkStudy
            let inbound = receiver.inbound + "/" + arrivesAs, deadline = start + 600
            while held(inbound) < bulkFiles.count && monotonicSeconds() < deadline && rsch.isRunning && uhsx.isRunning { usleep(5_000) }
            let seconds = monotonicSeconds() - start
            guard held(inbound) == bulkFiles.count else {
                throw UsageError(message: "the bulk study sent alone did not all arrive (\(held(inbound)) of \(bulkFiles.count)); see \(run)/\(prefix)-rsch.log", command: "bench route")
            }
            if let number, !placedUnder(number, inbound: receiver.inbound, study: bulkStudy) {
                throw UsageError(message: "the bulk study was not placed in UHSX's identity (\(number)); see \(run)/\(prefix)-uhsx.log", command: "bench route")
            }
            if deidentify, !arrivedDeidentified(inbound: receiver.inbound, study: arrivesAs) {
                throw UsageError(message: "the bulk study did not arrive de-identified; see \(run)/\(prefix)-rsch.log", command: "bench route")
            }
            return (seconds, rsch.peakKiBSoFar)
        }
        if deidentified {
            return try benchDeidentified(
                json: arguments.flag("--json"), instances: bulkFiles.count, bytes: bulkBytes, run: run, finished: &finished,
                sendAlone: { try sendAlone($0, coordinator: nil, deidentify: $1) })
        }
        // With --identity, three of each in turn and the medians: one transfer lasts under two
        // seconds, and single runs of the ratio ranged 0.66-0.88 on this shared machine.
        var aloneRuns: [Double] = [], identityRuns: [Double] = []
        for round in 0..<(coordinator == nil ? 1 : 3) {
            let suffix = round == 0 ? "" : "-\(round + 1)"
            aloneRuns.append(try sendAlone("alone" + suffix, coordinator: nil).seconds)
            if let coordinator { identityRuns.append(try sendAlone("alone-identity" + suffix, coordinator: coordinator).seconds) }
        }
        let bulkAloneSeconds = median(aloneRuns)
        let bulkAloneIdentitySeconds = identityRuns.isEmpty ? nil : median(identityRuns)

        let receiver = try site("UHSX", peer: nil, coordinator: coordinator)
        let (uhsx, uhsxPort) = try start(receiver.config, "uhsx")
        _ = try receiverKnowsPatient(receiver, with: coordinator)
        let sender = try site("RSCH", peer: ("UHSX", uhsxPort), coordinator: coordinator)
        let (rsch, _) = try start(sender.config, "rsch")
        var stopped = false
        func stopAgents() {
            guard !stopped else { return }
            stopped = true
            for child in [rsch, uhsx] { child.signal(SIGTERM) }
            for child in [rsch, uhsx] { _ = child.wait(within: Self.agentStopSeconds) }
        }
        defer { stopAgents() }

        // The bulk study in flight: moved into the watched folder at once (one rename), read
        // from the page cache as consort send reads it afterwards (see `warm`).
        warm(bulkFiles + urgentFiles)
        let bulkStart = monotonicSeconds()
        try FileManager.default.moveItem(atPath: bulkSource + "/" + bulkStudy, toPath: sender.watch + "/" + bulkStudy)
        defer { try? FileManager.default.moveItem(atPath: sender.watch + "/" + bulkStudy, toPath: bulkSource + "/" + bulkStudy) }
        // The moment the bulk study is complete at UHSX, watched on a thread of its own (the
        // urgent instances are timed meanwhile).
        final class Completion: @unchecked Sendable {
            let lock = NSLock()
            var at: Double?
        }
        let bulkDone = Completion()
        let bulkInbound = receiver.inbound + "/" + bulkStudy, bulkTotal = bulkFiles.count
        Thread {
            let deadline = monotonicSeconds() + 600
            while monotonicSeconds() < deadline {
                if held(bulkInbound) >= bulkTotal {
                    bulkDone.lock.withLock { bulkDone.at = monotonicSeconds() }
                    return
                }
                usleep(5_000)
            }
        }.start()
        // Wait until the bulk transfer is under way (its first request streaming in).
        let underway = monotonicSeconds() + 30
        while monotonicSeconds() < underway && held(receiver.inbound + "/.staging") <= 1 && held(receiver.inbound + "/" + bulkStudy) == 0 { usleep(2_000) }

        // Urgent instances, one at a time: copied next to the folder, then renamed in (the
        // file appears whole and closed at that instant), then timed to their arrival.
        try FileManager.default.createDirectory(atPath: sender.watch + "/" + urgentStudy, withIntermediateDirectories: true)
        try FileManager.default.createDirectory(atPath: run + "/incoming", withIntermediateDirectories: true)
        var latencies: [Double] = []
        /// When each urgent instance timed during the bulk transfer started and ended: its
        /// latency, and the moments to set beside the disk's (`DiskWatch`).
        var duringBulkSpans: [(start: Double, end: Double)] = []
        var bulkInFlight = 0
        let diskWatch = DiskWatch(in: run)
        defer { _ = diskWatch?.stop() }  // the loop below may throw
        for (index, file) in urgentFiles.enumerated() {
            let staged = run + "/incoming/\(index).dcm"
            try FileManager.default.copyItem(atPath: file, toPath: staged)
            let sop = try DICOMFile.read(path: staged).dataSet.string(.sopInstanceUID) ?? ""
            let target = receiver.inbound + "/\(urgentStudy)/\(sop).dcm"
            let inFlight = bulkDone.lock.withLock { bulkDone.at } == nil
            if inFlight { bulkInFlight += 1 }
            let t0 = monotonicSeconds()
            guard rename(staged, sender.watch + "/\(urgentStudy)/" + (file as NSString).lastPathComponent) == 0 else {
                throw UsageError(message: "cannot rename into the watched folder: \(String(cString: strerror(errno)))", command: "bench route")
            }
            var info = stat()
            let deadline = t0 + 30
            // Polled every millisecond (a resolution of 1 ms on tens): every 0.2 ms, the
            // wakeups cost the agents measured on the same two CPUs a share of one.
            while stat(target, &info) != 0 && monotonicSeconds() < deadline { usleep(1_000) }
            guard stat(target, &info) == 0 else {
                throw UsageError(message: "urgent instance \(index + 1) did not arrive within 30 s; see \(run)/rsch.log", command: "bench route")
            }
            let t1 = monotonicSeconds()
            latencies.append(t1 - t0)
            if inFlight && bulkDone.lock.withLock({ bulkDone.at }) == nil { duringBulkSpans.append((t0, t1)) }
            usleep(10_000)
        }
        let diskSamples = diskWatch?.stop() ?? []
        // The urgent instances over the target's 150 ms, each beside the slowest durable 4 KB
        // write the watch made while it was on its way.
        let slowUrgent = duringBulkSpans.filter { $0.end - $0.start > 0.150 }
            .map { (ms: ($0.end - $0.start) * 1000, diskMs: DiskWatch.slowest(in: diskSamples, from: $0.start, to: $0.end) * 1000) }
        // The bulk study to its end.
        let bulkDeadline = monotonicSeconds() + 600
        while bulkDone.lock.withLock({ bulkDone.at }) == nil && monotonicSeconds() < bulkDeadline { usleep(5_000) }
        let bulkSeconds = (bulkDone.lock.withLock { bulkDone.at } ?? monotonicSeconds()) - bulkStart
        let bulkArrived = held(receiver.inbound + "/" + bulkStudy)
        let (rschPeak, uhsxPeak) = (rsch.peakKiBSoFar, uhsx.peakKiBSoFar)
        stopAgents()
        guard bulkArrived == bulkFiles.count else {
            standardError.line("consort bench route: the bulk study did not all arrive (\(bulkArrived) of \(bulkFiles.count)); see \(run)/rsch.log")
            return .someFailed
        }
        try? FileManager.default.moveItem(atPath: sender.watch + "/" + bulkStudy, toPath: bulkSource + "/" + bulkStudy)

        // The same study by consort send → consort receive: twice more, after the agents (one
        // ran before them), the median of the three taken.
        for attempt in 2...3 { if let rate = try pushOnce(attempt) { pushRuns.append(rate) } }
        let pushMBs = pushRuns.isEmpty ? 0 : median(pushRuns)

        // The catch-up scan: an agent started on a folder already holding the bulk study and the
        // archive. Timed by the agent (its scan's first batch to its last row committed) and
        // from the process's start (which adds opening the database, TLS and the watches).
        let catchUp = try site("RSCH", peer: nil, scanRate: 1_000_000, folder: "catch-up")
        try FileManager.default.moveItem(atPath: bulkSource, toPath: catchUp.watch + "/bulk")
        defer { try? FileManager.default.moveItem(atPath: catchUp.watch + "/bulk", toPath: bulkSource) }
        if archiveCount > 0 { try FileManager.default.moveItem(atPath: archiveSource, toPath: catchUp.watch + "/archive") }
        defer { if archiveCount > 0 { try? FileManager.default.moveItem(atPath: catchUp.watch + "/archive", toPath: archiveSource) } }
        let catchUpFiles = bulkFiles.count + archiveCount
        warm(FileWalker.expand([catchUp.watch]).files.map(\.path))  // bench parse warms its own first pass
        // Watched too: the scan lasts about half a second, so one stalled flush of its commits
        // moves its figure by half.
        let scanDiskWatch = DiskWatch(in: run)
        defer { _ = scanDiskWatch?.stop() }
        let scanStart = monotonicSeconds()
        let qvh = try ChildProcess(consort, ["agent", "--config", catchUp.config], stdout: run + "/catch-up.out", stderr: run + "/catch-up.log")
        let scanDeadline = monotonicSeconds() + 600
        var doneLine: Substring?
        while monotonicSeconds() < scanDeadline, qvh.isRunning {
            let log = (try? String(contentsOfFile: run + "/catch-up.log", encoding: .utf8)) ?? ""
            if let line = log.split(separator: "\n").first(where: { $0.contains("catch-up scan done") }) {
                doneLine = line
                break
            }
            usleep(5_000)
        }
        let scanWallSeconds = monotonicSeconds() - scanStart
        let scanDiskSamples = scanDiskWatch?.stop() ?? []
        let scanDiskMaxMs = (scanDiskSamples.map(\.seconds).max() ?? .nan) * 1000
        _ = qvh.stop(within: Self.agentStopSeconds)
        guard let doneLine, let field = doneLine.split(separator: " ").first(where: { $0.hasPrefix("seconds=") }),
            let scanSeconds = Double(field.dropFirst("seconds=".count)), scanSeconds > 0
        else {
            standardError.line("consort bench route: the catch-up scan did not finish within 600 s; see \(run)/catch-up.log")
            return .someFailed
        }
        let parse = try ChildProcess(consort, ["bench", "parse", catchUp.watch, "--json", "--repeat", "1"], stdout: run + "/parse.json", stderr: run + "/parse.err")
        let parseRate = parse.wait(within: 600).succeeded
            ? ((try? JSONSerialization.jsonObject(with: Data(contentsOf: URL(fileURLWithPath: run + "/parse.json")))) as? [String: Any])?["files_per_second"] as? Double ?? 0 : 0

        latencies.sort()
        let duringBulk = duringBulkSpans.map { $0.end - $0.start }.sorted()
        let diskTimes = diskSamples.map(\.seconds).sorted()
        func percentile(_ p: Double, of values: [Double]? = nil) -> Double {
            nearestRank(p, ofSorted: values ?? latencies) * 1000
        }
        let diskAfter = DiskProbe.measure(in: work)
        let bulkMBs = Double(bulkBytes) / 1e6 / bulkSeconds
        let bulkAloneMBs = Double(bulkBytes) / 1e6 / bulkAloneSeconds
        let bulkAloneIdentityMBs = bulkAloneIdentitySeconds.map { Double(bulkBytes) / 1e6 / $0 }
        let scanRate = Double(catchUpFiles) / scanSeconds
        let scanRateFromStart = Double(catchUpFiles) / scanWallSeconds
        if arguments.flag("--json") {
            standardOutput.line(
                JSON.object([
                    ("benchmark", .string("route")), ("bandwidth_mb_per_second", bandwidth.map { .int(Int64($0)) } ?? .null),
                    ("identity", .bool(identity)), ("bulk_alone_identity_mb_per_second", bulkAloneIdentityMBs.map { .double($0) } ?? .null),
                    ("identity_ratio", bulkAloneIdentityMBs.map { .double($0 / bulkAloneMBs) } ?? .null),
                    ("agent_binary", .string(agentExecutable)), ("urgent", .int(Int64(latencies.count))), ("urgent_during_bulk", .int(Int64(bulkInFlight))),
                    ("p50_ms", .double(percentile(0.5))), ("p90_ms", .double(percentile(0.9))), ("p99_ms", .double(percentile(0.99))),
                    ("max_ms", .double(latencies.last! * 1000)), ("during_bulk_p50_ms", .double(percentile(0.5, of: duringBulk))),
                    ("during_bulk_p99_ms", .double(percentile(0.99, of: duringBulk))), ("bulk_instances", .int(Int64(bulkFiles.count))), ("bulk_bytes", .int(Int64(bulkBytes))),
                    ("bulk_alone_mb_per_second", .double(bulkAloneMBs)), ("bulk_mb_per_second", .double(bulkMBs)), ("send_receive_mb_per_second", .double(pushMBs)),
                    ("send_receive_runs_mb_per_second", .array(pushRuns.map { .double($0) })),
                    ("catch_up_files", .int(Int64(catchUpFiles))), ("catch_up_files_per_second", .double(scanRate)),
                    ("catch_up_files_per_second_from_process_start", .double(scanRateFromStart)), ("parse_files_per_second", .double(parseRate)),
                    ("catch_up_disk_sync_max_ms", .double(scanDiskMaxMs)),
                    ("sender_peak_rss_kib", .int(Int64(rschPeak))), ("receiver_peak_rss_kib", .int(Int64(uhsxPeak))),
                    ("disk_before", diskBefore?.json ?? .null), ("disk_after", diskAfter?.json ?? .null),
                    ("disk_during_syncs", .int(Int64(diskTimes.count))), ("disk_during_sync_p50_ms", .double(percentile(0.5, of: diskTimes))),
                    ("disk_during_sync_p99_ms", .double(percentile(0.99, of: diskTimes))), ("disk_during_sync_max_ms", .double((diskTimes.last ?? .nan) * 1000)),
                    ("urgent_over_150_ms", .array(slowUrgent.map { .object([("ms", .double($0.ms.rounded())), ("disk_sync_ms", .double($0.diskMs.rounded()))]) })),
                ]).serialized())
        } else {
            standardOutput.line("route: RSCH → UHSX agents, mutual TLS on loopback" + (identity ? "; identity on delivery: a coordinator, UHSX placing what it receives under its own number" : ""))
            standardOutput.line(String(format: "  urgent (file closed at RSCH → durable at UHSX), %d instances, %d while the bulk study was in flight:", latencies.count, bulkInFlight))
            standardOutput.line(String(format: "    all:               p50 %.1f ms, p90 %.1f ms, p99 %.1f ms, max %.1f ms", percentile(0.5), percentile(0.9), percentile(0.99), latencies.last! * 1000))
            standardOutput.line(String(format: "    during bulk (%3d): p50 %.1f ms, p90 %.1f ms, p99 %.1f ms, max %.1f ms", duringBulk.count,
                percentile(0.5, of: duringBulk), percentile(0.9, of: duringBulk), percentile(0.99, of: duringBulk), (duringBulk.last ?? .nan) * 1000))
            standardOutput.line(String(format: "  bulk: %d instances, %.0f MB; consort send → receive on the same study: %.0f MB/s, the median of %@",
                bulkFiles.count, Double(bulkBytes) / 1e6, pushMBs, pushRuns.map { String(format: "%.0f", $0) }.joined(separator: ", ")))
            standardOutput.line(String(format: "    alone:                            %.2f s, %.0f MB/s (ratio %.2f)", bulkAloneSeconds, bulkAloneMBs, pushMBs > 0 ? bulkAloneMBs / pushMBs : 0))
            if let bulkAloneIdentitySeconds, let bulkAloneIdentityMBs {
                standardOutput.line(String(format: "    alone, placed in UHSX's identity: %.2f s, %.0f MB/s (%.2f× the same without the rewrite; medians of %@ and %@ s)",
                    bulkAloneIdentitySeconds, bulkAloneIdentityMBs, bulkAloneIdentityMBs / bulkAloneMBs,
                    identityRuns.map { String(format: "%.2f", $0) }.joined(separator: ", "), aloneRuns.map { String(format: "%.2f", $0) }.joined(separator: ", ")))
            }
            standardOutput.line(String(format: "    while urgent instances go too:    %.2f s, %.0f MB/s (ratio %.2f)%@", bulkSeconds, bulkMBs, pushMBs > 0 ? bulkMBs / pushMBs : 0,
                identity ? ", identity on" : ""))
            standardOutput.line(String(format: "  catch-up scan: %d files in %.2f s: %.0f files/s (%.0f files/s from the process's start); consort bench parse on the same files: %.0f files/s (ratio %.2f); the slowest durable 4 KB write meanwhile %.1f ms",
                catchUpFiles, scanSeconds, scanRate, scanRateFromStart, parseRate, parseRate > 0 ? scanRate / parseRate : 0, scanDiskMaxMs))
            standardOutput.line("  peak RSS: sender \(rschPeak / 1024) MB, receiver \(uhsxPeak / 1024) MB")
            standardOutput.line("  disk before: \(diskBefore?.line ?? "not measured")")
            if !diskTimes.isEmpty {
                standardOutput.line(String(format: "  disk while urgent instances were timed: 4 KB writes + fdatasync every 100 ms, p50 %.1f ms, p99 %.1f ms, max %.1f ms (%d writes)",
                    percentile(0.5, of: diskTimes), percentile(0.99, of: diskTimes), diskTimes.last! * 1000, diskTimes.count))
            }
            if !slowUrgent.isEmpty {
                standardOutput.line("  urgent instances over 150 ms during bulk, each with the slowest durable disk write beside it: "
                    + slowUrgent.map { String(format: "%.0f ms (disk %.0f ms)", $0.ms, $0.diskMs) }.joined(separator: ", "))
            }
            standardOutput.line("  disk after:  \(diskAfter?.line ?? "not measured")")
        }
        finished = true
        return .success
    }
}
