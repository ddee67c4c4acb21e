import Foundation

/// What a finished program said (shared by the test targets that run real programs:
/// the consort binary, curl, openssl, pydicom, DCMTK).
public struct ProgramOutcome: Sendable {
    public let status: Int32
    public let stdout: String
    public let stderr: String
    /// Killed by a signal (a crash), not an exit.
    public let crashed: Bool
    /// Did not finish within its time limit (it was terminated).
    public let timedOut: Bool
}

/// Runs a program to completion, draining both pipes while it runs (a chatty program cannot
/// block on a full pipe), and ends it after `timeout` seconds (SIGTERM, then SIGKILL 5 s later):
/// a hang is a failure, not a stuck suite.
public func runProgram(_ path: String, _ arguments: [String], timeout: TimeInterval = 300) throws -> ProgramOutcome {
    let process = Process()
    process.executableURL = URL(fileURLWithPath: path)
    process.arguments = arguments
    let out = Pipe(), err = Pipe()
    process.standardOutput = out
    process.standardError = err
    process.standardInput = FileHandle.nullDevice
    try process.run()
    nonisolated(unsafe) var outData = Data(), errData = Data()
    let group = DispatchGroup()
    group.enter()
    DispatchQueue.global().async {
        outData = out.fileHandleForReading.readDataToEndOfFile()
        group.leave()
    }
    group.enter()
    DispatchQueue.global().async {
        errData = err.fileHandleForReading.readDataToEndOfFile()
        group.leave()
    }
    let timedOut = group.wait(timeout: .now() + timeout) == .timedOut
    if timedOut {
        // SIGTERM, a few seconds to go, then SIGKILL: never an unbounded wait.
        process.terminate()
        let deadline = Date().addingTimeInterval(5)
        while process.isRunning && Date() < deadline { Thread.sleep(forTimeInterval: 0.02) }
        if process.isRunning { kill(process.processIdentifier, SIGKILL) }
        _ = group.wait(timeout: .now() + 5)
    }
    process.waitUntilExit()  // it has exited, or SIGKILL is on its way
    return ProgramOutcome(
        status: process.terminationStatus, stdout: String(decoding: outData, as: UTF8.self),
        stderr: String(decoding: errData, as: UTF8.self), crashed: process.terminationReason == .uncaughtSignal,
        timedOut: timedOut)
}
