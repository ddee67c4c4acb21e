import Foundation
import Platform
import Routing

/// MDT lists (`lists` folder, CSV: nhs_number,meeting_date,host): each new or changed file is
/// read once it has not changed for a poll, its entries run through the list rules, and the
/// gather jobs they plan are queued, to start their lead time before the meeting.
final class ListWatcher: Service, @unchecked Sendable {
    let folder: String
    let store: AgentStore
    let rules: RuleBook
    let trust: String
    let log: Logger
    let queued: @Sendable () -> Void
    private var seen: [String: (size: Int, mtime: Double)] = [:]
    private var loop: WakeableLoop?
    let name = "list watcher"

    let clock: any Clock

    init(folder: String, store: AgentStore, rules: RuleBook, trust: String, clock: any Clock = SystemClock(), log: Logger, queued: @escaping @Sendable () -> Void) {
        self.clock = clock
        self.folder = folder
        self.store = store
        self.rules = rules
        self.trust = trust
        self.log = log
        self.queued = queued
    }

    func start() {
        let loop = WakeableLoop(name: "consort-lists", interval: 1) { [self] in
            scan()
            return nil
        }
        self.loop = loop
        loop.start()
    }

    func stop(within seconds: Double) -> Bool { loop?.stop(within: seconds) ?? true }

    func scan() {
        let names = ((try? FileManager.default.contentsOfDirectory(atPath: folder)) ?? []).filter { $0.lowercased().hasSuffix(".csv") && !$0.hasPrefix(".") }
        var candidates: [(path: String, size: Int, mtime: Double)] = []
        for name in names {
            let path = folder + "/" + name
            var info = stat()
            guard stat(path, &info) == 0 else { continue }
            let now = (size: Int(info.st_size), mtime: Double(info.st_mtim.tv_sec) + Double(info.st_mtim.tv_nsec) / 1e9)
            // Taken once unchanged since the last look (a list still being written waits).
            if let before = seen[path], before == now { candidates.append((path, now.size, now.mtime)) }
            seen[path] = now
        }
        guard !candidates.isEmpty, let done = try? store.unchanged(candidates) else { return }
        for candidate in candidates where !done.contains(candidate.path) { take(candidate) }
    }

    private func take(_ file: (path: String, size: Int, mtime: Double)) {
        let now = clock.now
        guard let data = FileManager.default.contents(atPath: file.path), let text = String(data: data, encoding: .utf8) else {
            try? store.recordFile(path: file.path, size: file.size, mtime: file.mtime, problem: "cannot read the MDT list as UTF-8 text", now: now)
            return
        }
        let set = rules.current
        let (entries, problems) = MDTList.parse(text, members: Set(set.members.map(\.code)))
        for problem in problems { log.error("MDT list line refused", ["list": file.path, "problem": problem.description]) }
        var jobs = 0
        for entry in entries where entry.host == trust {
            let actions = rules.engine.evaluate(RoutingEvent(kind: .listArrived(entry), header: nil, origin: .local, site: trust, now: Int64(now)))
            let planned = Ingest.jobs(for: actions, now: now, log: log, nhs: entry.nhsNumber)
            guard !planned.isEmpty else { continue }
            do {
                try store.queue(planned, study: "mdt:\(entry.nhsNumber):\(entry.meetingDate)", now: now)
                jobs += planned.count
            } catch {
                log.error("cannot queue the list's gather jobs", ["list": file.path, "error": error])
                return
            }
        }
        try? store.recordFile(path: file.path, size: file.size, mtime: file.mtime, problem: nil, now: now)
        log.info("MDT list taken", ["list": file.path, "patients": entries.count, "gather_jobs": jobs, "refused_lines": problems.count])
        if jobs > 0 { queued() }
    }
}
