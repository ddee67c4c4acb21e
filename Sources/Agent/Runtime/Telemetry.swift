import Foundation
import Platform

/// What the running agent counts about itself for `consort status` and the metrics: transfers
/// per peer, errors by class, deadline misses, rule reloads, each watch root's progress, and the
/// heartbeats of its loops (what `/healthz` and the systemd watchdog judge it by). Counters live
/// in memory and start at zero with the process, as Prometheus counters do; what must survive a
/// restart (jobs, attempts, the inventory) is in the store.
public final class Telemetry: @unchecked Sendable {
    public struct PeerCounters: Sendable {
        public var sentInstances = 0
        public var sentBytes: Int64 = 0
        public var receivedInstances = 0
        public var receivedBytes: Int64 = 0
        /// Failed attempts by class: transient, configuration, refused (an instance refused for good).
        public var errors: [String: Int] = [:]
        public var deadlineMisses = 0
    }

    public struct WatchRoot: Sendable {
        public var path: String
        /// "inotify" or "poll <period> s".
        public var mode: String
        public var filesSeen = 0
        public var lastFile: String?
        public var lastTaken: Double?
        /// Seconds between the last file's modification and its taking: how far behind.
        public var lagSeconds = 0.0
        public var catchUpRunning = false
        public var catchUpFiles = 0
        public var catchUpStarted: Double?
        public var catchUpFinished: Double?
    }

    private let lock = NSLock()
    private var peers: [String: PeerCounters] = [:]
    private var roots: [WatchRoot] = []
    private var reloads: [String: Int] = ["ok": 0, "refused": 0]
    private var tlsReloads: [String: Int] = ["ok": 0, "refused": 0]
    /// Requests the receiver refused (403), by `PartyAccess.Refusal.label`.
    private var refusals: [String: Int] = [:]
    private var beats: [String: Double] = [:]

    public init(roots: [(path: String, mode: String)]) {
        self.roots = roots.map { WatchRoot(path: $0.path, mode: $0.mode) }
    }

    func sent(_ peer: String, instances: Int, bytes: Int64) {
        lock.withLock {
            peers[peer, default: PeerCounters()].sentInstances += instances
            peers[peer, default: PeerCounters()].sentBytes += bytes
        }
    }

    func received(_ peer: String, instances: Int, bytes: Int64) {
        lock.withLock {
            peers[peer, default: PeerCounters()].receivedInstances += instances
            peers[peer, default: PeerCounters()].receivedBytes += bytes
        }
    }

    func error(_ peer: String, class name: String, count: Int = 1) {
        lock.withLock { peers[peer, default: PeerCounters()].errors[name, default: 0] += count }
    }

    func deadlineMissed(_ peer: String) {
        lock.withLock { peers[peer, default: PeerCounters()].deadlineMisses += 1 }
    }

    func reloaded(ok: Bool) {
        lock.withLock { reloads[ok ? "ok" : "refused", default: 0] += 1 }
    }

    func tlsReloaded(ok: Bool) {
        lock.withLock { tlsReloads[ok ? "ok" : "refused", default: 0] += 1 }
    }

    func refused(_ reason: String) {
        lock.withLock { refusals[reason, default: 0] += 1 }
    }

    /// Files taken from the archive under whichever root holds them. `live`: from the watcher
    /// (their lag is measured); not from the catch-up scan, whose files may be years old.
    func taken(_ files: [(path: String, mtime: Double)], now: Double, live: Bool) {
        guard !files.isEmpty else { return }
        lock.withLock {
            for index in roots.indices {
                let root = roots[index].path
                let mine = files.filter { $0.path.hasPrefix(root + "/") }
                guard !mine.isEmpty else { continue }
                roots[index].filesSeen += mine.count
                if let newest = mine.max(by: { $0.mtime < $1.mtime }) {
                    roots[index].lastFile = newest.path
                    roots[index].lastTaken = now
                    if live { roots[index].lagSeconds = max(0, now - newest.mtime) }
                }
            }
        }
    }

    func catchUp(_ root: String, running: Bool, files: Int, now: Double) {
        lock.withLock {
            for index in roots.indices where roots[index].path == root || root.hasPrefix(roots[index].path + "/") {
                if running && !roots[index].catchUpRunning { roots[index].catchUpStarted = now }
                if !running && roots[index].catchUpRunning { roots[index].catchUpFinished = now }
                roots[index].catchUpRunning = running
                roots[index].catchUpFiles = files
            }
        }
    }

    /// A loop says it is alive (named: "dispatch", "stability", "watch").
    func beat(_ loop: String, now: Double = MonotonicClock.now) {
        lock.withLock { beats[loop] = now }
    }

    public var peerCounters: [String: PeerCounters] { lock.withLock { peers } }
    public var watchRoots: [WatchRoot] { lock.withLock { roots } }
    public var ruleReloads: [String: Int] { lock.withLock { reloads } }
    public var tlsMaterialReloads: [String: Int] { lock.withLock { tlsReloads } }
    public var refusedRequests: [String: Int] { lock.withLock { refusals } }

    /// Loops that have not beaten for `seconds` (monotonic), by name and how long.
    public func silentLoops(longerThan seconds: Double, now: Double = MonotonicClock.now) -> [(String, Double)] {
        lock.withLock { beats.filter { now - $0.value > seconds }.map { ($0.key, now - $0.value) }.sorted { $0.0 < $1.0 } }
    }
}
