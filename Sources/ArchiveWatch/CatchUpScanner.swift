import Platform

#if canImport(Glibc)
    import Glibc
#endif

/// Walks roots and yields every regular file (path, size, mtime) in batches, at most
/// `filesPerSecond` files a second, so that a catch-up over a large archive does not starve the
/// live traffic that shares the disk. Pull-based: the caller calls `nextBatch()` until nil.
///
/// Contract:
/// - Each file is yielded at most once per scanner; a file created or deleted during the walk
///   may or may not be seen (the watcher covers what comes after it started).
/// - Pacing: a batch of n files is handed out no earlier than n / `filesPerSecond` seconds after
///   the previous one (it sleeps for the difference, with the injected `sleep`); idle time is not
///   saved up for a burst. Over any stretch, files yielded ≤ rate × elapsed + one batch.
/// - Same exclusions as the watchers: excluded folders, hidden names (beginning with "."),
///   and symlinks: never followed (a root may itself be a symlink), so the walk never leaves its
///   roots through a link. Mount points inside a root are crossed.
/// - Depth first, one folder open at a time, read entry by entry: memory is the stack of folders
///   still to visit plus one batch.
///
/// Failure behaviour: a folder that cannot be read (a missing root included) is recorded as a
/// problem (`takeProblems()`) and the walk carries on with the rest.
///
/// Not internally synchronised: use it from one thread at a time.
public final class CatchUpScanner: @unchecked Sendable {
    /// Counters for logs and status.
    public struct Progress: Sendable, Equatable {
        public var filesSeen = 0
        public var foldersSeen = 0
        /// Folders found and not yet read.
        public var foldersWaiting = 0
        public var problems = 0
        /// Time spent sleeping to keep to the rate, in seconds.
        public var sleptSeconds = 0.0
        /// Clock readings at the first `nextBatch` and when the walk ended.
        public var startedAt: Double?
        public var finishedAt: Double?
    }

    public let roots: [String]
    public let filesPerSecond: Double
    public let batchSize: Int
    public private(set) var progress = Progress()

    /// How far behind live the catch-up may be: seconds since the scan started (until it
    /// finished), 0 before the first batch. A file that existed when the scan started may go
    /// unreported by it for this long.
    public var lag: Double {
        guard let started = progress.startedAt else { return 0 }
        return (progress.finishedAt ?? clock()) - started
    }

    private let filter: PathFilter
    private let clock: @Sendable () -> Double
    private let sleep: @Sendable (Double) -> Void
    private var stack: [(path: String, isRoot: Bool)]
    private var current: FolderStream?
    /// Whether `current` is a root (its ctime says nothing about its files: see `ScannedFile`).
    private var currentIsRoot = false
    private var allowedAt = 0.0
    private var problems: [String] = []
    private var finished = false

    /// - Parameters:
    ///   - filesPerSecond: the most files a second yielded (> 0).
    ///   - batchSize: files per batch (≥ 1).
    ///   - clock: seconds, monotonic (default `MonotonicClock.now`).
    ///   - sleep: waits so many seconds (default nanosleep); tests inject one that advances a
    ///     fake clock.
    public init(
        roots: [String], excluding: [String] = [], filesPerSecond: Double, batchSize: Int = 100,
        clock: (@Sendable () -> Double)? = nil, sleep: (@Sendable (Double) -> Void)? = nil
    ) {
        precondition(filesPerSecond > 0 && batchSize >= 1, "CatchUpScanner needs a positive rate and batch size")
        var unique: [String] = []
        for root in roots.map(PathFilter.normalize) where !unique.contains(root) { unique.append(root) }
        self.roots = unique
        self.filesPerSecond = filesPerSecond
        self.batchSize = batchSize
        self.filter = PathFilter(excluding: excluding)
        self.clock = clock ?? { MonotonicClock.now }
        self.sleep = sleep ?? CatchUpScanner.sleepSeconds
        self.stack = unique.reversed().map { ($0, true) }
        progress.foldersWaiting = stack.count
    }

    /// The next batch (1 to `batchSize` files), after sleeping as long as the rate requires;
    /// nil when the walk is over (and at every later call).
    public func nextBatch() -> [ScannedFile]? {
        if finished { return nil }
        if progress.startedAt == nil {
            let now = clock()
            progress.startedAt = now
            allowedAt = now
        }
        var batch: [ScannedFile] = []
        batch.reserveCapacity(batchSize)
        while batch.count < batchSize, let file = nextFile() { batch.append(file) }
        progress.foldersWaiting = stack.count
        if batch.isEmpty {
            finished = true
            progress.finishedAt = clock()
            return nil
        }
        let now = clock()
        if now < allowedAt {
            sleep(allowedAt - now)
            progress.sleptSeconds += allowedAt - now
        }
        allowedAt = max(allowedAt, clock()) + Double(batch.count) / filesPerSecond
        progress.filesSeen += batch.count
        return batch
    }

    /// The problems recorded since the last call (folders that could not be read).
    public func takeProblems() -> [String] {
        defer { problems = [] }
        return problems
    }

    private func problem(_ message: String) {
        progress.problems += 1
        problems.append(message)
    }

    private func nextFile() -> ScannedFile? {
        while true {
            guard let stream = current ?? openNextFolder() else { return nil }
            current = stream
            do {
                guard let entry = try stream.next(statFiles: true) else {
                    current = nil
                    continue
                }
                let path = PathFilter.join(stream.path, entry.name)
                guard entry.nameIsValid else {
                    problem("Skipped \(path): its name is not valid UTF-8")
                    continue
                }
                if PathFilter.isHidden(entry.name) || filter.isExcluded(path) { continue }
                switch entry.kind {
                case .folder: stack.append((path, false))
                case .file:
                    func seconds(_ nanoseconds: Int64) -> Double { Double(nanoseconds / 1_000_000_000) + Double(nanoseconds % 1_000_000_000) / 1e9 }
                    let changed = max(entry.changedNanoseconds, currentIsRoot ? 0 : stream.changedNanoseconds)
                    return ScannedFile(path: path, size: entry.size, mtimeSeconds: seconds(entry.modifiedNanoseconds), changedSeconds: seconds(changed))
                case .other: break
                }
            } catch {
                problem("\(error): the rest of it is skipped")
                current = nil
            }
        }
    }

    private func openNextFolder() -> FolderStream? {
        while let (path, isRoot) = stack.popLast() {
            if !isRoot && filter.isExcluded(path) { continue }
            do {
                let stream = try FolderStream(path: path, followSymlink: isRoot)
                if filter.isExcluded(stream.identity) || (isRoot && filter.isExcluded(path)) { continue }
                progress.foldersSeen += 1
                currentIsRoot = isRoot
                return stream
            } catch {
                // A subfolder deleted or replaced by a symlink meanwhile is not a problem.
                if !isRoot && [ENOENT, ELOOP, ENOTDIR].contains(error.code) { continue }
                problem("\(error): skipped")
            }
        }
        return nil
    }

    /// nanosleep for `seconds`, resumed after a signal.
    static let sleepSeconds: @Sendable (Double) -> Void = { seconds in
        guard seconds > 0 else { return }
        var request = timespec(tv_sec: Int(seconds), tv_nsec: Int((seconds - seconds.rounded(.down)) * 1e9))
        var remaining = timespec()
        while nanosleep(&request, &remaining) != 0 && errno == EINTR { request = remaining }
    }
}
