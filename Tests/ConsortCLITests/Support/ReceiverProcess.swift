import Foundation
import TestSupport

/// A running `consort receive` (the binary) on a free loopback port, with mutual TLS when given a
/// PKI. Its log is drained as it runs (a full pipe would stall it) and handed back by `stop()`.
final class ReceiverProcess {
    let process = Process()
    let port: Int
    let store: String
    let tls: Bool
    private let errors = Pipe()
    private let log = LockedBytes()

    /// `launcher`: a command the receiver runs under (its arguments follow), with `environment`
    /// added to the inherited one; e.g. a shell that mounts a small filesystem first.
    init(store: String, pki: TestPKI? = nil, launcher: [String] = [], environment: [String: String] = [:]) throws {
        self.store = store
        tls = pki != nil
        let command = [Run.consort, "receive", "--listen", "127.0.0.1:0", "--store", store]
            + (pki.map { ["--cert", $0.serverCertificate, "--key", $0.serverKey, "--ca", $0.ca] } ?? [])
        let full = launcher + command
        process.executableURL = URL(fileURLWithPath: full[0])
        process.arguments = Array(full.dropFirst())
        if !environment.isEmpty { process.environment = ProcessInfo.processInfo.environment.merging(environment) { $1 } }
        let output = Pipe()
        process.standardOutput = output
        process.standardError = errors
        try process.run()
        let sink = log
        errors.fileHandleForReading.readabilityHandler = { handle in sink.append(handle.availableData) }
        // The first line says where it listens (port 0: the kernel chose).
        var line = Data()
        while !line.contains(0x0A) {
            let chunk = output.fileHandleForReading.availableData
            if chunk.isEmpty { break }
            line += chunk
        }
        let text = String(decoding: line, as: UTF8.self)
        guard let range = text.range(of: #"127\.0\.0\.1:(\d+)"#, options: .regularExpression),
            let port = Int(text[range].split(separator: ":").last!)
        else { throw CocoaError(.fileReadUnknown, userInfo: [NSLocalizedDescriptionKey: "receive did not start: \(text)"]) }
        self.port = port
    }

    var url: String { tls ? "https://localhost:\(port)" : "http://127.0.0.1:\(port)" }

    /// SIGTERM, then the exit status and everything it logged.
    func stop() -> (status: Int32, log: String) {
        if process.isRunning { process.terminate() }
        process.waitUntilExit()
        errors.fileHandleForReading.readabilityHandler = nil
        log.append(errors.fileHandleForReading.readDataToEndOfFile())
        return (process.terminationStatus, log.text)
    }

    deinit { if process.isRunning { process.terminate() } }
}

/// Bytes appended from another thread.
final class LockedBytes: @unchecked Sendable {
    private let lock = NSLock()
    private var data = Data()
    func append(_ more: Data) { lock.withLock { data += more } }
    var text: String { lock.withLock { String(decoding: data, as: UTF8.self) } }
}
