import CommandSupport
import DIMSE
import Foundation
import Transport

/// `consort echo AET@HOST:PORT`: is a DICOM node there and willing to talk to us (like DCMTK's
/// `echoscu`)? An association, a C-ECHO, a release; every step under the timeout.
enum EchoCommand {
    static let help = """
        Usage: consort echo AET@HOST:PORT [--calling-aet AET] [--timeout SECONDS] [--json]
                            [--tls --cert FILE --key FILE --ca FILE [--crl FILE]]

        Opens a DIMSE association to the node whose AE title is AET at HOST:PORT, asks a C-ECHO
        (the Verification service, PS3.7 §9.1.5) and releases it. Prints the round trip, or why
        the node would not answer: refused connection, a rejected association (and the reason
        the node gave: calling or called AE title not recognised, ...), a timeout.
          --calling-aet AET  the AE title this side calls from (default CONSORT)
          --timeout S        seconds for each step: connect, each answer (default 10; 0.1 ... 600)
        \(tlsHelp)
        Exit codes: 0 the node answered success; 1 it did not (refused, rejected, timed out,
        or a status other than success); 2 usage.
        """

    static let tlsHelp = """
          --tls              DICOM TLS (PS3.15 B.1, TLS 1.2 or later): this side presents
                             --cert and --key; the node's certificate must be issued by --ca
                             (and not revoked in --crl) and name HOST
          --cert FILE, --key FILE, --ca FILE, --crl FILE   as for consort send
        """
    static let options: Set<String> = ["--calling-aet", "--timeout", "--cert", "--key", "--ca", "--crl"]

    /// `--tls` and the certificates: a client context, or nil without --tls.
    static func tls(_ arguments: Arguments) throws -> TLSContext? {
        let configuration = try TLSOptions.configuration(arguments)
        guard arguments.flag("--tls") else {
            if configuration != nil { throw UsageError(message: "--cert, --key and --ca are for --tls: add it, or leave them out", command: arguments.command) }
            return nil
        }
        guard let configuration else { throw UsageError(message: "--tls needs --cert, --key and --ca", command: arguments.command) }
        do { return try TLSContext(configuration, role: .client) } catch {
            throw UsageError(message: "cannot set up TLS: \(error)", command: arguments.command)
        }
    }

    /// What `echo` and `store` share: the node (the first argument), --calling-aet, --timeout.
    static func common(_ arguments: Arguments, defaultTimeout: Double, maximumTimeout: Double) throws -> (node: DIMSENode, calling: String, timeout: Double) {
        guard let first = arguments.positional.first, let node = DIMSENode(first) else {
            throw UsageError(message: "give the node as AET@HOST:PORT (an AE title of 1 to 16 characters, no backslash)", command: arguments.command)
        }
        let calling = arguments.option("--calling-aet") ?? "CONSORT"
        guard AETitle.isValid(calling) else {
            throw UsageError(message: "--calling-aet \(calling) is not an AE title (1 to 16 characters, no backslash)", command: arguments.command)
        }
        let timeoutText = arguments.option("--timeout") ?? String(Int(defaultTimeout))
        guard let timeout = Double(timeoutText), (0.1...maximumTimeout).contains(timeout) else {
            throw UsageError(message: "--timeout \(timeoutText): give seconds from 0.1 to \(Int(maximumTimeout))", command: arguments.command)
        }
        return (node, calling, timeout)
    }

    static func run(_ args: [String]) throws -> ExitCode {
        let arguments = try Arguments(args, command: "echo", flags: ["--json", "--tls"], options: options)
        guard arguments.positional.count == 1 else { throw UsageError(message: "give one node, as AET@HOST:PORT", command: "echo") }
        let (node, calling, timeout) = try common(arguments, defaultTimeout: 10, maximumTimeout: 600)
        let tls = try tls(arguments)
        let target = "\(node.ae)@\(node.host):\(node.port)"
        let started = Date()
        do {
            let status = try DIMSEAssociation.echo(host: node.host, port: node.port, called: node.ae, calling: calling, timeout: timeout, tls: tls)
            let milliseconds = Date().timeIntervalSince(started) * 1000
            if arguments.flag("--json") {
                standardOutput.line("{\"node\":\"\(target)\",\"status\":\(status),\"milliseconds\":\(String(format: "%.1f", milliseconds))}")
            } else {
                standardOutput.line("C-ECHO \(target) as \(calling): " + (status == 0 ? "success" : "status 0x" + String(status, radix: 16, uppercase: true)) + String(format: " in %.1f ms", milliseconds))
            }
            return status == 0 ? .success : .someFailed
        } catch {
            standardError.line("consort echo: \(target): \(error)")
            return .someFailed
        }
    }
}
