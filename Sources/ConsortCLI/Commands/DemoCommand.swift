import DICOM
import DICOMweb
import Exchange
import Foundation
import Routing
import Transport

/// `consort demo`: shows what is there so far, on this machine, in seconds: makes a synthetic
/// study with our writer, reads it back with our reader, prints what a PACS manager would look at.
/// (It will grow into the whole consortium on loopback as the agent and coordinator arrive.)
enum DemoCommand {
    static let help = """
        Usage: consort demo [--out DIR] [--instances N] [--size ROWSxCOLUMNS]

        Writes a synthetic CT study (N instances, default 50, 64x64 pixels; a test-range NHS
        number, no real patient) into DIR (default: a new folder under /tmp), reads every file
        back, and prints the study as the agent will see it, one file's header, and how fast the
        headers were read. Then sends it over DICOMweb to a receiver on loopback (STOW-RS),
        finds it there (QIDO-RS) and fetches it back (WADO-RS). --size makes larger images (e.g. 512x512, CT-sized) for benchmarks.

        """

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

    static func run(_ args: [String]) throws -> ExitCode {
        let arguments = try Arguments(args, command: "demo", flags: [], options: ["--out", "--instances", "--size"])
        if !arguments.positional.isEmpty {
            throw UsageError(message: "unexpected argument \(arguments.positional[0])", command: "demo")
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
        HumanDump.write(files[0], name: paths[0], width: 64, warnings: true)
        standardOutput.line(String(format: "Read %d headers in %.1f ms (%.0f files/s, one thread).", files.count, seconds * 1000, Double(files.count) / seconds))
        standardOutput.line("")
        // Beside the study's folder, not in it: DIR keeps holding just the study.
        try exchange(paths, studyUID: study.studyInstanceUID, out: out + "-dicomweb")
        standardOutput.line("Next: consort dump --json \(folder) | head -1    (the canonical form, comparable with pydicom)")
        return .success
    }
}
