import Foundation
import Testing

@testable import Routing

@Suite("Reloading the rule set")
struct RuleBookTests {
    static let good = """
        rule "CT to UHSX" {
          purpose direct-care
          on study-stable
          when Modality = CT
          push to UHSX
        }
        """

    func folder() throws -> String {
        let path = NSTemporaryDirectory() + "consort-rules-\(UUID().uuidString)"
        try FileManager.default.createDirectory(atPath: path, withIntermediateDirectories: true)
        try consortium.write(toFile: path + "/consortium.rules", atomically: true, encoding: .utf8)
        try Self.good.write(toFile: path + "/routing.rules", atomically: true, encoding: .utf8)
        return path
    }

    @Test func aBrokenSetIsRefusedAndTheOldOneStaysInForce() throws {
        let path = try folder()
        defer { try? FileManager.default.removeItem(atPath: path) }
        let book = try RuleBook(path: path)
        #expect(book.current.rules.map(\.name) == ["CT to UHSX"])

        // A typo: the reload is refused, with the error, and the old rules still route.
        try Self.good.replacingOccurrences(of: "Modality", with: "Modalty").write(toFile: path + "/routing.rules", atomically: true, encoding: .utf8)
        guard case .refused(let outcome) = book.reload() else {
            Issue.record("a broken rule set was loaded")
            return
        }
        #expect(outcome.report().contains("unknown attribute \"Modalty\""))
        #expect(book.current.rules.map(\.name) == ["CT to UHSX"])
        let event = RoutingEvent(kind: .studyStable, header: header(["Modality": "CT"]), origin: .local, site: "RSCH", now: testNow)
        #expect(book.engine.evaluate(event).count == 1)

        // Fixed: the new set replaces the old whole.
        try Self.good.replacingOccurrences(of: "CT to UHSX", with: "CT to UHSX (v2)").write(toFile: path + "/routing.rules", atomically: true, encoding: .utf8)
        guard case .reloaded(let warnings) = book.reload() else {
            Issue.record("a good rule set was refused")
            return
        }
        #expect(warnings.isEmpty)
        #expect(book.current.rules.map(\.name) == ["CT to UHSX (v2)"])
        #expect(book.engine.evaluate(event).first?.rule == "CT to UHSX (v2)")
    }

    @Test func startingWithABrokenSetFails() throws {
        let path = try folder()
        defer { try? FileManager.default.removeItem(atPath: path) }
        try "rule \"x\" {".write(toFile: path + "/routing.rules", atomically: true, encoding: .utf8)
        #expect(throws: RuleSetError.self) { try RuleBook(path: path) }
    }

    @Test func aMissingFolderIsAnError() {
        let outcome = RuleSetLoader.load("/nonexistent/consort-rules")
        #expect(outcome.ruleSet == nil)
        #expect(outcome.report().contains("no such file or folder"))
    }
}
