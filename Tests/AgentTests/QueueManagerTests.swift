import Foundation
import Platform
import Spool
import TestSupport
import Testing

@testable import Agent

/// The queue manager as a unit: a real spool (SQLite in a scratch file), a clock the test moves,
/// executors that do what the test says, attempts run inline. Every decision the daemon makes
/// about when a job goes — order, windows, lead time, backoff and its cap, the circuit a push and
/// a fetch share, max-age, holds — is checked here in milliseconds; the process tests check the
/// real executors end to end.
@Suite("Queue manager")
struct QueueManagerTests {
    /// 08:00 UTC (`ManualClock` reads windows in UTC).
    static let eight = 1_800_000_000.0

    /// What a scripted executor does with an attempt: finish the job (every pending instance
    /// acknowledged), or an outcome as given.
    enum Act {
        case finish
        case outcome(JobOutcome)
    }

    /// An executor that records every attempt and does what `script` says.
    final class Scripted: JobExecutor, @unchecked Sendable {
        let store: AgentStore
        let lock = NSLock()
        var attempts: [(id: Int64, at: Double, pending: Int)] = []
        var script: @Sendable (AgentStore.Job, Worker) -> Act = { _, _ in .finish }
        let clock: ManualClock

        init(store: AgentStore, clock: ManualClock) {
            self.store = store
            self.clock = clock
        }

        var started: [Int64] { lock.withLock { attempts.map(\.id) } }

        func execute(_ job: AgentStore.Job, _ worker: Worker) -> JobOutcome {
            let pending = (try? store.pendingCount(job: job.id)) ?? -1
            lock.withLock { attempts.append((job.id, clock.now, pending)) }
            switch script(job, worker) {
            case .finish:
                worker.peerAnswered(by: "a test")
                let sops = ((try? store.pending(job: job.id, limit: 1_000_000)) ?? []).map(\.sop)
                let now = clock.now
                try? store.recordAnswers(job: job.id, acknowledged: sops, refused: [], attempt: (now, now, 0, "test"))
                if job.kind.sendsInstances {
                    _ = try? store.finish(job: job.id, now: now, deliveredLate: nil)
                } else {
                    try? store.finishPlanning(job: job.id, note: "test", now: now)
                }
                return .finished
            case .outcome(let outcome):
                return outcome
            }
        }
    }

    /// A spool, a clock at 08:00 UTC, one peer (UHSX), the manager and its scripted executors.
    final class Rig: @unchecked Sendable {
        let path = NSTemporaryDirectory() + "consort-queue-\(UUID().uuidString).sqlite"
        let store: AgentStore
        let clock = ManualClock(QueueManagerTests.eight)
        let peers: Peers
        let manager: QueueManager
        let push: Scripted, plan: Scripted, fetch: Scripted
        let lines = LockedValue<[String]>([])

        init(connections: Int = 1, policy: RetryPolicy = RetryPolicy(), threshold: Int = 100, runner: any JobRunner = InlineRunner()) throws {
            store = try AgentStore(path: path)
            let lines = self.lines
            let log = Logger("spool", minimum: .info) { line in lines.update { $0.append(line) } }
            peers = Peers(
                targets: [PeerTarget(name: "UHSX", url: "http://127.0.0.1:9", tls: nil, connections: connections, bandwidth: nil, batch: nil, isLocal: false)],
                circuitThreshold: threshold, policy: policy, clock: clock, log: log)
            push = Scripted(store: store, clock: clock)
            plan = Scripted(store: store, clock: clock)
            fetch = Scripted(store: store, clock: clock)
            manager = QueueManager(
                store: store, peers: peers, executors: .init(push: push, plan: plan, fetch: fetch), policy: policy, clock: clock, telemetry: nil, log: log,
                runner: runner)
        }

        deinit { for suffix in ["", "-wal", "-shm"] { try? FileManager.default.removeItem(atPath: path + suffix) } }

