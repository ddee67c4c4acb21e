import DICOM
import Foundation
import Testing

@testable import Agent

/// A C-FIND identifier read and matched as PS3.4 C.2.2.2 says, and answered with every key
/// asked: the pure part of the consortium's query/retrieve SCP.
@Suite("C-FIND matching and answers")
struct StudyQueryTests {
    static func keys(_ values: [String: String], sequence: String? = nil) -> DataSet {
        var data = DataSet()
        for (keyword, value) in values {
            let tag = DataDictionary.tag(forKeyword: keyword)!
            data.set(value.isEmpty ? DataElement(tag: tag, vr: DataDictionary.entry(for: tag)!.vr, length: 0, value: .bytes([]))
                : DICOMWriter.textElement(tag, DataDictionary.entry(for: tag)!.vr, value))
        }
        if let sequence { data.set(DataElement(tag: DataDictionary.tag(forKeyword: sequence)!, vr: .SQ, length: nil, value: .sequence([]))) }
        return data
    }

    static let study = StudyQuery.Study(
        uid: "1.2.3.4", date: "20250220", modalities: ["MR", "SR"], description: "MR HEAD WITH CONTRAST", accession: "ACC42", instances: 120, heldHere: false)

    static func matches(_ values: [String: String]) throws -> Bool {
        try StudyQuery(keys(["QueryRetrieveLevel": "STUDY", "PatientID": "A777"].merging(values) { $1 })).matches(study)
    }

    @Test func universalSingleValueWildcardAndListMatching() throws {
        #expect(try Self.matches([:]))
        #expect(try Self.matches(["StudyDescription": ""]))
        #expect(try Self.matches(["StudyDescription": "MR HEAD*"]))
        #expect(try Self.matches(["StudyDescription": "*CONTRAST"]))
        #expect(try Self.matches(["StudyDescription": "MR ?EAD*"]))
        #expect(try !Self.matches(["StudyDescription": "MR HEAD"]), "single value matching is whole")
        #expect(try !Self.matches(["StudyDescription": "CT*"]))
        #expect(try Self.matches(["AccessionNumber": "ACC42"]))
        #expect(try !Self.matches(["AccessionNumber": "acc42"]), "case matters outside person names")
        #expect(try Self.matches(["StudyInstanceUID": "9.9\\1.2.3.4"]), "a list of UIDs")
        #expect(try !Self.matches(["StudyInstanceUID": "1.2.3"]))
        #expect(try Self.matches(["ModalitiesInStudy": "CT\\MR"]), "any modality of the study, any asked")
        #expect(try !Self.matches(["ModalitiesInStudy": "CT"]))
    }

    @Test func datesAndRanges() throws {
        #expect(try Self.matches(["StudyDate": "20250220"]))
        #expect(try Self.matches(["StudyDate": "20250101-20251231"]))
        #expect(try Self.matches(["StudyDate": "20250220-"]))
        #expect(try Self.matches(["StudyDate": "-20250220"]))
        #expect(try !Self.matches(["StudyDate": "20250221-"]))
        #expect(try !Self.matches(["StudyDate": "-20250219"]))
        var undated = Self.study
        undated.date = nil
        #expect(try !StudyQuery(Self.keys(["QueryRetrieveLevel": "STUDY", "StudyDate": "20250101-"])).matches(undated), "a key with a value never matches no value")
    }

    @Test func aPathologicalWildcardIsLinear() {
        // Many stars against a long value that nearly matches: a backtracking matcher would take
        // exponential time.
        let pattern = Array(String(repeating: "*A", count: 30).unicodeScalars) + ["B"]
        let text = Array(String(repeating: "A", count: 2000).unicodeScalars)
        #expect(!StudyQuery.wildcard(pattern, text))
        #expect(StudyQuery.wildcard(Array("*A*B".unicodeScalars), Array("xxAyyB".unicodeScalars)))
    }

