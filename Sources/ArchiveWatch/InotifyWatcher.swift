import Platform

#if canImport(Glibc)
    import Glibc
#endif

/// Watches every folder under each root with inotify and reports each new file once it is
/// complete. Pull-based: the caller calls `next(timeout:)` in a loop on its own thread.
///
/// Contract:
/// - A file is reported when it is closed after writing (`IN_CLOSE_WRITE`) or moved in
///   (`IN_MOVED_TO`: the only event a rename from outside produces) — never on `IN_CREATE`, so a
///   file written slowly over seconds is reported once, at its close. A file opened for writing
///   and closed again (even with nothing written) is reported at each close.
/// - Duplicates are possible and the consumer de-duplicates by (path, size, mtime): a
///   Foundation atomic write gives `MOVED_TO` and then `CLOSE_WRITE`; a file found by the scan of
///   a new folder is reported again by its own close. Within one batch a path appears once.
/// - A file or folder leaving (`IN_DELETE`, `IN_MOVED_FROM`) is reported as `.gone`; a folder
///   moved away stands for everything beneath it (its files have no events of their own). A
///   folder deleted whole reports each of its files, then itself.
/// - Files present when the watcher starts are not reported: run a `CatchUpScanner` over the
///   roots after creating the watcher (watch first, then scan, and nothing falls in between).
/// - A new folder (`IN_CREATE` or `IN_MOVED_TO` of a folder) is watched and then scanned at once,
///   its whole tree: files can land in it before its watch exists and produce no event at all.
/// - Skipped everywhere: excluded folders (by path or identity, even inside a root) and every
///   hidden name (beginning with ".", which covers Foundation's `.dat.nosync…` temporary
///   files), with everything beneath them. Symlinks are neither reported nor followed (a root
///   may itself be a symlink).
///
/// Failure behaviour — nothing stops the watcher:
/// - `IN_Q_OVERFLOW` (more than `fs.inotify.max_queued_events` events unread): events were lost;
///   every watch is re-added (folders made meanwhile included) and `.rescan` is emitted for every
///   root. `overflowed()` runs exactly this.
/// - `ENOSPC` from `inotify_add_watch` (out of `fs.inotify.max_user_watches`): one `.problem`
///   and a `.rescan` of the root; the unwatched folders are retried every `retryInterval`, and
///   each retry that still cannot watch them emits `.rescan` again, so a file landing in one is
///   found by the next catch-up scan. Raise the limit, or use `PollingWatcher`.
/// - A folder that cannot be read: one `.problem`, retried every `retryInterval`; when it can be
///   watched again, `.rescan` of its root.
/// - A root deleted, moved away or unmounted: one `.problem`; it is watched again when it
///   reappears, with a `.rescan`. A root missing at start is treated the same way.
/// - A name that is not valid UTF-8 cannot be given as a `String` path: `.problem`, skipped.
///
/// Not internally synchronised: use it from one thread at a time.
public final class InotifyWatcher: @unchecked Sendable {
    /// The roots, normalised (absolute, no trailing slash), as they appear in events.
    public let roots: [String]
    /// How often folders that could not be watched are tried again, in seconds.
    public let retryInterval: Double

    /// Folders watched now.
    public var watchCount: Int { watches.count }
    /// Folders that should be watched but are not (missing, unreadable, out of watches).
    public var unwatchedCount: Int { unwatched.count }

    private let descriptor: Int32
    private let filter: PathFilter
    private let buffer: UnsafeMutableRawPointer
    private static let bufferSize = 64 * 1024

    private struct Watch {
        var path: String
        var root: Int
        var identity: FileIdentity
    }

    private enum Cause { case missingRoot, unreadable, outOfWatches }

    private var watches: [Int32: Watch] = [:]
    private var rootWatches: [Int32?]
    private var unwatched: [String: (root: Int, cause: Cause)] = [:]
    private var nextRetry: Double
    private var pending = EventBatch()

    /// Fault injection for tests: called before each `inotify_add_watch` with the folder; a
    /// non-nil errno makes that call fail with it (ENOSPC cannot be provoked without root-only
    /// sysctls).
    var addWatchFault: ((String) -> Int32?)?

    // What a folder's watch asks for. CREATE only to learn of new folders (files are reported
    // at CLOSE_WRITE or MOVED_TO); DELETE and MOVED_FROM for what leaves it (`.gone`: a PACS
    // consuming its import folder); DELETE_SELF and MOVE_SELF to notice a folder leaving.
    private static let baseMask =
        UInt32(IN_CLOSE_WRITE) | UInt32(IN_MOVED_TO) | UInt32(IN_CREATE) | UInt32(IN_DELETE_SELF)
        | UInt32(IN_MOVE_SELF) | UInt32(IN_DELETE) | UInt32(IN_MOVED_FROM) | UInt32(IN_ONLYDIR)
    // Below a root, never through a symlink that replaced a folder.
    private static let folderMask = baseMask | UInt32(IN_DONT_FOLLOW)

