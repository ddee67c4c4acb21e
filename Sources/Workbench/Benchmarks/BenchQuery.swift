import CommandSupport
import DICOM
import DIMSE
import Exchange
import Foundation
import Platform
import Routing
import Transport

/// `consort bench query`: the consortium as one DICOM node (issue 27), measured — a coordinator
/// with a registry of N studies, a patient with 10 studies across the five trusts, and agents as
/// processes: C-FIND latency at the asking trust's SCP (an association a query, as a PACS asks),
/// and a C-MOVE of a study held at another trust (first instance at the destination, the whole
/// study) against a push of the same study between two agents.
extension BenchCommand {
    static let queryHelp = """
        query     A coordinator with --studies N generated studies (default 100000; the issue's
                  figure is at 1000000), a patient with 10 studies across five trusts (one of
                  them real: --instances I of 512x512 at RSCH, default 100), and agents for
                  RSCH, ASPH (a DIMSE query/retrieve SCP) and ESHT. Times --queries Q C-FINDs
                  (default 500) by NHS number at ASPH's SCP, each on its own association:
                  find_p50_ms, find_p99_ms. Then a C-MOVE of RSCH's study to DCMTK's storescp:
                  move_first_s (the first instance stored there), move_s and move_mb_per_s,
                  against `consort send` of the same files from RSCH to ESHT's receiver
                  (push_mb_per_s) in the same run: move_ratio. Both place the study in the
                  receiving trust's identity (each has its own number for the patient).
        """

