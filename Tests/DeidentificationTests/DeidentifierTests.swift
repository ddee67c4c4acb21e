import DICOM
import Foundation
import Testing

@testable import Deidentification

/// PS3.15 Annex E as generated from the standard's table, and the de-identifier over headers:
/// what each attribute becomes under the Basic Profile and its options, that UIDs map the same
/// way wherever they appear (and differently under another key), and that the attributes
/// saying what was done are there.
@Suite("De-identification (PS3.15 Annex E)")
struct DeidentifierTests {
    typealias Profile = ConfidentialityProfile

    static let key = [UInt8](repeating: 7, count: 32)

    @Test func theTableIsTheStandardsWithItsOptions() {
        #expect(Profile.tableEdition.contains("PS3.15 Table E.1-1"))
        #expect(Profile.rows.exact.count > 400, "\(Profile.rows.exact.count) rows")
        #expect(Profile.action(for: .patientID, options: []) == .zero)
        #expect(Profile.action(for: Tag(0x0010, 0x0010), options: []) == .zero)
        #expect(Profile.action(for: .studyInstanceUID, options: []) == .uid)
        #expect(Profile.action(for: .studyInstanceUID, options: [.retainUIDs]) == .keep)
        #expect(Profile.action(for: Tag(0x0008, 0x0020), options: []) == .zero)
        #expect(Profile.action(for: Tag(0x0008, 0x0020), options: [.retainLongitudinalFullDates]) == .keep)
        #expect(Profile.action(for: Tag(0x0008, 0x0020), options: [.retainLongitudinalModifiedDates]) == .clean)
        #expect(Profile.action(for: Tag(0x0008, 0x0080), options: []) == .removeZeroOrDummy)
        #expect(Profile.action(for: Tag(0x0008, 0x0080), options: [.retainInstitutionIdentity]) == .keep)
        #expect(Profile.action(for: Tag(0x0010, 0x0040), options: [.retainPatientCharacteristics]) == .keep)
        // Private groups, curves and overlay data: the table's pattern rows.
        #expect(Profile.action(for: Tag(0x0029, 0x1010), options: []) == .remove)
        #expect(Profile.action(for: Tag(0x5002, 0x3000), options: []) == .remove)
        #expect(Profile.action(for: Tag(0x6000, 0x3000), options: []) == .remove)
        // Not in the table: kept (the pixel data, the image's geometry).
        #expect(Profile.action(for: .pixelData, options: []) == nil)
        #expect(Profile.action(for: Tag(0x0028, 0x0010), options: []) == nil)
    }

    static func header(patient: String = "RSCH0001", study: String = "1.2.826.0.1.3680043.2.1125.1", sop: String = "1.2.826.0.1.3680043.2.1125.1.1") -> DataSet {
        var data = DataSet()
        data.set(DICOMWriter.textElement(Tag(0x0008, 0x0016), .UI, "1.2.840.10008.5.1.4.1.1.1.1"))
        data.set(DICOMWriter.textElement(.sopInstanceUID, .UI, sop))
        data.set(DICOMWriter.textElement(Tag(0x0008, 0x0020), .DA, "20261120"))
        data.set(DICOMWriter.textElement(Tag(0x0008, 0x0050), .SH, "ACC123"))
        data.set(DICOMWriter.textElement(.modality, .CS, "DX"))
        data.set(DICOMWriter.textElement(Tag(0x0008, 0x0080), .LO, "Royal Surrey"))
        data.set(DICOMWriter.textElement(Tag(0x0010, 0x0010), .PN, "SMITH^JANE"))
        data.set(DICOMWriter.textElement(.patientID, .LO, patient))
        data.set(DICOMWriter.textElement(Tag(0x0010, 0x0030), .DA, "19700101"))
        data.set(DICOMWriter.textElement(Tag(0x0010, 0x0040), .CS, "F"))
        data.set(DICOMWriter.textElement(Tag(0x0018, 0x0015), .CS, "CHEST"))
        data.set(DICOMWriter.textElement(.studyInstanceUID, .UI, study))
        data.set(DICOMWriter.textElement(Tag(0x0029, 0x0010), .LO, "VENDOR"))
        data.set(DICOMWriter.textElement(Tag(0x0029, 0x1010), .LO, "SMITH JANE 9434765919"))
        var reference = DataSet()
        reference.set(DICOMWriter.textElement(Tag(0x0008, 0x1150), .UI, "1.2.840.10008.5.1.4.1.1.1.1"))
        reference.set(DICOMWriter.textElement(Tag(0x0008, 0x1155), .UI, sop + ".9"))
        data.set(DataElement(tag: Tag(0x0008, 0x1140), vr: .SQ, length: nil, value: .sequence([reference])))
        data.set(DataElement(tag: Tag(0x0028, 0x0010), vr: .US, length: 2, value: .bytes([0, 8])))
        return data
    }

