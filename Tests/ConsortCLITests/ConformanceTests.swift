import Foundation
import Testing

/// Our reading against pydicom's, file by file: pydicom's own test collections (shipped in its
/// PyPI package) and the suite's generated fixtures covering every transfer syntax and quirk.
@Suite("Conformance with pydicom", .timeLimit(.minutes(10)))
struct ConformanceTests {
    @Test func everyFileReadsAsPydicomReadsIt() throws {
        let python = try Run.require("python3", package: "python3")
        let folder = try ScratchFolder()
        let fixtures = try makeFixtures(in: folder.path + "/fixtures")
        let collections = try Run.pydicomDataFolders(python: python)
        let outcome = try Run.program(
            python, [Run.conformanceFolder + "/conformance.py", "--consort", Run.consort, fixtures] + collections)
        let lines = outcome.stdout.split(separator: "\n")
        for line in lines where line.hasPrefix("FAIL") || line.hasPrefix("    ") { Issue.record("\(line)") }
        #expect(outcome.status == 0, "\(outcome.stderr)")
        // The closing line counts the files: every fixture and every readable pydicom file.
        let summary = try #require(lines.last)
        let passed = Int(summary.split(separator: " ").first ?? "") ?? 0
        #expect(passed >= 200, "\(summary)")
        #expect(summary.hasSuffix(" 0 failed"), "\(summary)")
        // And no file left the comparison unseen: each was compared, or is one pydicom cannot
        // read for a reason the script lists.
        let accounted = try #require(lines.first { $0.hasPrefix("conformance: ") && $0.contains(" accounted for") })
        let words = accounted.split(separator: " ")
        #expect(words.count >= 5 && words[1] == words[4], "\(accounted)")
    }
}
