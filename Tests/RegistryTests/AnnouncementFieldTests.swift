import Foundation
import Testing

@testable import Coordinator

/// Every field of an announced study checked before anything is recorded (issue 28): a count
/// that is not a whole number in range, a date that is no day, a UID that is no UID, an
/// identifier too long — refused with the field named, where Foundation's conversions once
/// stored 1e308 instances as -9223372036854775808.
@Suite("announcement fields")
struct AnnouncementFieldTests {
    /// A study as an agent announces it, with `changes` over it, read from JSON as the service
    /// reads a request.
    static func item(_ changes: String = "") throws -> [String: Any] {
        let text = #"{"study": "1.2.826.0.1.3680043.8.498.1", "patient": {"id": "R123", "issuer": "RSCH", "birthDate": "19700101"}, "nhs": "9990000018", "date": "20261128", "modalities": ["CT"], "instances": 120, "bytes": 63000000, "complete": true"#
            + (changes.isEmpty ? "" : ", " + changes) + "}"
        let object = try JSONSerialization.jsonObject(with: Data(text.utf8))
        return try #require(object as? [String: Any])
    }

    @Test func aGoodStudyIsTakenAsItCame() throws {
        let holding = try CoordinatorService.holding(try Self.item())
        #expect(holding.instances == 120 && holding.bytes == 63_000_000 && holding.complete && holding.date == "20261128" && holding.birthDate == "19700101")
    }

    @Test(arguments: [
        (#""instances": 1e308"#, "\"instances\""),
        (#""instances": 99999999999999999999999"#, "\"instances\""),
        (#""instances": -1"#, "\"instances\""),
        (#""instances": 2.5"#, "\"instances\""),
        (#""instances": "120""#, "\"instances\""),
        (#""bytes": 1e300"#, "\"bytes\""),
        (#""date": "20261345""#, "\"date\""),
        (#""date": "2026-11-28""#, "\"date\""),
        (#""date": 20261128"#, "\"date\""),
        (#""study": "1.2.abc""#, "\"study\""),
        (#""study": "1.2.826.0.1.3680043.8.498.11111111111111111111111111111111111111111111111""#, "\"study\""),
        (#""complete": "yes""#, "\"complete\""),
        (#""complete": 1"#, "\"complete\""),
        (#""instances": true"#, "\"instances\""),
        (#""nhs": ["9990000018"]"#, "\"nhs\""),
        (#""patient": "R123""#, "\"patient\""),
    ])
    func aFieldOutOfItsKindOrRangeIsRefusedByName(_ change: String, _ field: String) throws {
        // JSON keeps the last of a repeated key: the change replaces the field.
        let item = try Self.item(change)
        do {
            _ = try CoordinatorService.holding(item)
            Issue.record("taken: \(change)")
        } catch {
            #expect(error.description.contains(field), "\(error.description)")
        }
    }

    @Test func aPatientIdentifierLongerThanAnLOIsRefused() throws {
        let long = String(repeating: "7", count: 65)
        #expect(throws: CoordinatorService.FieldRefusal.self) { try CoordinatorService.holding(try Self.item(#""patient": {"id": "\#(long)"}"#)) }
        #expect(throws: Never.self) { try CoordinatorService.holding(try Self.item(#""patient": {"id": "\#(long.dropLast())"}"#)) }
    }
}
