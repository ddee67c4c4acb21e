import DICOM
import DICOMweb
import Dispatch
import Foundation
import HTTP
import Transport

/// The TLS options every transfer command shares: --cert, --key, --ca (mutual TLS), --crl.
enum TLSOptions {
    static let names: Set<String> = ["--cert", "--key", "--ca", "--crl"]
    static let help = """
          --cert FILE     this site's certificate chain (PEM), issued by the consortium CA
          --key FILE      its private key (PEM)
          --ca FILE       the consortium CA certificate: the only one peers are trusted by
          --crl FILE      a certificate revocation list to honour (optional)
        """

    /// nil when no TLS option was given; a usage error when only some were.
    static func configuration(_ arguments: Arguments) throws -> TLSConfiguration? {
        let cert = arguments.option("--cert"), key = arguments.option("--key"), ca = arguments.option("--ca")
        if cert == nil && key == nil && ca == nil { return nil }
        guard let cert, let key, let ca else {
            throw UsageError(message: "mutual TLS needs all of --cert, --key and --ca", command: arguments.command)
        }
        return TLSConfiguration(certificateChain: cert, privateKey: key, trustedCA: ca, revocationList: arguments.option("--crl"))
    }
}

/// `consort receive`: a standalone DICOMweb receiver over a folder, like DCMTK's storescp.
enum ReceiveCommand {
    static let help = """
        Usage: consort receive --listen ADDR:PORT --store DIR [--cert FILE --key FILE --ca FILE]

        Serves STOW-RS (POST .../studies) into DIR: each instance is checked (a readable DICOM
        file with valid UIDs), fsynced and moved atomically to DIR/<StudyUID>/<SOPInstanceUID>.dcm.
        An instance already held with the same bytes is acknowledged without a second copy. With
        --cert/--key/--ca, only peers with a certificate from the consortium CA are served, and
        each is named in the log by its certificate. Without them, plain HTTP on a loopback
        address only (a local PACS on the same host). Runs until SIGTERM or SIGINT, then lets
        transfers in flight finish (up to 10 s).

        Options:
          --listen ADDR:PORT   address to listen on (port 0: any free port, printed at start)
          --store DIR          where received instances go (staging in DIR/.staging)
          --max-connections N  connections served at once (default 64; more get 503)
        \(TLSOptions.help)
        """

    static func run(_ args: [String]) throws -> ExitCode {
        let arguments = try Arguments(args, command: "receive", flags: [], options: TLSOptions.names.union(["--listen", "--store", "--max-connections"]))
        guard let listen = arguments.option("--listen"), let store = arguments.option("--store") else {
            throw UsageError(message: "give --listen ADDR:PORT and --store DIR", command: "receive")
        }
        guard let colon = listen.lastIndex(of: ":"), let port = UInt16(listen[listen.index(after: colon)...]) else {
            throw UsageError(message: "--listen takes ADDR:PORT, e.g. 0.0.0.0:8443", command: "receive")
        }
        let host = String(listen[..<colon])
        var configuration = ServerConfiguration()
        configuration.host = host
        configuration.port = port
        configuration.maximumConnections = try arguments.integer("--max-connections", default: 64, range: 1...10_000)
        let tls = try TLSOptions.configuration(arguments)
        if let tls {
            configuration.tls = try TLSContext(tls, role: .server)
        } else if !host.hasPrefix("127.") {
            throw UsageError(message: "plain HTTP is for a local PACS on this host: listen on 127.0.0.1, or give --cert, --key and --ca", command: "receive")
        }
        let scheme = tls == nil ? "http" : "https"
        let log: @Sendable (String) -> Void = { standardError.line("consort receive: " + $0); standardError.flush() }
        let server = HTTPServer(configuration, log: log) { request, body in
            try handle(request, body, store: store, baseURL: "\(scheme)://\(host):\(port)", log: log)
        }
        try server.start()
        standardOutput.line("consort receive: listening on \(scheme)://\(host):\(server.port), storing into \(store)")
        standardOutput.flush()
        waitForTermination()
        log("stopping: no new connections; waiting up to 10 s for transfers in flight")
        server.stop(deadline: 10)
        return .success
    }

    static func handle(_ request: ServerRequest, _ body: RequestBody, store: String, baseURL: String, log: @Sendable (String) -> Void) throws -> ServerResponse {
        let path = request.head.target.split(separator: "?").first.map(String.init) ?? ""
        let who = request.peer?.commonName ?? request.remoteAddress
        guard request.head.method == "POST", path.hasSuffix("/studies") || path.contains("/studies/") else {
            if request.head.method == "GET" && path.contains("/studies") {
                return .text(501, "WADO-RS and QIDO-RS are not served yet")
            }
            return .text(404, "Not found: \(request.head.method) \(path)")
        }
        guard let type = request.head.value("Content-Type").flatMap(MediaType.init), type.type == "multipart/related",
            let boundary = type.parameters["boundary"]
        else {
            throw HTTPError(415, "STOW-RS takes multipart/related; type=\"application/dicom\" with a boundary")
        }
        if let partType = type.parameters["type"], partType.lowercased() != "application/dicom" {
            throw HTTPError(415, "Only application/dicom parts are accepted, not \(partType)")
        }
        let ingest: StowIngest
        do {
            ingest = try StowIngest(inbound: store, staging: store + "/.staging", boundary: boundary, baseURL: baseURL)
            while let piece = try body.next() { try ingest.consume(piece) }
            let response = try ingest.finish()
            for line in ingest.log { log("request \(request.id) from \(who): \(line)") }
            log("request \(request.id) from \(who): \(response.stored.count) stored, \(response.failed.count) refused")
            return ServerResponse(status: response.httpStatus, headers: [("Content-Type", "application/dicom+json")], body: response.json())
        } catch let error as StowError {
            throw HTTPError(error.status, error.message)
        }
    }