    @Test func levelsOtherThanStudyAndSeriesWithinAStudyAreRefused() {
        #expect(throws: StudyQuery.Refusal.self) { try StudyQuery(Self.keys(["QueryRetrieveLevel": "PATIENT", "PatientID": "A777"])) }
        #expect(throws: StudyQuery.Refusal.self) { try StudyQuery(Self.keys(["QueryRetrieveLevel": "IMAGE"])) }
        #expect(throws: StudyQuery.Refusal.self) { try StudyQuery(Self.keys(["QueryRetrieveLevel": "SERIES", "StudyInstanceUID": "1.2*"])) }
        #expect(throws: Never.self) { try StudyQuery(Self.keys(["QueryRetrieveLevel": "SERIES", "StudyInstanceUID": "1.2.3.4"])) }
    }

    @Test func anAnswerHasEveryKeyAskedFilledOrEmptyInTheAskingTrustsIdentity() throws {
        let query = try StudyQuery(Self.keys(
            ["QueryRetrieveLevel": "STUDY", "PatientID": "U200", "PatientName": "", "StudyDate": "", "ModalitiesInStudy": "", "ReferringPhysicianName": "", "NumberOfStudyRelatedInstances": ""],
            sequence: "ProcedureCodeSequence"))
        let answer = query.answer(Self.study, patient: StudyQuery.Patient(id: "A777", issuer: "ASPH", name: "Zoë^Test"), retrieveAE: "CONSORT_ASPH")
        #expect(answer.string(.patientID) == "A777" && answer.string(DataDictionary.tag(forKeyword: "IssuerOfPatientID")!) == nil, "the issuer was not asked")
        #expect(answer.string(.specificCharacterSet) == "ISO_IR 192", "the name is not ASCII: UTF-8 declared")
        #expect(answer.strings(DataDictionary.tag(forKeyword: "ModalitiesInStudy")!) == ["MR", "SR"])
        #expect(answer.string(DataDictionary.tag(forKeyword: "NumberOfStudyRelatedInstances")!) == "120")
        #expect(answer[DataDictionary.tag(forKeyword: "ReferringPhysicianName")!]?.length == 0, "unknown keys answered empty, not refused")
        #expect(answer[DataDictionary.tag(forKeyword: "ProcedureCodeSequence")!]?.items?.isEmpty == true)
        #expect(answer.string(.studyInstanceUID) == "1.2.3.4" && answer.string(DataDictionary.tag(forKeyword: "RetrieveAETitle")!) == "CONSORT_ASPH", "always answered")
        // It encodes, in either syntax, and reads back the same.
        for explicit in [true, false] {
            let bytes = try DICOMWriter.encodeDataSet(answer, explicitVR: explicit)
            let syntax = explicit ? TransferSyntax.explicitVRLittleEndian : TransferSyntax.implicitVRLittleEndian
            let header = try DICOMWriter.fileHeader(transferSyntax: syntax, sopClassUID: "1.2.840.10008.5.1.4.1.2.2.1", sopInstanceUID: "1.2", sourceAETitle: nil)
            let again = try DICOMFile.read(bytes: header + bytes, options: .everything).dataSet
            #expect(again.string(.patientName) == "Zoë^Test" && again.string(.patientID) == "A777")
        }
    }

    @Test func theNHSNumberMayComeInOtherPatientIDsSequence() throws {
        var item = DataSet()
        item.set(DICOMWriter.textElement(.patientID, .LO, "9990000018"))
        item.set(DICOMWriter.textElement(DataDictionary.tag(forKeyword: "IssuerOfPatientID")!, .LO, "NHS"))
        var keys = Self.keys(["QueryRetrieveLevel": "STUDY"])
        keys.set(DataElement(tag: DataDictionary.tag(forKeyword: "OtherPatientIDsSequence")!, vr: .SQ, length: nil, value: .sequence([item])))
        let query = try StudyQuery(keys)
        #expect(query.patientID == nil && query.otherNHS == "9990000018")
    }
}
