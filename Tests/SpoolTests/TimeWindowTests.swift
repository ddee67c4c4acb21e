import Testing

@testable import Spool

@Suite("Time windows")
struct TimeWindowTests {
    @Test(arguments: ["19:00-07:00", "08:30-17:45", "00:00-24:00", "22:00-00:00", "23:59-00:01", "00:00-00:01"])
    func windowsPrintBackAsTheyWereWritten(_ text: String) throws {
        let window = try #require(TimeWindow(text))
        #expect(window.description == text)
        #expect(TimeWindow(window.description) == window)
    }

    @Test func oneDigitHoursAreAcceptedAndPrintedWithTwo() throws {
        let window = try #require(TimeWindow("7:00-9:30"))
        #expect(window.start == 420 && window.end == 570)
        #expect(window.description == "07:00-09:30")
    }

    @Test(arguments: [
        "", "19:00", "19:00-", "-07:00", "19:00-07:00-08:00", "25:00-07:00", "19:60-07:00", "24:00-07:00",
        "19:00-24:01", "07:00-07:00", "00:00-00:00", "7-9", "19:0-07:00", "123:00-07:00", "+1:00-07:00",
        " 19:00-07:00", "19:00 - 07:00", "ab:cd-07:00", "19:00–07:00", "19.00-07.00", "١٩:00-07:00",
    ])
    func malformedWindowsAreRejected(_ text: String) {
        #expect(TimeWindow(text) == nil)
    }

    /// (minute of day, inside "19:00-07:00").
    @Test(arguments: [
        (18 * 60 + 59, false), (19 * 60, true), (23 * 60 + 59, true), (0, true), (6 * 60 + 59, true), (7 * 60, false),
        (12 * 60, false),
    ])
    func windowsThatCrossMidnightContainTheNightOnBothSides(minute: Int, inside: Bool) throws {
        let night = try #require(TimeWindow("19:00-07:00"))
        #expect(night.contains(minuteOfDay: minute) == inside)
    }

    /// (minute of day, inside "08:00-18:00").
    @Test(arguments: [(7 * 60 + 59, false), (8 * 60, true), (17 * 60 + 59, true), (18 * 60, false), (0, false)])
    func aDaytimeWindowIncludesItsStartAndExcludesItsEnd(minute: Int, inside: Bool) throws {
        let day = try #require(TimeWindow("08:00-18:00"))
        #expect(day.contains(minuteOfDay: minute) == inside)
    }

    @Test func midnightToMidnightMeansAlways() throws {
        let always = try #require(TimeWindow("00:00-24:00"))
        #expect(always == .always)
        #expect(always.isAlways)
        #expect((0..<1440).allSatisfy { always.contains(minuteOfDay: $0) })
        #expect(always.secondsUntilOpen(minuteOfDay: 723, second: 41) == 0)
        #expect(TimeWindow("19:00-07:00")?.isAlways == false)
    }

    @Test func aWindowEndingAtMidnightRunsToTheEndOfTheDay() throws {
        for text in ["22:00-00:00", "22:00-24:00"] {
            let late = try #require(TimeWindow(text))
            #expect(late.contains(minuteOfDay: 23 * 60 + 59), "\(text)")
            #expect(!late.contains(minuteOfDay: 0), "\(text)")
            #expect(!late.contains(minuteOfDay: 21 * 60 + 59), "\(text)")
        }
    }

    /// (window, minute, second, seconds until it opens).
    @Test(arguments: [
        ("19:00-07:00", 19 * 60, 0, 0), ("19:00-07:00", 2 * 60, 30, 0), ("19:00-07:00", 7 * 60, 0, 12 * 3600),
        ("19:00-07:00", 18 * 60 + 59, 30, 30), ("19:00-07:00", 12 * 60, 0, 7 * 3600),
        ("08:00-18:00", 18 * 60, 0, 14 * 3600), ("08:00-18:00", 23 * 60 + 59, 59, 8 * 3600 + 1),
        ("08:00-18:00", 7 * 60 + 59, 59, 1), ("08:00-18:00", 0, 0, 8 * 3600),
        ("08:00-18:00", 7 * 60 + 59, 60, 1),  // a leap second counts as the minute's last
    ])
    func secondsUntilOpenCountToTheNextStart(window text: String, minute: Int, second: Int, seconds: Int) throws {
        let window = try #require(TimeWindow(text))
        #expect(window.secondsUntilOpen(minuteOfDay: minute, second: second) == seconds)
    }

    @Test func minutesOutsideADayWrapAround() throws {
        let night = try #require(TimeWindow("19:00-07:00"))
        #expect(night.contains(minuteOfDay: 1440 + 20 * 60))
        #expect(night.contains(minuteOfDay: -60))  // 23:00 the day before
        #expect(!night.contains(minuteOfDay: -12 * 60))
        #expect(night.secondsUntilOpen(minuteOfDay: 1440 + 18 * 60, second: 0) == 3600)
    }

    @Test(arguments: [(0, 1440, true), (1140, 420, true), (0, 0, false), (1440, 60, false), (-1, 60, false), (60, 1441, false)])
    func windowsFromMinutesAreChecked(start: Int, end: Int, valid: Bool) {
        #expect((TimeWindow(startMinute: start, endMinute: end) != nil) == valid)
    }
}
