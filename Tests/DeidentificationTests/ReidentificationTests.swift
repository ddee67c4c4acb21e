import DICOM
import Foundation
import Testing

@testable import Deidentification

/// A result from a peer that was sent the study de-identified, put back into the trust's
/// identity: the study's UIDs (study, series, instances, frame of reference) mapped back wherever
/// the result names them, the patient and the study as the trust holds them, the result's own
/// UIDs left alone — and what cannot be done refused, not guessed. Also the options a rule
/// chooses, as the de-identifier carries them out.
@Suite("Re-identification of results, and the rule's options")
struct ReidentificationTests {
    static let key = [UInt8](repeating: 7, count: 32)
    static let study = "1.2.826.0.1.3680043.2.1125.1"
    static let series = "1.2.826.0.1.3680043.2.1125.1.2"
    static let frame = "1.2.826.0.1.3680043.2.1125.1.3"
    static let sop = "1.2.826.0.1.3680043.2.1125.1.2.1"

    /// The original image as the trust holds it.
    static func original() -> DataSet {
        var data = DeidentifierTests.header(study: study, sop: sop)
        data.set(DICOMWriter.textElement(Tag(0x0008, 0x0005), .CS, "ISO_IR 100"))
        data.set(DICOMWriter.textElement(Tag(0x0008, 0x0030), .TM, "101500"))
        data.set(DICOMWriter.textElement(Tag(0x0008, 0x1030), .LO, "CHEST PA"))
        // MÖLLER^J in ISO 8859-1: the name's bytes are the original's, whatever they mean.
        data.set(DataElement(tag: Tag(0x0010, 0x0010), vr: .PN, length: 8, value: .bytes([0x4D, 0xD6, 0x4C, 0x4C, 0x45, 0x52, 0x5E, 0x4A])))
        data.set(DICOMWriter.textElement(Tag(0x0010, 0x0021), .LO, "RSCH"))
        data.set(DICOMWriter.textElement(Tag(0x0020, 0x000E), .UI, series))
        data.set(DICOMWriter.textElement(Tag(0x0020, 0x0052), .UI, frame))
        return data
    }

    /// What an AI service makes of the de-identified image: a report of its own (new instance,
    /// new series) in the study it was given, naming no patient, its evidence pointing at the
    /// image by the UIDs it was given.
    static func result(answering image: DataSet, ownSOP: String = "2.25.999001", inStudy: String? = nil) -> DataSet {
        var sr = DataSet()
        sr.set(DICOMWriter.textElement(Tag(0x0008, 0x0016), .UI, "1.2.840.10008.5.1.4.1.1.88.22"))
        sr.set(DICOMWriter.textElement(.sopInstanceUID, .UI, ownSOP))
        sr.set(DICOMWriter.textElement(Tag(0x0008, 0x0050), .SH, ""))
        sr.set(DICOMWriter.textElement(.modality, .CS, "SR"))
        sr.set(DICOMWriter.textElement(Tag(0x0010, 0x0010), .PN, ""))
        sr.set(DICOMWriter.textElement(.patientID, .LO, ""))
        sr.set(DICOMWriter.textElement(Tag(0x0012, 0x0062), .CS, "YES"))
        sr.set(DICOMWriter.textElement(.studyInstanceUID, .UI, inStudy ?? image.string(.studyInstanceUID)!))
        sr.set(DICOMWriter.textElement(Tag(0x0020, 0x000E), .UI, "2.25.999002"))
        sr.set(DICOMWriter.textElement(Tag(0x0020, 0x0052), .UI, image.string(Tag(0x0020, 0x0052))!))
        var instance = DataSet()
        instance.set(DICOMWriter.textElement(Tag(0x0008, 0x1150), .UI, image.string(Tag(0x0008, 0x0016))!))
        instance.set(DICOMWriter.textElement(Tag(0x0008, 0x1155), .UI, image.string(.sopInstanceUID)!))
        var seriesItem = DataSet()
        seriesItem.set(DataElement(tag: Tag(0x0008, 0x1199), vr: .SQ, length: nil, value: .sequence([instance])))
        seriesItem.set(DICOMWriter.textElement(Tag(0x0020, 0x000E), .UI, image.string(Tag(0x0020, 0x000E))!))
        var studyItem = DataSet()
        studyItem.set(DataElement(tag: Tag(0x0008, 0x1115), vr: .SQ, length: nil, value: .sequence([seriesItem])))
        studyItem.set(DICOMWriter.textElement(.studyInstanceUID, .UI, image.string(.studyInstanceUID)!))
        sr.set(DataElement(tag: Tag(0x0040, 0xA375), vr: .SQ, length: nil, value: .sequence([studyItem])))
        return sr
    }

