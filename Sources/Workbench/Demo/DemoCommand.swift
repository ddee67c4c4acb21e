import CommandSupport
import DICOM
import Platform
import DICOMweb
import Exchange
import Foundation
import Routing
import Transport

/// `consort demo`: the consortium at work on this machine (`ConsortiumDemo`); `consort demo
/// study`: one synthetic study written, read back and sent over DICOMweb (what the tests and
/// benchmarks use to make a study).
public enum DemoCommand {
    public static let help = """
        Usage: consort demo [--rules DIR] [--dir DIR] [--keep]
               consort demo study [--out DIR] [--instances N] [--size ROWSxCOLUMNS]

        consort demo: a coordinator, the five trusts' agents (RSCH, ASPH, ESHT, QVH, UHSX) and an
        AI triage service as real processes on loopback ports, with a throwaway CA and the rules
        of --rules (default ./routing-rules; quiet periods shortened to seconds, overnight windows
        lifted, so that it runs in about a minute), playing four stories: an ED head CT at ESHT
        streamed to UHSX under its deadline; an oncology CT at ASPH that brings the patient's
        priors from RSCH and UHSX; an MDT list at RSCH that gathers its patients' imaging from
        three trusts; a chest X-ray at ESHT that reaches the AI service and nothing else. Each is
        checked from the receivers' files. Then consort queue, status and locate on the live
        processes. Exit 0 only if every story ended as it should. --keep leaves everything running
        and prints the commands to explore it (Ctrl-C stops it all); --dir keeps the folder
        (default: a new folder under /tmp, removed at the end unless something failed).

        consort demo study: writes a synthetic CT study (N instances, default 50, 64x64 pixels; a
        test-range NHS number, no real patient) into DIR, reads every file back, prints it as the
        agent sees it, then sends it over DICOMweb to a receiver on loopback (STOW-RS), finds it
        (QIDO-RS) and fetches it back (WADO-RS).
        """

    /// `dump` prints a file's header as `consort dump` does (the one-study demo shows one).
    public static func run(_ args: [String], dump: (DICOMFile, _ name: String) -> Void) throws -> ExitCode {
        if args.first == "study" { return try study(Array(args.dropFirst()), dump: dump) }
        // Ctrl-C (or SIGTERM) stops every process the demo started.
        let signals = try SignalWatcher.arm()
        let arguments = try Arguments(args, command: "demo", flags: ["--keep"], options: ["--rules", "--dir"])
        if let stray = arguments.positional.first { throw UsageError(message: "unexpected argument \(stray) (consort demo study is the one-study demo)", command: "demo") }
        let rules = arguments.option("--rules") ?? "routing-rules"
        guard FileManager.default.fileExists(atPath: rules + "/consortium.rules") else {
            throw UsageError(message: "no consortium rules at \(rules) (give --rules DIR; the repository's routing-rules/)", command: "demo")
        }
        let folder = arguments.option("--dir") ?? NSTemporaryDirectory() + "consort-demo-\(getpid())"
        let demo = ConsortiumDemo(folder: folder, rules: rules, keep: arguments.flag("--keep"))
        let finished = LockedResult()
        let thread = Thread {
            let ok = (try? demo.run()) ?? false
            finished.set(ok)
        }
        thread.start()
        // Wait for the stories, or a stop.
        while finished.value == nil {
            if case .stop? = signals.next(timeout: 0.2) {
                standardOutput.line("Stopped: stopping every process the demo started.")
                demo.stopAll()
                return .someFailed
            }
        }
        let ok = finished.value ?? false
        if arguments.flag("--keep") {
            standardOutput.line("")
            standardOutput.line("Everything is still running. Explore, for example:")
            standardOutput.line("  consort queue --config \(folder)/rsch/agent.conf")
            standardOutput.line("  consort status --config \(folder)/esht/agent.conf")
            standardOutput.line("  consort queue list --all --config \(folder)/asph/agent.conf")
            standardOutput.line("  consort locate --nhs \"\(NHSNumber.testNumber(seed: 101).description)\" --config \(folder)/asph/agent.conf")
            standardOutput.line("  consort audit show \(folder)/uhsx/state/audit.log --nhs \(NHSNumber.testNumber(seed: 101).digits)")
            standardOutput.line("  logs: \(folder)/logs")
            standardOutput.line("Ctrl-C stops every process.")
            standardOutput.flush()
            while true {
                if case .stop? = signals.next() { break }
            }
        }
        demo.stopAll()
        if ok && arguments.option("--dir") == nil && !arguments.flag("--keep") { try? FileManager.default.removeItem(atPath: folder) }
        return ok ? .success : .someFailed
    }

