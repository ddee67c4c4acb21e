/// The benchmarks' one definition of a percentile: nearest rank. Of values sorted ascending, the
/// smallest with at least the fraction `p` of them at or below it — so the p99 of 100 latencies
/// is the 99th, not the slowest, and every figure printed is one that was measured.
/// nan when there are none.
func nearestRank(_ p: Double, ofSorted values: [Double]) -> Double {
    guard !values.isEmpty else { return .nan }
    let rank = Int((p * Double(values.count)).rounded(.up))
    return values[min(values.count - 1, max(0, rank - 1))]
}

/// The middle of runs timed in turn (the upper middle of an even count): what a benchmark that
/// repeats a short transfer reports, one run being the machine's moment as much as the code's.
func median(_ values: [Double]) -> Double { values.sorted()[values.count / 2] }
