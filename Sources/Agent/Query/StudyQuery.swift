import DICOM
import Foundation
import Routing

/// A C-FIND identifier as the consortium answers it (PS3.4 C.2.2.2, C.6.1-C.6.2): at STUDY
/// level, or SERIES level within one study. Pure: the keys read, a study or series matched, an
/// answer made; who the patient is and where the studies are is the caller's business.
///
/// Matching: an empty key matches anything (universal); a key with `*` or `?` in a string
/// attribute is a wildcard; a date is a single date or a range (`A-B`, `A-`, `-B`); a UID key
/// may list several UIDs (`\`); ModalitiesInStudy matches when any of the study's modalities is
/// any of the values asked; anything else must be equal (person names without regard to case).
/// A key with a value matches nothing when the study has no value for it. An answer carries
/// every key asked, with its value where the consortium knows it and empty where it does not
/// (unsupported keys are answered empty, not refused), plus the level, the unique key and the
/// AE title to retrieve from.
public struct StudyQuery: Sendable {
    public enum Level: String, Sendable { case study = "STUDY", series = "SERIES" }

    /// What is known of a study, wherever in the consortium it is.
    public struct Study: Sendable, Equatable {
        public var uid: String
        public var date: String?
        public var modalities: [String]
        public var description: String?
        public var accession: String?
        public var instances: Int
        public var series: Int?
        /// Held at the asking trust (ONLINE) or elsewhere in the consortium (NEARLINE).
        public var heldHere: Bool

        public init(uid: String, date: String?, modalities: [String], description: String?, accession: String?, instances: Int, series: Int? = nil, heldHere: Bool) {
            self.uid = uid
            self.date = date
            self.modalities = modalities
            self.description = description
            self.accession = accession
            self.instances = instances
            self.series = series
            self.heldHere = heldHere
        }
    }

    /// One series of a study held here.
    public struct Series: Sendable, Equatable {
        public var uid: String
        public var modality: String?
        public var number: String?
        public var description: String?
        public var instances: Int
        public init(uid: String, modality: String?, number: String?, description: String?, instances: Int) {
            self.uid = uid
            self.modality = modality
            self.number = number
            self.description = description
            self.instances = instances
        }
    }

    /// The patient as the asking trust knows them: what every answer says of the patient.
    public struct Patient: Sendable, Equatable {
        public var id: String
        public var issuer: String?
        public var name: String?
        public var birthDate: String?
        public var sex: String?
        public init(id: String, issuer: String?, name: String? = nil, birthDate: String? = nil, sex: String? = nil) {
            self.id = id
            self.issuer = issuer
            self.name = name
            self.birthDate = birthDate
            self.sex = sex
        }
    }

    public struct Refusal: Error, CustomStringConvertible {
        public let status: UInt16
        public let description: String
    }

    public let level: Level
    public let keys: DataSet
    /// The patient key: Patient ID, and its issuer if given.
    public let patientID: String?
    public let issuer: String?
    /// An NHS number given in Other Patient IDs Sequence with the NHS as issuer.
    public let otherNHS: String?

    static func tag(_ keyword: String) -> Tag { DataDictionary.tag(forKeyword: keyword)! }
    static let level = tag("QueryRetrieveLevel")
    static let issuerTag = tag("IssuerOfPatientID")
    static let others = tag("OtherPatientIDsSequence")

    /// The keys of `identifier`; a level other than STUDY or SERIES, or a SERIES query not
    /// within one study, is refused (0xA900: the identifier does not match the SOP class).
    public init(_ identifier: DataSet) throws(Refusal) {
        keys = identifier
        let named = identifier.string(Self.level)?.uppercased() ?? ""
        guard let level = Level(rawValue: named) else {
            throw Refusal(status: 0xA900, description: "query/retrieve level \"\(named)\": this node answers STUDY, and SERIES within a study")
        }
        self.level = level
        if level == .series {
            let study = identifier.string(.studyInstanceUID) ?? ""
            guard !study.isEmpty, !study.contains("\\"), !Self.isWildcard(study) else {
                throw Refusal(status: 0xA900, description: "a SERIES query names one Study Instance UID")
            }
        }
        let id = identifier.string(.patientID)
        patientID = (id?.isEmpty ?? true) ? nil : id
        let issuer = identifier.string(Self.issuerTag)
        self.issuer = (issuer?.isEmpty ?? true) ? nil : issuer
        otherNHS = identifier.sequence(Self.others)?.first { item in
            item.string(Self.issuerTag).map { NHSIdentity.issuers.contains($0) } ?? false
        }?.string(.patientID)
    }

    static func isWildcard(_ text: String) -> Bool { text.contains("*") || text.contains("?") }

    // MARK: - Matching

    /// Whether `study` matches every key asked of a study.
    public func matches(_ study: Study) -> Bool {
        uidMatches(keys.string(.studyInstanceUID), study.uid)
            && Self.dateMatches(keys.string(.studyDate), study.date)
            && Self.textMatches(keys.string(Self.tag("AccessionNumber")), study.accession)
            && Self.textMatches(keys.string(Self.tag("StudyDescription")), study.description)
            && modalitiesMatch(study.modalities)
    }

    /// Whether `series` matches every key asked of a series.
    public func matches(_ series: Series) -> Bool {
        uidMatches(keys.string(.seriesInstanceUID), series.uid)
            && Self.textMatches(keys.string(.modality), series.modality)
            && Self.textMatches(keys.string(Self.tag("SeriesDescription")), series.description)
            && Self.textMatches(keys.string(Self.tag("SeriesNumber")), series.number)
    }