    static func evidence(_ sr: DataSet) -> (study: String?, series: String?, sop: String?) {
        guard case .sequence(let studies)? = sr[Tag(0x0040, 0xA375)]?.value, let studyItem = studies.first,
            case .sequence(let series)? = studyItem[Tag(0x0008, 0x1115)]?.value, let seriesItem = series.first,
            case .sequence(let instances)? = seriesItem[Tag(0x0008, 0x1199)]?.value
        else { return (nil, nil, nil) }
        return (studyItem.string(.studyInstanceUID), seriesItem.string(Tag(0x0020, 0x000E)), instances.first?.string(Tag(0x0008, 0x1155)))
    }

    @Test func aResultIsPutBackIntoTheTrustsStudyAndPatientExactly() throws {
        let deidentifier = try Deidentifier(key: Self.key)
        let original = Self.original()
        let sent = deidentifier.deidentify(original)
        #expect(sent.string(.studyInstanceUID) != Self.study && (sent.string(.patientID) ?? "").isEmpty)
        let sr = Self.result(answering: sent)
        let mapping = Reidentification(
            originals: Reidentification.originals(of: [Self.study, Self.series, Self.sop, Self.frame], under: deidentifier), identity: original, restoresStudy: true)
        let back = try mapping.apply(sr)
        #expect(back.string(.studyInstanceUID) == Self.study, "in the original study")
        #expect(back.string(Tag(0x0020, 0x0052)) == Self.frame, "on the original frame of reference")
        let refers = Self.evidence(back)
        #expect(refers.study == Self.study && refers.series == Self.series && refers.sop == Self.sop, "\(refers)")
        // The patient and the study as the trust holds them, byte for byte.
        for tag in [Tag(0x0010, 0x0010), .patientID, Tag(0x0010, 0x0021), Tag(0x0010, 0x0030), Tag(0x0010, 0x0040), Tag(0x0008, 0x0020), Tag(0x0008, 0x0030), Tag(0x0008, 0x0050), Tag(0x0008, 0x1030)] {
            #expect(back[tag]?.bytes.map(Array.init) == original[tag]?.bytes.map(Array.init), "\(tag)")
        }
        // Its own instance and series as the service made them; no longer marked de-identified;
        // the character set the name is in said.
        #expect(back.string(.sopInstanceUID) == "2.25.999001" && back.string(Tag(0x0020, 0x000E)) == "2.25.999002")
        #expect(back[Tag(0x0012, 0x0062)] == nil)
        #expect(back.string(Tag(0x0008, 0x0005)) == "ISO_IR 100")
        #expect(back.string(Tag(0x0008, 0x0016)) == "1.2.840.10008.5.1.4.1.1.88.22" && back.string(.modality) == "SR")
    }

    @Test func aResultInAStudyOfItsOwnKeepsItsStudyAndWhatCannotBeDoneIsRefused() throws {
        let deidentifier = try Deidentifier(key: Self.key)
        let original = Self.original()
        let sent = deidentifier.deidentify(original)
        let mapping = Reidentification(
            originals: Reidentification.originals(of: [Self.study, Self.series, Self.sop, Self.frame], under: deidentifier), identity: original, restoresStudy: false)
        // In a study of its own: its evidence names the original, its study and accession are its own.
        var own = Self.result(answering: sent, inStudy: "2.25.777")
        own.set(DICOMWriter.textElement(Tag(0x0008, 0x0050), .SH, "AI-42"))
        let back = try mapping.apply(own)
        #expect(back.string(.studyInstanceUID) == "2.25.777" && back.string(Tag(0x0008, 0x0050)) == "AI-42")
        #expect(Self.evidence(back).study == Self.study && back.string(.patientID) == "RSCH0001")
        // A result that reuses an image's UID as its own would take the image's place.
        let reused = Self.result(answering: sent, ownSOP: sent.string(.sopInstanceUID)!)
        #expect(throws: Reidentification.Refused.self) { try mapping.apply(reused) }
        // The name in Latin-1, the result's own text in UTF-8 beyond ASCII: it cannot say both.
        var utf8 = Self.result(answering: sent)
        utf8.set(DICOMWriter.textElement(Tag(0x0008, 0x0005), .CS, "ISO_IR 192"))
        utf8.set(DataElement(tag: Tag(0x0008, 0x103E), vr: .LO, length: 6, value: .bytes(ArraySlice(Array("Lung\u{E4}".utf8)))))
        #expect(throws: Reidentification.Refused.self) { try mapping.apply(utf8) }
    }

