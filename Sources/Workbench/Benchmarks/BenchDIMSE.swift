import CommandSupport
import DICOM
import Foundation
import Transport

#if canImport(Glibc)
    import Glibc
#endif

/// `consort bench dimse`: DIMSE C-STORE on loopback against DCMTK in the same run, on the same
/// files — the agent's SCP receiving from storescu against storescp receiving from storescu, and
/// consort store sending to storescp against storescu sending to it — with the peak memory of
/// each of ours, for the study and a tenth of it.
extension BenchCommand {
    static let dimseHelp = """
        dimse   Writes a synthetic CT study (--instances N, default 1000, --size ROWSxCOLUMNS,
                default 512x512: ~0.5 MB each) and times, on loopback, each three times in
                turn, the medians reported:
                  receiving: DCMTK storescu → storescp, until storescu exits and then a sync -f
                  of storescp's folder returns (storescp does not fsync), against storescu → a
                  consort agent's DIMSE SCP, until storescu exits (the agent answers success only
                  once each instance is durable);
                  sending: storescu → storescp against consort store → storescp on one
                  association, and consort store --associations A (default 4) → storescp --fork.
                The peak RSS of consort store and of the agent, after a tenth of the study and
                after all of it (flat in study size). MB: the files' size. Needs DCMTK (Debian
                package dcmtk) and openssl; --work DIR keeps the study for the next run.
                Tests/Benchmarks/bench-dimse.sh runs it from a release build.
        """

