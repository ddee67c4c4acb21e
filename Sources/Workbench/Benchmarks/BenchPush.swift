import CommandSupport
import DICOM
import Foundation

#if canImport(Glibc)
    import Glibc
#endif

/// `consort bench push`: a study pushed by `consort send` to `consort receive` over mutual TLS on
/// loopback, both as separate processes, as between two trusts: MB/s, and the peak memory of
/// each side. The receiver stores durably (every instance on disk before it is acknowledged), so
/// with `--store` on the filesystem a real receiver would use, this measures that disk too.
extension BenchCommand {
    static let pushHelp = """
        push    Writes a synthetic CT study (--instances N, default 600, --size ROWSxCOLUMNS,
                default 512x512: ~315 MB), or takes the DICOM files under --study DIR, makes a
                throwaway CA and two site certificates (with the openssl command), starts
                `consort receive` on 127.0.0.1 storing into a new folder inside --store DIR
                (default: the work folder) and times `consort send` of the study to it
                (--connections C, default 4; --batch N, default 50), from its start to its end.
                Reports MB/s (MB: the files' size), and the peak RSS of sender and receiver. The
                received copy is removed; with --work DIR the study and certificates are kept
                there for the next run (default: a new folder in /tmp, removed).
                Tests/Benchmarks/bench-push.sh runs it beside curl, a C sink and Orthanc.
        """

    static func push(_ args: [String]) throws -> ExitCode {
        let arguments = try Arguments(
            args, command: "bench push", flags: ["--json"],
            options: ["--instances", "--size", "--study", "--store", "--work", "--connections", "--batch"])
        guard arguments.positional.isEmpty else {
            throw UsageError(message: "unexpected argument \(arguments.positional[0])", command: "bench push")
        }
        let instances = try arguments.integer("--instances", default: 600, range: 1...100_000)
        let connections = try arguments.integer("--connections", default: 4, range: 1...16)
        let batch = try arguments.integer("--batch", default: 50, range: 1...10_000)
        var synthetic = SyntheticStudy()
        synthetic.instances = instances
        (synthetic.rows, synthetic.columns) = (512, 512)
        if let size = arguments.option("--size") { try synthetic.setSize(size, command: "bench push") }
        guard let openssl = ChildProcess.find("openssl") else {
            standardError.line("consort bench push: needs the openssl command for its throwaway certificates (Debian package openssl)")
            return .someFailed
        }
        let keepWork = arguments.option("--work") != nil
        let work = arguments.option("--work") ?? NSTemporaryDirectory() + "consort-bench-push-\(getpid())"
        try FileManager.default.createDirectory(atPath: work, withIntermediateDirectories: true)
        defer { if !keepWork { try? FileManager.default.removeItem(atPath: work) } }

        // The study: given, or written once per size into the work folder.
        let study: String
        if let given = arguments.option("--study") {
            study = given
        } else {
            study = work + "/study-\(instances)-\(synthetic.rows)x\(synthetic.columns)"
            if !FileManager.default.fileExists(atPath: study + ".complete") {
                try? FileManager.default.removeItem(atPath: study)
                _ = try synthetic.write(into: study)
                try Data().write(to: URL(fileURLWithPath: study + ".complete"))
            }
        }
        let (files, problems) = FileWalker.expand([study])
        guard problems.isEmpty, !files.isEmpty else {
            standardError.line("consort bench push: no files to send in \(study)\(problems.first.map { ": \($0)" } ?? "")")
            return .someFailed
        }
        var bytes = 0
        for file in files {
            var info = stat()
            if stat(file.path, &info) == 0 { bytes += Int(info.st_size) }
        }

        let pki = work + "/pki"
        // Kept in --work for the next run while well inside their day of validity.
        let made = (try? FileManager.default.attributesOfItem(atPath: pki + "/complete"))?[.modificationDate] as? Date
        if made.map({ Date().timeIntervalSince($0) > 12 * 3600 }) ?? true {
            try makeThrowawayPKI(in: pki, openssl: openssl)
        }

        // A new store folder each run, removed afterwards: a store that already holds the
        // instances would measure the "already held" path instead.
        let storeParent = arguments.option("--store") ?? work
        try FileManager.default.createDirectory(atPath: storeParent, withIntermediateDirectories: true)
        let store = storeParent + "/consort-bench-store-\(getpid())-\(Int(monotonicSeconds() * 1000))"
        defer { try? FileManager.default.removeItem(atPath: store) }
        let consort = ChildProcess.ownExecutable
        let tls = ["--cert", pki + "/UHSX.pem", "--key", pki + "/UHSX.key", "--ca", pki + "/ca.pem"]
        let receiver = try ChildProcess(
            consort, ["receive", "--listen", "127.0.0.1:0", "--store", store] + tls, stdout: work + "/receive.out", stderr: work + "/receive.log")
        var receiverStopped = false
        defer {
            if !receiverStopped {
                receiver.signal(SIGKILL)
                _ = receiver.wait()
            }
        }
        guard let url = waitForListening(work + "/receive.out", timeout: 10) else {
            let log = (try? String(contentsOfFile: work + "/receive.log", encoding: .utf8)) ?? ""
            standardError.line("consort bench push: the receiver did not start: \(log.trimmingCharacters(in: .whitespacesAndNewlines))")
            return .someFailed
        }

        let clientTLS = ["--cert", pki + "/RSCH.pem", "--key", pki + "/RSCH.key", "--ca", pki + "/ca.pem"]
        let start = monotonicSeconds()
        let sender = try ChildProcess(
            consort, ["send", url, study, "--connections", String(connections), "--batch", String(batch)] + clientTLS,
            stdout: work + "/send.out", stderr: work + "/send.err")
        // A send that hangs fails the benchmark rather than hanging it (and the suite that runs
        // it), without polling beside the transfer timed.
        let sent = sender.wait(killingAfter: Self.sendDeadlineSeconds)
        let seconds = monotonicSeconds() - start
        if sent.timedOut {
            standardError.line("consort bench push: consort send did not finish within \(Int(Self.sendDeadlineSeconds)) s and was killed; see \(work)/send.err")
            return .someFailed
        }
        let receiverPeakKiB = receiver.peakKiBSoFar
        _ = receiver.stop(within: 30)
        receiverStopped = true

        let summary = ((try? String(contentsOfFile: work + "/send.out", encoding: .utf8)) ?? "").trimmingCharacters(in: .whitespacesAndNewlines)
        let stored = FileWalker.expand([store]).files.filter { !$0.path.contains("/.staging/") }.count
        guard sent.succeeded, stored == files.count else {
            let errors = ((try? String(contentsOfFile: work + "/send.err", encoding: .utf8)) ?? "").split(separator: "\n").prefix(5)
            standardError.line("consort bench push: not every instance was stored (\(stored) of \(files.count)); consort send said: \(summary)")
            for line in errors { standardError.line("  " + line) }
            return .someFailed
        }
        let megabytesPerSecond = Double(bytes) / 1e6 / seconds
        if arguments.flag("--json") {
            standardOutput.line(
                JSON.object([
                    ("benchmark", .string("push")), ("instances", .int(Int64(files.count))), ("bytes", .int(Int64(bytes))),
                    ("connections", .int(Int64(connections))), ("batch", .int(Int64(batch))), ("seconds", .double(seconds)),
                    ("mb_per_second", .double(significantFigures(megabytesPerSecond))),
                    ("sender_peak_rss_kib", .int(Int64(sent.peakKiB))), ("receiver_peak_rss_kib", .int(Int64(receiverPeakKiB))),
                ]).serialized())
        } else {
            standardOutput.line(
                "push: \(files.count) instances (\(String(format: "%.1f", Double(bytes) / 1e6)) MB) by consort send to consort receive, mutual TLS on loopback, "
                    + "\(connections) connection\(connections == 1 ? "" : "s"), \(batch) a request, stored durably in \(storeParent)")
            standardOutput.line("  \(Int(megabytesPerSecond.rounded())) MB/s (\(formatSeconds(seconds)) s, start to end of consort send)")
            standardOutput.line("  peak RSS: sender \(sent.peakKiB / 1024) MB, receiver \(receiverPeakKiB / 1024) MB")
        }
        return .success
    }

