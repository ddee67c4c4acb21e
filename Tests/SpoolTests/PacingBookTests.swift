import Testing

@testable import Spool

/// The bandwidth cap ranks as the queue does, on a fake clock: urgent bytes never wait for the
/// debt bulk has run up; bulk waits for everything sent; the cap holds over time.
@Suite("Pacing book")
struct PacingBookTests {
    /// 1 MB/s, so that a byte count reads as microseconds of the link.
    static let megabytePerSecond = 1_000_000

    @Test func aBurstGoesAtOnceThenTheCapHolds() {
        var book = PacingBook(bytesPerSecond: Self.megabytePerSecond)
        var waits: [Double] = []
        // A quarter second's worth after a quiet spell: at once.
        waits.append(book.charge(250_000, priority: .bulk, now: 100))
        // Another 100 kB at the same instant: 0.1 s behind.
        waits.append(book.charge(100_000, priority: .bulk, now: 100))
        #expect(waits[0] == 0)
        #expect(abs(waits[1] - 0.1) < 1e-9)
    }

    @Test func urgentBytesDoNotWaitBehindBulkDebt() {
        var book = PacingBook(bytesPerSecond: Self.megabytePerSecond)
        // Bulk has queued 10 s of bytes at time 0.
        var bulkWait = 0.0
        for _ in 0..<40 { bulkWait = book.charge(256_000, priority: .bulk, now: 0) }
        // An urgent instance of 500 kB at time 1: it waits for its own bytes beyond the burst
        // (0.25 s) and at most for the bulk bytes really sent in the last burst (another
        // 0.25 s), never for bulk's nine seconds of debt.
        let urgent = book.charge(500_000, priority: .urgent, now: 1)
        // Normal work waits for urgent bytes and its own, likewise not for bulk's debt.
        let normal = book.charge(100_000, priority: .normal, now: 1)
        // Bulk's next block waits for its own debt and the urgent and normal bytes on top.
        let bulkAfter = book.charge(256_000, priority: .bulk, now: 1)
        #expect(bulkWait > 9.9)
        #expect(urgent >= 0.25 - 1e-9 && urgent <= 0.5 + 1e-9, "urgent waited \(urgent) s")
        #expect(normal >= urgent + 0.1 - 1e-9 && normal <= 0.6 + 1e-9, "normal waited \(normal) s")
        #expect(bulkAfter > bulkWait - 1 + 0.5 + 0.1 + 0.256 - 1e-6, "bulk did not yield: \(bulkAfter) s")
    }

    @Test func bulkBytesAlreadySentCountAgainstUrgentWork() {
        var book = PacingBook(bytesPerSecond: Self.megabytePerSecond)
        // Bulk has sent at the cap for two seconds (a 100 kB block every 0.1 s, each at once).
        var time = 0.0
        while time < 2 {
            _ = book.charge(100_000, priority: .bulk, now: time)
            time += 0.1
        }
        // The link is in use: a 400 kB urgent burst fits the quarter-second burst less what bulk
        // just used, so it waits a little — but not for anything bulk has not sent.
        let urgent = book.charge(400_000, priority: .urgent, now: time)
        #expect(urgent > 0.1 && urgent < 0.3, "urgent waited \(urgent) s")
    }

    @Test func theCapHoldsOverTimeForEveryPriorityTogether() {
        var book = PacingBook(bytesPerSecond: Self.megabytePerSecond)
        // Senders at every priority, each sending 64 kB blocks as soon as told they may, for
        // 20 simulated seconds: the bytes sent in all stay within the cap plus one burst.
        var next: [JobPriority: Double] = [.urgent: 0, .normal: 0, .bulk: 0]
        var sent = 0
        let block = 64_000
        while let (priority, at) = next.min(by: { $0.value < $1.value }), at < 20 {
            let wait = book.charge(block, priority: priority, now: at)
            // The block goes once the wait is over: counted if that is within the 20 s.
            if at + wait < 20 { sent += block }
            // Urgent sends a block every 0.5 s at most: a stream of instances, not a flood.
            next[priority] = at + wait + (priority == .urgent ? 0.5 : 0)
        }
        let limit = Double(Self.megabytePerSecond) * (20 + book.burstSeconds) + Double(3 * block)
        #expect(Double(sent) <= limit, "\(sent) bytes in 20 s at a 1 MB/s cap")
        #expect(Double(sent) >= Double(Self.megabytePerSecond) * 19, "the cap was not used: \(sent)")
    }
}