    /// The options a rule chooses, as the de-identifier carries them out on a file: retain-uids
    /// keeps the UIDs (the file meta saying the same instance), retain-full-dates the dates;
    /// allow-burned-in lets an ultrasound go, never an encapsulated document.
    @Test func theRulesChoiceIsCarriedOut() throws {
        let folder = NSTemporaryDirectory() + "consort-choice-\(UUID().uuidString)"
        try FileManager.default.createDirectory(atPath: folder, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(atPath: folder) }
        var image = Self.original()
        image.set(DICOMWriter.textElement(.modality, .CS, "US"))
        image.set(DataElement(tag: .pixelData, vr: .OW, length: 8, value: .bytes(ArraySlice([1, 2, 3, 4, 5, 6, 7, 8]))))
        try DICOMWriter.write(DICOMFile(meta: DataSet(), dataSet: image, transferSyntaxUID: TransferSyntax.explicitVRLittleEndian, encoding: .explicitVRLittleEndian), toPath: folder + "/us.dcm")

        let base = try Deidentifier(key: Self.key)
        #expect(throws: DICOMError.self) { try base.write(folder + "/us.dcm", to: folder + "/refused.dcm") }
        #expect(!FileManager.default.fileExists(atPath: folder + "/refused.dcm"))

        var choice = DeidentificationChoice()
        for word in ["retain-uids", "retain-full-dates", "allow-burned-in"] {
            let known = choice.add(word: word)
            #expect(known, "\(word)")
        }
        let unknown = choice.add(word: "retain-everything")
        #expect(!unknown)
        let chosen = base.choosing(choice)
        try chosen.write(folder + "/us.dcm", to: folder + "/sent.dcm")
        let sent = try DICOMFile.read(path: folder + "/sent.dcm", options: .everything)
        #expect(sent.dataSet.string(.sopInstanceUID) == Self.sop && sent.meta.string(Tag(0x0002, 0x0003)) == Self.sop, "retain-uids, in the meta too")
        #expect(sent.dataSet.string(.studyInstanceUID) == Self.study && chosen.uidAtPeer(Self.study) == Self.study)
        #expect(sent.dataSet.string(Tag(0x0008, 0x0020)) == "20261120" && sent.dataSet.string(Tag(0x0028, 0x0303)) == "UNMODIFIED")
        #expect((sent.dataSet.string(.patientID) ?? "").isEmpty && sent.dataSet[.pixelData]?.bytes.map(Array.init) == [1, 2, 3, 4, 5, 6, 7, 8])
        guard case .sequence(let codes)? = sent.dataSet[Tag(0x0012, 0x0064)]?.value else { Issue.record("no De-identification Method Code Sequence"); return }
        #expect(Set(codes.compactMap { $0.string(Tag(0x0008, 0x0100)) }) == ["113100", "113110", "113106"], "the Basic Profile, Retain UIDs, Retain Full Dates")

        var document = image
        document.set(DICOMWriter.textElement(Tag(0x0008, 0x0016), .UI, "1.2.840.10008.5.1.4.1.1.104.1"))
        #expect(Deidentifier.notDeidentifiable(document, allowingBurnedIn: true)?.contains("encapsulated document") == true)
        #expect(Deidentifier.notDeidentifiable(image, allowingBurnedIn: false)?.contains("allow-burned-in") == true, "the refusal says how a rule may send it")
    }
}
