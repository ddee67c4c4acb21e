import Testing

@testable import Spool

/// The bandwidth cap ranks as the queue does, on a fake clock: urgent bytes never wait for the
/// debt bulk has run up; bulk yields the link to urgent blocks and waits for everything sent;
/// the cap holds over time.
@Suite("Pacing book")
struct PacingBookTests {
    /// 1 MB/s, so that a byte count reads as microseconds of the link.
    static let megabytePerSecond = 1_000_000

    /// A block charged at `now` and sent as soon as the book lets it, nothing else happening
    /// meanwhile: when it went.
    static func send(_ book: inout PacingBook, _ bytes: Int, _ priority: JobPriority, at now: Double) -> Double {
        let charge = book.charge(bytes, priority: priority, now: now)
        let goes = now + book.wait(charge, now: now)
        book.went(charge, now: goes)
        return goes
    }

    @Test func aBurstGoesAtOnceThenTheCapHolds() {
        var book = PacingBook(bytesPerSecond: Self.megabytePerSecond)
        // A quarter second's worth after a quiet spell: at once.
        let first = Self.send(&book, 250_000, .bulk, at: 100)
        // Another 100 kB at the same instant: 0.1 s behind.
        let second = Self.send(&book, 100_000, .bulk, at: 100)
        #expect(first == 100)
        #expect(abs(second - 100.1) < 1e-9)
    }

    @Test func urgentBytesDoNotWaitBehindBulkDebt() {
        var book = PacingBook(bytesPerSecond: Self.megabytePerSecond)
        // Bulk sends at the cap for a second, then queues 10 s of debt at time 1.
        var time = 0.0
        while time < 1 { time = Self.send(&book, 64_000, .bulk, at: time) }
        var debt: [PacingBook.Charge] = []
        for _ in 0..<40 { debt.append(book.charge(256_000, priority: .bulk, now: 1)) }
        // An urgent instance of 500 kB at time 1: it waits for its own bytes beyond the burst
        // (0.25 s) and at most for the bulk bytes really sent in the last burst (another
        // 0.25 s, and the block on the link), never for bulk's ten seconds of debt.
        let urgent = book.charge(500_000, priority: .urgent, now: 1)
        let urgentWait = book.wait(urgent, now: 1)
        // Normal work waits for urgent bytes and its own, likewise not for bulk's debt.
        let normal = book.charge(100_000, priority: .normal, now: 1)
        let normalWait = book.wait(normal, now: 1)
        #expect(book.wait(debt.last!, now: 1) > 9.9)
        #expect(urgentWait >= 0.25 - 1e-9 && urgentWait <= 0.5 + 0.064 + 1e-9, "urgent waited \(urgentWait) s")
        #expect(normalWait >= urgentWait - 1e-9 && normalWait <= 0.6 + 0.064 + book.yieldGap + 1e-9, "normal waited \(normalWait) s")
        // Bulk's first block of debt, due by its own book, yields until urgent and normal are done.
        #expect(book.wait(debt[0], now: 1) >= normalWait - 1e-9, "bulk did not yield")
    }

    @Test func bulkBytesAlreadySentCountAgainstUrgentWork() {
        var book = PacingBook(bytesPerSecond: Self.megabytePerSecond)
        // Bulk has sent as fast as the cap lets it for two seconds: the link is full, and no
        // burst is left.
        var time = 0.0
        while time < 2 { time = Self.send(&book, 100_000, .bulk, at: time) }
        // A 400 kB urgent burst now waits its own 0.4 s on the link (the bulk bytes just sent
        // count): had they not counted, it would go within the burst, after 0.15 s, and the
        // destination would get bulk's rate and urgent's on top.
        let urgent = book.charge(400_000, priority: .urgent, now: time)
        let wait = book.wait(urgent, now: time)
        #expect(wait > 0.35 && wait < 0.5, "urgent waited \(wait) s")
    }

    /// Four bulk senders keep a block each booked ahead on a busy link; an urgent instance of
    /// eight blocks arrives. Its blocks go at the cap, one after another: no bulk block goes
    /// between them, though the bulk blocks were booked first.
    @Test func bulkBlocksBookedBeforeAnUrgentInstanceYieldToIt() {
        var book = PacingBook(bytesPerSecond: Self.megabytePerSecond)
        let block = 64_000, cost = 0.064
        var time = 0.0
        // The link busy with bulk for two seconds, then four blocks booked ahead.
        while time < 2 { time = Self.send(&book, block, .bulk, at: time) }
        let booked = (0..<4).map { _ in book.charge(block, priority: .bulk, now: time) }
        // The urgent instance, block by block as its sender reads them.
        let start = time
        var urgentEnds: [Double] = []
        for _ in 0..<8 {
            let charge = book.charge(block, priority: .urgent, now: time)
            time += book.wait(charge, now: time)
            book.went(charge, now: time)
            // No booked bulk block may go before this urgent block's end and the gap after it.
            for bulk in booked { #expect(book.wait(bulk, now: time) > 0, "a bulk block went between urgent blocks") }
            time += 1e-4  // the sender sends the block and reads the next
            urgentEnds.append(time)
        }
        // At the cap: eight blocks' time, plus at most the bulk block on the link when it came.
        #expect(time - start <= 9 * cost + 0.01, "urgent took \(time - start) s")
    }

    @Test func theCapHoldsOverTimeForEveryPriorityTogether() {
        var book = PacingBook(bytesPerSecond: Self.megabytePerSecond)
        // Senders at every priority, each sending 64 kB blocks as soon as told they may, in
        // steps of a millisecond for 20 simulated seconds: the bytes sent in all stay within the
        // cap plus one burst, and the cap is used.
        let block = 64_000, step = 0.001
        var waiting: [JobPriority: PacingBook.Charge] = [:]
        var idleUntil: [JobPriority: Double] = [.urgent: 0, .normal: 0, .bulk: 0]
        var sent = 0
        var now = 0.0
        while now < 20 {
            for priority in JobPriority.allCases {
                if waiting[priority] == nil, idleUntil[priority]! <= now { waiting[priority] = book.charge(block, priority: priority, now: now) }
                if let charge = waiting[priority], book.wait(charge, now: now) <= 0 {
                    book.went(charge, now: now)
                    sent += block
                    waiting[priority] = nil
                    // Urgent sends a block every 0.5 s at most: a stream of instances, not a flood.
                    if priority == .urgent { idleUntil[.urgent] = now + 0.5 }
                }
            }
            now += step
        }
        let limit = Double(Self.megabytePerSecond) * (20 + book.burstSeconds) + Double(3 * block)
        #expect(Double(sent) <= limit, "\(sent) bytes in 20 s at a 1 MB/s cap")
        #expect(Double(sent) >= Double(Self.megabytePerSecond) * 19, "the cap was not used: \(sent)")
    }
}
