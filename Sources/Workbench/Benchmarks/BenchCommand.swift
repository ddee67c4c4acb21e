import CommandSupport
import DICOM
import Dispatch
import Foundation
import Platform
import Routing

#if canImport(Glibc)
    import Glibc
#endif

/// `consort bench ...`: measurements an operator or developer can repeat. Each benchmark prints
/// what it measured, how, and the figures; `--json` gives one JSON line for scripts.
public enum BenchCommand {
    public static let help = """
        Usage: consort bench parse DIR... [--threads N] [--repeat N] [--in-memory] [--verify] [--json]
               consort bench rules [--rules DIR] [--headers N] [--seconds S] [--json]
               consort bench push [--instances N] [--size RxC] [--study DIR] [--store DIR]
                                  [--work DIR] [--connections C] [--batch N] [--json]
               consort bench route [--urgent N] [--bulk-instances N] [--work DIR] [--json]
               consort bench registry [--studies N] [--lookups L] [--postgresql CONNINFO] [--work DIR] [--json]
               consort bench disk [--work DIR] [--file FILE] [--json]
               consort bench dimse [--instances N] [--size RxC] [--associations A] [--work DIR] [--json]
               consort bench query [--studies N] [--queries Q] [--instances I] [--work DIR] [--json]

        parse   Reads the header of every file under DIR (up to Pixel Data, as the agent does)
                and reports files/s and MB/s, MB counted as the files' size on disk. One untimed
                pass first warms the page cache; then --repeat timed passes (default 3), and the
                best is reported. Single-threaded unless --threads N (1-64). --in-memory reads
                the files into memory first and times the parsing alone. --verify checks each
                whole file's structure instead, as the receiver and sender do before accepting
                or sending an instance (every element to the last byte, pixel data skipped by
                seeking): compare the two figures for what the check costs.

        rules   Evaluates the whole rule set (default ./routing-rules) against N pre-parsed,
                varied headers (default 1000: CT, MR, CR, DX, US, PT; heads, chests, faces;
                emergency and oncology requests) at every site, for S seconds (default 2), and
                reports evaluations per second: one evaluation is one event against every rule.

        Tests/Benchmarks/bench-parse.sh runs parse beside pydicom, DCMTK and a C floor on the same files
        and prints the ratios.

        \(pushHelp)

        \(registryHelp)

        \(routeHelp)

        \(dimseHelp)

        \(queryHelp)

        disk      4 KB writes made durable (fdatasync) in a 32 MB scratch file in --work
                  (default: the temporary folder), and 4 KB reads around the page cache of
                  --file (O_DIRECT: an existing file, say a registry), else of that scratch file
                  just written; about a second each, p50 and p99. route and registry print the
                  same probe beside their figures, which depend on it: on a virtual machine a
                  read the guest does not cache may still be in the host's cache, or not, and
                  the two differ a hundredfold.

        """

    /// `loadRules` gives the rule set at a path (nil: the default folder), its diagnostics
    /// printed as `consort rules` prints them: the CLI's loader, so `bench rules` reads rules as
    /// every other command does.
    public static func run(_ args: [String], loadRules: (String?) -> RuleSet?) throws -> ExitCode {
        guard let what = args.first else {
            throw UsageError(message: "say what to measure: parse, rules, push, route, registry, disk, dimse or query", command: "bench")
        }
        switch what {
        case "parse": return try parse(Array(args.dropFirst()))
        case "rules": return try rules(Array(args.dropFirst()), loadRules: loadRules)
        case "push": return try push(Array(args.dropFirst()))
        case "route": return try route(Array(args.dropFirst()))
        case "registry": return try registry(Array(args.dropFirst()))
        case "disk": return try disk(Array(args.dropFirst()))
        case "dimse": return try dimse(Array(args.dropFirst()))
        case "query": return try query(Array(args.dropFirst()))
        default: throw UsageError(message: "unknown benchmark \"\(what)\" (known: parse, rules, push, route, registry, disk, dimse, query)", command: "bench")
        }
    }

