import Foundation

/// Reader connections handed out first come, first served: a ticket each, a free connection to
/// the oldest ticket (trying each connection's lock in turn lets new lookups overtake waiting
/// ones, and the slowest lookups wait longest).
final class ReaderPool: @unchecked Sendable {
    private let condition = NSCondition()
    private var free: [RegistryConnection]
    private var nextTicket = 0
    private var serving = 0

    init(_ connections: [RegistryConnection]) { free = connections }

    func with<T>(_ body: (RegistryConnection) throws -> T) throws -> T {
        condition.lock()
        let ticket = nextTicket
        nextTicket += 1
        while free.isEmpty || ticket != serving { condition.wait() }
        serving += 1
        let connection = free.removeLast()
        condition.broadcast()  // the next ticket may find another connection free
        condition.unlock()
        defer {
            condition.lock()
            free.append(connection)
            condition.broadcast()
            condition.unlock()
        }
        return try body(connection)
    }
}
