import CommandSupport
import DICOM
import DICOMweb
import Dispatch
import Exchange
import Foundation
import HTTP
import Platform
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

/// `--purpose P`, which the transfer commands send as the request's purpose: a Consort agent
/// refuses a request that names none (and records it in its audit log, as the asking trust's
/// own audit does).
enum PurposeOption {
    static let name = "--purpose"
    static let help = """
          --purpose P     why (an agreement's purpose: direct-care, emergency, mdt …), sent as
                          X-Consort-Purpose; a Consort agent refuses a request that names none.
                          Default direct-care: a person at the trust asking for a patient's care
        """

    static func headers(_ arguments: Arguments) throws -> [(String, String)] {
        let purpose = arguments.option(name) ?? "direct-care"
        guard !purpose.isEmpty, purpose.allSatisfy({ $0.isLetter || $0.isNumber || $0 == "-" || $0 == "_" }) else {
            throw UsageError(message: "--purpose takes a word such as direct-care, emergency or mdt, not \"\(purpose)\"", command: arguments.command)
        }
        return [(ConsortField.purpose, purpose)]
    }
}

/// `consort receive`: a standalone DICOMweb receiver over a folder, like DCMTK's storescp.
enum ReceiveCommand {
    static let help = """
        Usage: consort receive --listen ADDR:PORT --store DIR [--cert FILE --key FILE --ca FILE]
               consort receive --quarantined --store DIR

        Serves DICOMweb over DIR: STOW-RS (POST .../studies), WADO-RS (GET .../studies/UID: the
        study's instances, streamed from disk) and QIDO-RS (GET .../studies?PatientID=&StudyDate=
        FROM-TO&ModalitiesInStudy=&StudyInstanceUID=). Each received instance is staged in
        DIR/.staging, checked (a readable DICOM file with valid UIDs), made durable and linked
        atomically to DIR/<StudyUID>/<SOPInstanceUID>.dcm before it is acknowledged. Each is
        checked whole: a file cut short (inside its pixel data, or between two elements) is
        refused with where it ends. An instance already held with the same bytes is acknowledged
        without a second copy; one held with other bytes is refused (409, naming both SHA-256
        hashes), the held file left as it is and the newcomer kept aside in DIR/.quarantine for
        a person to decide, logged as an error. --quarantined lists those and exits. One receiver per
        DIR: at start it takes DIR/.staging/.lock and removes parts a killed run left there (and
        the staging folders of killed fetches; `consort fetch --out DIR` may run beside it). With
        --cert/--key/--ca, only peers with a certificate from the consortium CA are served, and
        each is named in the log by its certificate. Without them, plain HTTP on a loopback
        address only (a local PACS on the same host). Runs until SIGTERM or SIGINT, then lets
        transfers in flight finish (up to 10 s).

        Options:
          --listen ADDR:PORT   address to listen on (port 0: any free port, printed at start)
          --store DIR          where received instances go (staging in DIR/.staging)
          --max-connections N  connections served at once (default 64; more get 503)
          --quarantined        list the instances kept aside in DIR/.quarantine (conflicts), then exit
        \(TLSOptions.help)
        """

    static func run(_ args: [String]) throws -> ExitCode {
        // First of all: from here on a SIGTERM (systemd stopping us right after start) waits
        // for us in a pipe instead of being lost or killing us half set up.
        let signals = try SignalWatcher.arm()
        let arguments = try Arguments(args, command: "receive", flags: ["--quarantined"], options: TLSOptions.names.union(["--listen", "--store", "--max-connections"]))
        if arguments.flag("--quarantined") {
            guard let store = arguments.option("--store") else { throw UsageError(message: "give --store DIR", command: "receive") }
            return listQuarantine(store: store)
        }
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
        let claim = try StagingClaim(folder: store + "/.staging")
        if claim.removed > 0 {
            log("removed \(claim.removed) unfinished staged part\(claim.removed == 1 ? "" : "s") an earlier run left in \(claim.folder) (none was acknowledged)")
        }
        let quarantined = QuarantineFolder(store: store).entries()
        if !quarantined.isEmpty {
            log("error: \(quarantined.count) conflicting instance\(quarantined.count == 1 ? "" : "s") kept aside in \(store)/.quarantine await a decision (consort receive --quarantined --store \(store) lists them)")
        }
        let service = DICOMwebService(store: store, baseURL: "\(scheme)://\(host):\(port)", log: log)
        let server = HTTPServer(configuration, log: log) { request, body in try service.handle(request, body) }
        try server.start()
        standardOutput.line("consort receive: listening on \(scheme)://\(host):\(server.port), storing into \(store)")
        standardOutput.flush()
        let stopSignal = signals.waitForStop(onReload: { log("SIGHUP: nothing to reload (the receiver has no configuration); carrying on") })
        log("\(stopSignal == SIGINT ? "SIGINT" : "SIGTERM"): stopping: no new connections; waiting up to 10 s for transfers in flight")
        server.stop(deadline: 10)
        withExtendedLifetime(claim) {}  // the lock is held until here
        return .success
    }