    /// The network half: a DICOMweb receiver on loopback, the study sent to it (STOW-RS), then
    /// found (QIDO-RS) and fetched back (WADO-RS), as two trusts would do it (there over mutual TLS).
    static func exchange(_ paths: [String], studyUID: String, out: String) throws {
        let store = out + "/received"
        var configuration = ServerConfiguration()
        configuration.host = "127.0.0.1"
        let service = DICOMwebService(store: store, baseURL: "http://127.0.0.1", log: { _ in })
        let server = HTTPServer(configuration) { request, body in try service.handle(request, body) }
        try server.start()
        defer { server.stop() }
        let base = "http://127.0.0.1:\(server.port)/dicom-web"
        let client = try HTTPClient()
        let body = try MultipartFileBody(paths: paths)
        let answer = ByteCollector(limit: 16 << 20)
        let start = monotonicSeconds()
        let sent = try client.send(
            method: "POST", url: base + "/studies", headers: [("Content-Type", body.encoder.contentType())],
            body: { try body.read(into: $0) }, bodyLength: body.contentLength, sink: answer.append)
        let elapsed = monotonicSeconds() - start
        let response = try StowResponse.parse(answer.bytes)
        standardOutput.line("DICOMweb on loopback (between trusts the same runs over mutual TLS):")
        standardOutput.line(String(format: "  STOW-RS: sent %d instances (%.1f MB) in %.0f ms: HTTP %d, %d stored, %d refused",
            paths.count, Double(body.contentLength) / 1e6, elapsed * 1000, sent.status, response.stored.count, response.failed.count))
        let found = StudyFolder(root: store).studies(matching: StudyQuery(patientID: "RSCH0000001"))
        standardOutput.line("  QIDO-RS: PatientID=RSCH0000001 finds \(found.count) study: \(found.first.map { "\($0.studyDescription ?? "") (\($0.instanceCount) instances)" } ?? "none")")
        let back = try WadoRetrieval(out: out + "/fetched", study: studyUID, base: base).run(with: client)
        standardOutput.line("  WADO-RS: fetched \(back.response?.stored.count ?? 0) instances back into \(out)/fetched")
    }

    static func study(_ args: [String], dump: (DICOMFile, _ name: String) -> Void) throws -> ExitCode {
        let arguments = try Arguments(args, command: "demo study", flags: [], options: ["--out", "--instances", "--size"])
        if !arguments.positional.isEmpty {
            throw UsageError(message: "unexpected argument \(arguments.positional[0])", command: "demo study")
        }
        let count = try arguments.integer("--instances", default: 50, range: 1...10_000)
        let out = arguments.option("--out") ?? (NSTemporaryDirectory() + "consort-demo-\(getpid())")
        var study = SyntheticStudy()
        study.instances = count
        if let size = arguments.option("--size") { try study.setSize(size, command: "demo") }
        let folder = out + "/" + study.studyInstanceUID

        standardOutput.line("Consort demo: a synthetic study, written and read back by Consort's own DICOM code.")
        standardOutput.line("")
        let paths = try study.write(into: folder)
        standardOutput.line("Wrote \(paths.count) instances (written to a temporary name, fsynced, renamed) to")
        standardOutput.line("  \(folder)")
        standardOutput.line("")

        let start = monotonicSeconds()
        var files: [DICOMFile] = []
        for path in paths { files.append(try DICOMFile.read(path: path)) }
        let seconds = monotonicSeconds() - start
        let first = files[0].dataSet
        let nhs = first.sequence(DataDictionary.tag(forKeyword: "OtherPatientIDsSequence")!)?
            .first { $0.string(DataDictionary.tag(forKeyword: "IssuerOfPatientID")!) == "NHS" }?.string(.patientID)
        let rows: [(String, String)] = [
            ("Patient", first.string(.patientName) ?? "?"),
            ("NHS number", nhs.flatMap(NHSNumber.init).map { "\($0) (check digit valid)" } ?? "none"),
            ("Local patient ID", (first.string(.patientID) ?? "?") + " at " + (first.string("IssuerOfPatientID") ?? "?")),
            ("Study", (first.string("StudyDescription") ?? "?") + ", " + (first.string(.studyDate) ?? "?")),
            ("Modality / body part", (first.string(.modality) ?? "?") + " / " + (first.string("BodyPartExamined") ?? "?")),
            ("Study Instance UID", first.string(.studyInstanceUID) ?? "?"),
            ("Instances", "\(files.count), all read; each read stopped before its pixel data"),
        ]
        for (label, value) in rows { standardOutput.line("  " + label.padding(to: 22) + value) }
        standardOutput.line("")
        standardOutput.line("Header of the first instance (consort dump \(paths[0])):")
        dump(files[0], paths[0])
        standardOutput.line(String(format: "Read %d headers in %.1f ms (%.0f files/s, one thread).", files.count, seconds * 1000, Double(files.count) / seconds))
        standardOutput.line("")
        // Beside the study's folder, not in it: DIR keeps holding just the study.
        try exchange(paths, studyUID: study.studyInstanceUID, out: out + "-dicomweb")
        standardOutput.line("Next: consort dump --json \(folder) | head -1    (the canonical form, comparable with pydicom)")
        return .success
    }
}

/// A result one thread sets and another reads.
final class LockedResult: @unchecked Sendable {
    private let lock = NSLock()
    private var stored: Bool?
    func set(_ value: Bool) { lock.withLock { stored = value } }
    var value: Bool? { lock.withLock { stored } }
}
