import DICOM
import HTTP
import Foundation

/// A folder of received studies, laid out as `consort receive` stores them
/// (`ROOT/<StudyInstanceUID>/<SOPInstanceUID>.dcm`), answering what WADO-RS and QIDO-RS ask.
/// A stand-in for the agent's inventory (SQLite, in a later issue): it reads headers on demand.
public struct StudyFolder: Sendable {
    public let root: String

    public init(root: String) { self.root = root }

    /// The instance files of a study, by name; nil when the study is not held (or the UID is not
    /// a UID: nothing from a request names a path unchecked).
    public func instances(of studyUID: String) -> [String]? {
        guard UID.isValid(studyUID) else { return nil }
        let folder = "\(root)/\(studyUID)"
        guard let names = try? FileManager.default.contentsOfDirectory(atPath: folder) else { return nil }
        let files = names.filter { $0.hasSuffix(".dcm") }.sorted().map { "\(folder)/\($0)" }
        return files.isEmpty ? nil : files
    }

    /// Study-level facts for QIDO-RS, from the headers of each study's instances.
    public func studies(matching query: StudyQuery) -> [StudySummary] {
        let folders = ((try? FileManager.default.contentsOfDirectory(atPath: root)) ?? []).filter { UID.isValid($0) }.sorted()
        var out: [StudySummary] = []
        for uid in folders {
            if let wanted = query.studyInstanceUIDs, !wanted.contains(uid) { continue }
            guard let files = instances(of: uid), let first = try? DICOMFile.read(path: files[0]) else { continue }
            var summary = StudySummary(header: first.dataSet)
            var modalities = Set<String>(), series = Set<String>()
            for file in files {
                guard let header = try? DICOMFile.read(path: file).dataSet else { continue }
                if let m = header.string(.modality) { modalities.insert(m) }
                if let s = header.string(.seriesInstanceUID) { series.insert(s) }
            }
            summary.modalities = modalities.sorted()
            summary.seriesCount = series.count
            summary.instanceCount = files.count
            if query.matches(summary) { out.append(summary) }
            if out.count >= query.limit { break }
        }
        return out
    }
}

/// A QIDO-RS study query (PS3.18 §10.6): the attributes an agent asks by.
public struct StudyQuery: Sendable, Equatable {
    public var patientID: String?
    public var studyInstanceUIDs: [String]?
    /// Inclusive YYYYMMDD bounds; either may be open.
    public var dateFrom: String?
    public var dateTo: String?
    public var modality: String?
    public var limit = 1000

    public init(patientID: String? = nil, studyInstanceUIDs: [String]? = nil, dateFrom: String? = nil, dateTo: String? = nil, modality: String? = nil) {
        self.patientID = patientID
        self.studyInstanceUIDs = studyInstanceUIDs
        self.dateFrom = dateFrom
        self.dateTo = dateTo
        self.modality = modality
    }

    /// From a query string: PatientID=, StudyInstanceUID= (comma list), StudyDate=FROM-TO
    /// (either side may be empty), ModalitiesInStudy=, limit=. Unknown keys are refused, so a
    /// misspelled filter cannot silently widen a search.
    public init(queryString: String) throws(HTTPError) {
        for pair in queryString.split(separator: "&") where !pair.isEmpty {
            let parts = pair.split(separator: "=", maxSplits: 1, omittingEmptySubsequences: false)
            let key = String(parts[0]).removingPercentEncoding ?? String(parts[0])
            let value = parts.count > 1 ? (String(parts[1]).replacingOccurrences(of: "+", with: " ").removingPercentEncoding ?? "") : ""
            switch key {
            case "PatientID", "00100020": patientID = value
            case "StudyInstanceUID", "0020000D": studyInstanceUIDs = value.split(separator: ",").map(String.init)
            case "StudyDate", "00080020":
                let range = value.split(separator: "-", omittingEmptySubsequences: false).map(String.init)
                if range.count == 1 {
                    dateFrom = range[0]
                    dateTo = range[0]
                } else if range.count == 2 {
                    dateFrom = range[0].isEmpty ? nil : range[0]
                    dateTo = range[1].isEmpty ? nil : range[1]
                } else {
                    throw HTTPError(400, "StudyDate takes YYYYMMDD or FROM-TO")
                }
                for d in [dateFrom, dateTo].compactMap({ $0 }) where DICOMDate(d) == nil {
                    throw HTTPError(400, "\"\(d)\" is not a date (YYYYMMDD)")
                }
            case "ModalitiesInStudy", "00080061": modality = value
            case "limit":
                guard let n = Int(value), n > 0 else { throw HTTPError(400, "limit takes a positive number") }
                limit = min(n, 10_000)
            case "includefield", "fuzzymatching", "offset": break
            default: throw HTTPError(400, "Unknown query key \"\(key)\" (PatientID, StudyInstanceUID, StudyDate, ModalitiesInStudy, limit)")
            }
        }
    }