    /// `--quarantined`: what waits for a person, with both hashes and the two paths to compare.
    static func listQuarantine(store: String) -> ExitCode {
        let entries = QuarantineFolder(store: store).entries(hashingHeldCopies: true)
        guard !entries.isEmpty else {
            standardOutput.line("No conflicting instances in \(store)/.quarantine.")
            return .success
        }
        let dates = DateFormatter()
        dates.dateFormat = "yyyy-MM-dd HH:mm"
        for entry in entries {
            standardOutput.line("\(dates.string(from: entry.received))  study \(entry.studyUID)  instance \(entry.sopInstanceUID)  \(entry.size) bytes")
            standardOutput.line("    received sha256 \(entry.receivedDigest)  \(entry.path)")
            standardOutput.line("    held     sha256 \(entry.heldDigest ?? "(the held copy is gone)")  \(entry.heldPath)")
        }
        standardOutput.line("\(entries.count) conflicting instance\(entries.count == 1 ? "" : "s") await a decision: keep the held copy (delete the quarantined one), or replace it by hand.")
        return .someFailed
    }
}

/// `consort send`: STOW-RS from files to a DICOMweb server, like DCMTK's storescu.
enum SendCommand {
    static let help = """
        Usage: consort send BASE-URL FILE|DIR... [--cert FILE --key FILE --ca FILE] [--batch N]
                            [--connections C] [--purpose P] [--verbose]

        Sends DICOM files to BASE-URL/studies (STOW-RS), N instances a request (default 50),
        each checked whole first (a file cut short is reported unreadable, with where it ends,
        and never sent),
        each streamed from disk, over C connections at once (default 4: while the server makes
        one batch durable, the others are on their way). A line per instance that was not
        stored (with the server's reason), with --verbose a line for every instance, and at the
        end a summary: stored, already present (the peer held the same instance before: a
        Consort receiver says so, and any server that answers "duplicate SOP instance"; others,
        such as Orthanc, list it as stored), to retry, refused, unreadable. On a terminal, how
        many have been sent so far. Exit 0 only if every instance is at the peer.
        \(TLSOptions.help)
        \(PurposeOption.help)
        """


