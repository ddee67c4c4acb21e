import Foundation

/// A calendar day as DICOM writes it (YYYYMMDD), in UTC: the fetcher's period arithmetic and
/// the demo's study dates share it.
public enum CalendarDay {
    static let calendar: Calendar = {
        var calendar = Calendar(identifier: .gregorian)
        calendar.timeZone = TimeZone(identifier: "UTC")!
        return calendar
    }()

    /// Midnight UTC of a YYYYMMDD day, or nil.
    public static func date(_ text: String) -> Date? {
        guard text.count == 8, let y = Int(text.prefix(4)), let m = Int(text.dropFirst(4).prefix(2)), let d = Int(text.suffix(2)) else { return nil }
        return calendar.date(from: DateComponents(year: y, month: m, day: d))
    }

    /// Whether `text` is a real day as YYYYMMDD, years 1800 to 2200 (`date` is lenient: it
    /// takes 20241345 as a day of 2025).
    public static func isReal(_ text: String) -> Bool {
        guard text.count == 8, text.allSatisfy(\.isASCII), let year = Int(text.prefix(4)), (1800...2200).contains(year), let day = date(text) else { return false }
        return Self.text(day) == text
    }

    /// The YYYYMMDD day of a moment.
    public static func text(_ date: Date) -> String {
        let parts = calendar.dateComponents([.year, .month, .day], from: date)
        return String(format: "%04d%02d%02d", parts.year ?? 0, parts.month ?? 0, parts.day ?? 0)
    }
}