    func uidMatches(_ key: String?, _ value: String) -> Bool {
        guard let key, !key.isEmpty else { return true }
        return key.split(separator: "\\").contains { $0.trimmingCharacters(in: .whitespaces) == value }
    }

    func modalitiesMatch(_ modalities: [String]) -> Bool {
        let asked = keys.strings(Self.tag("ModalitiesInStudy")).filter { !$0.isEmpty }
        guard !asked.isEmpty else { return true }
        return asked.contains { key in modalities.contains { Self.textMatches(key, $0) } }
    }

    /// Single value or wildcard matching of text (PS3.4 C.2.2.2.1, C.2.2.2.4).
    static func textMatches(_ key: String?, _ value: String?, ignoringCase: Bool = false) -> Bool {
        guard let key, !key.isEmpty, key != "*" else { return true }
        guard let value, !value.isEmpty else { return false }
        let (k, v) = ignoringCase ? (key.uppercased(), value.uppercased()) : (key, value)
        guard isWildcard(k) else { return k == v }
        return wildcard(Array(k.unicodeScalars), Array(v.unicodeScalars))
    }

    static func wildcard(_ pattern: [Unicode.Scalar], _ text: [Unicode.Scalar]) -> Bool {
        // Iterative with one backtrack point: linear in practice, never exponential.
        var p = 0, t = 0, star = -1, mark = 0
        while t < text.count {
            if p < pattern.count && (pattern[p] == "?" || pattern[p] == text[t]) {
                p += 1
                t += 1
            } else if p < pattern.count && pattern[p] == "*" {
                star = p
                mark = t
                p += 1
            } else if star >= 0 {
                p = star + 1
                mark += 1
                t = mark
            } else {
                return false
            }
        }
        while p < pattern.count && pattern[p] == "*" { p += 1 }
        return p == pattern.count
    }

    /// A date or a range of dates (PS3.4 C.2.2.2.5), compared as YYYYMMDD.
    static func dateMatches(_ key: String?, _ value: String?) -> Bool {
        guard let key, !key.isEmpty else { return true }
        guard let value, value.count == 8 else { return false }
        guard let dash = key.firstIndex(of: "-") else { return key == value }
        let from = String(key[..<dash]), to = String(key[key.index(after: dash)...])
        return (from.isEmpty || value >= from) && (to.isEmpty || value <= to)
    }

    // MARK: - Answers

    /// The answer for a study: every key asked, filled where known.
    public func answer(_ study: Study, patient: Patient, retrieveAE: String) -> DataSet {
        var known: [String: String] = [
            "QueryRetrieveLevel": "STUDY", "StudyInstanceUID": study.uid, "RetrieveAETitle": retrieveAE,
            "NumberOfStudyRelatedInstances": String(study.instances), "InstanceAvailability": study.heldHere ? "ONLINE" : "NEARLINE",
        ]
        known["StudyDate"] = study.date
        known["StudyDescription"] = study.description
        known["AccessionNumber"] = study.accession
        known["ModalitiesInStudy"] = study.modalities.isEmpty ? nil : study.modalities.joined(separator: "\\")
        known["NumberOfStudyRelatedSeries"] = study.series.map(String.init)
        return fill(known, patient: patient, always: ["QueryRetrieveLevel", "StudyInstanceUID", "RetrieveAETitle"])
    }

    /// The answer for a series of a study held here.
    public func answer(_ series: Series, study: String, patient: Patient, retrieveAE: String) -> DataSet {
        var known: [String: String] = [
            "QueryRetrieveLevel": "SERIES", "StudyInstanceUID": study, "SeriesInstanceUID": series.uid, "RetrieveAETitle": retrieveAE,
            "NumberOfSeriesRelatedInstances": String(series.instances), "InstanceAvailability": "ONLINE",
        ]
        known["Modality"] = series.modality
        known["SeriesNumber"] = series.number
        known["SeriesDescription"] = series.description
        return fill(known, patient: patient, always: ["QueryRetrieveLevel", "StudyInstanceUID", "SeriesInstanceUID", "RetrieveAETitle"])
    }

    /// The keys asked (and those always answered), each with the value known or empty; a
    /// sequence asked is answered empty. UTF-8 declared when a value needs it.
    func fill(_ known: [String: String], patient: Patient, always: [String]) -> DataSet {
        var values = known
        values["PatientID"] = patient.id
        values["IssuerOfPatientID"] = patient.issuer
        values["PatientName"] = patient.name
        values["PatientBirthDate"] = patient.birthDate
        values["PatientSex"] = patient.sex
        var out = DataSet()
        var unicode = false
        func put(_ tag: Tag, _ vr: VR, _ value: String?) {
            guard let value, !value.isEmpty else {
                out.set(DataElement(tag: tag, vr: vr, length: 0, value: .bytes([])))
                return
            }
            if value.unicodeScalars.contains(where: { !$0.isASCII }) { unicode = true }
            out.set(DICOMWriter.textElement(tag, vr, value))
        }
        for element in keys.elements where element.tag != .specificCharacterSet {
            if element.vr == .SQ {
                out.set(DataElement(tag: element.tag, vr: .SQ, length: nil, value: .sequence([])))
                continue
            }
            let keyword = DataDictionary.keyword(for: element.tag) ?? ""
            put(element.tag, element.vr, values[keyword])
        }
        for keyword in always {
            let tag = Self.tag(keyword)
            if !out.contains(tag) { put(tag, DataDictionary.entry(for: tag)?.vr ?? .LO, values[keyword]) }
        }
        if unicode { out.set(DICOMWriter.textElement(.specificCharacterSet, .CS, "ISO_IR 192")) }
        return out
    }
}
