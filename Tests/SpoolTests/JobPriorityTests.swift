import Testing

@testable import Spool

@Suite("Job priorities")
struct JobPriorityTests {
    @Test func urgentSortsBeforeNormalBeforeBulk() {
        #expect(JobPriority.urgent < .normal)
        #expect(JobPriority.normal < .bulk)
        #expect([JobPriority.bulk, .urgent, .normal].sorted() == [.urgent, .normal, .bulk])
    }

    @Test(arguments: JobPriority.allCases)
    func namesReadBackAsTheSamePriority(_ priority: JobPriority) {
        #expect(JobPriority(name: priority.name) == priority)
        #expect(priority.description == priority.name)
    }

    @Test(arguments: ["", "URGENT", "Normal", "high", "low", " bulk"])
    func unknownNamesAreRejected(_ name: String) {
        #expect(JobPriority(name: name) == nil)
    }

    @Test func rawValuesStoredInTheSpoolNeverChange() {
        #expect(JobPriority.allCases.map(\.rawValue) == [0, 1, 2])
        #expect(JobPriority.allCases.map(\.name) == ["urgent", "normal", "bulk"])
    }
}