    @Test func theBasicProfileLeavesNothingThatIdentifiesAndKeepsTheImage() throws {
        let deidentifier = try Deidentifier(key: Self.key)
        let original = Self.header()
        let out = deidentifier.deidentify(original)
        // Z: present, empty.
        for tag in [Tag(0x0010, 0x0010), .patientID, Tag(0x0008, 0x0020), Tag(0x0008, 0x0050), Tag(0x0010, 0x0030), Tag(0x0010, 0x0040)] {
            #expect(out[tag] != nil && (out.string(tag) ?? "").isEmpty, "\(tag): \(out.string(tag) ?? "absent")")
        }
        // X/Z/D: the institution, emptied; private attributes removed, their creator too.
        #expect((out.string(Tag(0x0008, 0x0080)) ?? "").isEmpty)
        #expect(out[Tag(0x0029, 0x1010)] == nil && out[Tag(0x0029, 0x0010)] == nil)
        // U: every UID mapped, in the sequence too; the SOP class is not an instance's UID.
        #expect(out.string(.studyInstanceUID) == deidentifier.uid("1.2.826.0.1.3680043.2.1125.1"))
        #expect(out.string(.sopInstanceUID)?.hasPrefix("2.25.") == true && out.string(.sopInstanceUID) != original.string(.sopInstanceUID))
        guard case .sequence(let items)? = out[Tag(0x0008, 0x1140)]?.value else { Issue.record("the reference sequence is gone"); return }
        #expect(items.first?.string(Tag(0x0008, 0x1155)) == deidentifier.uid("1.2.826.0.1.3680043.2.1125.1.1.9"))
        #expect(out.string(Tag(0x0008, 0x0016)) == "1.2.840.10008.5.1.4.1.1.1.1")
        // Not listed: kept.
        #expect(out.string(.modality) == "DX" && out[Tag(0x0028, 0x0010)]?.bytes.map(Array.init) == [0, 8])
        // What was done, said in the data set.
        #expect(out.string(Tag(0x0012, 0x0062)) == "YES")
        #expect(out.string(Tag(0x0012, 0x0063))?.hasPrefix("PS3.15 Basic Application Level Confidentiality Profile") == true)
        #expect(out.string(Tag(0x0028, 0x0303)) == "REMOVED")
    }

    @Test func uidsAreConsistentUnderAKeyAndUnrelatedUnderAnother() throws {
        let one = try Deidentifier(key: Self.key), other = try Deidentifier(key: [UInt8](repeating: 9, count: 32))
        let a = one.deidentify(Self.header(sop: "1.2.3.4.1")), b = one.deidentify(Self.header(sop: "1.2.3.4.2"))
        #expect(a.string(.studyInstanceUID) == b.string(.studyInstanceUID), "two instances of one study stay one study")
        #expect(a.string(.sopInstanceUID) != b.string(.sopInstanceUID))
        #expect(other.uid("1.2.3") != one.uid("1.2.3"))
        for uid in ["1.2.3", "1.2.826.0.1.3680043.2.1125.1", String(repeating: "9", count: 64)] {
            let mapped = one.uid(uid)
            #expect(mapped.count <= 44 && mapped.hasPrefix("2.25.") && !mapped.dropFirst(5).hasPrefix("0") && mapped.dropFirst(5).allSatisfy(\.isNumber), "\(mapped)")
        }
        #expect(throws: Deidentifier.KeyTooShort.self) { try Deidentifier(key: [1, 2, 3]) }
        // Each destination its own mapping: the same for the same peer, unrelated for two.
        #expect(one.forDestination("RESEARCH-AI").uid("1.2.3") == one.forDestination("RESEARCH-AI").uid("1.2.3"))
        #expect(one.forDestination("RESEARCH-AI").uid("1.2.3") != one.forDestination("AI-CXR").uid("1.2.3"))
        #expect(one.forDestination("RESEARCH-AI").uid("1.2.3") != one.uid("1.2.3"))
        // HMAC-SHA256 itself, against RFC 4231 test case 2.
        let rfc = try Deidentifier(key: Array("Jefe".utf8) + [UInt8](repeating: 0, count: 28))
        #expect(rfc.mac("what do ya want for nothing?").map { String(format: "%02x", $0) }.joined() == "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843")
    }

