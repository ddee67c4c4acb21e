import ArchiveWatch
import Audit
import Foundation
import Platform

#if canImport(Glibc)
    import Glibc
#endif

/// Files leaving the disk: the inventory follows, and the registry hears what this trust no
/// longer holds. Four ways in, one way through (`forgetGone`):
/// - the watchers' `.gone` (inotify delete and move-away, a poll that no longer finds a file),
///   in the archive folders and in `inbound` (watched for this alone: a PACS that consumes its
///   import folder files what arrives and deletes it);
/// - the sweep after a catch-up scan: what left while the agent was down or events were lost;
/// - a WADO-RS retrieve that finds a file missing (`servable`): 404 for a study with nothing
///   left, never a 500 that the requester would count against this trust's circuit;
/// - `inbound-keep`: received copies older than it, removed by the agent itself.
extension AgentDaemon {
    /// Forgets the inventory's files at or beneath `paths` that are not on disk now (a path
    /// written again since its event is kept: its own event takes it again). The emptied
    /// studies are queued for withdrawal and the announcer nudged.
    @discardableResult
    func forgetGone(_ paths: [String], why: String, log removalLog: Logger) -> AgentStore.Forgotten {
        var missing: [String] = []
        for path in paths {
            let known = (try? store.knownPaths(at: path)) ?? []
            missing += known.filter { !Self.exists($0) }
        }
        guard !missing.isEmpty else { return AgentStore.Forgotten() }
        do {
            let forgotten = try store.forget(paths: missing, now: clock.now)
            if forgotten.instances > 0 || !forgotten.withdrawn.isEmpty {
                removalLog.info(
                    "files left the disk: forgotten by the inventory",
                    ["why": why, "files": missing.count, "instances": forgotten.instances, "withdrawn": forgotten.withdrawn.joined(separator: ","),
                     "shrunk": forgotten.shrunk.joined(separator: ",")])
                announcer?.nudge()
            }
            if forgotten.instances > 0 || forgotten.kept > 0 { auditForgotten(forgotten, files: missing.count, why: why, log: removalLog) }
            return forgotten
        } catch {
            removalLog.error("cannot forget files that left the disk (the inventory still lists them; the next sweep tries again)", ["files": missing.count, "error": error])
            return AgentStore.Forgotten()
        }
    }

    /// One audit record a batch forgotten: which studies, how much, and why ("inbound-keep", or
    /// "left the disk" with how it was noticed).
    func auditForgotten(_ forgotten: AgentStore.Forgotten, files: Int, why: String, log removalLog: Logger) {
        var detail = "\(files) files, \(forgotten.instances) instances (\(forgotten.bytes) bytes) forgotten"
        if !forgotten.withdrawn.isEmpty { detail += "; studies withdrawn: " + forgotten.withdrawn.joined(separator: ",") }
        if !forgotten.shrunk.isEmpty { detail += "; studies left with part: " + forgotten.shrunk.joined(separator: ",") }
        if forgotten.kept > 0 { detail += "; \(forgotten.kept) instances kept at another copy on disk" }
        let studies = forgotten.withdrawn + forgotten.shrunk
        do {
            try audit.record(AuditEntry(
                who: configuration.trust, action: "forget", study: studies.count == 1 ? studies[0] : nil,
                why: why == "past inbound-keep" ? "inbound-keep" : "left the disk: " + why, detail: detail))
        } catch {
            removalLog.error("cannot audit files forgotten", ["detail": detail, "error": error])
        }
    }