    static func run(_ args: [String]) throws -> ExitCode {
        let arguments = try Arguments(args, command: "send", flags: ["--verbose"], options: TLSOptions.names.union(["--batch", "--connections", PurposeOption.name]))
        let purpose = try PurposeOption.headers(arguments)
        guard arguments.positional.count >= 2 else { throw UsageError(message: "give the base URL and files or folders", command: "send") }
        let base = arguments.positional[0].hasSuffix("/") ? String(arguments.positional[0].dropLast()) : arguments.positional[0]
        guard base.hasPrefix("https://") || base.hasPrefix("http://") else {
            throw UsageError(message: "the base URL starts with https:// (or http:// for a local PACS)", command: "send")
        }
        let batchSize = try arguments.integer("--batch", default: 50, range: 1...10_000)
        let connections = try arguments.integer("--connections", default: 4, range: 1...16)
        let tls = try TLSOptions.configuration(arguments)
        let (inputs, problems) = FileWalker.expand(Array(arguments.positional.dropFirst()))
        for problem in problems { standardError.line("consort send: \(problem)") }
        // Batches of paths; each sending thread reads its batch's headers itself (for the SOP
        // Instance UIDs the answer is matched by), so the first request leaves at once instead
        // of after a scan of every file.
        let batches = stride(from: 0, to: inputs.count, by: batchSize).map { Array(inputs[$0..<min($0 + batchSize, inputs.count)]) }
        // One client (one curl handle, one kept-alive connection) per sending thread; made here
        // so that a bad certificate or key is reported once, before anything is sent.
        let clients = try (0..<max(1, min(connections, batches.count))).map { _ in SendingClient(try HTTPClient(.init(tls: tls))) }
        let tally = SendTally(batches: batches, total: inputs.count, interactive: standardError.isTerminal, verbose: arguments.flag("--verbose"))
        let done = DispatchSemaphore(value: 0)
        for client in clients {
            Thread {
                while let files = tally.nextBatch() {
                    let (batch, unreadable) = identify(files)
                    tally.recordUnreadable(unreadable)
                    if !batch.isEmpty { tally.record(StowSender.deliver(batch, to: base, with: client.client, headers: purpose)) }
                }
                done.signal()
            }.start()
        }
        for _ in clients { done.wait() }
        tally.finishProgress()
        let counts = tally.counts
        let total = inputs.count + problems.count
        standardOutput.line(
            "consort send: \(counts.stored) stored, \(counts.alreadyPresent) already present, \(counts.transient) to retry, "
                + "\(counts.permanent) refused, \(counts.unreadable + problems.count) unreadable, of \(total)")
        return counts.stored + counts.alreadyPresent == total ? .success : .someFailed
    }

    /// Each file's SOP Instance UID (files not whole, readable DICOM reported apart).
    static func identify(_ files: [InputFile]) -> (instances: [OutgoingInstance], unreadable: [String]) {
        let names = Dictionary(files.map { ($0.path, $0.name) }, uniquingKeysWith: { a, _ in a })
        let (instances, unreadable) = StowSender.identify(files.map(\.path))
        return (instances, unreadable.map { "consort send: \(names[$0.path] ?? $0.path): not sent: \($0.reason)" })
    }

    /// An HTTPClient handed to exactly one sending thread, which is its only user.
    final class SendingClient: @unchecked Sendable {
        let client: HTTPClient
        init(_ client: HTTPClient) { self.client = client }
    }

    /// The batches still to send and what became of those sent, shared by the sending threads.
    final class SendTally: @unchecked Sendable {
        struct Counts { var stored = 0, alreadyPresent = 0, transient = 0, permanent = 0, unreadable = 0 }
        private let lock = PthreadMutex()
        private let batches: [[InputFile]]
        private var next = 0
        private var counted = Counts()
        private let total: Int
        private let interactive: Bool
        private let verbose: Bool

        init(batches: [[InputFile]], total: Int, interactive: Bool, verbose: Bool) {
            self.batches = batches
            self.total = total
            self.interactive = interactive
            self.verbose = verbose
        }

        func nextBatch() -> [InputFile]? {
            lock.locked {
                guard next < batches.count else { return nil }
                next += 1
                return batches[next - 1]
            }
        }

        func record(_ outcomes: [InstanceOutcome]) {
            lock.locked {
                if interactive { standardError.write("\r\u{1B}[K") }  // clear the progress line
                for outcome in outcomes {
                    let file = outcome.instance
                    switch outcome.delivery {
                    case .delivered where outcome.alreadyPresent:
                        counted.alreadyPresent += 1
                        if verbose { standardError.line("consort send: \(file.path) (\(file.uid)): already present") }
                    case .delivered:
                        counted.stored += 1
                        if verbose { standardError.line("consort send: \(file.path) (\(file.uid)): stored") }
                    // As the agent classifies the same answer (`FailureClassifier`).
                    case .failed(.transient):
                        counted.transient += 1
                        standardError.line("consort send: \(file.path) (\(file.uid)): not stored, worth retrying: \(outcome.reason ?? "not reported")")
                    case .failed(.configuration):
                        counted.transient += 1
                        standardError.line("consort send: \(file.path) (\(file.uid)): not stored, a configuration fault (a certificate, membership or agreement; retry once it is fixed): \(outcome.reason ?? "not reported")")
                    case .failed(.local):
                        counted.unreadable += 1
                        standardError.line("consort send: \(file.path) (\(file.uid)): not sent: \(outcome.reason ?? "not reported")")
                    case .failed(.refused):
                        counted.permanent += 1
                        standardError.line("consort send: \(file.path) (\(file.uid)): refused: \(outcome.reason ?? "not reported")")
                    }
                }
                if interactive {
                    let sent = counted.stored + counted.alreadyPresent + counted.transient + counted.permanent + counted.unreadable
                    standardError.write("consort send: \(sent) of \(total) instances sent")
                    standardError.flush()
                }
            }
        }