    @Test func optionsKeepWhatTheyRetainAndShiftDatesByPatient() throws {
        let deidentifier = try Deidentifier(key: Self.key, options: [.retainLongitudinalModifiedDates, .retainPatientCharacteristics, .retainUIDs])
        let out = deidentifier.deidentify(Self.header())
        let shift = deidentifier.dateShift(patient: "RSCH0001")
        #expect((-3650 ... -1).contains(shift))
        var calendar = Calendar(identifier: .gregorian)
        calendar.timeZone = TimeZone(identifier: "UTC")!
        let expected = calendar.date(byAdding: .day, value: shift, to: calendar.date(from: DateComponents(year: 2026, month: 11, day: 20))!)!
        let parts = calendar.dateComponents([.year, .month, .day], from: expected)
        #expect(out.string(Tag(0x0008, 0x0020)) == String(format: "%04d%02d%02d", parts.year!, parts.month!, parts.day!))
        #expect(out.string(Tag(0x0010, 0x0040)) == "F", "retain patient characteristics")
        #expect(out.string(.studyInstanceUID) == "1.2.826.0.1.3680043.2.1125.1", "retain UIDs")
        #expect(out.string(Tag(0x0028, 0x0303)) == "MODIFIED")
        #expect(out[Tag(0x0010, 0x0010)] != nil && (out.string(Tag(0x0010, 0x0010)) ?? "").isEmpty, "the name goes whatever the options")
        // Another study of the same patient moves by the same number of days.
        #expect(deidentifier.dateShift(patient: "RSCH0001") == shift && deidentifier.dateShift(patient: "RSCH0002") != shift)
    }

    /// What the table alone would let through, found by a fresh read: a report's content (a
    /// sequence the profile gives a dummy) is emptied rather than walked into, names and dates
    /// the table does not list are emptied wherever they are, a bulk value other than the pixel
    /// data does not go, and the file meta keeps only what says what the file is.
    @Test func whatTheTableAloneWouldKeepDoesNotGo() throws {
        let deidentifier = try Deidentifier(key: Self.key)
        var data = Self.header()
        var finding = DataSet()
        finding.set(DICOMWriter.textElement(Tag(0x0040, 0xA160), .UT, "Subject ID RSCH0001, SMITH JANE"))
        data.set(DataElement(tag: Tag(0x0040, 0xA730), vr: .SQ, length: nil, value: .sequence([finding])))
        var observer = DataSet()
        observer.set(DICOMWriter.textElement(Tag(0x0040, 0xA123), .PN, "DOCTOR^WHO"))
        observer.set(DICOMWriter.textElement(Tag(0x0040, 0xA032), .DT, "20261120101010"))
        data.set(DataElement(tag: Tag(0x0040, 0xA078), vr: .SQ, length: nil, value: .sequence([observer])))
        data.set(DICOMWriter.textElement(Tag(0x0008, 0x0012), .DA, "20261120"))
        data.set(DataElement(tag: Tag(0x0042, 0x0011), vr: .OB, length: 100_000, value: .notLoaded(offset: 4096, length: 100_000)))
        data.set(DataElement(tag: .pixelData, vr: .OW, length: 200_000, value: .notLoaded(offset: 200_000, length: 200_000)))
        let out = deidentifier.deidentify(data)
        if case .sequence(let items)? = out[Tag(0x0040, 0xA730)]?.value { #expect(items.isEmpty, "the report's content walked into") } else { Issue.record("content sequence gone, not emptied") }
        if case .sequence(let items)? = out[Tag(0x0040, 0xA078)]?.value {
            for item in items {
                #expect((item.string(Tag(0x0040, 0xA123)) ?? "").isEmpty && (item.string(Tag(0x0040, 0xA032)) ?? "").isEmpty, "a name or a date in a sequence")
            }
        }
        #expect((out.string(Tag(0x0008, 0x0012)) ?? "").isEmpty, "Instance Creation Date, not in the table")
        #expect(out[Tag(0x0042, 0x0011)] == nil, "a bulk value other than the pixel data went")
        if case .notLoaded(let offset, _)? = out[.pixelData]?.value { #expect(offset == 200_000) } else { Issue.record("the pixel data did not stay a range of the source") }
        var meta = DataSet()
        meta.set(DICOMWriter.textElement(Tag(0x0002, 0x0003), .UI, "1.2.3.4"))
        meta.set(DICOMWriter.textElement(Tag(0x0002, 0x0010), .UI, "1.2.840.10008.1.2.1"))
        meta.set(DICOMWriter.textElement(Tag(0x0002, 0x0016), .AE, "RSCH_CT_3"))
        meta.set(DICOMWriter.textElement(Tag(0x0002, 0x0100), .UI, "1.2.3"))
        let newMeta = deidentifier.deidentifyMeta(meta)
        #expect(newMeta[Tag(0x0002, 0x0016)] == nil && newMeta[Tag(0x0002, 0x0100)] == nil)
        #expect(newMeta.string(Tag(0x0002, 0x0003)) == deidentifier.uid("1.2.3.4") && newMeta.string(Tag(0x0002, 0x0010)) == "1.2.840.10008.1.2.1")
    }
}
