#if canImport(Glibc)
    import Glibc
#endif

/// Finds new files by scanning, for file systems where inotify sees nothing (NFS, SMB: changes
/// made by other clients produce no events). Pull-based: the caller calls `next(now:)` in a loop.
///
/// Contract:
/// - A scan runs when `period` seconds have passed since the last one (the first call scans at
///   once). A file is reported once its size and modification time are unchanged from one scan
///   to the next — stable for at least a full period: first seen → remembered; unchanged at the
///   next scan → reported once; changed later → reported again once stable again.
/// - The first scan is a baseline: files already there are the catch-up scan's job, as with
///   `InotifyWatcher`, and are reported only if they change afterwards — unless
///   `reportFilesPresentAtStart`, when they are reported after one period like any other.
/// - Same exclusions as `InotifyWatcher`: excluded folders, hidden names (beginning with ".",
///   which covers Foundation's `.dat.nosync…` temporary files), symlinks never followed.
/// - A file seen by one scan and not found by the next is reported `.gone` (not when its folder
///   could not be read this time, nor when its root lists nothing at all: an unmounted share).
/// - Memory: one small record (size, time, state) per file seen, keyed by path; the records of
///   files gone are dropped after each scan.
///
/// Failure behaviour: a folder that cannot be read is a `.problem` when it starts failing (not
/// at every scan), its files' records are kept, and the scan carries on. A name that is not
/// valid UTF-8 is a `.problem` at each scan that meets it.
///
/// Not internally synchronised: use it from one thread at a time.
public final class PollingWatcher: @unchecked Sendable {
    /// The roots, normalised (absolute, no trailing slash), as they appear in events.
    public let roots: [String]
    /// Seconds between scans; also how long a file must stay unchanged before it is reported.
    public let period: Double
    public let reportFilesPresentAtStart: Bool

    /// Files remembered now.
    public var fileCount: Int { records.count }

    private enum State: UInt8 { case baseline, waiting, reported }

    private struct Record {
        var size: Int64
        var modifiedNanoseconds: Int64
        var scan: UInt32
        var state: State
    }

    private let filter: PathFilter
    private var records: [String: Record] = [:]
    private var lastScanAt: Double?
    private var scanNumber: UInt32 = 0
    private var failingFolders: Set<String> = []

    /// `period` in seconds (the clock is the caller's: whatever `now` is passed to `next`).
    public init(roots: [String], excluding: [String] = [], period: Double, reportFilesPresentAtStart: Bool = false) {
        var unique: [String] = []
        for root in roots.map(PathFilter.normalize) where !unique.contains(root) { unique.append(root) }
        self.roots = unique
        self.period = period
        self.reportFilesPresentAtStart = reportFilesPresentAtStart
        self.filter = PathFilter(excluding: excluding)
    }

    /// Scans when `period` has passed since the last scan (or on the first call) and returns the
    /// files that became stable, plus problems; an empty array when it is not yet time.
    public func next(now: Double) -> [WatchEvent] {
        if let last = lastScanAt, now - last < period { return [] }
        lastScanAt = now
        return scan()
    }

    private func scan() -> [WatchEvent] {
        let baseline = scanNumber == 0 && !reportFilesPresentAtStart
        scanNumber &+= 1
        if scanNumber == 0 { scanNumber = 1 }
        var events: [WatchEvent] = []
        var failedNow: Set<String> = []
        var stack = roots.filter { !filter.isExcluded($0) }.reversed().map { ($0, true) }
        while let (folder, isRoot) = stack.popLast() {
            do {
                let stream = try FolderStream(path: folder, followSymlink: isRoot)
                if filter.isExcluded(stream.identity) { continue }
                var listed = 0
                while let entry = try stream.next(statFiles: true) {
                    listed += 1
                    let path = PathFilter.join(folder, entry.name)
                    guard entry.nameIsValid else {
                        events.append(.problem("Skipped \(path): its name is not valid UTF-8"))
                        continue
                    }
                    if PathFilter.isHidden(entry.name) || filter.isExcluded(path) { continue }
                    switch entry.kind {
                    case .folder: stack.append((path, false))
                    case .file:
                        if examine(path, size: entry.size, modified: entry.modifiedNanoseconds, baseline: baseline) {
                            events.append(.file(path: path))
                        }
                    case .other: break
                    }
                }
                if isRoot && listed == 0 { emptyRoot(folder, failedNow: &failedNow, events: &events) }
            } catch {
                if !isRoot && [ENOENT, ELOOP, ENOTDIR].contains(error.code) { continue }  // gone meanwhile
                failedNow.insert(folder)
                if !failingFolders.contains(folder) {
                    events.append(.problem("\(error): its files are not checked until it can be read"))
                }
            }
        }
        failingFolders = failedNow
        // Forget files gone, but not those in a folder that could not be read this time.
        let current = scanNumber
        let failedPrefixes = failedNow.map { $0 == "/" ? "/" : $0 + "/" }
        var gone: [String] = []
        records = records.filter { path, record in
            let kept = record.scan == current || failedPrefixes.contains { path.hasPrefix($0) }
            if !kept { gone.append(path) }
            return kept
        }
        return events + gone.sorted().map { .gone(path: $0) }
    }

    /// A root that lists nothing while files were remembered under it: an NFS or SMB share not
    /// mounted (its mount point left empty) looks exactly like every file deleted. Taken as a
    /// folder that could not be read: its files are kept, not reported gone, until it lists
    /// something again (files deleted one by one are reported as ever).
    private func emptyRoot(_ root: String, failedNow: inout Set<String>, events: inout [WatchEvent]) {
        let prefix = root == "/" ? "/" : root + "/"
        let held = records.keys.filter { $0.hasPrefix(prefix) }.count
        guard held > 0 else { return }
        failedNow.insert(root)
        if !failingFolders.contains(root) {
            events.append(.problem("\(root) is empty, but held \(held) files at the last scan: an unmounted share? Its files are not reported gone until it holds files again"))
        }
    }

    /// Updates the record of one file; true when it is to be reported now.
    private func examine(_ path: String, size: Int64, modified: Int64, baseline: Bool) -> Bool {
        guard var record = records[path] else {
            records[path] = Record(size: size, modifiedNanoseconds: modified, scan: scanNumber, state: baseline ? .baseline : .waiting)
            return false
        }
        record.scan = scanNumber
        var report = false
        if record.size != size || record.modifiedNanoseconds != modified {
            record.size = size
            record.modifiedNanoseconds = modified
            record.state = .waiting
        } else if record.state == .waiting {
            record.state = .reported
            report = true
        }
        records[path] = record
        return report
    }
}