    /// Blocks until SIGTERM or SIGINT (systemd's stop, or Ctrl-C).
    static func waitForTermination() {
        let semaphore = DispatchSemaphore(value: 0)
        var sources: [DispatchSourceSignal] = []
        for sig in [SIGTERM, SIGINT] {
            signal(sig, SIG_IGN)
            let source = DispatchSource.makeSignalSource(signal: sig, queue: .global())
            source.setEventHandler { semaphore.signal() }
            source.resume()
            sources.append(source)
        }
        semaphore.wait()
        _ = sources
    }
}

/// `consort send`: STOW-RS from files to a DICOMweb server, like DCMTK's storescu.
enum SendCommand {
    static let help = """
        Usage: consort send BASE-URL FILE|DIR... [--cert FILE --key FILE --ca FILE] [--batch N]

        Sends DICOM files to BASE-URL/studies (STOW-RS), N instances a request (default 50),
        each streamed from disk. At the end, a line per instance that was not stored (with the
        server's reason), and a summary. Exit 0 only if every instance was stored.
        \(TLSOptions.help)
        """

    static func run(_ args: [String]) throws -> ExitCode {
        let arguments = try Arguments(args, command: "send", flags: [], options: TLSOptions.names.union(["--batch"]))
        guard arguments.positional.count >= 2 else { throw UsageError(message: "give the base URL and files or folders", command: "send") }
        let base = arguments.positional[0].hasSuffix("/") ? String(arguments.positional[0].dropLast()) : arguments.positional[0]
        guard base.hasPrefix("https://") || base.hasPrefix("http://") else {
            throw UsageError(message: "the base URL starts with https:// (or http:// for a local PACS)", command: "send")
        }
        let batchSize = try arguments.integer("--batch", default: 50, range: 1...10_000)
        let client = try HTTPClient(.init(tls: try TLSOptions.configuration(arguments)))
        let (inputs, problems) = FileWalker.expand(Array(arguments.positional.dropFirst()))
        for problem in problems { standardError.line("consort send: \(problem)") }
        // Each file's SOP Instance UID, from its header: how the answer's lines are matched.
        var files: [(path: String, uid: String)] = []
        var unreadable = problems.count
        for input in inputs {
            do {
                let file = try DICOMFile.read(path: input.path)
                files.append((input.path, file.dataSet.string(.sopInstanceUID) ?? ""))
            } catch {
                unreadable += 1
                standardError.line("consort send: \(input.name): not sent: \(error)")
            }
        }
        var delivered = 0, transient = 0, permanent = 0
        let interactive = standardError.isTerminal
        for start in stride(from: 0, to: files.count, by: batchSize) {
            let batch = Array(files[start..<min(start + batchSize, files.count)])
            let body = try MultipartFileBody(paths: batch.map(\.path))
            let answer = ByteCollector(limit: 16 << 20)
            var outcomes: [String: DeliveryClass] = [:]
            var reasons: [String: String] = [:]
            let result = Result { () throws(HTTPClientError) -> ClientResponse in
                try client.send(
                    method: "POST", url: base + "/studies",
                    headers: [("Content-Type", body.encoder.contentType()), ("Accept", "application/dicom+json")],
                    body: { try body.read(into: $0) }, bodyLength: body.contentLength, sink: answer.append)
            }
            switch result {
            case .success(let response):
                let parsed = (try? StowResponse.parse(answer.bytes)) ?? StowResponse()
                outcomes = DeliveryClassifier.outcomes(status: response.status, response: parsed, sent: batch.map(\.uid))
                for failure in parsed.failed { reasons[failure.sopInstanceUID] = String(format: "failure reason 0x%04X", failure.reason) }
                if !(200..<300).contains(response.status) {
                    let text = String(decoding: answer.bytes.prefix(300), as: UTF8.self).trimmingCharacters(in: .whitespacesAndNewlines)
                    for file in batch where reasons[file.uid] == nil { reasons[file.uid] = "HTTP \(response.status) \(text)" }
                }
            case .failure(let error):
                for file in batch {
                    outcomes[file.uid] = error.isTransient ? .transient : .permanent
                    reasons[file.uid] = error.description
                }
            }
            for file in batch {
                switch outcomes[file.uid] ?? .permanent {
                case .delivered: delivered += 1
                case .transient:
                    transient += 1
                    standardError.line("consort send: \(file.path) (\(file.uid)): not stored, worth retrying: \(reasons[file.uid] ?? "not reported")")
                case .permanent:
                    permanent += 1
                    standardError.line("consort send: \(file.path) (\(file.uid)): refused: \(reasons[file.uid] ?? "not reported")")
                }
            }
            if interactive {
                standardError.write("\rconsort send: \(min(start + batchSize, files.count)) of \(files.count) instances sent")
                standardError.flush()
            }
        }
        if interactive { standardError.line("") }
        standardOutput.line("consort send: \(delivered) stored, \(transient) to retry, \(permanent) refused, \(unreadable) unreadable, of \(files.count + unreadable)")
        return delivered == files.count && unreadable == 0 ? .success : .someFailed
    }
}

/// Keeps the first `limit` bytes of a response body (an error page, a STOW-RS answer).
final class ByteCollector {
    private(set) var bytes: [UInt8] = []
    let limit: Int
    init(limit: Int) { self.limit = limit }
    func append(_ piece: UnsafeRawBufferPointer) {
        if bytes.count < limit { bytes += piece.prefix(limit - bytes.count) }
    }
}