    static func query(_ args: [String]) throws -> ExitCode {
        let arguments = try Arguments(args, command: "bench query", flags: ["--json"], options: ["--studies", "--queries", "--instances", "--work"])
        guard arguments.positional.isEmpty else { throw UsageError(message: "unexpected argument \(arguments.positional[0])", command: "bench query") }
        let count = try arguments.integer("--studies", default: 100_000, range: 10...50_000_000)
        let queries = try arguments.integer("--queries", default: 500, range: 10...1_000_000)
        let instances = try arguments.integer("--instances", default: 100, range: 1...10_000)
        guard let storescp = access("/usr/bin/storescp", X_OK) == 0 ? "/usr/bin/storescp" : ChildProcess.find("storescp") else {
            standardError.line("consort bench query: needs DCMTK's storescp as the move destination (Debian package dcmtk)")
            return .someFailed
        }
        let work = arguments.option("--work") ?? NSTemporaryDirectory() + "consort-bench-query-\(getpid())"
        try? FileManager.default.removeItem(atPath: work)
        let bench: BenchConsortium
        do { bench = try BenchConsortium(work: work, registryLine: "registry \(work)/registry.sqlite") } catch {
            standardError.line("consort bench query: \(error)")
            return .someFailed
        }
        var children: [ChildProcess] = [bench.coordinator]
        defer { for child in children.reversed() { _ = child.stop(within: 20) } }
        func fail(_ message: String) -> ExitCode {
            standardError.line("consort bench query: \(message) (kept \(work) for its logs)")
            return .someFailed
        }

        // The registry, then the patient: nine studies announced for four trusts (ASPH's under
        // its own number A777, which its answers carry), the tenth a real one at RSCH.
        let failures = LockedCounter()
        let (numbers, announceSeconds) = bench.announceGenerated(count, failures: failures)
        var seed: UInt64 = 990_000
        var patient = NHSNumber.testNumber(seed: seed)
        let taken = Set(numbers)
        while taken.contains(patient.digits) {
            seed = UInt64(patient.digits.dropFirst(3).prefix(6))! + 1
            patient = NHSNumber.testNumber(seed: seed)
        }
        let holders = ["RSCH", "ASPH", "ASPH", "ESHT", "ESHT", "QVH", "QVH", "UHSX", "UHSX"]
        for (index, trust) in holders.enumerated() {
            let client = try bench.client(trust)
            let id = trust == "ASPH" ? "A777" : "\(trust)-P"
            _ = try client.call("POST", "/v1/holdings", body: .object([("trust", .string(trust)), ("studies", .array([.object([
                ("study", .string("2.25.7\(index)0\(seed)")), ("patient", .object([("id", .string(id)), ("issuer", .string(trust))])), ("nhs", .string(patient.digits)),
                ("date", .string("20\(15 + index)0101")), ("modalities", .array([.string(index % 2 == 0 ? "CT" : "MR")])), ("instances", .int(120)),
                ("bytes", .int(60_000_000)), ("complete", .bool(true)),
            ])]))]))
        }

        // The agents: RSCH holding the real study, ASPH asking (its SCP), ESHT the push's target.
        // ESHT, like ASPH, has its own number for the patient (announced above): a push there is
        // placed in its identity, as the move's fetch is at ASPH — the same work on arrival.
        var study = SyntheticStudy()
        study.instances = instances
        (study.rows, study.columns) = (512, 512)
        study.nhsNumber = patient.digits
        study.hospitalNumber = "RSCH-P"
        study.seed = 4242
        let destinationPort = LoopbackPort.free(), scpPort = LoopbackPort.free()
        var ports: [String: Int] = [:]
        for trust in ["RSCH", "ASPH", "ESHT"] { ports[trust] = LoopbackPort.free() }
        for trust in ["RSCH", "ASPH", "ESHT"] {
            let base = work + "/" + trust.lowercased()
            for folder in ["export", "import", "state"] { try FileManager.default.createDirectory(atPath: base + "/" + folder, withIntermediateDirectories: true) }
            var text = """
                trust \(trust)
                state \(base)/state
                watch \(base)/export
                inbound \(base)/import
                listen 127.0.0.1:\(ports[trust]!)
                certificate \(work)/pki/\(trust.lowercased()).pem
                key \(work)/pki/\(trust.lowercased()).key
                ca \(bench.caPath)
                rules \(work)/rules
                coordinator \(bench.url)

                """
            if trust == "ASPH" {
                text += """
                    peer RSCH https://localhost:\(ports["RSCH"]!)
                    dimse 127.0.0.1:\(scpPort) { aet CONSORT_ASPH }
                    dimse-peer BENCH BENCH@127.0.0.1:104 { query }
                    dimse-peer DEST DEST@127.0.0.1:\(destinationPort)

                    """
            }
            try text.write(toFile: base + "/agent.conf", atomically: true, encoding: .utf8)
            if trust == "RSCH" { _ = try study.write(into: base + "/export") }
            children.append(try ChildProcess(ChildProcess.ownExecutable, ["agent", "--config", base + "/agent.conf"], stdout: base + "/agent.out", stderr: base + "/agent.log"))
        }
        let destination = work + "/destination"
        try FileManager.default.createDirectory(atPath: destination, withIntermediateDirectories: true)
        children.append(try ChildProcess(storescp, ["-aet", "DEST", "+B", "-od", destination, String(destinationPort)], stdout: work + "/storescp.out", stderr: work + "/storescp.log"))

        // Ready once the SCP answers and the registry has all ten of the patient's studies.
        let asph = try bench.client("ASPH")
        let ready = MonotonicClock.now + 120
        while true {
            let answer = try? asph.call("GET", "/v1/patients/\(patient.digits)/studies", purpose: "direct-care")
            let echo = try? DIMSEAssociation.echo(host: "127.0.0.1", port: UInt16(scpPort), called: "CONSORT_ASPH", calling: "BENCH", timeout: 2)
            if (answer?["studies"] as? [Any])?.count == 10, echo == 0 { break }
            guard MonotonicClock.now < ready else { return fail("the patient's ten studies or ASPH's SCP were not ready in 120 s") }
            Thread.sleep(forTimeInterval: 0.2)
        }

        // C-FIND: an association a query, as a PACS's query window asks.
        var keys = DataSet()
        func key(_ keyword: String, _ value: String) {
            let tag = DataDictionary.tag(forKeyword: keyword)!
            let vr = DataDictionary.entry(for: tag)!.vr
            keys.set(value.isEmpty ? DataElement(tag: tag, vr: vr, length: 0, value: .bytes([])) : DICOMWriter.textElement(tag, vr, value))
        }
        for (keyword, value) in [("QueryRetrieveLevel", "STUDY"), ("PatientID", patient.digits), ("IssuerOfPatientID", "NHS"), ("StudyInstanceUID", ""), ("StudyDate", ""),
                                 ("ModalitiesInStudy", ""), ("StudyDescription", ""), ("NumberOfStudyRelatedInstances", ""), ("PatientName", "")] { key(keyword, value) }
        let identifier = try DICOMWriter.encodeDataSet(keys, explicitVR: false)
        var latencies: [Double] = []
        for _ in 0..<queries {
            let start = MonotonicClock.now
            let outcome = try DIMSEAssociation.query(identifier, host: "127.0.0.1", port: UInt16(scpPort), called: "CONSORT_ASPH", calling: "BENCH", timeout: 30)
            latencies.append((MonotonicClock.now - start) * 1000)
            guard outcome.status == 0, outcome.matches.count == 10 else { return fail("a C-FIND answered \(String(format: "0x%04X", outcome.status)) with \(outcome.matches.count) matches") }
        }
        latencies.sort()

        // C-MOVE of RSCH's study to storescp, then the same files pushed from RSCH to ESHT.
        let uid = SyntheticStudy.uid(study.seed, 1, 0)
        let files = FileWalker.expand([work + "/rsch/export"]).files.map(\.path)
        let bytes = files.reduce(0) { total, path in
            var info = stat()
            return total + (stat(path, &info) == 0 ? Int(info.st_size) : 0)
        }
        var moveKeys = DataSet()
        moveKeys.set(DICOMWriter.textElement(DataDictionary.tag(forKeyword: "QueryRetrieveLevel")!, .CS, "STUDY"))
        moveKeys.set(DICOMWriter.textElement(.studyInstanceUID, .UI, uid))
        let moveStart = MonotonicClock.now
        let moved = try DIMSEAssociation.query(
            try DICOMWriter.encodeDataSet(moveKeys, explicitVR: false), moveDestination: "DEST", host: "127.0.0.1", port: UInt16(scpPort), called: "CONSORT_ASPH", calling: "BENCH", timeout: 300)
        let moveSeconds = MonotonicClock.now - moveStart
        guard moved.status == 0, moved.final?.completed == UInt16(instances) else {
            return fail("the C-MOVE answered \(String(format: "0x%04X", moved.status)) (\(moved.comment ?? "")), \(moved.final.map { "\($0.completed) sent, \($0.failed) failed" } ?? "no counts")")
        }
        let first = moved.pending.first { ($0.counts?.completed ?? 0) >= 1 }?.seconds ?? moveSeconds
        let pushStart = MonotonicClock.now
        let push = try ChildProcess(
            ChildProcess.ownExecutable, ["send", "https://localhost:\(ports["ESHT"]!)", work + "/rsch/export", "--cert", "\(work)/pki/rsch.pem", "--key", "\(work)/pki/rsch.key", "--ca", bench.caPath],
            stdout: work + "/push.out", stderr: work + "/push.log")
        guard push.wait(within: 600).succeeded else { return fail("consort send to ESHT failed; see \(work)/push.log") }
        let pushSeconds = MonotonicClock.now - pushStart

        let mb = Double(bytes) / 1e6
        func percentile(_ p: Double) -> Double { nearestRank(p, ofSorted: latencies) }
        if arguments.flag("--json") {
            standardOutput.line(JSON.object([
                ("studies", .int(Int64(count + 10))), ("announce_s", .double((announceSeconds * 10).rounded() / 10)), ("queries", .int(Int64(queries))),
                ("find_p50_ms", .double((percentile(0.5) * 100).rounded() / 100)), ("find_p99_ms", .double((percentile(0.99) * 100).rounded() / 100)),
                ("instances", .int(Int64(instances))), ("study_mb", .double(mb.rounded())),
                ("move_first_s", .double((first * 1000).rounded() / 1000)), ("move_s", .double((moveSeconds * 100).rounded() / 100)),
                ("move_mb_per_s", .double((mb / moveSeconds).rounded())), ("push_mb_per_s", .double((mb / pushSeconds).rounded())),
                ("move_ratio", .double((pushSeconds / moveSeconds * 100).rounded() / 100)), ("failures", .int(Int64(failures.value))),
            ]).serialized())
        } else {
            standardOutput.line(String(format: "registry: %d studies (announced in %.1f s); the patient: 10 studies at 5 trusts", count + 10, announceSeconds))
            standardOutput.line(String(format: "C-FIND at ASPH by NHS number, an association each: %d queries, p50 %.2f ms, p99 %.2f ms (10 answers each)", queries, percentile(0.5), percentile(0.99)))
            standardOutput.line(String(format: "C-MOVE of RSCH's study (%d instances, %.0f MB) to storescp: first instance there after %.3f s, all in %.2f s (%.0f MB/s)", instances, mb, first, moveSeconds, mb / moveSeconds))
            standardOutput.line(String(format: "push of the same files RSCH → ESHT (consort send): %.2f s (%.0f MB/s); move ÷ push speed: %.2f", pushSeconds, mb / pushSeconds, pushSeconds / moveSeconds))
        }
        if failures.value == 0 && arguments.option("--work") == nil { try? FileManager.default.removeItem(atPath: work) }
        return failures.value == 0 ? .success : .someFailed
    }
}