    /// Starts inotify and watches every folder under `roots` (problems found on the way are
    /// returned by the first `next`). `excluding`: absolute folders never watched nor reported.
    ///
    /// Throws only when inotify itself cannot start (`EMFILE`: `fs.inotify.max_user_instances`,
    /// 128 here, is used up); the caller may fall back to `PollingWatcher`.
    public init(roots: [String], excluding: [String] = [], retryInterval: Double = 60) throws(PlatformError) {
        precondition(retryInterval > 0, "InotifyWatcher needs a positive retry interval")
        let descriptor = inotify_init1(Int32(IN_NONBLOCK | IN_CLOEXEC))
        guard descriptor >= 0 else { throw PlatformError("Cannot start inotify", errno: errno) }
        var unique: [String] = []
        for root in roots.map(PathFilter.normalize) where !unique.contains(root) { unique.append(root) }
        self.roots = unique
        self.retryInterval = retryInterval
        self.descriptor = descriptor
        self.filter = PathFilter(excluding: excluding)
        self.buffer = UnsafeMutableRawPointer.allocate(
            byteCount: InotifyWatcher.bufferSize, alignment: MemoryLayout<inotify_event>.alignment)
        self.rootWatches = Array(repeating: nil, count: unique.count)
        self.nextRetry = MonotonicClock.now + retryInterval
        for index in unique.indices {
            if filter.isExcluded(unique[index]) {
                pending.problem("Root \(unique[index]) is also excluded: not watched")
                continue
            }
            let outcome = watchTree(unique[index], root: index, reportFiles: false)
            reportOutOfWatches(outcome, root: index)
        }
    }

    deinit {
        close(descriptor)
        buffer.deallocate()
    }

    /// What happened since the last call, waiting up to `timeout` seconds for something when
    /// nothing is ready (poll(2) on the inotify descriptor); an empty array on timeout. Also
    /// retries unwatched folders when `retryInterval` has passed.
    public func next(timeout: Double) -> [WatchEvent] {
        let deadline = MonotonicClock.now + max(0, timeout)
        while true {
            retryIfDue()
            let now = MonotonicClock.now
            var waitUntil = pending.isEmpty ? deadline : now
            if !unwatched.isEmpty { waitUntil = min(waitUntil, nextRetry) }
            let milliseconds = Int32(min(max(0, waitUntil - now) * 1000, 3_600_000).rounded(.up))
            var poller = pollfd(fd: descriptor, events: Int16(POLLIN), revents: 0)
            let ready = poll(&poller, 1, milliseconds)
            if ready > 0 {
                drain()
            } else if ready < 0 && errno != EINTR {
                pending.problem("Cannot wait for inotify events: \(String(cString: strerror(errno)))")
                return pending.take()
            }
            if !pending.isEmpty || MonotonicClock.now >= deadline { return pending.take() }
        }
    }

    /// What an `IN_Q_OVERFLOW` triggers: events were lost, so every root is walked again to add
    /// the watches of folders made meanwhile (no files reported: the caller's scan does that),
    /// and `.rescan` is emitted for every watched root. Its events come with the next `next`.
    func overflowed() {
        for index in roots.indices where rootWatches[index] != nil {
            let outcome = watchTree(roots[index], root: index, reportFiles: false)
            pending.rescan(root: roots[index], reason: "inotify event queue overflowed (fs.inotify.max_queued_events): events were lost")
            reportOutOfWatches(outcome, root: index)
        }
    }

    /// Whether `path` has a watch now (for tests).
    func isWatching(_ path: String) -> Bool {
        watches.values.contains { $0.path == path }
    }

    // MARK: Reading events

