import Testing

@testable import Spool

@Suite("Deadlines")
struct DeadlineTests {
    /// (deadline, delivered at, now, seconds late).
    @Test(arguments: [
        (nil, nil, 500.0, nil), (nil, 400, 500, nil),
        (100, 90, 500, nil), (100, 100, 500, nil), (100, 130, 500, 30),
        (100, nil, 90, nil), (100, nil, 100, nil), (100, nil, 145, 45),
    ] as [(Double?, Double?, Double, Double?)])
    func howLateAJobIsDependsOnItsDeliveryOrTheClock(deadline: Double?, deliveredAt: Double?, now: Double, late: Double?) {
        #expect(Deadline.missedBy(deadline: deadline, deliveredAt: deliveredAt, now: now) == late)
    }
}