    static func parse(_ args: [String]) throws -> ExitCode {
        let arguments = try Arguments(
            args, command: "bench parse", flags: ["--json", "--in-memory", "--verify"], options: ["--threads", "--repeat"])
        guard !arguments.positional.isEmpty else {
            throw UsageError(message: "give the directory of files to read", command: "bench parse")
        }
        let threads = try arguments.integer("--threads", default: 1, range: 1...64)
        let repeats = try arguments.integer("--repeat", default: 3, range: 1...100)
        let (files, problems) = FileWalker.expand(arguments.positional)
        for problem in problems { standardError.line("consort bench parse: \(problem)") }
        guard !files.isEmpty else {
            standardError.line("consort bench parse: no files found")
            return .someFailed
        }
        let paths = files.map(\.path)
        var totalBytes = 0
        for path in paths {
            var info = stat()
            if stat(path, &info) == 0 { totalBytes += Int(info.st_size) }
        }
        // --in-memory: the files' bytes are read first, so only parsing is timed.
        var contents: [[UInt8]]?
        if arguments.flag("--in-memory") {
            guard totalBytes < 4 << 30 else {
                standardError.line("consort bench parse: --in-memory needs the files to fit in 4 GB; these are \(totalBytes >> 20) MB")
                return .someFailed
            }
            contents = paths.map { (try? Array(Data(contentsOf: URL(fileURLWithPath: $0)))) ?? [] }
        }
        let verify = arguments.flag("--verify")
        let pass = { contents.map { parseAll($0, threads: threads, verify: verify) } ?? readAll(paths, threads: threads, verify: verify) }
        // Warm-up pass: page cache, dictionary tables, allocator.
        let failures = pass()
        var best = Double.infinity
        for _ in 0..<repeats {
            let start = monotonicSeconds()
            _ = pass()
            best = min(best, monotonicSeconds() - start)
        }
        let filesPerSecond = Double(paths.count) / best
        let megabytesPerSecond = Double(totalBytes) / 1_000_000 / best
        if arguments.flag("--json") {
            standardOutput.line(
                JSON.object([
                    ("benchmark", .string("parse")), ("files", .int(Int64(paths.count))),
                    ("bytes", .int(Int64(totalBytes))), ("failed", .int(Int64(failures))),
                    ("threads", .int(Int64(threads))), ("in_memory", .bool(contents != nil)), ("verify", .bool(verify)), ("seconds", .double(best)),
                    ("files_per_second", .double(filesPerSecond.rounded())),
                    ("mb_per_second", .double(significantFigures(megabytesPerSecond))),
                ]).serialized())
        } else {
            if contents != nil { standardOutput.line("parse (in memory: parsing only, no file I/O timed)") }
            if verify { standardOutput.line("parse --verify (each whole file's structure checked, pixel data skipped by seeking)") }
            standardOutput.line("parse: \(paths.count) files, \(totalBytes / 1_000_000) MB on disk, \(threads) thread\(threads == 1 ? "" : "s"), best of \(repeats)")
            standardOutput.line("  \(Int(filesPerSecond.rounded())) files/s, \(Int(megabytesPerSecond.rounded())) MB/s (\(formatSeconds(best)) s)")
            if failures > 0 { standardOutput.line("  \(failures) files could not be read (run consort dump on them for the reasons)") }
        }
        return failures > 0 ? .someFailed : .success
    }

    /// Reads every file's header; returns how many failed.
    static func readAll(_ paths: [String], threads: Int, verify: Bool) -> Int {
        if threads == 1 { return readRange(paths, 0..<paths.count, verify: verify) }
        let counts = FailureCounts(threads)
        DispatchQueue.concurrentPerform(iterations: threads) { worker in
            let chunk = (paths.count + threads - 1) / threads
            let range = min(paths.count, worker * chunk)..<min(paths.count, (worker + 1) * chunk)
            counts.set(worker, readRange(paths, range, verify: verify))
        }
        return counts.total
    }

    /// Parses headers already in memory; returns how many failed.
    static func parseAll(_ contents: [[UInt8]], threads: Int, verify: Bool) -> Int {
        @Sendable func parse(_ range: Range<Int>) -> Int {
            var failed = 0
            for i in range {
                do { _ = try verify ? DICOMFile.verify(bytes: contents[i]) : DICOMFile.read(bytes: contents[i]) } catch { failed += 1 }
            }
            return failed
        }
        if threads == 1 { return parse(0..<contents.count) }
        let counts = FailureCounts(threads)
        DispatchQueue.concurrentPerform(iterations: threads) { worker in
            let chunk = (contents.count + threads - 1) / threads
            counts.set(worker, parse(min(contents.count, worker * chunk)..<min(contents.count, (worker + 1) * chunk)))
        }
        return counts.total
    }

    static func readRange(_ paths: [String], _ range: Range<Int>, verify: Bool) -> Int {
        var failed = 0
        for i in range {
            do { _ = try verify ? DICOMFile.verify(path: paths[i]) : DICOMFile.read(path: paths[i]) } catch { failed += 1 }
        }
        return failed
    }

    /// Per-worker failure counts; each worker writes only its own slot.
    final class FailureCounts: @unchecked Sendable {
        private var counts: [Int]
        private let lock = PthreadMutex()
        init(_ n: Int) { counts = Array(repeating: 0, count: n) }
        func set(_ i: Int, _ v: Int) { lock.locked { counts[i] = v } }
        var total: Int { lock.locked { counts.reduce(0, +) } }
    }

