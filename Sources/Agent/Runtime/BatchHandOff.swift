import Foundation

/// Work passed from one stage to the next, at most `limit` items waiting: `put` blocks while the
/// queue is full, `takeAll` hands over everything waiting at once (so the taker can do it in one
/// go, as the catch-up's recorder does in one transaction), and blocks while it is empty.
///
/// Why the taker takes everything: when its work has a fixed cost per go (a commit's flush), a
/// slow go lets items pile up and the next go clears them for that cost once. A disk that stalls
/// one flush for 300 ms then delays the stage before by nothing, as long as the queue has room
/// (before, the scan waited behind every commit with two batches queued).
final class BatchHandOff<Item>: @unchecked Sendable {
    let limit: Int
    private let condition = NSCondition()
    private var waiting: [Item] = []
    private var closed = false

    init(limit: Int) {
        precondition(limit >= 1, "a hand-off holds at least one item")
        self.limit = limit
    }

    /// Waits for room, then queues the item. After `close` the item is dropped (false).
    @discardableResult
    func put(_ item: Item) -> Bool {
        condition.lock()
        defer { condition.unlock() }
        while waiting.count >= limit && !closed { condition.wait() }
        guard !closed else { return false }
        waiting.append(item)
        condition.broadcast()
        return true
    }

    /// Everything waiting, in the order it was put (1 to `limit` items); waits while there is
    /// nothing. nil once the hand-off is closed and empty.
    func takeAll() -> [Item]? {
        condition.lock()
        defer { condition.unlock() }
        while waiting.isEmpty && !closed { condition.wait() }
        guard !waiting.isEmpty else { return nil }
        let items = waiting
        waiting.removeAll(keepingCapacity: true)
        condition.broadcast()
        return items
    }

    /// No more items: the taker gets what is still waiting, then nil.
    func close() {
        condition.lock()
        closed = true
        condition.broadcast()
        condition.unlock()
    }
}
