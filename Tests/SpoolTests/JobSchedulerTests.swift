import Testing

@testable import Spool

@Suite("Job scheduler")
struct JobSchedulerTests {
    static let now = 10_000.0
    static let noon = 12 * 60
    static let night = TimeWindow("19:00-07:00")

    func job(
        _ id: Int64, _ priority: JobPriority = .normal, peer: String = "UHSX", created: Double = 0, nextAttempt: Double = 0,
        deadline: Double? = nil, window: TimeWindow? = nil, held: Bool = false
    ) -> QueuedJob {
        QueuedJob(
            id: id, peer: peer, priority: priority, created: created, nextAttempt: nextAttempt, deadline: deadline,
            window: window, held: held)
    }

    func next(
        _ jobs: [QueuedJob], minute: Int = noon, free: Int = 10, urgentOnly: Bool = false, now: Double = now
    ) -> [Int64] {
        JobScheduler.next(from: jobs, peer: "UHSX", now: now, minuteOfDay: minute, freeConnections: free, urgentOnly: urgentOnly)
    }

    @Test func urgentJobsComeFirstAndHeldJobsNever() {
        let jobs = [
            job(1, .bulk), job(2, .normal), job(3, .urgent, created: 50), job(4, .urgent, held: true), job(5, .normal, held: true),
        ]
        #expect(next(jobs) == [3, 2, 1])
    }

    @Test func jobsWaitForTheirNextAttempt() {
        let jobs = [job(1, .urgent, nextAttempt: Self.now + 0.5), job(2, nextAttempt: Self.now), job(3, .bulk, nextAttempt: Self.now - 1)]
        #expect(next(jobs) == [2, 3])
        #expect(next(jobs, now: Self.now + 0.5) == [1, 2, 3])
    }

    /// (minute of day, bulk job with the "19:00-07:00" window may start).
    @Test(arguments: [(12 * 60, false), (18 * 60 + 59, false), (19 * 60, true), (0, true), (6 * 60 + 59, true), (7 * 60, false)])
    func windowsThatCrossMidnightHoldBulkJobsOutsideThem(minute: Int, starts: Bool) {
        let jobs = [job(1, .bulk, window: Self.night), job(2, .bulk)]
        #expect(next(jobs, minute: minute) == (starts ? [1, 2] : [2]))
    }

    @Test func aWindowHoldsWhicheverJobCarriesIt() {
        let jobs = [job(1, .urgent, window: Self.night), job(2, .normal, window: Self.night), job(3, .bulk)]
        #expect(next(jobs, minute: Self.noon) == [3])
        #expect(next(jobs, minute: 22 * 60) == [1, 2, 3])
    }

    @Test func withinAPriorityTheEarliestDeadlineThenTheOldestThenTheSmallestIdGoesFirst() {
        let jobs = [
            job(1, created: 5), job(2, created: 1), job(3, created: 1, deadline: 900), job(4, created: 9, deadline: 200),
            job(6, created: 3), job(5, created: 3), job(7, .urgent, created: 99),
        ]
        #expect(next(jobs) == [7, 4, 3, 2, 5, 6, 1])
        #expect(next(jobs.reversed()) == [7, 4, 3, 2, 5, 6, 1])
    }

    /// (free connections, jobs started out of five eligible).
    @Test(arguments: [(-1, 0), (0, 0), (1, 1), (3, 3), (5, 5), (10, 5)])
    func noMoreJobsStartThanThereAreFreeConnections(free: Int, started: Int) {
        let jobs = (1...5).map { job(Int64($0), created: Double($0)) }
        #expect(next(jobs, free: free) == Array((1...5).map { Int64($0) }.prefix(started)))
    }

    @Test func theReservedConnectionTakesOnlyUrgentJobs() {
        let jobs = [job(1, .bulk), job(2, .normal), job(3, .urgent), job(4, .urgent, nextAttempt: Self.now + 60)]
        #expect(next(jobs, free: 1, urgentOnly: true) == [3])
        #expect(next([job(1, .bulk), job(2, .normal)], urgentOnly: true) == [])
    }

    @Test func otherPeersJobsAreIgnored() {
        let jobs = [job(1, .urgent, peer: "RSCH"), job(2, .bulk), job(3, peer: "uhsx")]
        #expect(next(jobs) == [2])
    }
}
