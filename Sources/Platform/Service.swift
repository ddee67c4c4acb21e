import Foundation

/// A part of a daemon that runs on threads of its own (a loop, a listener): started once, and
/// stopped by asking, then waiting — bounded — until its threads have ended.
public protocol Service: AnyObject, Sendable {
    var name: String { get }
    func start() throws
    /// Asks the service to stop and waits at most `seconds` for its threads to end; true when
    /// they did.
    func stop(within seconds: Double) -> Bool
}

extension WakeableLoop: Service {
    public func stop(within seconds: Double) -> Bool {
        stop()
        return join(within: seconds)
    }
}

/// A daemon's services, started in order and stopped in reverse (the last started, which
/// depends on the others, stops first) under one deadline: each gets what the ones before it
/// left. A service that does not end in time is named, not waited for.
public final class ServiceGroup: @unchecked Sendable {
    private let lock = NSLock()
    private var started: [any Service] = []

    public init() {}

    /// Starts `service` and keeps it to be stopped; a service that fails to start is not kept.
    public func start(_ service: any Service) throws {
        try service.start()
        lock.withLock { started.append(service) }
    }

    /// Stops every service started, last first, within `seconds` in all; the names of those
    /// whose threads had not ended when their share of the time ran out.
    @discardableResult
    public func stop(within seconds: Double) -> [String] {
        let end = MonotonicClock.now + seconds
        let services: [any Service] = lock.withLock {
            defer { started = [] }
            return started.reversed()
        }
        var late: [String] = []
        for service in services where !service.stop(within: max(0, end - MonotonicClock.now)) {
            late.append(service.name)
        }
        return late
    }
}
