import Foundation
import Testing

/// Our reading against pydicom's, file by file: pydicom's own test collections (shipped in its
/// PyPI package) and the suite's generated fixtures covering every transfer syntax and quirk.
@Suite("Conformance with pydicom")
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
        #expect(summary.hasSuffix("0 failed"))
    }
}
