import CommandSupport
import DICOM
import DIMSE
import Exchange
import Foundation
import Transport

/// `consort store AET@HOST:PORT FILE|DIR...`: send DICOM Part 10 files to a node by C-STORE over
/// DIMSE (like DCMTK's `storescu`), on one association, each data set as stored.
enum StoreCommand {
    static let help = """
        Usage: consort store AET@HOST:PORT FILE|DIR... [--calling-aet AET] [--timeout SECONDS]
                             [--associations N] [--json]
                             [--tls --cert FILE --key FILE --ca FILE [--crl FILE]]

        Sends the DICOM Part 10 files given (folders walked) to the node whose AE title is AET at
        HOST:PORT by C-STORE, on one association: one presentation context per SOP class and
        stored transfer syntax, each data set sent as it is stored, streamed from its file. For
        uncompressed little-endian files the other of implicit and explicit VR is proposed too,
        in a context of its own, and used (the data set converted as it is sent, values
        unchanged) only when the node refuses the stored one. Prints a line per file that did not succeed (the node's status in words)
        and a summary; with --json one line per file.
          --calling-aet AET  the AE title this side calls from (default CONSORT)
          --timeout S        seconds for each step: connect, each send, each answer (default 30)
          --associations N   N associations at once (1 to 16, default 1), the files shared
                             among them in turn
        \(EchoCommand.tlsHelp)
        Exit codes: 0 every file stored (a warning status counts as stored); 1 some file was
        not (unreadable, not Part 10, refused, not accepted), or the association failed; 2 usage.
        """

    static func run(_ args: [String]) throws -> ExitCode {
        let arguments = try Arguments(args, command: "store", flags: ["--json", "--tls"], options: EchoCommand.options.union(["--associations"]))
        guard arguments.positional.count >= 2 else { throw UsageError(message: "give the node as AET@HOST:PORT, then files or folders", command: "store") }
        let (node, calling, timeout) = try EchoCommand.common(arguments, defaultTimeout: 30, maximumTimeout: 3600)
        let tls = try EchoCommand.tls(arguments)
        let (files, problems) = FileWalker.expand(Array(arguments.positional.dropFirst()))
        var failed = problems.count
        for problem in problems { standardError.line("consort store: \(problem)") }
        var items: [DIMSEAssociation.StoreItem] = []
        for file in files {
            do { items.append(try DIMSESender.item(path: file.path)) } catch {
                standardError.line("consort store: \(error)")
                failed += 1
            }
        }
        guard !items.isEmpty else {
            standardError.line("consort store: nothing to send")
            return .someFailed
        }
        let target = "\(node.ae)@\(node.host):\(node.port)"
        let associations = try arguments.integer("--associations", default: 1, range: 1...16)
        let started = Date()
        // The files dealt out in turn, one association each share, all at once.
        let shares = (0..<min(associations, items.count)).map { share in stride(from: share, to: items.count, by: associations).map { items[$0] } }
        let answers = UncheckedBox([(results: [DIMSEAssociation.StoreResult], failure: String?)?](repeating: nil, count: shares.count))
        // A thread each (concurrentPerform would run no more at once than there are CPUs).
        let done = DispatchGroup()
        for index in shares.indices {
            done.enter()
            let share = shares[index]
            Thread.detachNewThread {
                defer { done.leave() }
                let answer: (results: [DIMSEAssociation.StoreResult], failure: String?)
                do {
                    answer = try DIMSEAssociation.store(share, host: node.host, port: node.port, called: node.ae, calling: calling, timeout: timeout, tls: tls)
                } catch {
                    answer = ([], "\(error)")
                }
                answers.lock.withLock { answers.value[index] = answer }
            }
        }
        done.wait()
        var results: [DIMSEAssociation.StoreResult] = []
        for (index, answer) in answers.value.enumerated() {
            guard let answer else { continue }
            results += answer.results
            if let broken = answer.failure {
                // What was answered before the association broke is said below; the rest was not sent.
                let share = shares[index].count
                standardError.line(answer.results.isEmpty && shares.count == 1
                    ? "consort store: \(target): \(broken)"
                    : "consort store: \(target): an association failed after \(answer.results.count) of its \(share) files: \(broken)")
                failed += share - answer.results.count
            }
        }
        var stored = 0
        var bytes = 0
        for result in results {
            let ok = result.status.map { Command.outcome(ofStoreStatus: $0).stored } ?? false
            if ok {
                stored += 1
                bytes += result.item.size
            } else {
                failed += 1
            }
            if arguments.flag("--json") {
                let object: [String: Any] = ["file": result.item.path, "sop": result.item.sopInstance, "status": result.status.map { Int($0) } ?? NSNull(), "result": result.reason]
                let data = (try? JSONSerialization.data(withJSONObject: object, options: [.sortedKeys])) ?? Data()
                standardOutput.line(String(decoding: data, as: UTF8.self))
            } else if !ok || result.status != 0 {
                standardOutput.line("\(result.item.path): \(result.reason)")
            }
        }
        let seconds = Date().timeIntervalSince(started)
        if !arguments.flag("--json") {
            standardOutput.line("\(stored) of \(stored + failed) stored at \(target) in " + String(format: "%.2f s (%.1f MB/s)", seconds, Double(bytes) / 1e6 / max(seconds, 1e-6)))
        }
        return failed == 0 ? .success : .someFailed
    }
}

/// A value the concurrent associations each write their own slot of, under its lock.
private final class UncheckedBox<T>: @unchecked Sendable {
    let lock = NSLock()
    var value: T
    init(_ value: T) { self.value = value }
}