    /// The inventory's files under `root` checked against the disk, page by page; those gone are
    /// forgotten. Run after each catch-up scan (the scan finds what arrived, this what left).
    /// A first pass counts: a root missing or empty while the inventory holds files under it, or
    /// a sweep that would forget most of a root's files (an NFS or SMB share not mounted, a
    /// mount point left empty), forgets nothing and says so (`sweepRefusal`).
    func sweep(_ root: String, log removalLog: Logger) {
        var known = 0
        var missingCount = 0
        var cursor: String?
        while !stopping.isSet {
            guard let page = try? store.knownPaths(under: root, after: cursor, limit: 1000), let last = page.last else { break }
            known += page.count
            missingCount += page.filter { !Self.exists($0) }.count
            cursor = last
        }
        guard missingCount > 0, !stopping.isSet else { return }
        if let refusal = Self.sweepRefusal(root: root, known: known, missing: missingCount, rootHasEntries: Self.hasEntries(root)) {
            removalLog.error(refusal, ["root": root, "files": known, "missing": missingCount])
            return
        }
        cursor = nil
        var missing: [String] = []
        while !stopping.isSet {
            guard let page = try? store.knownPaths(under: root, after: cursor, limit: 1000), let last = page.last else { break }
            missing += page.filter { !Self.exists($0) }
            cursor = last
            if missing.count >= 1000 {
                forgetGone(missing, why: "not found by the sweep of \(root)", log: removalLog)
                missing = []
            }
        }
        if !missing.isEmpty { forgetGone(missing, why: "not found by the sweep of \(root)", log: removalLog) }
    }

    /// Why a sweep of `root` that found `missing` of the inventory's `known` files under it gone
    /// must forget none of them, or nil when it may: the root missing or empty (nothing under it
    /// while the inventory holds files there), or more than half of more than 20 files gone at
    /// once. A share that is not mounted looks exactly like every file deleted; forgetting would
    /// withdraw every study held there.
    static func sweepRefusal(root: String, known: Int, missing: Int, rootHasEntries: Bool) -> String? {
        guard missing > 0 else { return nil }
        if !rootHasEntries {
            return "not forgetting \(missing) of \(known) files under \(root): an unmounted share? The folder is missing or empty; "
                + "nothing under it is forgotten until it holds files again (remove its files from the inventory by hand if it is gone for good)"
        }
        if known > 20 && missing * 2 > known {
            return "not forgetting \(missing) of \(known) files under \(root): an unmounted share? More than half its files are gone at once; "
                + "nothing under it is forgotten this time (the next sweep checks again)"
        }
        return nil
    }

    /// Whether `folder` is there and holds at least one entry not hidden (false also when it
    /// cannot be read: its files cannot be told gone then). Hidden names are the agent's own
    /// (`inbound/.staging`, made again at each start) or skipped by the watchers.
    static func hasEntries(_ folder: String) -> Bool {
        guard let dir = opendir(folder) else { return false }
        defer { closedir(dir) }
        while let entry = readdir(dir) {
            let name = withUnsafeBytes(of: entry.pointee.d_name) { String(decoding: $0.prefix { $0 != 0 }, as: UTF8.self) }
            if !name.hasPrefix(".") { return true }
        }
        return false
    }

    /// Whether the inbound folder is inside a watched folder (its files' leaving is then
    /// reported by that folder's watcher).
    var inboundIsWatched: Bool {
        configuration.watches.contains { configuration.inbound == $0.path || configuration.inbound.hasPrefix($0.path + "/") }
    }

    /// Watches `inbound` for files leaving it, and nothing else: what arrives there is recorded
    /// by the receiver and the fetches, never taken as archive files. At start, and after lost
    /// events, a sweep of it.
    func startInboundWatcher() throws {
        let removalLog = log.named("inbound")
        if !inboundIsWatched {
            let inbound = configuration.inbound
            let watcher = try InotifyWatcher(roots: [inbound], excluding: excluded)
            try services.start(WakeableLoop(name: "consort-inbound", interval: 0) { [self] in
                var gone: [String] = []
                var sweepAgain = false
                for event in watcher.next(timeout: 0.5) {
                    switch event {
                    case .gone(let path): gone.append(path)
                    case .rescan: sweepAgain = true
                    case .problem(let message): removalLog.warning(message)
                    case .file: break  // recorded by whoever placed it
                    }
                }
                if !gone.isEmpty { forgetGone(gone, why: "left the inbound folder", log: removalLog) }
                if sweepAgain { sweep(inbound, log: removalLog) }
                return 0
            })
            let sweeper = Thread { [self] in sweep(inbound, log: removalLog) }
            sweeper.name = "consort-inbound-sweep"
            sweeper.start()
        }
        if let keep = configuration.inboundKeepSeconds {
            // A tenth of the retention, between 5 s and 10 min: a copy is removed at most that
            // much after it is due.
            let period = min(600, max(5, keep / 10))
            try services.start(WakeableLoop(name: "consort-inbound-keep", interval: period) { [self] in
                expireInbound(olderThan: keep, log: removalLog)
                return nil
            })
        }
    }