        /// A push of `instances` instances of a new study to UHSX; its id.
        @discardableResult
        func queuePush(_ study: String, priority: JobPriority = .normal, deadline: Double? = nil, window: TimeWindow? = nil, instances: Int = 1) throws -> Int64 {
            let job = AgentStore.NewJob(kind: .push, destination: "UHSX", rule: "r-\(study)", purpose: "direct-care", priority: priority, window: window, deadline: deadline)
            let taken = (0..<instances).map { index in
                AgentStore.Taken(
                    sop: "\(study).\(index)", study: AgentStore.StudyFacts(uid: study), series: "\(study).0", path: "/archive/\(study)/\(index).dcm", size: 100,
                    mtime: 1, origin: "local", jobs: [job])
            }
            try store.record(taken: taken, problems: [], now: clock.now)
            return try #require(try store.jobs().first { $0.study == study && $0.kind == .push }?.id)
        }

        /// A job of another kind about a study with no instances here (a fetch, a gather).
        @discardableResult
        func queue(_ kind: JobKind, _ study: String, destination: String = "UHSX", priority: JobPriority = .normal, notBefore: Double? = nil) throws -> Int64 {
            let job = AgentStore.NewJob(kind: kind, destination: destination, rule: "r-\(study)", purpose: "direct-care", priority: priority, notBefore: notBefore)
            try store.queue([job], study: study, now: clock.now)
            return try #require(try store.jobs().first { $0.study == study && $0.kind == kind }?.id)
        }

        func job(_ id: Int64) throws -> AgentStore.Job { try #require(try store.job(id)) }

        /// Passes until nothing more starts (at most 20).
        func settle() {
            var before = -1
            for _ in 0..<20 {
                let now = push.attempts.count + plan.attempts.count + fetch.attempts.count
                if now == before { return }
                before = now
                manager.pass()
            }
        }
    }

    // MARK: - Order

    @Test func urgentGoesFirstThenEarlierDeadlinesThenNormalThenBulk() throws {
        let rig = try Rig(connections: 1)
        let bulk = try rig.queuePush("1.1", priority: .bulk)
        let normal = try rig.queuePush("1.2")
        let later = try rig.queuePush("1.3", deadline: Self.eight + 600)
        let sooner = try rig.queuePush("1.4", deadline: Self.eight + 300)
        let urgent = try rig.queuePush("1.5", priority: .urgent)
        rig.settle()
        #expect(rig.push.started == [urgent, sooner, later, normal, bulk])
        #expect(try [bulk, normal, later, sooner, urgent].allSatisfy { try rig.job($0).state == .done })
    }