    /// A consortium CA for the run, UHSX's server certificate (127.0.0.1) and RSCH's client
    /// certificate, P-256, valid for a day.
    static func makeThrowawayPKI(in folder: String, openssl: String) throws {
        try? FileManager.default.removeItem(atPath: folder)
        try FileManager.default.createDirectory(atPath: folder, withIntermediateDirectories: true)
        func run(_ arguments: [String]) throws {
            let child = try ChildProcess(openssl, arguments, stdout: "/dev/null", stderr: folder + "/openssl.log")
            guard child.wait().succeeded else {
                let log = (try? String(contentsOfFile: folder + "/openssl.log", encoding: .utf8)) ?? ""
                throw UsageError(message: "openssl \(arguments.prefix(2).joined(separator: " ")) failed: \(log)", command: "bench push")
            }
        }
        let key = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes"]
        try run(["req", "-x509"] + key + ["-keyout", folder + "/ca.key", "-out", folder + "/ca.pem", "-days", "1",
            "-subj", "/CN=Consort bench CA", "-addext", "basicConstraints=critical,CA:TRUE", "-addext", "keyUsage=critical,keyCertSign,cRLSign"])
        // The coordinator's too, for `bench route --identity`.
        for site in ["UHSX", "RSCH", "COORDINATOR"] {
            try run(["req"] + key + ["-keyout", "\(folder)/\(site).key", "-out", "\(folder)/\(site).csr", "-subj", "/CN=\(site)"])
            try Data("subjectAltName=IP:127.0.0.1,DNS:localhost\nextendedKeyUsage=serverAuth,clientAuth\n".utf8)
                .write(to: URL(fileURLWithPath: "\(folder)/\(site).ext"))
            try run(["x509", "-req", "-in", "\(folder)/\(site).csr", "-CA", folder + "/ca.pem", "-CAkey", folder + "/ca.key",
                "-CAcreateserial", "-out", "\(folder)/\(site).pem", "-days", "1", "-extfile", "\(folder)/\(site).ext"])
        }
        try Data().write(to: URL(fileURLWithPath: folder + "/complete"))
    }

    /// How long one send may take: a 300 MB study takes about a second here, a large --instances
    /// run on a slow disk minutes.
    static let sendDeadlineSeconds = 1800.0

    /// The receiver prints "listening on https://HOST:PORT, ..." once it accepts connections.
    static func waitForListening(_ path: String, timeout: Double) -> String? {
        let deadline = monotonicSeconds() + timeout
        while monotonicSeconds() < deadline {
            if let text = try? String(contentsOfFile: path, encoding: .utf8), let range = text.range(of: "listening on ") {
                let rest = text[range.upperBound...]
                if let end = rest.firstIndex(of: ",") { return String(rest[..<end]) }
            }
            usleep(20_000)
        }
        return nil
    }
}