    static func formatSeconds(_ s: Double) -> String {
        let ms = (s * 1000).rounded() / 1000
        return "\(ms)"
    }
}

/// A measured rate kept to three significant figures for the JSON reports: rounding to a fixed
/// 0.1 turned a small, slow run (7 tiny instances on a loaded CI machine, 0.04 MB/s) into 0.
func significantFigures(_ value: Double, _ digits: Int = 3) -> Double {
    guard value.isFinite, value != 0 else { return value }
    let scale = pow(10, Double(digits) - (log10(abs(value))).rounded(.up))
    return (value * scale).rounded() / scale
}

extension BenchCommand {
    static func rules(_ args: [String], loadRules: (String?) -> RuleSet?) throws -> ExitCode {
        let arguments = try Arguments(args, command: "bench rules", flags: ["--json"], options: ["--rules", "--headers", "--seconds"])
        let count = try arguments.integer("--headers", default: 1000, range: 1...1_000_000)
        let seconds = try arguments.integer("--seconds", default: 2, range: 1...600)
        guard let set = loadRules(arguments.option("--rules")) else {
            return .someFailed
        }
        let engine = RuleEngine(set)
        let headers = (0..<count).map(syntheticHeader)
        let sites = set.members.filter(\.isTrust).map(\.code)
        let now = Int64(Date().timeIntervalSince1970)
        let events: [RoutingEvent] = headers.enumerated().flatMap { index, header in
            [RoutingEvent.Kind.instanceArrived, .studyStable].map {
                RoutingEvent(kind: $0, header: header, origin: index % 7 == 0 ? .received(from: "UHSX") : .local, site: sites[index % sites.count], now: now)
            }
        }
        var evaluations = 0, actions = 0
        let start = monotonicSeconds()
        var elapsed = 0.0
        repeat {
            for event in events { actions += engine.evaluate(event).count }
            evaluations += events.count
            elapsed = monotonicSeconds() - start
        } while elapsed < Double(seconds)
        let rate = Double(evaluations) / elapsed
        if arguments.flag("--json") {
            standardOutput.line(JSON.object([
                ("benchmark", .string("rules")), ("rules", .int(Int64(set.rules.count))), ("headers", .int(Int64(count))),
                ("evaluations", .int(Int64(evaluations))), ("seconds", .double(elapsed)),
                ("evaluations_per_second", .double(rate.rounded())), ("actions", .int(Int64(actions))),
            ]).serialized())
        } else {
            standardOutput.line("rules: \(set.rules.count) rules against \(count) headers × 2 triggers at \(sites.count) sites, one thread")
            standardOutput.line("  \(Int(rate.rounded())) evaluations/s of the whole rule set (\(evaluations) in \(formatSeconds(elapsed)) s; \(actions) actions planned)")
        }
        return .success
    }

    /// A varied, realistic header for the rules benchmark (deterministic in `index`).
    static func syntheticHeader(_ index: Int) -> DataSet {
        let modalities = ["CT", "MR", "CR", "DX", "US", "PT", "CT", "CT"]
        let parts = ["HEAD", "CHEST", "ABDOMEN", "FACE", "PELVIS", "BRAIN", "SPINE"]
        let departments = ["Emergency Department", "Radiology", "Outpatients", "A&E Resus"]
        let requests = ["CT head injury", "Oncology restaging", "Routine follow-up", "Chest pain", "Facial trauma", "Polytrauma"]
        var ds = DataSet()
        func text(_ keyword: String, _ vr: VR, _ value: String) {
            ds.set(DICOMWriter.textElement(Tag(keyword: keyword)!, vr, value))
        }
        text("SpecificCharacterSet", .CS, "ISO_IR 100")
        text("StudyDate", .DA, "2026112\(index % 9)")
        text("Modality", .CS, modalities[index % modalities.count])
        text("InstitutionalDepartmentName", .LO, departments[index % departments.count])
        text("StudyDescription", .LO, requests[(index / 3) % requests.count].uppercased())
        text("ReferringPhysicianName", .PN, index % 5 == 0 ? "ONCOLOGY^CLINIC" : "SMITH^JOHN")
        text("PatientID", .LO, "P\(index)")
        text("BodyPartExamined", .CS, parts[index % parts.count])
        text("RequestedProcedureDescription", .LO, requests[index % requests.count])
        // As the agent gets a header: written and read back by our reader (its values held the
        // way the reader holds them, short ones inline), not as built here.
        let file = DICOMFile(meta: DataSet(), dataSet: ds, transferSyntaxUID: TransferSyntax.explicitVRLittleEndian, encoding: .explicitVRLittleEndian)
        guard let bytes = try? DICOMWriter.encode(file), let read = try? DICOMFile.read(bytes: bytes) else { return ds }
        return read.dataSet
    }
}
