import Foundation
import Testing

@testable import Workbench

/// The benchmarks' children are waited for with a deadline: one that hangs is killed and
/// reported, so a lost exit fails a benchmark rather than hanging it and the suite.
@Suite("child processes of the benchmarks")
struct ChildProcessTests {
    @Test func aChildThatIgnoresSIGTERMIsKilledAtTheDeadline() throws {
        let folder = try ScratchFolder()
        let child = try ChildProcess("/bin/sh", ["-c", "trap '' TERM; echo trapped; exec sleep 60"], stdout: folder.path + "/out", stderr: folder.path + "/err")
        // The signal only once the shell ignores it (it says so; sleep inherits the ignoring).
        let ready = Date().addingTimeInterval(10)
        while (try? String(contentsOfFile: folder.path + "/out", encoding: .utf8))?.contains("trapped") != true && Date() < ready { usleep(10_000) }
        let start = Date()
        let exit = child.stop(within: 0.5)
        let took = Date().timeIntervalSince(start)
        #expect(exit.timedOut && !exit.succeeded && exit.status == 128 + SIGKILL, "\(exit)")
        #expect(took >= 0.5 && took < 10, "\(took) s")
        #expect(!child.isRunning)
    }

    @Test func aChildThatEndsInTimeIsNotKilled() throws {
        let folder = try ScratchFolder()
        let quick = try ChildProcess("/bin/sh", ["-c", "exit 3"], stdout: folder.path + "/out", stderr: folder.path + "/err")
        let exit = quick.wait(within: 30)
        #expect(!exit.timedOut && exit.status == 3, "\(exit)")
        let stopped = try ChildProcess("/bin/sleep", ["60"], stdout: folder.path + "/out", stderr: folder.path + "/err")
        let ended = stopped.stop(within: 30)
        #expect(!ended.timedOut && ended.status == 128 + SIGTERM, "\(ended)")
    }

    /// The watchdog's wait (no polling): a child still running at the bound is killed and said
    /// to have timed out; one that ends first is not.
    @Test func theWatchdogKillsAChildPastItsBoundAndOnlyThen() throws {
        let folder = try ScratchFolder()
        let slow = try ChildProcess("/bin/sleep", ["60"], stdout: folder.path + "/out", stderr: folder.path + "/err")
        let killed = slow.wait(killingAfter: 0.5)
        #expect(killed.timedOut && killed.status == 128 + SIGKILL, "\(killed)")
        let quick = try ChildProcess("/bin/sh", ["-c", "exit 3"], stdout: folder.path + "/out", stderr: folder.path + "/err")
        let ended = quick.wait(killingAfter: 30)
        #expect(!ended.timedOut && ended.status == 3, "\(ended)")
    }
}
