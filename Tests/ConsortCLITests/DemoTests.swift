import Foundation
import TestSupport
import Testing

/// `consort demo` (issue 13), as the README's first command runs it: the whole consortium on
/// loopback, four stories, each checked by the demo from the receivers' files; here the test
/// checks the demo's verdict, its exit status, and that it left no process behind.
@Suite("consort demo", .serialized, .timeLimit(.minutes(5)))
struct DemoTests {
    @Test func theConsortiumDemoPlaysEveryStoryAndCleansUp() throws {
        let repository = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent().path
        let scratch = try ScratchFolder()
        let folder = scratch.path + "/demo"
        let outcome = try Run.program(Run.consort, ["demo", "--rules", repository + "/routing-rules", "--dir", folder], timeout: 240)
        #expect(outcome.status == 0, "\(outcome.stdout)\(outcome.stderr)")
        for line in ["1. A head CT", "deadline met. Nowhere else.", "both at ASPH", "all four studies at RSCH", "it holds that study and nothing else",
                     "$ consort queue (RSCH)", "$ consort status (ESHT)", "$ consort locate (from ASPH)", "Every story ended as it should"] {
            #expect(outcome.stdout.contains(line), "\(line) in:\n\(outcome.stdout)")
        }
        // Every process it started has stopped: no agent still holds its state folder's lock.
        let leftovers = try Run.program("/usr/bin/pgrep", ["-f", folder])
        #expect(leftovers.stdout.isEmpty, "processes left running: \(leftovers.stdout)")
        // Its files, checked independently of the demo: the AI service holds one study only.
        let ai = try FileManager.default.contentsOfDirectory(atPath: folder + "/ai-cxr").filter { !$0.hasPrefix(".") }
        #expect(ai.count == 1, "\(ai)")
    }

    @Test func withoutItsRulesTheDemoSaysWhatToGive() throws {
        let outcome = try Run.consort("demo", "--rules", "/nonexistent")
        #expect(outcome.status == 2 && outcome.stderr.contains("--rules"), "\(outcome.stderr)")
    }
}
