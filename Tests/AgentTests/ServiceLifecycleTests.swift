import Foundation
import Platform
import TestSupport
import Testing

@testable import Agent

/// The daemons' lifecycle parts: a loop that can be woken and joined, and a group that stops its
/// services in reverse order under one deadline and names any that overran.
@Suite("Service lifecycle")
struct ServiceLifecycleTests {
    /// A service that records its stop in a shared list and ends in time, or never.
    final class Part: Service, @unchecked Sendable {
        let name: String
        let stops: LockedValue<[String]>
        let endsInTime: Bool
        init(_ name: String, stops: LockedValue<[String]>, endsInTime: Bool = true) {
            self.name = name
            self.stops = stops
            self.endsInTime = endsInTime
        }
        func start() throws {}
        func stop(within seconds: Double) -> Bool {
            stops.update { $0.append(name) }
            return endsInTime
        }
    }

    @Test func aNudgedLoopTurnsWithoutWaitingForItsIntervalAndJoinsWhenStopped() throws {
        let turns = LockedValue(0)
        // An hour between turns: only the first turn and nudges make it turn.
        let loop = WakeableLoop(name: "test-loop", interval: 3600) {
            turns.update { $0 += 1 }
            return nil
        }
        loop.start()
        #expect(Poll.until { turns.value == 1 }, "the first turn comes at once")
        loop.nudge()
        #expect(Poll.until { turns.value == 2 }, "a nudge turns it again")
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
        let stops = LockedValue<[String]>([])
        let group = ServiceGroup()
        try group.start(Part("watchers", stops: stops))
        try group.start(Part("announcer", stops: stops, endsInTime: false))
        try group.start(Part("queue", stops: stops))
        #expect(group.stop(within: 1) == ["announcer"])
        #expect(stops.value == ["queue", "announcer", "watchers"])
        #expect(group.stop(within: 1).isEmpty && stops.value.count == 3, "a second stop has nothing left to stop")
    }
}
