import Foundation

/// Why a wait on a child process gave up: what it waited for, for how long, and what the child
/// had said by then — the message a failing test prints.
public struct ChildWaitError: Error, CustomStringConvertible {
    public let description: String
    public init(description: String) { self.description = description }
}

/// A program started by a test that keeps running beside it (a receiver, an agent, Orthanc),
/// with its output collected as it comes (a full pipe would stall it).
///
/// Every wait has a deadline: a child that does not say what is expected in time, or does not
/// exit when asked, is killed, and the wait throws with what it was waiting for and the child's
/// log. One lost signal or one hung child fails one test; it never hangs the suite.
public final class RunningProgram: @unchecked Sendable {
    public let process = Process()
    public let command: [String]
    private let output = LockedBytes()
    private let errors = LockedBytes()
    private let outPipe = Pipe(), errPipe = Pipe()
    private var reaped: (status: Int32, signalled: Bool)?

    /// `environment` is added to the inherited one.
    public init(_ command: [String], environment: [String: String] = [:], standardInput: FileHandle? = nil) throws {
        self.command = command
        process.executableURL = URL(fileURLWithPath: command[0])
        process.arguments = Array(command.dropFirst())
        if !environment.isEmpty { process.environment = ProcessInfo.processInfo.environment.merging(environment) { $1 } }
        process.standardOutput = outPipe
        process.standardError = errPipe
        process.standardInput = standardInput ?? FileHandle.nullDevice
        let out = output, err = errors
        outPipe.fileHandleForReading.readabilityHandler = { out.append($0.availableData) }
        errPipe.fileHandleForReading.readabilityHandler = { err.append($0.availableData) }
        try process.run()
    }

    public var pid: Int32 { process.processIdentifier }
    public var standardOutput: String { output.text }
    public var standardError: String { errors.text }
    /// Both streams, for a failure message.
    public var log: String {
        "\(command.map { ($0 as NSString).lastPathComponent }.prefix(2).joined(separator: " ")) (pid \(pid))\n--- stdout ---\n\(output.text)\n--- stderr ---\n\(errors.text)"
    }

    /// Polls until `condition` holds, up to `timeout` seconds; past it, kills the child and
    /// throws, naming `what` was awaited and quoting the child's log.
    public func waitFor(_ what: String, within timeout: TimeInterval, _ condition: () -> Bool) throws {
        let deadline = Date().addingTimeInterval(timeout)
        while !condition() {
            if !process.isRunning, !condition() {
                throw ChildWaitError(description: "waiting for \(what): the child exited (status \(process.terminationStatus)) first\n\(log)")
            }
            if Date() > deadline {
                kill()
                throw ChildWaitError(description: "waiting for \(what): nothing after \(timeout) s; the child was killed\n\(log)")
            }
            Thread.sleep(forTimeInterval: 0.01)
        }
    }

    /// The first match of `pattern` (a regular expression) in standard output, waiting for it.
    public func waitForOutput(matching pattern: String, within timeout: TimeInterval = 30) throws -> String {
        var found: String?
        try waitFor("a line of standard output matching /\(pattern)/", within: timeout) {
            let text = output.text
            if let range = text.range(of: pattern, options: .regularExpression) { found = String(text[range]) }
            return found != nil
        }
        return found!
    }

    /// Waits for the child to exit by itself; past `timeout`, SIGKILL and throw with the log.
    @discardableResult
    public func waitForExit(within timeout: TimeInterval) throws -> (status: Int32, signalled: Bool) {
        let deadline = Date().addingTimeInterval(timeout)
        while process.isRunning {
            if Date() > deadline {
                kill()
                throw ChildWaitError(description: "waiting for the child to exit: still running after \(timeout) s; it was killed\n\(log)")
            }
            Thread.sleep(forTimeInterval: 0.01)
        }
        return reap()
    }

    /// SIGTERM, then waits for the exit (SIGKILL and throw past `timeout`).
    @discardableResult
    public func stop(within timeout: TimeInterval = 20) throws -> (status: Int32, signalled: Bool) {
        if process.isRunning { signal(SIGTERM) }
        return try waitForExit(within: timeout)
    }

    public func signal(_ number: Int32) { if process.isRunning { Foundation.kill(pid, number) } }

    /// SIGKILL and reap; never waits for long (a killed process goes).
    public func kill() {
        if process.isRunning { Foundation.kill(pid, SIGKILL) }
        let deadline = Date().addingTimeInterval(10)
        while process.isRunning && Date() < deadline { Thread.sleep(forTimeInterval: 0.01) }
        if !process.isRunning { _ = reap() }
    }

    private func reap() -> (status: Int32, signalled: Bool) {
        if let reaped { return reaped }
        process.waitUntilExit()  // returns at once: the process is no longer running
        // Whatever was still in the pipes.
        outPipe.fileHandleForReading.readabilityHandler = nil
        errPipe.fileHandleForReading.readabilityHandler = nil
        output.append(outPipe.fileHandleForReading.readDataToEndOfFileWithin(seconds: 5))
        errors.append(errPipe.fileHandleForReading.readDataToEndOfFileWithin(seconds: 5))
        let result = (process.terminationStatus, process.terminationReason == .uncaughtSignal)
        reaped = result
        return result
    }

    deinit { kill() }
}

extension FileHandle {
    /// What is left to read, up to end of file or `seconds` (a grandchild holding the pipe's
    /// write end open must not block the reader for ever).
    func readDataToEndOfFileWithin(seconds: Double) -> Data {
        let fd = fileDescriptor
        let flags = fcntl(fd, F_GETFL)
        _ = fcntl(fd, F_SETFL, flags | O_NONBLOCK)
        var data = Data()
        let deadline = Date().addingTimeInterval(seconds)
        var buffer = [UInt8](repeating: 0, count: 65536)
        while Date() < deadline {
            let n = Glibc.read(fd, &buffer, buffer.count)
            if n > 0 { data.append(contentsOf: buffer[0..<n]); continue }
            if n == 0 { break }
            if errno != EAGAIN && errno != EINTR { break }
            var poller = pollfd(fd: fd, events: Int16(POLLIN), revents: 0)
            _ = poll(&poller, 1, 50)
        }
        return data
    }
}

/// Bytes appended from another thread.
public final class LockedBytes: @unchecked Sendable {
    private let lock = NSLock()
    private var data = Data()
    public init() {}
    public func append(_ more: Data) { lock.withLock { data += more } }
    public var text: String { lock.withLock { String(decoding: data, as: UTF8.self) } }
}
