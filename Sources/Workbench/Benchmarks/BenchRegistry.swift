import CommandSupport
import DICOM
import Exchange
import Foundation
import PKI
import Platform
import Routing
import Transport

/// `consort bench registry`: a real coordinator process (its own CA, certificates for the five
/// trusts) loaded with N generated studies through its API by eight concurrent clients, then
/// asked where patients' imaging is by eight concurrent clients: announce throughput, locate
/// latency p50/p99, and the coordinator's peak RSS.
extension BenchCommand {
    static let registryHelp = """
        registry  Starts a coordinator (SQLite in --work, or --postgresql CONNINFO), announces
                  --studies N generated studies (default 100000; N/2 patients up to 900,000 from
                  the 999 test range, five trusts) in batches of 500 from 8 clients, then times
                  --lookups L locate calls (default 20000) from 8 clients: announce_per_s,
                  locate_p50_ms, locate_p99_ms, rss_mb. Tests/Benchmarks/bench-registry.sh runs
                  it on SQLite and PostgreSQL side by side.
        """

    static func registry(_ args: [String]) throws -> ExitCode {
        let arguments = try Arguments(args, command: "bench registry", flags: ["--json"], options: ["--studies", "--lookups", "--work", "--postgresql"])
        let count = try arguments.integer("--studies", default: 100_000, range: 10...50_000_000)
        let lookups = try arguments.integer("--lookups", default: 20_000, range: 8...10_000_000)
        let work = arguments.option("--work") ?? NSTemporaryDirectory() + "consort-bench-registry-\(getpid())"
        try? FileManager.default.removeItem(atPath: work)
        let trusts = BenchConsortium.trusts
        let registry = arguments.option("--postgresql").map { "registry postgresql \"\($0)\"" } ?? "registry \(work)/registry.sqlite"
        let bench: BenchConsortium
        do { bench = try BenchConsortium(work: work, registryLine: registry) } catch {
            standardError.line("consort bench registry: \(error)")
            return .someFailed
        }
        let coordinator = bench.coordinator
        defer {
            _ = coordinator.stop(within: 30)
        }
        let client = bench.client
        let failures = LockedCounter()
        let (numbers, announceSeconds) = bench.announceGenerated(count, failures: failures)
        let patients = numbers.count
        let workers = 8
        // The disk as the lookups start, its reads those of the registry itself (around the page
        // cache): at millions of studies a lookup reads it.
        let registryFile = arguments.option("--postgresql") == nil ? work + "/registry.sqlite" : nil
        let disk = DiskProbe.measure(in: work, reading: registryFile)
        // Locate: 8 clients, random patients.
        let latencies = LockedSamples()
        let locateGroup = DispatchGroup()
        for worker in 0..<workers {
            locateGroup.enter()
            let trust = trusts[worker % trusts.count]
            Thread {
                defer { locateGroup.leave() }
                guard let client = try? client(trust) else { failures.add(); return }
                var generator = SystemRandomNumberGenerator()
                for _ in 0..<(lookups / workers) {
                    let number = numbers[Int.random(in: 0..<numbers.count, using: &generator)]
                    // Timed to the whole answer, not through the client's JSON parsing: the
                    // clients share the coordinator's CPUs here, on a network they would not.
                    let start = MonotonicClock.now
                    let answer = try? client.exchange("GET", "/v1/patients/\(number)/studies", purpose: "direct-care")
                    latencies.add((MonotonicClock.now - start) * 1000)
                    if answer?.status != 200 || answer?.answer.starts(with: Array(#"{"nhs":"#.utf8)) != true { failures.add() }
                }
            }.start()
        }
        locateGroup.wait()
        let diskAfter = DiskProbe.measure(in: work, reading: registryFile)
        let sorted = latencies.values.sorted()
        func percentile(_ p: Double) -> Double { sorted.isEmpty ? 0 : nearestRank(p, ofSorted: sorted) }
        let rss = Double(coordinator.peakKiBSoFar) / 1024
        let announcePerSecond = Double(count) / announceSeconds
        let kind = arguments.option("--postgresql") == nil ? "sqlite" : "postgresql"
        if arguments.flag("--json") {
            standardOutput.line(JSON.object([
                ("registry", .string(kind)), ("studies", .int(Int64(count))), ("patients", .int(Int64(patients))), ("announce_per_s", .double(announcePerSecond.rounded())),
                ("locate_p50_ms", .double((percentile(0.5) * 100).rounded() / 100)), ("locate_p99_ms", .double((percentile(0.99) * 100).rounded() / 100)),
                ("rss_mb", .double(rss.rounded())), ("lookups", .int(Int64(sorted.count))), ("failures", .int(Int64(failures.value))),
                ("disk", disk?.json ?? .null), ("disk_after", diskAfter?.json ?? .null),
            ]).serialized())
        } else {
            standardOutput.line(String(format: "registry %@: %d studies of %d patients announced in %.1f s (%.0f studies/s, 8 clients, batches of 500)", kind, count, patients, announceSeconds, announcePerSecond))
            standardOutput.line(String(format: "locate: %d lookups, p50 %.2f ms, p99 %.2f ms (8 clients, over mutual TLS, kept-alive connections)", sorted.count, percentile(0.5), percentile(0.99)))
            standardOutput.line(String(format: "coordinator peak RSS: %.0f MB; failures: %d", rss, failures.value))
            standardOutput.line("disk as the lookups started: \(disk?.line ?? "not measured")")
            standardOutput.line("disk as they ended: \(diskAfter?.line ?? "not measured")")
        }
        if failures.value == 0 && arguments.option("--work") == nil { try? FileManager.default.removeItem(atPath: work) }
        return failures.value == 0 ? .success : .someFailed
    }
}

final class LockedCounter: @unchecked Sendable {
    private let lock = NSLock()
    private var count = 0
    func add() { lock.withLock { count += 1 } }
    var value: Int { lock.withLock { count } }
}

final class LockedSamples: @unchecked Sendable {
    private let lock = NSLock()
    private var samples: [Double] = []
    func add(_ value: Double) { lock.withLock { samples.append(value) } }
    var values: [Double] { lock.withLock { samples } }
}

/// A coordinator for a benchmark, as a process: its own CA and certificates for the five trusts
/// and itself, the consortium's members and a direct-care agreement between them, and a registry
/// (SQLite in `work`, or the line given). `bench registry` and `bench query` share it.
struct BenchConsortium {
    static let trusts = ["RSCH", "ASPH", "ESHT", "QVH", "UHSX"]
    let work: String
    let port: Int
    let caPath: String
    let coordinator: ChildProcess
    /// A coordinator client with `trust`'s certificate.
    let client: @Sendable (String) throws -> CoordinatorClient

    struct Failure: Error, CustomStringConvertible {
        let description: String
    }

    init(work: String, registryLine: String, extraMembers: [String] = []) throws {
        self.work = work
        let trusts = Self.trusts
        let ca = try CertificateAuthority.create(in: work + "/ca", name: "bench CA", days: 2)
        for name in trusts + ["COORDINATOR"] + extraMembers { _ = try ca.issue(name, hosts: ["localhost", "127.0.0.1"], into: work + "/pki") }
        // The lookups name direct care, which an agreement between the trusts must allow.
        let members = "member " + trusts.map { "\($0) \"\($0)\"" }.joined(separator: "\nmember ") + "\n"
        try FileManager.default.createDirectory(atPath: work + "/rules", withIntermediateDirectories: true)
        try (members + "group trusts = \(trusts.joined(separator: ", "))\nagreement \"bench\" {\n  purposes direct-care\n  between trusts\n}\n")
            .write(toFile: work + "/rules/consortium.rules", atomically: true, encoding: .utf8)
        port = ConsortiumDemo.freePort()
        try """
            listen 127.0.0.1:\(port)
            certificate \(work)/pki/coordinator.pem
            key \(work)/pki/coordinator.key
            ca \(ca.certificatePath)
            \(registryLine)
            rules \(work)/rules
            audit \(work)/audit.log
            """.write(toFile: work + "/coordinator.conf", atomically: true, encoding: .utf8)
        coordinator = try ChildProcess(ChildProcess.ownExecutable, ["coordinator", "--config", work + "/coordinator.conf"], stdout: work + "/coordinator.out", stderr: work + "/coordinator.log")
        let deadline = MonotonicClock.now + 60
        while !(((try? String(contentsOfFile: work + "/coordinator.out", encoding: .utf8)) ?? "").contains("listening")) {
            guard MonotonicClock.now < deadline, coordinator.isRunning else {
                _ = coordinator.stop(within: 5)
                throw Failure(description: "the coordinator did not start; see \(work)/coordinator.log")
            }
            Thread.sleep(forTimeInterval: 0.05)
        }
        let caPath = ca.certificatePath
        self.caPath = caPath
        let port = self.port
        client = { trust in
            try CoordinatorClient(base: "https://localhost:\(port)", tls: TLSConfiguration(certificateChain: "\(work)/pki/\(trust.lowercased()).pem", privateKey: "\(work)/pki/\(trust.lowercased()).key", trustedCA: caPath))
        }
    }

    var url: String { "https://localhost:\(port)" }

    /// `count` generated studies of count/2 patients (at most 900,000, from the 999 test range)
    /// announced by 8 clients, each a trust, in batches of 500: the patients' numbers, and the
    /// seconds it took.
    func announceGenerated(_ count: Int, failures: LockedCounter) -> (numbers: [String], seconds: Double) {
        let trusts = Self.trusts
        let patients = max(1, min(count / 2, 900_000))
        var generated: [String] = []
        generated.reserveCapacity(patients)
        var seed: UInt64 = 0
        while generated.count < patients {
            let number = NHSNumber.testNumber(seed: seed)
            generated.append(number.digits)
            seed = UInt64(number.digits.dropFirst(3).prefix(6))! + 1
        }
        let numbers = generated
        let workers = 8, batch = 500
        let client = self.client
        let announceStart = MonotonicClock.now
        let group = DispatchGroup()
        for worker in 0..<workers {
            group.enter()
            let trust = trusts[worker % trusts.count]
            Thread {
                defer { group.leave() }
                guard let client = try? client(trust) else { failures.add(); return }
                var index = worker
                var items: [JSON] = []
                func flush() {
                    guard !items.isEmpty else { return }
                    if (try? client.call("POST", "/v1/holdings", body: .object([("trust", .string(trust)), ("studies", .array(items))]))) == nil { failures.add() }
                    items = []
                }
                while index < count {
                    let patient = index % patients
                    items.append(.object([
                        ("study", .string("2.25.\(900_000_000 + index)")), ("patient", .object([("id", .string("\(trust)\(patient)")), ("issuer", .string(trust))])),
                        ("nhs", .string(numbers[patient])), ("date", .string(String(20_000_101 + (index % 25) * 10_000))), ("modalities", .array([.string(["CT", "MR", "CR"][index % 3])])),
                        ("instances", .int(Int64(100 + index % 400))), ("bytes", .int(Int64(52_000_000))), ("complete", .bool(true)),
                    ]))
                    if items.count == batch { flush() }
                    index += workers
                }
                flush()
            }.start()
        }
        group.wait()
        return (numbers, MonotonicClock.now - announceStart)
    }
}