    static func dimse(_ args: [String]) throws -> ExitCode {
        let arguments = try Arguments(args, command: "bench dimse", flags: ["--json"], options: ["--instances", "--size", "--work", "--associations"])
        guard arguments.positional.isEmpty else { throw UsageError(message: "unexpected argument \(arguments.positional[0])", command: "bench dimse") }
        let instances = try arguments.integer("--instances", default: 1000, range: 10...100_000)
        let associations = try arguments.integer("--associations", default: 4, range: 2...16)
        var synthetic = SyntheticStudy()
        synthetic.instances = instances
        (synthetic.rows, synthetic.columns) = (512, 512)
        if let size = arguments.option("--size") { try synthetic.setSize(size, command: "bench dimse") }
        // DCMTK's, from Debian's package: pynetdicom installs scripts of the same names, which a
        // PATH search can find first.
        func dcmtk(_ name: String) -> String? { access("/usr/bin/" + name, X_OK) == 0 ? "/usr/bin/" + name : ChildProcess.find(name) }
        guard let storescu = dcmtk("storescu"), let storescp = dcmtk("storescp") else {
            standardError.line("consort bench dimse: needs DCMTK's storescu and storescp (Debian package dcmtk)")
            return .someFailed
        }
        guard let openssl = ChildProcess.find("openssl") else {
            standardError.line("consort bench dimse: needs the openssl command for the agent's throwaway certificates (Debian package openssl)")
            return .someFailed
        }
        // Debian's DCMTK leaves Nagle's algorithm on unless TCP_NODELAY=1 is in its environment:
        // storescu → storescp then waits ~40 ms an instance on delayed acknowledgements (2.7 s
        // for 60 small files, against 0.06 s with it set). DCMTK is measured at its best: the
        // children inherit it (the agent and consort store set TCP_NODELAY on their sockets).
        setenv("TCP_NODELAY", "1", 1)
        let keepWork = arguments.option("--work") != nil
        let work = arguments.option("--work") ?? NSTemporaryDirectory() + "consort-bench-dimse-\(getpid())"
        try FileManager.default.createDirectory(atPath: work, withIntermediateDirectories: true)
        // Kept when the benchmark fails, for the logs its message points to.
        var finished = false
        defer { if !keepWork && finished { try? FileManager.default.removeItem(atPath: work) } }

        // The study and a tenth of it, each written once per size into the work folder.
        func study(_ count: Int, seed: Int) throws -> String {
            var s = synthetic
            s.instances = count
            s.hospitalNumber = "RSCH\(seed)"
            let folder = work + "/study-\(count)-\(s.rows)x\(s.columns)"
            if !FileManager.default.fileExists(atPath: folder + ".complete") {
                try? FileManager.default.removeItem(atPath: folder)
                _ = try s.write(into: folder)
                try Data().write(to: URL(fileURLWithPath: folder + ".complete"))
            }
            return folder
        }
        let full = try study(instances, seed: 1)
        let tenth = try study(max(1, instances / 10), seed: 2)
        let bytes = FileWalker.expand([full]).files.reduce(0) { total, file in
            var info = stat()
            return total + (stat(file.path, &info) == 0 ? Int(info.st_size) : 0)
        }
        warm(FileWalker.expand([full, tenth]).files.map(\.path))
        let pki = work + "/pki"
        let made = (try? FileManager.default.attributesOfItem(atPath: pki + "/complete"))?[.modificationDate] as? Date
        if made.map({ Date().timeIntervalSince($0) > 12 * 3600 }) ?? true { try makeThrowawayPKI(in: pki, openssl: openssl) }

        let run = work + "/run-\(getpid())-\(Int(monotonicSeconds() * 1000))"
        defer {
            if finished { try? FileManager.default.removeItem(atPath: run) } else { standardError.line("consort bench dimse: kept \(run) for its logs") }
        }
        try FileManager.default.createDirectory(atPath: run, withIntermediateDirectories: true)
        var children: [ChildProcess] = []
        defer {
            for child in children where child.isRunning {
                child.signal(SIGKILL)
                _ = child.wait()
            }
        }
        /// Polls C-ECHO until the node answers (10 s at most).
        func waitForNode(_ ae: String, _ port: Int) -> Bool {
            let deadline = monotonicSeconds() + 10
            while monotonicSeconds() < deadline {
                if (try? DIMSEAssociation.echo(host: "127.0.0.1", port: UInt16(port), called: ae, calling: "BENCH", timeout: 1)) == 0 { return true }
                usleep(20_000)
            }
            return false
        }
        var counter = 0
        /// A storescp into a new folder; its port and folder.
        func startStorescp(fork: Bool) throws -> (ChildProcess, Int, String) {
            counter += 1
            let folder = run + "/storescp-\(counter)"
            try FileManager.default.createDirectory(atPath: folder, withIntermediateDirectories: true)
            let port = LoopbackPort.free()
            let child = try ChildProcess(
                storescp, ["-aet", "STORESCP", "+B", "-od", folder] + (fork ? ["--fork"] : []) + [String(port)],
                stdout: run + "/storescp-\(counter).out", stderr: run + "/storescp-\(counter).log")
            children.append(child)
            guard waitForNode("STORESCP", port) else { throw UsageError(message: "storescp did not answer C-ECHO; see \(run)/storescp-\(counter).log", command: "bench dimse") }
            return (child, port, folder)
        }
        func stopChild(_ child: ChildProcess) {
            child.signal(SIGTERM)
            if child.wait(within: 5).timedOut { child.signal(SIGKILL); _ = child.wait() }
        }
        func stored(_ folder: String) -> Int { FileWalker.expand([folder]).files.count }
        /// storescu of `folder` to `ae`@`port`: seconds until it exits.
        func storescuRun(_ folder: String, _ ae: String, _ port: Int, _ name: String) throws -> Double {
            let started = monotonicSeconds()
            let child = try ChildProcess(storescu, ["-aet", "BENCH", "-aec", ae, "+sd", "+r", "127.0.0.1", String(port), folder], stdout: run + "/\(name).out", stderr: run + "/\(name).log")
            let exit = child.wait(killingAfter: 600)
            guard exit.succeeded else { throw UsageError(message: "storescu failed (\(exit.status)); see \(run)/\(name).log", command: "bench dimse") }
            return monotonicSeconds() - started
        }
        /// consort store of `folder`: seconds until it exits, and its peak RSS.
        func consortStore(_ folder: String, _ port: Int, associations: Int, _ name: String) throws -> (Double, Int) {
            let started = monotonicSeconds()
            let child = try ChildProcess(
                ChildProcess.ownExecutable, ["store", "STORESCP@127.0.0.1:\(port)", folder, "--calling-aet", "BENCH", "--associations", String(associations)],
                stdout: run + "/\(name).out", stderr: run + "/\(name).log")
            let exit = child.wait(killingAfter: 600)
            guard exit.succeeded else { throw UsageError(message: "consort store failed (\(exit.status)); see \(run)/\(name).log", command: "bench dimse") }
            return (monotonicSeconds() - started, exit.peakKiB)
        }
        func syncSeconds(_ folder: String) throws -> Double {
            let started = monotonicSeconds()
            let child = try ChildProcess("/bin/sync", ["-f", folder], stdout: "/dev/null", stderr: "/dev/null")
            guard !child.wait(killingAfter: 300).timedOut else { throw UsageError(message: "sync -f \(folder) did not return within 300 s", command: "bench dimse") }
            return monotonicSeconds() - started
        }

        // The agent: its SCP the only way in, no rules that send anything.
        let agentBase = run + "/agent"
        let (watch, inbound, state) = (agentBase + "/export", agentBase + "/import", agentBase + "/state")
        for folder in [watch, inbound, state, run + "/rules"] { try FileManager.default.createDirectory(atPath: folder, withIntermediateDirectories: true) }
        try """
            member RSCH "bench"
            member UHSX "bench peer"
            group trusts = RSCH, UHSX
            agreement "bench" {
              purposes direct-care
              between trusts
            }
            """.write(toFile: run + "/rules/bench.rules", atomically: true, encoding: .utf8)
        let scpPort = LoopbackPort.free()
        try """
            trust RSCH
            state \(state)
            watch \(watch)
            inbound \(inbound)
            listen 127.0.0.1:0
            certificate \(pki)/RSCH.pem
            key \(pki)/RSCH.key
            ca \(pki)/ca.pem
            rules \(run)/rules
            dimse 127.0.0.1:\(scpPort) { aet CONSORT_RSCH }
            dimse-peer BENCH BENCH@127.0.0.1:104

            """.write(toFile: agentBase + "/agent.conf", atomically: true, encoding: .utf8)
        let agent = try ChildProcess(ChildProcess.ownExecutable, ["agent", "--config", agentBase + "/agent.conf"], stdout: run + "/agent.out", stderr: run + "/agent.log")
        children.append(agent)
        guard waitForNode("CONSORT_RSCH", scpPort) else {
            throw UsageError(message: "the agent's DIMSE SCP did not answer C-ECHO; see \(run)/agent.log", command: "bench dimse")
        }
        // The tenth first: the agent's peak after it, then after the whole study.
        _ = try storescuRun(tenth, "CONSORT_RSCH", scpPort, "warm-agent")
        let agentPeakTenth = agent.peakKiBSoFar

        var dcmtkReceive: [Double] = [], agentReceive: [Double] = [], dcmtkSend: [Double] = [], consortSend: [Double] = [], consortSendMany: [Double] = []
        var storePeakFull = 0
        for round in 1...3 {
            // Receiving: storescp (made durable by sync -f) against the agent's SCP.
            let (scp, port, folder) = try startStorescp(fork: false)
            let sent = try storescuRun(full, "STORESCP", port, "storescu-storescp-\(round)")
            dcmtkReceive.append(sent + (try syncSeconds(folder)))
            stopChild(scp)
            dcmtkSend.append(sent)
            guard stored(folder) == instances else { throw UsageError(message: "storescp stored \(stored(folder)) of \(instances)", command: "bench dimse") }
            try? FileManager.default.removeItem(atPath: folder)
            // (The same instances each round: the agent writes each durably again over the last.)
            agentReceive.append(try storescuRun(full, "CONSORT_RSCH", scpPort, "storescu-agent-\(round)"))
            // Sending: consort store on one association, then on several.
            let (one, onePort, oneFolder) = try startStorescp(fork: false)
            let (seconds, peak) = try consortStore(full, onePort, associations: 1, "store-1-\(round)")
            consortSend.append(seconds)
            storePeakFull = max(storePeakFull, peak)
            stopChild(one)
            guard stored(oneFolder) == instances else { throw UsageError(message: "consort store stored \(stored(oneFolder)) of \(instances)", command: "bench dimse") }
            try? FileManager.default.removeItem(atPath: oneFolder)
            let (many, manyPort, manyFolder) = try startStorescp(fork: true)
            consortSendMany.append(try consortStore(full, manyPort, associations: associations, "store-\(associations)-\(round)").0)
            stopChild(many)
            try? FileManager.default.removeItem(atPath: manyFolder)
        }
        let agentPeakFull = agent.peakKiBSoFar
        stopChild(agent)
        let (small, smallPort, _) = try startStorescp(fork: false)
        let storePeakTenth = try consortStore(tenth, smallPort, associations: 1, "store-tenth").1
        stopChild(small)

        let mb = Double(bytes) / 1e6
        let rates = (
            dcmtkReceive: mb / median(dcmtkReceive), agentReceive: mb / median(agentReceive), dcmtkSend: mb / median(dcmtkSend),
            consortSend: mb / median(consortSend), consortSendMany: mb / median(consortSendMany)
        )
        finished = true
        if arguments.flag("--json") {
            standardOutput.line(
                JSON.object([
                    ("benchmark", .string("dimse")), ("instances", .int(Int64(instances))), ("bytes", .int(Int64(bytes))), ("associations", .int(Int64(associations))),
                    ("storescu_storescp_synced_mb_per_second", .double(significantFigures(rates.dcmtkReceive))),
                    ("storescu_agent_mb_per_second", .double(significantFigures(rates.agentReceive))),
                    ("receive_ratio", .double(significantFigures(rates.agentReceive / rates.dcmtkReceive))),
                    ("storescu_storescp_mb_per_second", .double(significantFigures(rates.dcmtkSend))),
                    ("consort_store_mb_per_second", .double(significantFigures(rates.consortSend))),
                    ("send_ratio", .double(significantFigures(rates.consortSend / rates.dcmtkSend))),
                    ("consort_store_associations_mb_per_second", .double(significantFigures(rates.consortSendMany))),
                    ("send_associations_ratio", .double(significantFigures(rates.consortSendMany / rates.dcmtkSend))),
                    ("store_peak_rss_kib_tenth", .int(Int64(storePeakTenth))), ("store_peak_rss_kib", .int(Int64(storePeakFull))),
                    ("agent_peak_rss_kib_tenth", .int(Int64(agentPeakTenth))), ("agent_peak_rss_kib", .int(Int64(agentPeakFull))),
                ]).serialized())
        } else {
            func line(_ what: String, _ rate: Double, _ runs: [Double]) -> String {
                String(format: "%@ %4.0f MB/s (median of %@ s)", what.padding(toLength: 58, withPad: " ", startingAt: 0), rate, runs.map { String(format: "%.2f", $0) }.joined(separator: ", "))
            }
            standardOutput.line("dimse: \(instances) instances (\(String(format: "%.0f", mb)) MB, \(synthetic.rows)x\(synthetic.columns) CT) by C-STORE on loopback")
            standardOutput.line("  receiving")
            standardOutput.line("    " + line("storescu → storescp, then sync -f", rates.dcmtkReceive, dcmtkReceive))
            standardOutput.line("    " + line("storescu → consort agent (durable before success)", rates.agentReceive, agentReceive)
                + String(format: "  ratio %.2f", rates.agentReceive / rates.dcmtkReceive))
            standardOutput.line("  sending")
            standardOutput.line("    " + line("storescu → storescp", rates.dcmtkSend, dcmtkSend))
            standardOutput.line("    " + line("consort store → storescp, 1 association", rates.consortSend, consortSend)
                + String(format: "  ratio %.2f", rates.consortSend / rates.dcmtkSend))
            standardOutput.line("    " + line("consort store → storescp --fork, \(associations) associations", rates.consortSendMany, consortSendMany)
                + String(format: "  ratio %.2f", rates.consortSendMany / rates.dcmtkSend))
            standardOutput.line("  peak RSS: consort store \(storePeakTenth / 1024) MB with a tenth of the study, \(storePeakFull / 1024) MB with all of it; "
                + "the agent \(agentPeakTenth / 1024) MB after a tenth, \(agentPeakFull / 1024) MB after all")
        }
        return .success
    }
}