    /// The query string for these filters (for the client).
    public var queryString: String {
        var items: [(String, String)] = []
        if let patientID { items.append(("PatientID", patientID)) }
        if let uids = studyInstanceUIDs { items.append(("StudyInstanceUID", uids.joined(separator: ","))) }
        if dateFrom != nil || dateTo != nil {
            items.append(("StudyDate", dateFrom == dateTo && dateFrom != nil ? dateFrom! : "\(dateFrom ?? "")-\(dateTo ?? "")"))
        }
        if let modality { items.append(("ModalitiesInStudy", modality)) }
        var allowed = CharacterSet.alphanumerics
        allowed.insert(charactersIn: "-._~,")
        return items.map { "\($0.0)=\($0.1.addingPercentEncoding(withAllowedCharacters: allowed) ?? $0.1)" }.joined(separator: "&")
    }

    func matches(_ study: StudySummary) -> Bool {
        if let patientID, study.patientID != patientID { return false }
        if let modality, !study.modalities.contains(where: { $0.caseInsensitiveCompare(modality) == .orderedSame }) { return false }
        if dateFrom != nil || dateTo != nil {
            guard let date = study.studyDate else { return false }
            if let from = dateFrom, date < from { return false }
            if let to = dateTo, date > to { return false }
        }
        return true
    }
}

/// One study as QIDO-RS describes it (DICOM JSON, PS3.18 Annex F).
public struct StudySummary: Sendable, Equatable {
    public var studyInstanceUID: String
    public var studyDate: String?
    public var studyTime: String?
    public var accessionNumber: String?
    public var patientName: String?
    public var patientID: String?
    public var studyDescription: String?
    public var modalities: [String] = []
    public var seriesCount = 0
    public var instanceCount = 0

    public init(studyInstanceUID: String) { self.studyInstanceUID = studyInstanceUID }

    init(header: DataSet) {
        studyInstanceUID = header.string(.studyInstanceUID) ?? ""
        studyDate = header.string(.studyDate)
        studyTime = header.string(Tag(0x0008, 0x0030))
        accessionNumber = header.string(Tag(0x0008, 0x0050))
        patientName = header.string(.patientName)
        patientID = header.string(.patientID)
        studyDescription = header.string(Tag(0x0008, 0x1030))
    }

    /// The DICOM JSON object for this study.
    public var json: [String: Any] {
        var o: [String: Any] = ["0020000D": ["vr": "UI", "Value": [studyInstanceUID]]]
        func text(_ tag: String, _ vr: String, _ value: String?) {
            o[tag] = value.map { ["vr": vr, "Value": [$0]] } ?? ["vr": vr]
        }
        text("00080020", "DA", studyDate)
        text("00080030", "TM", studyTime)
        text("00080050", "SH", accessionNumber)
        text("00100020", "LO", patientID)
        text("00081030", "LO", studyDescription)
        o["00100010"] = patientName.map { ["vr": "PN", "Value": [["Alphabetic": $0]]] } ?? ["vr": "PN"]
        o["00080061"] = ["vr": "CS", "Value": modalities]
        o["00201206"] = ["vr": "IS", "Value": [seriesCount]]
        o["00201208"] = ["vr": "IS", "Value": [instanceCount]]
        return o
    }

    public static func json(_ studies: [StudySummary]) -> [UInt8] {
        Array((try? JSONSerialization.data(withJSONObject: studies.map(\.json), options: [.sortedKeys])) ?? Data("[]".utf8))
    }

    /// Reads a QIDO-RS answer (a JSON array of DICOM JSON objects; empty body: none).
    public static func parse(_ body: [UInt8]) throws(StowResponseError) -> [StudySummary] {
        if body.allSatisfy({ $0 == 0x20 || $0 == 0x0A || $0 == 0x0D }) { return [] }
        guard let array = (try? JSONSerialization.jsonObject(with: Data(body))) as? [[String: Any]] else {
            throw StowResponseError("The QIDO-RS answer is not a JSON array: \(String(decoding: body.prefix(200), as: UTF8.self))")
        }
        return array.compactMap { object in
            func values(_ tag: String) -> [Any] { ((object[tag] as? [String: Any])?["Value"] as? [Any]) ?? [] }
            guard let uid = values("0020000D").first as? String else { return nil }
            var s = StudySummary(studyInstanceUID: uid)
            s.studyDate = values("00080020").first as? String
            s.studyTime = values("00080030").first as? String
            s.accessionNumber = values("00080050").first as? String
            s.patientID = values("00100020").first as? String
            s.studyDescription = values("00081030").first as? String
            s.patientName = (values("00100010").first as? [String: Any])?["Alphabetic"] as? String
            s.modalities = values("00080061").compactMap { $0 as? String }
            s.seriesCount = (values("00201206").first as? NSNumber)?.intValue ?? Int(values("00201206").first as? String ?? "") ?? 0
            s.instanceCount = (values("00201208").first as? NSNumber)?.intValue ?? Int(values("00201208").first as? String ?? "") ?? 0
            return s
        }
    }
}
