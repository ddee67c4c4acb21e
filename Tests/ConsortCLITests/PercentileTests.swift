import Foundation
import Testing

@testable import Workbench

/// Every benchmark prints percentiles by one definition (nearest rank), so that a p99 in one
/// table means what it means in the next.
@Suite("Percentiles")
struct PercentileTests {
    @Test func theNearestRankIsAValueMeasuredNeverTheMaximumForTheP99OfAHundred() {
        let hundred = (1...100).map(Double.init)
        #expect(nearestRank(0.99, ofSorted: hundred) == 99)
        #expect(nearestRank(0.5, ofSorted: hundred) == 50)
        #expect(nearestRank(1.0, ofSorted: hundred) == 100)
        #expect(nearestRank(0.0, ofSorted: hundred) == 1)
        // Fewer values than the percentile can tell apart: the slowest.
        #expect(nearestRank(0.99, ofSorted: [3, 7, 9]) == 9)
        #expect(nearestRank(0.5, ofSorted: [3, 7, 9]) == 7)
        #expect(nearestRank(0.5, ofSorted: [3, 7, 9, 11]) == 7)
        #expect(nearestRank(0.5, ofSorted: []).isNaN)
    }
}