    /// `inbound-keep`: received copies recorded more than `keep` seconds ago are removed from
    /// `inbound` (and their emptied study folders), then forgotten and withdrawn.
    func expireInbound(olderThan keep: Double, log removalLog: Logger) {
        var cursor: String?
        while !stopping.isSet {
            guard let page = try? store.filesTaken(under: configuration.inbound, before: clock.now - keep, after: cursor, limit: 1000), let last = page.last else { return }
            cursor = last.path
            let due = page.map(\.path)
            var folders = Set<String>()
            var removed = 0
            for file in page {
                let path = file.path
                // Written again since it was recorded (fetched again to the same path): not this
                // copy, and not due; whoever wrote it records it.
                guard Self.unchanged(path, size: file.size, mtime: file.mtime) else { continue }
                if unlink(path) == 0 {
                    removed += 1
                } else if errno != ENOENT {
                    removalLog.warning("cannot remove a received copy past inbound-keep", ["path": path, "error": String(cString: strerror(errno))])
                }
                folders.insert((path as NSString).deletingLastPathComponent)
            }
            if removed > 0 {
                removalLog.info("received copies removed from inbound: past inbound-keep", ["files": removed, "keep": ConfigurationParser.formatSeconds(keep)])
                do {
                    try audit.record(AuditEntry(
                        who: configuration.trust, action: "delete", why: "inbound-keep",
                        detail: "\(removed) received copies removed from \(configuration.inbound), kept \(ConfigurationParser.formatSeconds(keep))"))
                } catch {
                    removalLog.error("cannot audit received copies removed past inbound-keep", ["files": removed, "error": error])
                }
            }
            forgetGone(due, why: "past inbound-keep", log: removalLog)
            for folder in folders where folder != configuration.inbound { rmdir(folder) }  // only if empty
        }
    }

    /// Whether the file at `path` still has the size and modification time recorded (true also
    /// when it is gone: removing it then changes nothing).
    static func unchanged(_ path: String, size: Int64, mtime: Double) -> Bool {
        var info = stat()
        guard lstat(path, &info) == 0 else { return true }
        let modified = Double(info.st_mtim.tv_sec) + Double(info.st_mtim.tv_nsec) / 1e9
        return Int64(info.st_size) == size && abs(modified - mtime) < 0.001
    }

    /// The files of a study that WADO-RS can serve: those on disk. Those missing are forgotten
    /// (and the study withdrawn when none is left); nil when none is left.
    func servable(_ study: String) -> [String]? {
        guard let paths = try? store.paths(ofStudy: study), !paths.isEmpty else { return nil }
        let missing = paths.filter { !Self.exists($0) }
        if !missing.isEmpty { forgetGone(missing, why: "missing when a retrieve asked for its study", log: log.named("receiver")) }
        let gone = Set(missing)
        let present = paths.filter { !gone.contains($0) }
        return present.isEmpty ? nil : present
    }

    /// False only when the disk says the path is not there: a file that cannot be checked (a
    /// folder unreadable for a moment) is not forgotten.
    static func exists(_ path: String) -> Bool { AgentStore.isOnDisk(path) }
}
