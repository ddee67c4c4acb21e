import DICOM

/// An MDT list as it is dropped into the lists folder: CSV with a header line
/// `nhs_number,meeting_date,host` (columns in any order; more columns allowed and ignored),
/// one patient a line. Dates are YYYYMMDD or YYYY-MM-DD; NHS numbers may be written with spaces.
///
/// Patient safety: a line whose NHS number fails its Modulus 11 check, whose date is not a date,
/// or whose host is not a member is not routed: it is reported, with its line number, for a person
/// to correct. The good lines of the same list still go ahead.
public enum MDTList {
    public struct Problem: Sendable, Hashable, CustomStringConvertible {
        public var line: Int
        public var message: String
        public var description: String { "line \(line): \(message)" }
    }

    public static func parse(_ text: String, members: Set<String>) -> (entries: [ListEntry], problems: [Problem]) {
        var lines = text.split(omittingEmptySubsequences: false, whereSeparator: { $0 == "\n" || $0 == "\r\n" })
            .map { $0.hasSuffix("\r") ? String($0.dropLast()) : String($0) }
        while let last = lines.last, last.trimmingSpaces.isEmpty { lines.removeLast() }
        guard let header = lines.first else { return ([], [Problem(line: 1, message: "the list is empty")]) }
        let columns = header.split(separator: ",", omittingEmptySubsequences: false).map {
            String($0).trimmingSpaces.lowercased().replacingSpaces()
        }
        guard let nhsColumn = columns.firstIndex(of: "nhs_number"), let dateColumn = columns.firstIndex(of: "meeting_date"),
            let hostColumn = columns.firstIndex(of: "host")
        else {
            return ([], [Problem(line: 1, message: "the first line must name the columns nhs_number, meeting_date and host")])
        }
        var entries: [ListEntry] = []
        var problems: [Problem] = []
        for (offset, line) in lines.enumerated().dropFirst() {
            let number = offset + 1
            if line.trimmingSpaces.isEmpty || line.hasPrefix("#") { continue }
            let fields = line.split(separator: ",", omittingEmptySubsequences: false).map { String($0).trimmingSpaces }
            guard fields.count > max(nhsColumn, dateColumn, hostColumn) else {
                problems.append(Problem(line: number, message: "expected \(columns.count) columns, found \(fields.count)"))
                continue
            }
            guard let nhs = NHSNumber(fields[nhsColumn]) else {
                problems.append(Problem(line: number, message: "\"\(fields[nhsColumn])\" is not a valid NHS number (ten digits, Modulus 11 check); not routed"))
                continue
            }
            guard let date = DICOMDate(fields[dateColumn].filter { $0 != "-" }) else {
                problems.append(Problem(line: number, message: "\"\(fields[dateColumn])\" is not a date (YYYY-MM-DD)"))
                continue
            }
            let host = fields[hostColumn]
            guard members.contains(host) else {
                problems.append(Problem(line: number, message: "host \"\(host)\" is not a member of the consortium"))
                continue
            }
            entries.append(ListEntry(nhsNumber: nhs.digits, meetingDate: date, host: host))
        }
        return (entries, problems)
    }
}

extension String {
    fileprivate func replacingSpaces() -> String { String(map { $0 == " " ? "_" : $0 }) }
}
