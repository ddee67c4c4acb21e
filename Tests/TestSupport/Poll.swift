import Foundation

/// Waiting by polling with a deadline, never a fixed sleep: `condition` is asked every few
/// milliseconds until it holds or `seconds` pass; the answer is its last.
public enum Poll {
    public static func until(within seconds: Double = 10, every interval: Double = 0.005, _ condition: () throws -> Bool) rethrows -> Bool {
        let end = Date().addingTimeInterval(seconds)
        while Date() < end {
            if try condition() { return true }
            Thread.sleep(forTimeInterval: interval)
        }
        return try condition()
    }
}
