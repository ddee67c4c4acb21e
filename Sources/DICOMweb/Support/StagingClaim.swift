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
        self.removed = removed
    }

    deinit { close(lock) }
}
