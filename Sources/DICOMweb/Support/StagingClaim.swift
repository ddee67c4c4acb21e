import Foundation

#if canImport(Glibc)
    import Glibc
#endif

/// A receiver's hold on its staging folder: one receiver per store at a time (an exclusive flock
/// on `.lock` inside, released when the process ends however it ends), and the parts an earlier
/// run left behind cleared at the start.
///
/// Why: a receiver killed mid-request (SIGKILL, power cut) leaves its staged parts; none of them
/// was acknowledged, so the sender will send them again, and nothing else would ever remove them.
/// They can only be cleared safely when no other receiver is writing there, hence the lock.
public final class StagingClaim {
    public let folder: String
    /// How many leftover staged parts were removed.
    public let removed: Int
    private let lock: Int32

    public struct Failure: Error, CustomStringConvertible {
        public var description: String
    }

    public init(folder: String) throws(Failure) {
        self.folder = folder
        do {
            try FileManager.default.createDirectory(atPath: folder, withIntermediateDirectories: true)
        } catch {
            throw Failure(description: "Cannot create the staging folder \(folder): \(error.localizedDescription)")
        }
        let fd = open(folder + "/.lock", O_RDWR | O_CREAT | O_CLOEXEC, 0o600)
        guard fd >= 0 else { throw Failure(description: "Cannot open \(folder)/.lock: \(String(cString: strerror(errno)))") }
        guard flock(fd, LOCK_EX | LOCK_NB) == 0 else {
            close(fd)
            throw Failure(description: "Another receiver is using \(folder) (it holds \(folder)/.lock); one receiver per store")
        }
        lock = fd
        var removed = 0
        for name in (try? FileManager.default.contentsOfDirectory(atPath: folder)) ?? [] where name.hasPrefix(StowIngest.stagedPrefix) {
            if unlink(folder + "/" + name) == 0 { removed += 1 }
        }
        self.removed = removed + PrivateStaging.clearAbandoned(in: folder)
    }

    deinit { close(lock) }
}

/// A staging folder of one's own inside a store's staging folder, for a process that writes into
/// the store beside its receiver (`consort fetch --out` the store, the agent's prefetches): a
/// receiver starting meanwhile clears only parts in the shared folder and private folders whose
/// owner is gone, never one in use.
///
/// The owner holds an exclusive flock on `.lock` inside for as long as it lives; the folder is
/// made under a name the sweep does not match, locked, then renamed into view, so a sweep can
/// never take a folder that is being set up for one that was abandoned.
public final class PrivateStaging {
    public let folder: String
    private let lock: Int32
    static let prefix = "own-"

    public init(in staging: String) throws(StagingClaim.Failure) {
        do {
            try FileManager.default.createDirectory(atPath: staging, withIntermediateDirectories: true)
        } catch {
            throw StagingClaim.Failure(description: "Cannot create the staging folder \(staging): \(error.localizedDescription)")
        }
        var template = Array("\(staging)/.setup-XXXXXX".utf8CString)
        guard let made = mkdtemp(&template) else {
            throw StagingClaim.Failure(description: "Cannot make a folder in \(staging): \(String(cString: strerror(errno)))")
        }
        let setup = String(cString: made)
        let fd = open(setup + "/.lock", O_RDWR | O_CREAT | O_CLOEXEC, 0o600)
        guard fd >= 0, flock(fd, LOCK_EX | LOCK_NB) == 0 else {
            let reason = String(cString: strerror(errno))
            if fd >= 0 { close(fd) }
            Self.remove(setup)
            throw StagingClaim.Failure(description: "Cannot lock \(setup)/.lock: \(reason)")
        }
        let name = "\(staging)/\(Self.prefix)\(setup.suffix(6))"
        guard rename(setup, name) == 0 else {
            let reason = String(cString: strerror(errno))
            close(fd)
            Self.remove(setup)
            throw StagingClaim.Failure(description: "Cannot rename \(setup) to \(name): \(reason)")
        }
        folder = name
        lock = fd
    }

    /// Removes the folder and whatever is left in it; the owner calls this when done.
    public func remove() { Self.remove(folder) }

    deinit { close(lock) }

    /// Removes the private folders in `staging` whose owner is gone (their lock is free); returns
    /// how many staged parts they held.
    @discardableResult
    public static func clearAbandoned(in staging: String) -> Int {
        var parts = 0
        for name in (try? FileManager.default.contentsOfDirectory(atPath: staging)) ?? [] where name.hasPrefix(prefix) {
            let path = staging + "/" + name
            let fd = open(path + "/.lock", O_RDWR | O_CLOEXEC)
            guard fd >= 0 else { continue }
            defer { close(fd) }
            guard flock(fd, LOCK_EX | LOCK_NB) == 0 else { continue }  // its owner is alive
            parts += ((try? FileManager.default.contentsOfDirectory(atPath: path)) ?? []).filter { $0.hasPrefix(StowIngest.stagedPrefix) }.count
            remove(path)
        }
        return parts
    }

    private static func remove(_ path: String) {
        for name in (try? FileManager.default.contentsOfDirectory(atPath: path)) ?? [] { unlink(path + "/" + name) }
        rmdir(path)
    }
}
