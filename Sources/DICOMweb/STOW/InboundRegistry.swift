import Foundation

#if canImport(Glibc)
    import Glibc
#endif

/// What the requests of this process writing into one inbound folder know of each other's work
/// that is not yet known durable: the names linked and not yet settled, and the study folders
/// whose own entry in the inbound folder is known to survive a crash. One per inbound folder
/// (by its real path) per process, shared by every `StowIngest` on it; owned by the ingest layer.
///
/// Why: a request that links a name and then fails to make it durable removes it, so that a retry
/// does not find it "already held". Without this, another request carrying the same instance
/// would find that name (EEXIST, same bytes), fsync the folder, acknowledge it — and then see it
/// removed under its acknowledgement. And a request finding a study folder another has just made
/// would trust the folder's name, which that other request's fsync of the inbound folder may yet
/// fail to make durable.
///
/// The rules it keeps:
/// - A name is claimed before it is linked; only its claimant links it, and only its claimant
///   may unlink it, while it is still claimed (under the lock). A request finding a name claimed
///   does not touch or acknowledge it: it waits for the claim to be settled (`waitUntilSettled`),
///   then tries again — so nobody acknowledges a name that may still be removed.
/// - A request waits only once it has settled all of its own claims: no two requests can wait
///   for each other.
/// - A study folder is known durable once an fsync of the inbound folder, begun after the folder
///   was seen, has succeeded — whichever request made it. Any other request using a folder not
///   known durable fsyncs the inbound folder itself rather than trusting another's. Folders found
///   on disk at start are not known durable either: a receiver killed after making one, the
///   machine still up, may have left a name not yet written; the first request to use each
///   fsyncs the inbound folder once. Names left from before are not claimed: a request finding
///   one fsyncs its folder before acknowledging it (`StowIngest.place`), as for any held name.
///
/// Limit: this is one process's knowledge. Another process writing into the same store (`consort
/// fetch --out` the store) is not seen; its folders are fsynced by whoever uses them (not known
/// durable here), but a name it links and then removes is not guarded against.
final class InboundRegistry: @unchecked Sendable {
    typealias Owner = ObjectIdentifier

    /// The registry of the inbound folder at this real path, made on first use.
    static func of(_ inbound: String) -> InboundRegistry {
        let key = realpath(inbound, nil).map { pointer in
            defer { free(pointer) }
            return String(cString: pointer)
        } ?? inbound
        return all.registry(for: key)
    }

    private static let all = Registries()

    private final class Registries: @unchecked Sendable {
        private let lock = NSLock()
        private var byRoot: [String: InboundRegistry] = [:]
        func registry(for root: String) -> InboundRegistry {
            lock.lock()
            defer { lock.unlock() }
            if let known = byRoot[root] { return known }
            let made = InboundRegistry()
            byRoot[root] = made
            return made
        }
    }

    /// Guards everything below; waiters for a claim sleep on it.
    private let condition = NSCondition()
    /// Names ("<Study>/<SOP>.dcm") claimed and not yet settled, by claimant.
    private var claims: [String: Owner] = [:]
    /// How many requests are waiting for a claim to be settled, by name (for tests to see a
    /// request has reached its wait).
    private var waiting: [String: Int] = [:]
    /// Study folders (by name in the inbound folder) whose entry there is known durable.
    private var durableFolders: Set<String> = []
    /// Beyond this many, the known folders are forgotten: forgetting costs only an fsync of the
    /// inbound folder for the next request to use each, and keeps a receiver that runs for years
    /// from holding every study's name.
    static let durableFoldersAtMost = 50_000

    enum Claim {
        /// Claimed now, for the caller to link.
        case claimed
        /// The caller claimed it already (an instance sent twice in one request).
        case ours
        /// Another request holds the claim: its link may still be removed, not to be touched or
        /// acknowledged.
        case elsewhere
    }

    /// Claims `name` for `owner` before it links it.
    func claim(_ name: String, by owner: Owner) -> Claim {
        condition.lock()
        defer { condition.unlock() }
        if let holder = claims[name] { return holder == owner ? .ours : .elsewhere }
        claims[name] = owner
        return .claimed
    }

    /// Settles `owner`'s claim on `name`: kept (durable, or never linked by it), or — when
    /// `remove` is given — the name removed first, under the lock, so nobody can find it claimed
    /// by no one and still there.
    func settle(_ name: String, by owner: Owner, removing path: String? = nil) {
        condition.lock()
        defer { condition.unlock() }
        guard claims[name] == owner else { return }
        if let path { unlink(path) }
        claims[name] = nil
        condition.broadcast()
    }

    /// Waits until nobody holds a claim on `name`, or the deadline: true when settled.
    func waitUntilSettled(_ name: String, before deadline: Date) -> Bool {
        condition.lock()
        defer { condition.unlock() }
        waiting[name, default: 0] += 1
        defer {
            waiting[name]! -= 1
            if waiting[name] == 0 { waiting[name] = nil }
        }
        while claims[name] != nil {
            if !condition.wait(until: deadline) { return claims[name] == nil }
        }
        return true
    }

    /// How many requests wait for `name` to be settled (for tests).
    func waiters(for name: String) -> Int {
        condition.lock()
        defer { condition.unlock() }
        return waiting[name] ?? 0
    }

    func isDurable(folder: String) -> Bool {
        condition.lock()
        defer { condition.unlock() }
        return durableFolders.contains(folder)
    }

    /// These folders' entries are durable: an fsync of the inbound folder begun after each was
    /// seen has succeeded.
    func markDurable(folders: some Sequence<String>) {
        condition.lock()
        defer { condition.unlock() }
        if durableFolders.count >= Self.durableFoldersAtMost { durableFolders.removeAll() }
        durableFolders.formUnion(folders)
    }

    /// Before a request makes a study folder: whatever was known of a folder of that name (one
    /// removed since, by hand) no longer holds for the new one.
    func forget(folder: String) {
        condition.lock()
        defer { condition.unlock() }
        durableFolders.remove(folder)
    }

    /// Removes a study folder whose entry could not be made durable, if it is empty — unless,
    /// meanwhile, another request's fsync of the inbound folder has made its entry durable.
    func removeIfNotDurable(folder: String, at path: String) {
        condition.lock()
        defer { condition.unlock() }
        if !durableFolders.contains(folder) { rmdir(path) }
    }
}