        func recordUnreadable(_ lines: [String]) {
            guard !lines.isEmpty else { return }
            lock.locked {
                counted.unreadable += lines.count
                if interactive { standardError.write("\r\u{1B}[K") }  // clear the progress line
                for line in lines { standardError.line(line) }
            }
        }

        func finishProgress() {
            if interactive { standardError.line("") }
        }

        var counts: Counts { lock.locked { counted } }
    }
}

/// `consort fetch`: WADO-RS retrieval of a study into a folder.
enum FetchCommand {
    static let help = """
        Usage: consort fetch BASE-URL STUDY-UID --out DIR [--cert FILE --key FILE --ca FILE]
                             [--purpose P]

        Retrieves a study (WADO-RS) into DIR/<StudyUID>/<SOPInstanceUID>.dcm, streamed: each
        part is written to a folder of its own in DIR/.staging as it arrives, checked (readable
        DICOM, of the study asked for) and moved into place atomically. DIR may be a store a
        receiver serves. On a terminal, the MB received so far; at the end, how many instances
        were stored, already present (the same bytes were there) and refused (with reasons).
        Exit 0 when every part was stored or already present.
        \(TLSOptions.help)
        \(PurposeOption.help)
        """

    static func run(_ args: [String]) throws -> ExitCode {
        let arguments = try Arguments(args, command: "fetch", flags: [], options: TLSOptions.names.union(["--out", PurposeOption.name]))
        guard arguments.positional.count == 2, let out = arguments.option("--out") else {
            throw UsageError(message: "give the base URL, the Study Instance UID and --out DIR", command: "fetch")
        }
        let base = arguments.positional[0].hasSuffix("/") ? String(arguments.positional[0].dropLast()) : arguments.positional[0]
        let study = arguments.positional[1]
        guard UID.isValid(study) else { throw UsageError(message: "\"\(study)\" is not a UID", command: "fetch") }
        let client = try HTTPClient(.init(tls: try TLSOptions.configuration(arguments)))
        let retrieval = try WadoRetrieval(out: out, study: study, base: base)
        retrieval.headers = try PurposeOption.headers(arguments)
        // On a terminal, the MB received so far, a few times a second.
        let started = monotonicSeconds()
        var shown = 0.0
        if standardError.isTerminal {
            retrieval.progress = { received in
                let now = monotonicSeconds()
                guard now - shown >= 0.25 else { return }
                shown = now
                let megabytes = Double(received) / 1e6
                standardError.write(String(format: "\r\u{1B}[Kconsort fetch: %.0f MB received (%.0f MB/s)", megabytes, megabytes / max(now - started, 0.001)))
                standardError.flush()
            }
        }
        let outcome: WadoRetrieval.Outcome
        do {
            outcome = try retrieval.run(with: client)
        } catch let error as HTTPError {
            if shown > 0 { standardError.write("\r\u{1B}[K") }
            standardError.line("consort fetch: the answer broke off: \(error.message); nothing partial was kept")
            return .someFailed
        } catch {
            if shown > 0 { standardError.write("\r\u{1B}[K") }
            standardError.line("consort fetch: \(error)")
            return .someFailed
        }
        if shown > 0 { standardError.write("\r\u{1B}[K") }
        guard outcome.status == 200, let result = outcome.response, let ingest = outcome.ingest else {
            standardError.line("consort fetch: \(base)/studies/\(study): HTTP \(outcome.status) \(outcome.errorText)")
            return .someFailed
        }
        for result in ingest.results {
            switch result {
            case .refused(let sop, _, let why), .conflict(let sop, let why), .notAdmitted(let sop, let why): standardError.line("consort fetch: refused \(sop): \(why)")
            case .stored, .alreadyHeld: break
            }
        }
        let held = result.stored.filter(\.alreadyHeld).count
        standardOutput.line(
            "consort fetch: \(result.stored.count - held) instances stored in \(out)/\(study), \(held) already present, \(result.failed.count) refused")
        return result.failed.isEmpty && !result.stored.isEmpty ? .success : .someFailed
    }
}