    @Test func anUrgentJobTakesTheReservedConnectionWhileBulkHoldsEveryOther() throws {
        let rig = try Rig(connections: 1, runner: ThreadRunner())
        let release = DispatchSemaphore(value: 0)
        let bulk = try rig.queuePush("2.1", priority: .bulk)
        rig.push.script = { job, _ in
            if job.priority == .bulk { _ = release.wait(timeout: .now() + 10) }
            return .finish
        }
        rig.manager.pass()
        #expect(try Poll.until { rig.push.started == [bulk] })
        let urgent = try rig.queuePush("2.2", priority: .urgent)
        let normal = try rig.queuePush("2.3")
        rig.manager.pass()
        #expect(try Poll.until { try rig.job(urgent).state == .done }, "the urgent job went on the reserved connection")
        #expect(try rig.job(normal).state == .queued, "a normal job waits for the bulk job's connection")
        release.signal()
        #expect(try Poll.until {
            rig.manager.pass()
            return try rig.job(normal).state == .done && rig.job(bulk).state == .done
        })
    }

    // MARK: - When a job may start

    @Test func aWindowedJobWaitsForItsWindowToOpen() throws {
        let rig = try Rig()
        let id = try rig.queuePush("3.1", priority: .bulk, window: TimeWindow("19:00-07:00"))
        rig.settle()
        #expect(rig.push.started.isEmpty, "08:00 is outside 19:00-07:00")
        #expect(try rig.job(id).state == .queued)
        rig.clock.set(Self.eight + 11 * 3600 - 60)  // 18:59
        rig.settle()
        #expect(rig.push.started.isEmpty)
        rig.clock.set(Self.eight + 11 * 3600)  // 19:00
        rig.settle()
        #expect(rig.push.started == [id])
    }

    @Test func aGatherWaitsForItsLeadTimeBeforeTheMeeting() throws {
        let rig = try Rig()
        let id = try rig.queue(.gather, "mdt:9434765919:2027-01-20", destination: "ASPH", notBefore: Self.eight + 3600)
        rig.settle()
        #expect(rig.plan.started.isEmpty, "not before its lead time")
        rig.clock.advance(by: 3599)
        rig.settle()
        #expect(rig.plan.started.isEmpty)
        rig.clock.advance(by: 1)
        rig.settle()
        #expect(rig.plan.started == [id])
        #expect(try rig.job(id).state == .done)
    }

    @Test func aJobForANameTheConfigurationDoesNotKnowWaitsLongAndSaysWhy() throws {
        let rig = try Rig()
        let id = try rig.queue(.fetch, "4.1", destination: "NOWHERE")
        rig.settle()
        let job = try rig.job(id)
        #expect(rig.fetch.started.isEmpty)
        #expect(job.state == .deferred && job.nextAttempt == Self.eight + RetryPolicy.defaultMaximumDelay)
        #expect((job.lastError ?? "").contains("no address for NOWHERE"), "\(job.lastError ?? "")")
    }

    // MARK: - Failures

    @Test func backoffGrowsWithEachFailureAndStopsAtTheMaximum() throws {
        let rig = try Rig(policy: RetryPolicy(minimumDelay: 10, maximumDelay: 40, maximumAge: 86_400))
        let id = try rig.queuePush("5.1")
        rig.push.script = { _, _ in .outcome(.failed(.transient, reason: "connection refused")) }
        var waits: [Double] = []
        for _ in 0..<7 {
            rig.manager.pass()
            let job = try rig.job(id)
            #expect(job.state == .deferred && job.lastError == "connection refused")
            waits.append(job.nextAttempt - rig.clock.now)
            rig.clock.set(job.nextAttempt)
        }
        // Equal jitter: between half the ceiling and the ceiling, 10 → 20 → 40 → 40 …
        for (index, wait) in waits.enumerated() {
            let ceiling = min(10 * pow(2, Double(index)), 40)
            #expect(wait >= ceiling / 2 && wait <= ceiling, "failure \(index + 1): waited \(wait) s, ceiling \(ceiling) s")
        }
        #expect(waits.suffix(4).allSatisfy { $0 <= 40 }, "capped at the maximum delay: \(waits)")
        #expect(rig.push.started.count == 7)
    }

    @Test func aConfigurationFaultWaitsTheLongestDelayAndMarksThePeer() throws {
        let rig = try Rig(policy: RetryPolicy(minimumDelay: 10, maximumDelay: 300, maximumAge: 86_400))
        let id = try rig.queuePush("5.2")
        rig.push.script = { _, _ in .outcome(.failed(.configuration, reason: "the peer refused our certificate")) }
        rig.manager.pass()
        let job = try rig.job(id)
        #expect(job.nextAttempt == Self.eight + 300)
        #expect(job.lastError == "configuration fault: the peer refused our certificate")
        #expect(rig.peers.status.first?.configurationFault == true)
        #expect(rig.lines.value.contains { $0.contains("CONFIGURATION FAULT") })
    }

    @Test func aJobPastItsMaximumAgeFailsWithItsLastError() throws {
        let rig = try Rig(policy: RetryPolicy(minimumDelay: 10, maximumDelay: 20, maximumAge: 60))
        let id = try rig.queuePush("6.1")
        rig.push.script = { _, _ in .outcome(.failed(.transient, reason: "timed out")) }
        rig.manager.pass()
        rig.clock.advance(by: 61)
        rig.manager.pass()
        let job = try rig.job(id)
        #expect(job.state == .failed)
        #expect((job.lastError ?? "").contains("older than max-age (60 s); last error: timed out"), "\(job.lastError ?? "")")
        #expect(rig.push.started.count == 1, "not tried again once too old")
    }

    @Test func aRetryResumesFromWhatThePeerAcknowledged() throws {
        let rig = try Rig(policy: RetryPolicy(minimumDelay: 10, maximumDelay: 20, maximumAge: 86_400))
        let id = try rig.queuePush("7.1", instances: 5)
        let store = rig.store
        let clock = rig.clock
        rig.push.script = { job, worker in
            guard job.attempts == 0 else { return .finish }
            // The first attempt: three acknowledged, then the connection drops.
            let three = ((try? store.pending(job: job.id, limit: 3)) ?? []).map(\.sop)
            try? store.recordAnswers(job: job.id, acknowledged: three, refused: [], attempt: (clock.now, clock.now, 300, "3 stored"))
            return .outcome(.failed(.transient, reason: "connection reset"))
        }
        rig.manager.pass()
        #expect(try rig.job(id).acknowledged == 3)
        rig.clock.advance(by: 20)
        rig.manager.pass()
        #expect(rig.push.attempts.map(\.pending) == [5, 2], "the second attempt has only the two not acknowledged")
        #expect(try rig.job(id).state == .done && rig.job(id).acknowledged == 5)
    }

    @Test func aPersonHoldsReleasesAndDropsJobs() throws {
        let rig = try Rig()
        let held = try rig.queuePush("8.1")
        let dropped = try rig.queuePush("8.2")
        _ = try rig.store.hold([held, dropped])
        _ = try rig.store.drop([dropped], reason: "dropped by a test", now: rig.clock.now)
        rig.settle()
        #expect(rig.push.started.isEmpty, "held and dropped jobs never start")
        _ = try rig.store.release([held], now: rig.clock.now)
        rig.settle()
        #expect(rig.push.started == [held])
        #expect(try rig.job(dropped).state == .dropped)
    }

    @Test func anIdentityConflictHoldsTheJobForAPerson() throws {
        let rig = try Rig()
        let id = try rig.queue(.fetch, "9.1")
        rig.fetch.script = { _, worker in
            worker.peerAnswered(by: "a test")
            return .outcome(.heldForAPerson(reason: "PATIENT MISMATCH: names another NHS number"))
        }
        rig.settle()
        let job = try rig.job(id)
        #expect(job.state == .held && (job.lastError ?? "").contains("PATIENT MISMATCH"))
        #expect(rig.fetch.started == [id], "a held job is not tried again")
    }

    @Test func anOperatorsHoldOfARunningJobStopsItsWorkerAndStays() throws {
        let rig = try Rig(runner: ThreadRunner())
        let id = try rig.queuePush("12.1", instances: 3)
        let entered = DispatchSemaphore(value: 0), release = DispatchSemaphore(value: 0)
        rig.push.script = { _, worker in
            entered.signal()
            _ = release.wait(timeout: .now() + 10)
            // What the push executor does between two batches.
            return worker.isHalted ? .outcome(.leftToOthers) : .finish
        }
        rig.manager.pass()
        #expect(entered.wait(timeout: .now() + 10) == .success)
        #expect(try rig.store.hold([id]) == [id])
        rig.manager.halt([id])
        release.signal()
        #expect(try Poll.until { rig.peers.freeSlots("UHSX")?.connections == 1 }, "the worker ended and gave its connection back")
        #expect(try rig.job(id).state == .held && rig.job(id).acknowledged == 0)
        rig.manager.pass()
        #expect(rig.push.started == [id], "a held job is not started again")
    }

    @Test func aReloadThatChangesAPeerLeavesTheRunningWorkersAccountsWithTheOldOne() throws {
        let rig = try Rig(connections: 1, runner: ThreadRunner())
        let old = try rig.queuePush("13.1", priority: .bulk)
        let gates = [old: (DispatchSemaphore(value: 0), DispatchSemaphore(value: 0))]
        let later = LockedValue<[Int64: (DispatchSemaphore, DispatchSemaphore)]>(gates)
        rig.push.script = { job, _ in
            guard let (entered, release) = later.value[job.id] else { return .finish }
            entered.signal()
            _ = release.wait(timeout: .now() + 10)
            return .finish
        }
        rig.manager.pass()
        #expect(gates[old]!.0.wait(timeout: .now() + 10) == .success)
        // SIGHUP: UHSX's line now has two connections (a new peer, a new circuit).
        rig.peers.update(
            targets: [PeerTarget(name: "UHSX", url: "http://127.0.0.1:9", tls: nil, connections: 2, bandwidth: nil, batch: nil, isLocal: false)], circuitThreshold: 100)
        // A job started on the new peer, still running when the old worker ends.
        let new = try rig.queuePush("13.2", priority: .bulk)
        let newGate = (DispatchSemaphore(value: 0), DispatchSemaphore(value: 0))
        later.update { $0[new] = newGate }
        rig.manager.pass()
        #expect(newGate.0.wait(timeout: .now() + 10) == .success)
        #expect(rig.peers.freeSlots("UHSX")?.connections == 1)
        gates[old]!.1.signal()
        #expect(try Poll.until { try rig.job(old).state == .done })
        #expect(try Poll.until { rig.push.started.count == 2 && rig.peers.status.first?.busy == 1 })
        #expect(rig.peers.freeSlots("UHSX")?.connections == 1, "the old worker's release did not free the new peer's connection in use")
        newGate.1.signal()
        #expect(try Poll.until { rig.manager.isIdle && rig.peers.freeSlots("UHSX")?.connections == 2 })
    }

    // MARK: - The circuit

    @Test func aPeerDownForFetchesIsDownForPushesUntilOneProbeFindsItBack() throws {
        let rig = try Rig(connections: 2, policy: RetryPolicy(minimumDelay: 10, maximumDelay: 40, maximumAge: 86_400), threshold: 2)
        let first = try rig.queue(.fetch, "10.1")
        let second = try rig.queue(.fetch, "10.2")
        rig.fetch.script = { _, _ in .outcome(.failed(.transient, reason: "connection refused")) }
        rig.manager.pass()
        #expect(rig.fetch.started == [first, second])
        #expect(rig.peers.status.first?.circuitClosed == false, "two failures in a row open it")
        // A push to the same peer, due now: it waits for the circuit.
        let push = try rig.queuePush("10.3", priority: .urgent)
        rig.settle()
        #expect(rig.push.started.isEmpty, "no push to a peer whose circuit is open")
        // When the circuit's time comes, one job goes: the probe (the urgent push).
        rig.clock.advance(by: 40)
        rig.push.script = { _, worker in
            #expect(rig.peers.status.first?.circuit == "half-open (probing)")
            return .finish
        }
        rig.fetch.script = { _, _ in .finish }
        rig.manager.pass()
        #expect(rig.push.started == [push])
        #expect(rig.fetch.started.count == 2, "nothing else started beside the probe")
        #expect(rig.peers.status.first?.circuitClosed == true, "the probe's success closes it")
        rig.settle()
        #expect(try rig.job(first).state == .done && rig.job(second).state == .done)
    }

    @Test func aProbeThatNeverReachedThePeerLeavesTheNextStartAProbe() throws {
        let rig = try Rig(policy: RetryPolicy(minimumDelay: 10, maximumDelay: 40, maximumAge: 86_400), threshold: 1)
        let push = try rig.queuePush("11.1")
        rig.push.script = { _, _ in .outcome(.failed(.transient, reason: "connection refused")) }
        rig.manager.pass()
        #expect(rig.peers.status.first?.circuitClosed == false)
        rig.clock.advance(by: 40)
        // Our own disk fails during the probe: no evidence about the peer either way.
        rig.push.script = { _, _ in .outcome(.failed(.local, reason: "cannot read a file")) }
        rig.manager.pass()
        #expect(rig.push.started == [push, push])
        #expect(rig.peers.status.first?.circuit == "open (probe allowed now)")
    }
}
