import DICOM
import Testing

@testable import Routing

@Suite("MDT lists and NHS numbers")
struct MDTListTests {
    static let members: Set<String> = ["RSCH", "ASPH", "ESHT", "QVH", "UHSX"]

    @Test("NHS numbers are validated by their Modulus 11 check digit", arguments: [
        ("9434765919", true), ("943 476 5919", true), ("943-476-5919", true), ("9434765918", false),
        ("1234567890", false), ("943476591", false), ("94347659190", false), ("94347659A9", false), ("", false),
    ])
    func nhsNumbers(_ text: String, _ valid: Bool) {
        #expect((NHSNumber(text) != nil) == valid, "\(text)")
    }

    @Test func testNumbersAreValidAndInThe999Range() {
        for seed in 0..<50 as Range<UInt64> {
            let number = NHSNumber.testNumber(seed: seed)
            #expect(number.digits.hasPrefix("999"))
            #expect(NHSNumber(number.digits) == number)
        }
        #expect(NHSNumber("9434765919")?.description == "943 476 5919")
    }

    @Test func listsParseAndBadLinesAreHeldBack() {
        let text = """
            host,nhs_number,meeting_date,notes\r
            RSCH,943 476 5919,2026-12-03,first\r
            RSCH,1234567890,2026-12-03,bad check digit\r
            UHSX,9434765919,20261204,\r
            XYZ,9434765919,2026-12-03,unknown host\r
            RSCH,9434765919,2026-13-03,bad date\r
            RSCH,9434765919\r
            """
        let (entries, problems) = MDTList.parse(text, members: Self.members)
        #expect(entries == [
            ListEntry(nhsNumber: "9434765919", meetingDate: DICOMDate(year: 2026, month: 12, day: 3), host: "RSCH"),
            ListEntry(nhsNumber: "9434765919", meetingDate: DICOMDate(year: 2026, month: 12, day: 4), host: "UHSX"),
        ])
        #expect(problems.map(\.line) == [3, 5, 6, 7])
        #expect(problems[0].message.contains("not a valid NHS number"))
    }

    @Test func aListWithoutItsHeaderIsRefusedWhole() {
        let (entries, problems) = MDTList.parse("9434765919,2026-12-03,RSCH\n", members: Self.members)
        #expect(entries.isEmpty)
        #expect(problems.first?.line == 1)
    }
}