    /// Reads what is queued, at most 16 buffers (1 MiB) per call so a batch stays bounded; the
    /// rest waits for the next call (poll will say it is ready at once).
    private func drain() {
        for _ in 0..<16 {
            let count = read(descriptor, buffer, InotifyWatcher.bufferSize)
            if count < 0 {
                if errno == EINTR { continue }
                if errno != EAGAIN { pending.problem("Cannot read inotify events: \(String(cString: strerror(errno)))") }
                return
            }
            if count == 0 { return }
            var offset = 0
            let header = MemoryLayout<inotify_event>.size  // 16; the name follows, NUL-padded
            while offset + header <= count {
                let event = buffer.loadUnaligned(fromByteOffset: offset, as: inotify_event.self)
                let end = offset + header + Int(event.len)
                guard end <= count else { break }
                var name: String?
                var nameIsValid = true
                if event.len > 0 {
                    let bytes = UnsafeRawBufferPointer(start: buffer + offset + header, count: Int(event.len))
                    let nameBytes = bytes.prefix { $0 != 0 }
                    name = String(validating: nameBytes, as: UTF8.self)
                    if name == nil {
                        nameIsValid = false
                        name = String(decoding: nameBytes, as: UTF8.self)
                    }
                }
                handle(wd: event.wd, mask: event.mask, name: name, nameIsValid: nameIsValid)
                offset = end
            }
            if count < InotifyWatcher.bufferSize / 2 { return }  // the queue was emptied
        }
    }

    private func handle(wd: Int32, mask: UInt32, name: String?, nameIsValid: Bool) {
        if mask & UInt32(IN_Q_OVERFLOW) != 0 {  // wd == -1
            overflowed()
            return
        }
        if mask & UInt32(IN_IGNORED) != 0 {  // the watch is gone (folder deleted, unmounted, removed)
            if let watch = watches.removeValue(forKey: wd), rootWatches[watch.root] == wd { rootLost(watch.root) }
            return
        }
        guard let watch = watches[wd] else { return }  // a watch we already dropped
        if mask & UInt32(IN_MOVE_SELF) != 0 {
            folderMoved(wd: wd, watch: watch)
            return
        }
        guard let name else { return }  // DELETE_SELF, UNMOUNT: IGNORED follows
        let path = PathFilter.join(watch.path, name)
        guard nameIsValid else {
            pending.problem("Skipped \(path): its name is not valid UTF-8")
            return
        }
        if PathFilter.isHidden(name) || filter.isExcluded(path) { return }
        if mask & (UInt32(IN_DELETE) | UInt32(IN_MOVED_FROM)) != 0 {
            // A folder's own watch goes with IN_IGNORED (deleted) or IN_MOVE_SELF (moved away).
            pending.gone(path)
            return
        }
        if mask & UInt32(IN_ISDIR) != 0 {
            if mask & (UInt32(IN_CREATE) | UInt32(IN_MOVED_TO)) != 0 {
                let outcome = watchTree(path, root: watch.root, reportFiles: true)
                reportOutOfWatches(outcome, root: watch.root)
            }
        } else if mask & UInt32(IN_CLOSE_WRITE) != 0 {
            pending.file(path)
        } else if mask & UInt32(IN_MOVED_TO) != 0 {
            // Renamed in: report it if it is (still) a regular file, not a symlink or a fifo.
            var status = stat()
            if lstat(path, &status) == 0 && status.st_mode & S_IFMT == S_IFREG { pending.file(path) }
        }
    }

    /// `IN_MOVE_SELF`. A folder renamed within the tree has already been re-registered under its
    /// new path (its `MOVED_TO` comes first, and re-adding a watch returns the same descriptor):
    /// then the path still holds the same folder and nothing is to be done. Otherwise it left the
    /// tree (or became hidden or excluded): its watch, and those of the folders beneath it whose
    /// paths went stale with it, are removed.
    private func folderMoved(wd: Int32, watch: Watch) {
        if FileIdentity.of(watch.path) == watch.identity { return }
        let prefix = watch.path == "/" ? "/" : watch.path + "/"
        let stale = watches.filter { entry in
            (entry.value.path == watch.path || entry.value.path.hasPrefix(prefix))
                && FileIdentity.of(entry.value.path) != entry.value.identity
        }
        for (staleWd, staleWatch) in stale {
            inotify_rm_watch(descriptor, staleWd)
            watches[staleWd] = nil
            if rootWatches[staleWatch.root] == staleWd { rootLost(staleWatch.root) }
        }
    }

    private func rootLost(_ root: Int) {
        rootWatches[root] = nil
        unwatched[roots[root]] = (root, .missingRoot)
        pending.problem("Root \(roots[root]) is gone (deleted, moved or unmounted): watching it again when it reappears")
    }

    // MARK: Adding watches

    private struct WalkOutcome {
        var newWatches = 0
        var newlyOutOfWatches = 0
        var outOfWatches = 0
    }