/// `consort find`: QIDO-RS study search.
enum FindCommand {
    static let help = """
        Usage: consort find BASE-URL [--patient-id ID] [--study-uid UID] [--date FROM-TO]
                            [--modality M] [--json] [--cert FILE --key FILE --ca FILE]
                            [--purpose P]

        Asks a DICOMweb server which studies it holds (QIDO-RS) and prints a table, or with
        --json one JSON line per study. --date takes YYYYMMDD or FROM-TO (either side may be empty).
        \(TLSOptions.help)
        \(PurposeOption.help)
        """

    static func run(_ args: [String]) throws -> ExitCode {
        let arguments = try Arguments(args, command: "find", flags: ["--json"], options: TLSOptions.names.union(["--patient-id", "--study-uid", "--date", "--modality", PurposeOption.name]))
        let purpose = try PurposeOption.headers(arguments)
        guard arguments.positional.count == 1 else { throw UsageError(message: "give the base URL", command: "find") }
        let base = arguments.positional[0].hasSuffix("/") ? String(arguments.positional[0].dropLast()) : arguments.positional[0]
        var query = StudyQuery(patientID: arguments.option("--patient-id"), studyInstanceUIDs: arguments.option("--study-uid").map { [$0] }, modality: arguments.option("--modality"))
        if let date = arguments.option("--date") {
            let parts = date.split(separator: "-", omittingEmptySubsequences: false).map(String.init)
            guard parts.count <= 2, parts.allSatisfy({ $0.isEmpty || DICOMDate($0) != nil }) else {
                throw UsageError(message: "--date takes YYYYMMDD or FROM-TO, e.g. 20240101-20241231", command: "find")
            }
            query.dateFrom = parts[0].isEmpty ? nil : parts[0]
            query.dateTo = parts.count == 2 ? (parts[1].isEmpty ? nil : parts[1]) : parts[0]
        }
        let client = try HTTPClient(.init(tls: try TLSOptions.configuration(arguments)))
        let answer = ByteCollector(limit: 64 << 20)
        let url = "\(base)/studies" + (query.queryString.isEmpty ? "" : "?" + query.queryString)
        let response: ClientResponse
        do {
            response = try client.send(method: "GET", url: url, headers: [("Accept", "application/dicom+json")] + purpose, sink: answer.append)
        } catch {
            standardError.line("consort find: \(error)")
            return .someFailed
        }
        guard response.status == 200 || response.status == 204 else {
            standardError.line("consort find: \(url): HTTP \(response.status) \(String(decoding: answer.bytes.prefix(300), as: UTF8.self))")
            return .someFailed
        }
        let studies: [StudySummary]
        do { studies = try StudySummary.parse(answer.bytes) } catch {
            standardError.line("consort find: \(error)")
            return .someFailed
        }
        if arguments.flag("--json") {
            for study in studies {
                let data = (try? JSONSerialization.data(withJSONObject: study.json, options: [.sortedKeys])) ?? Data()
                standardOutput.line(String(decoding: data, as: UTF8.self))
            }
        } else {
            standardOutput.line("Date      Patient ID      Modalities  Series  Inst.  Description                     Study Instance UID")
            for s in studies {
                standardOutput.line((s.studyDate ?? "").padding(to: 10) + (s.patientID ?? "").padding(to: 16) + s.modalities.joined(separator: ",").padding(to: 12)
                    + String(s.seriesCount).padding(to: 8) + String(s.instanceCount).padding(to: 7) + String((s.studyDescription ?? "").prefix(30)).padding(to: 32) + s.studyInstanceUID)
            }
            standardOutput.line("\(studies.count) stud\(studies.count == 1 ? "y" : "ies")")
        }
        return .success
    }
}
