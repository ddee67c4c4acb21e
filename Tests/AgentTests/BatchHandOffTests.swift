import Foundation
import Testing

@testable import Agent

/// The hand-off between the catch-up scan and its recorder: everything waiting goes at once and
/// in order, never more than the limit waits, and closing lets the taker finish what is left.
/// Each test's body runs on a thread waited for with a deadline: a hand-off that broke so as to
/// block for ever fails its test instead of hanging the suite.
@Suite("Batch hand-off")
struct BatchHandOffTests {
    /// Runs `body` on a thread of its own; an issue if it has not returned within 20 s.
    static func withinDeadline(_ what: String, sourceLocation: SourceLocation = #_sourceLocation, _ body: @escaping @Sendable () -> Void) {
        let done = DispatchSemaphore(value: 0)
        Thread {
            body()
            done.signal()
        }.start()
        if done.wait(timeout: .now() + 20) == .timedOut { Issue.record("blocked for 20 s: \(what)", sourceLocation: sourceLocation) }
    }

    @Test func theTakerGetsEverythingWaitingAtOnceInOrder() {
        Self.withinDeadline("put and take on a hand-off with room") {
            let handOff = BatchHandOff<Int>(limit: 8)
            for item in 1...3 { #expect(handOff.put(item)) }
            #expect(handOff.takeAll() == [1, 2, 3])
            #expect(handOff.put(4))
            handOff.close()  // so that a lost put cannot leave the next take waiting
            #expect(handOff.takeAll() == [4])
            #expect(handOff.takeAll() == nil)
        }
    }

    @Test func aPutWaitsWhileTheLimitIsReachedAndNeverExceedsIt() {
        Self.withinDeadline("a full hand-off and a fifth put") {
            let handOff = BatchHandOff<Int>(limit: 4)
            for item in 1...4 { #expect(handOff.put(item)) }
            let returned = DispatchSemaphore(value: 0), starting = DispatchSemaphore(value: 0)
            Thread {
                starting.signal()
                handOff.put(5)
                returned.signal()
            }.start()
            starting.wait()
            // Time for the fifth put to be made: it must wait rather than join the four. (Were
            // the thread slower than this, the check would pass without having tested the
            // bound; it cannot fail a correct hand-off.)
            usleep(50_000)
            #expect(handOff.takeAll() == [1, 2, 3, 4])
            #expect(returned.wait(timeout: .now() + 10) == .success, "the put waiting for room was not let in")
            handOff.close()  // so that a failed check above cannot leave the next take waiting
            #expect(handOff.takeAll() == [5])
        }
    }

    @Test func closingHandsOverWhatIsLeftThenEnds() {
        Self.withinDeadline("close with items waiting and a put blocked") {
            let handOff = BatchHandOff<String>(limit: 2)
            handOff.put("a")
            handOff.put("b")
            // A put waiting for room when the hand-off closes is refused, not left waiting.
            let refused = DispatchSemaphore(value: 0)
            Thread {
                if !handOff.put("c") { refused.signal() }
            }.start()
            usleep(20_000)
            handOff.close()
            #expect(refused.wait(timeout: .now() + 10) == .success, "a put waiting at close was not released")
            #expect(handOff.takeAll() == ["a", "b"])
            #expect(handOff.takeAll() == nil)
            #expect(!handOff.put("d"))
            #expect(handOff.takeAll() == nil)
        }
    }

    @Test func aTakerWaitingOnAnEmptyHandOffIsWokenByAPutAndByClose() {
        let results = LockedList()
        Self.withinDeadline("a taker on its own thread, ended by close") {
            let handOff = BatchHandOff<Int>(limit: 2)
            let done = DispatchSemaphore(value: 0)
            Thread {
                while let items = handOff.takeAll() { results.append(items) }
                done.signal()
            }.start()
            handOff.put(1)
            handOff.put(2)
            handOff.put(3)
            handOff.close()
            #expect(done.wait(timeout: .now() + 10) == .success, "the taker did not end after close")
        }
        // However the taker's turns fell, every item once, in order, never over the limit a turn.
        #expect(results.all.flatMap { $0 } == [1, 2, 3])
        #expect(results.all.allSatisfy { (1...2).contains($0.count) })
    }

    final class LockedList: @unchecked Sendable {
        private let lock = NSLock()
        private var items: [[Int]] = []
        func append(_ list: [Int]) { lock.withLock { items.append(list) } }
        var all: [[Int]] { lock.withLock { items } }
    }
}
