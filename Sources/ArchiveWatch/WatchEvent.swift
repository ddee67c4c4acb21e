/// What a watcher tells the agent. The agent decides what to take; a watcher never moves, renames
/// or deletes anything.
///
/// The same path may be reported more than once — a Foundation atomic write arrives as `MOVED_TO`
/// and then `CLOSE_WRITE`, a file rewritten is reported at each close, a file found by a scan may
/// be reported again by its own events — so the consumer de-duplicates by (path, size,
/// modification time). Within one batch returned by `InotifyWatcher.next(timeout:)` a path
/// appears at most once.
public enum WatchEvent: Sendable, Hashable, CustomStringConvertible {
    /// A file to consider: written and closed, moved in, or found by the scan of a new folder.
    /// A file found by a scan may still be open for writing; its close will report it again.
    case file(path: String)
    /// A file or a folder left: deleted, or moved away (`IN_DELETE`, `IN_MOVED_FROM`; for
    /// `PollingWatcher`, no longer found by a scan). For a folder, everything beneath it left
    /// with it (a folder moved away has no events of its own files). The path may be back by the
    /// time the consumer looks (deleted and written again): the consumer checks the disk before
    /// it forgets anything, and the file's own event reports it again.
    case gone(path: String)
    /// Events under `root` may have been lost (the inotify queue overflowed, or a folder could not
    /// be watched: out of inotify watches): run a catch-up scan of `root` (see `CatchUpScanner`).
    /// The watcher has already re-added every watch it could, so the scan plus later events miss
    /// nothing.
    case rescan(root: String, reason: String)
    /// Something for the log — a folder that cannot be read, a root that vanished, a name that is
    /// not UTF-8. Nothing stops; the watcher carries on with everything else.
    case problem(String)

    public var description: String {
        switch self {
        case .file(let path): return "file \(path)"
        case .gone(let path): return "gone \(path)"
        case .rescan(let root, let reason): return "rescan \(root): \(reason)"
        case .problem(let message): return "problem: \(message)"
        }
    }
}
