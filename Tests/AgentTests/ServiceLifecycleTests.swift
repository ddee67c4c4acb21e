import Foundation
import Platform
import TestSupport
import Testing

/// The daemons' lifecycle parts: a loop that can be woken and joined, and a group that stops its
/// services in reverse order under one deadline and names any that overran.
@Suite("Service lifecycle")
struct ServiceLifecycleTests {
    final class Counter: @unchecked Sendable {
        private let lock = NSLock()
        private var value = 0
        func add() { lock.withLock { value += 1 } }
        var count: Int { lock.withLock { value } }
    }

    /// A service that records its stop in a shared list and ends in time, or never.
    final class Part: Service, @unchecked Sendable {
        let name: String
        let stops: Stops
        let endsInTime: Bool
        init(_ name: String, stops: Stops, endsInTime: Bool = true) {
            self.name = name
            self.stops = stops
            self.endsInTime = endsInTime
        }
        func start() throws {}
        func stop(within seconds: Double) -> Bool {
            stops.append(name)
            return endsInTime
        }
    }

    final class Stops: @unchecked Sendable {
        private let lock = NSLock()
        private var names: [String] = []
        func append(_ name: String) { lock.withLock { names.append(name) } }
        var all: [String] { lock.withLock { names } }
    }

    @Test func aNudgedLoopTurnsWithoutWaitingForItsIntervalAndJoinsWhenStopped() throws {
        let turns = Counter()
        // An hour between turns: only the first turn and nudges make it turn.
        let loop = WakeableLoop(name: "test-loop", interval: 3600) {
            turns.add()
            return nil
        }
        loop.start()
        #expect(Poll.until { turns.count == 1 }, "the first turn comes at once")
        loop.nudge()
        #expect(Poll.until { turns.count == 2 }, "a nudge turns it again")
        #expect(loop.stop(within: 5), "stopped and joined: its thread has ended, and turns no more")
    }

    @Test func aLoopThatWillNotEndIsReportedNotWaitedFor() {
        let release = DispatchSemaphore(value: 0)
        let entered = DispatchSemaphore(value: 0)
        let loop = WakeableLoop(name: "test-stuck", interval: 1) {
            entered.signal()
            release.wait()
            return nil
        }
        loop.start()
        #expect(entered.wait(timeout: .now() + 5) == .success, "the turn began")
        #expect(!loop.stop(within: 0.05), "its turn is stuck: not joined")
        release.signal()
        #expect(loop.join(within: 5), "joined once its turn ends")
    }

    @Test func aGroupStopsInReverseOrderAndNamesWhatOverran() throws {
        let stops = Stops()
        let group = ServiceGroup()
        try group.start(Part("watchers", stops: stops))
        try group.start(Part("announcer", stops: stops, endsInTime: false))
        try group.start(Part("queue", stops: stops))
        #expect(group.stop(within: 1) == ["announcer"])
        #expect(stops.all == ["queue", "announcer", "watchers"])
        #expect(group.stop(within: 1).isEmpty && stops.all.count == 3, "a second stop has nothing left to stop")
    }
}