    /// Watches `top` and every folder beneath it. The watch is added before the folder is read,
    /// so a file landing during the read is caught by one or the other (or both). With
    /// `reportFiles`, each file found is reported (a new folder's early files).
    private func watchTree(_ top: String, root: Int, reportFiles: Bool) -> WalkOutcome {
        var outcome = WalkOutcome()
        var stack = [top]
        while let folder = stack.popLast() {
            let isRoot = folder == roots[root]
            let stream: FolderStream
            do {
                stream = try FolderStream(path: folder, followSymlink: isRoot)
            } catch {
                if isRoot {
                    markUnwatched(folder, root: root, cause: .missingRoot, error)
                } else if [ENOENT, ELOOP, ENOTDIR].contains(error.code) {
                    unwatched[folder] = nil  // gone, or no longer a folder: nothing to watch
                } else {
                    markUnwatched(folder, root: root, cause: .unreadable, error)
                }
                continue
            }
            if filter.isExcluded(stream.identity) { continue }
            var wd: Int32 = -1
            if let code = addWatchFault?(folder) {
                errno = code
            } else {
                wd = inotify_add_watch(descriptor, folder, isRoot ? InotifyWatcher.baseMask : InotifyWatcher.folderMask)
            }
            if wd >= 0 {
                if watches[wd] == nil { outcome.newWatches += 1 }
                watches[wd] = Watch(path: folder, root: root, identity: stream.identity)
                unwatched[folder] = nil
                if isRoot { rootWatches[root] = wd }
            } else {
                let error = PlatformError("Cannot watch folder \(folder)", errno: errno)
                if error.code == ENOSPC {
                    // Out of fs.inotify.max_user_watches. Read on: its files and subfolders must
                    // still be found, and a subfolder may get a watch if some were freed.
                    outcome.outOfWatches += 1
                    if unwatched[folder] == nil { outcome.newlyOutOfWatches += 1 }
                    unwatched[folder] = (root, .outOfWatches)
                } else if error.code == ENOENT {
                    continue
                } else {
                    markUnwatched(folder, root: root, cause: isRoot ? .missingRoot : .unreadable, error)
                    continue
                }
            }
            do {
                while let entry = try stream.next(statFiles: false) {
                    let path = PathFilter.join(folder, entry.name)
                    guard entry.nameIsValid else {
                        pending.problem("Skipped \(path): its name is not valid UTF-8")
                        continue
                    }
                    if PathFilter.isHidden(entry.name) || filter.isExcluded(path) { continue }
                    switch entry.kind {
                    case .folder: stack.append(path)
                    case .file: if reportFiles { pending.file(path) }
                    case .other: break
                    }
                }
            } catch {
                pending.problem("\(error); some of its files may not be reported until the next rescan")
            }
        }
        return outcome
    }

    /// Records a folder that cannot be watched; a `.problem` the first time only.
    private func markUnwatched(_ folder: String, root: Int, cause: Cause, _ error: PlatformError) {
        if unwatched[folder] == nil {
            let retry = "retrying every \(retryInterval) s"
            pending.problem(cause == .missingRoot ? "Root \(folder) cannot be watched (\(error)): \(retry)" : "\(error): not watched, \(retry)")
        }
        unwatched[folder] = (root, cause)
    }

    private func reportOutOfWatches(_ outcome: WalkOutcome, root: Int) {
        guard outcome.outOfWatches > 0 else { return }
        if outcome.newlyOutOfWatches > 0 {
            pending.problem(
                "\(outcome.newlyOutOfWatches) folder(s) under \(roots[root]) cannot be watched: out of inotify watches "
                    + "(fs.inotify.max_user_watches); they are covered by rescans until the limit is raised")
        }
        pending.rescan(root: roots[root], reason: "out of inotify watches: some folders are not watched")
    }

    /// Every `retryInterval`: tries each unwatched folder again. A root or folder watched again
    /// gets `.rescan` (files may have landed while it was not watched); folders still out of
    /// watches get `.rescan` too, so that nothing landing in them waits longer than a retry.
    private func retryIfDue() {
        let now = MonotonicClock.now
        guard now >= nextRetry else { return }
        nextRetry = now + retryInterval
        guard !unwatched.isEmpty else { return }
        var recovered = Set<Int>()
        for (folder, entry) in unwatched where unwatched[folder] != nil {
            let outcome = watchTree(folder, root: entry.root, reportFiles: false)
            if outcome.newWatches > 0 { recovered.insert(entry.root) }
        }
        for root in recovered.sorted() {
            pending.rescan(root: roots[root], reason: "folders that could not be watched are watched now")
        }
        for root in Set(unwatched.values.filter { $0.cause == .outOfWatches }.map(\.root)).sorted() {
            pending.rescan(root: roots[root], reason: "out of inotify watches: some folders are still not watched")
        }
    }
}
