/// The hours of the day during which a job may start, such as "19:00-07:00" (may cross
/// midnight) or "08:00-18:00". "00:00-24:00" means always.
///
/// A window includes its start minute and excludes its end minute: "08:00-18:00" contains 08:00
/// and 17:59, not 18:00. The window applies to whatever job carries it (the rule language puts
/// windows on bulk work, but the scheduler does not look at priority).
///
/// Pure: the caller passes the local minute of the day (0 ..< 1440) and second of the minute.
/// Values outside those ranges are taken modulo a day (minutes) or clamped (seconds, so a leap
/// second 60 counts as 59). Daylight-saving changes are the caller's: it asks again after
/// waking, with the new local time.
public struct TimeWindow: Sendable, Hashable, CustomStringConvertible {
    public static let minutesPerDay = 1440

    /// Minute of the day the window opens, 0 ..< 1440.
    public let start: Int
    /// Minute of the day the window closes, 0 ... 1440 and never equal to `start`; less than
    /// `start` when the window crosses midnight; 1440 is written "24:00".
    public let end: Int

    /// Every minute of the day: "00:00-24:00".
    public static let always = TimeWindow(checkedStart: 0, end: 1440)

    /// Parses "HH:MM-HH:MM" (hours of one or two digits, minutes of two). The start is
    /// 00:00 ... 23:59; the end 00:00 ... 24:00 and different from the start. Nil for anything
    /// else: surrounding spaces, other dashes, "07:00-07:00" (use "00:00-24:00" for always).
    public init?(_ text: String) {
        let parts = text.split(separator: "-", omittingEmptySubsequences: false)
        guard parts.count == 2, let start = Self.minute(parts[0]), let end = Self.minute(parts[1]) else {
            return nil
        }
        self.init(startMinute: start, endMinute: end)
    }

    /// A window from minutes of the day; nil unless `0 <= start < 1440`, `0 <= end <= 1440` and
    /// `start != end`.
    public init?(startMinute start: Int, endMinute end: Int) {
        guard (0..<Self.minutesPerDay).contains(start), (0...Self.minutesPerDay).contains(end), start != end else {
            return nil
        }
        self.init(checkedStart: start, end: end)
    }

    private init(checkedStart start: Int, end: Int) {
        self.start = start
        self.end = end
    }

    /// Whether this window is every minute of the day.
    public var isAlways: Bool { start == 0 && end == Self.minutesPerDay }

    /// Whether a job may start at local minute `minuteOfDay` (taken modulo a day).
    public func contains(minuteOfDay: Int) -> Bool {
        let minute = Self.normalized(minuteOfDay)
        if start < end { return start <= minute && minute < end }
        return minute >= start || minute < end  // crosses midnight
    }

    /// Seconds from local time `minuteOfDay:second` until the window next opens; 0 when it is
    /// open now. Always less than a day.
    public func secondsUntilOpen(minuteOfDay: Int, second: Int) -> Int {
        if contains(minuteOfDay: minuteOfDay) { return 0 }
        let secondsPerDay = Self.minutesPerDay * 60
        let now = Self.normalized(minuteOfDay) * 60 + min(max(second, 0), 59)
        // Closed means the current minute is not `start`, so this is never 0.
        return ((start * 60 - now) % secondsPerDay + secondsPerDay) % secondsPerDay
    }

    /// "19:00-07:00": the text `init(_:)` accepts, hours always with two digits.
    public var description: String { "\(Self.clock(start))-\(Self.clock(end))" }

    private static func normalized(_ minute: Int) -> Int {
        (minute % minutesPerDay + minutesPerDay) % minutesPerDay
    }

    private static func clock(_ minute: Int) -> String {
        let hours = minute / 60, minutes = minute % 60
        return (hours < 10 ? "0" : "") + "\(hours):" + (minutes < 10 ? "0" : "") + "\(minutes)"
    }

    /// "H:MM" or "HH:MM", 00:00 ... 24:00, as minutes of the day; digits only (no signs or
    /// spaces, which `Int.init` would accept).
    private static func minute(_ text: Substring) -> Int? {
        let fields = text.split(separator: ":", omittingEmptySubsequences: false)
        guard fields.count == 2, (1...2).contains(fields[0].utf8.count), fields[1].utf8.count == 2,
            let hours = digits(fields[0]), let minutes = digits(fields[1]),
            minutes < 60, hours < 24 || (hours == 24 && minutes == 0)
        else { return nil }
        return hours * 60 + minutes
    }

    private static func digits(_ text: Substring) -> Int? {
        var value = 0
        for byte in text.utf8 {
            guard (UInt8(ascii: "0")...UInt8(ascii: "9")).contains(byte) else { return nil }
            value = value * 10 + Int(byte - UInt8(ascii: "0"))
        }
        return value
    }
}
