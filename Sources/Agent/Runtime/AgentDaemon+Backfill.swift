import Audit
import DICOM
import Foundation
import Platform
import Routing

/// The running agent's side of `consort backfill` (see `Backfill`): asked on the admin socket,
/// planned from the inventory and the rules in force, audited, and — with `apply` — queued.
extension AgentDaemon {
    /// Jobs listed one by one in an answer unless `all` is asked: a ten-year archive plans
    /// millions, and the answer is one JSON object built and sent whole.
    static let backfillListed = 50

    /// One backfill request: `since` (YYYYMMDD), `rule` (optional), `apply` (false: a dry run),
    /// `all` (list every job, not the first `backfillListed`). The answer counts the jobs by
    /// rule, action and peer (`summary`) and lists them (`jobs`, `already`), each list capped.
    ///
    /// Planning reads a header of every instance it takes, on this admin request's thread, with
    /// no deadline of the admin socket's (its 5 s bound only the reading of the request and each
    /// write of the answer): a large archive takes minutes, and the request goes on to the end —
    /// audited, and with `apply` queued — even when the client has stopped waiting.
    func backfill(_ fields: [String: Any], who: String, log adminLog: Logger) -> JSON {
        func failure(_ message: String, _ extra: [(String, JSON)] = []) -> JSON { .object([("ok", .bool(false)), ("error", .string(message))] + extra) }
        guard let since = fields["since"] as? String, Backfill.isDate(since) else { return failure("since must be a date as YYYYMMDD", [("usage", .bool(true))]) }
        let only = fields["rule"] as? String
        let apply = fields["apply"] as? Bool ?? false
        let listAll = fields["all"] as? Bool ?? false
        let set = rules.current
        if let only, !set.rules.contains(where: { $0.name == only }) {
            let close = Backfill.closeNames(only, among: set.rules.map(\.name))
            return failure("no rule named \"\(only)\" in the rules in force", [("usage", .bool(true)), ("close", .array(close.map(JSON.string)))])
        }
        let now = clock.now
        let planned: (jobs: [Backfill.Planned], standing: [(key: Backfill.Key, state: String)], studies: [String: AgentStore.LocalStudy], unreadable: Int)
        do { planned = try planBackfill(since: since, rule: only, now: now) } catch {
            adminLog.error("backfill: cannot read the inventory", ["error": error])
            return failure("cannot read the inventory: \(error)")
        }
        let scope = "studies dated \(since) or later, " + (only.map { "rule \"\($0)\"" } ?? "every rule")
        // Audited before anything is queued (an action not audited is not made); a dry run too:
        // it lists patients' studies.
        do {
            try audit.record(AuditEntry(
                who: who, action: "backfill", why: "consort backfill" + (apply ? " --yes" : ""),
                detail: "\(scope): \(planned.jobs.count) jobs " + (apply ? "to queue at bulk priority" : "would be queued (dry run)") + ", \(planned.standing.count) already there"))
        } catch {
            return failure("cannot write the audit log, so nothing was done: \(error)")
        }
        var ids: [Backfill.Key: Int64] = [:]
        if apply && !planned.jobs.isEmpty {
            do { ids = try store.queueBackfill(planned.jobs, now: now) } catch {
                adminLog.error("backfill: cannot queue the jobs; none was queued", ["user": who, "error": error])
                return failure("cannot queue the jobs (none was queued): \(error)")
            }
            queue.nudge()
            adminLog.info("backfill: jobs queued at bulk priority by an operator", ["user": who, "scope": scope, "jobs": ids.count])
        }
        func text(_ value: String?) -> JSON { value.map(JSON.string) ?? .null }
        let taken = planned.jobs.filter { !apply || ids[$0.key] != nil }
        let limit = listAll ? Int.max : Self.backfillListed
        let jobs: [JSON] = taken.prefix(limit).map { item in
            let study = planned.studies[item.key.study]
            var fields: [(String, JSON)] = [
                ("study", .string(item.key.study)), ("date", text(study?.date)), ("modality", text(study?.modality)), ("description", text(study?.description)),
                ("rule", .string(item.key.rule)), ("kind", .string(item.job.kind.rawValue)), ("peer", .string(item.key.destination)),
                ("instances", .int(Int64(item.instances.count))),
            ]
            if let id = ids[item.key] { fields.append(("id", .int(id))) }
            if let job = item.extending { fields.append(("adds_to", .int(job))) }
            return .object(fields)
        }
        let standing: [JSON] = planned.standing.prefix(limit).map {
            .object([("study", .string($0.key.study)), ("rule", .string($0.key.rule)), ("peer", .string($0.key.destination)), ("state", .string($0.state))])
        }
        return .object([
            ("ok", .bool(true)), ("applied", .bool(apply)), ("since", .string(since)), ("rule", text(only)), ("studies", .int(Int64(planned.studies.count))),
            ("summary", .array(Self.backfillSummary(taken))), ("job_count", .int(Int64(taken.count))), ("jobs", .array(jobs)),
            ("already_count", .int(Int64(planned.standing.count))), ("already", .array(standing)), ("unreadable", .int(Int64(planned.unreadable))),
        ])
    }

    /// The jobs counted by rule, action and peer, in the order first met: what an operator reads
    /// before the list (which may be cut at `backfillListed`).
    static func backfillSummary(_ jobs: [Backfill.Planned]) -> [JSON] {
        var order: [String] = []
        var groups: [String: (rule: String, kind: String, peer: String, jobs: Int, adding: Int, instances: Int)] = [:]
        for item in jobs {
            let key = [item.key.rule, item.job.kind.rawValue, item.key.destination].joined(separator: "\u{1}")
            if groups[key] == nil {
                groups[key] = (item.key.rule, item.job.kind.rawValue, item.key.destination, 0, 0, 0)
                order.append(key)
            }
            groups[key]!.jobs += 1
            groups[key]!.instances += item.instances.count
            if item.extending != nil { groups[key]!.adding += 1 }
        }
        return order.map { key in
            let group = groups[key]!
            return .object([
                ("rule", .string(group.rule)), ("kind", .string(group.kind)), ("peer", .string(group.peer)), ("jobs", .int(Int64(group.jobs))),
                ("adding", .int(Int64(group.adding))), ("instances", .int(Int64(group.instances))),
            ])
        }
    }

    /// What the rules in force would queue for the archive's studies dated on or after `since`.
    /// Headers are read from the files (instance-arrival rules may look at any attribute of an
    /// instance); an instance whose file cannot be read now is left out and counted.
    private func planBackfill(since: String, rule only: String?, now: Double) throws
        -> (jobs: [Backfill.Planned], standing: [(key: Backfill.Key, state: String)], studies: [String: AgentStore.LocalStudy], unreadable: Int)
    {
        let engine = rules.engine
        var planned: [Backfill.Planned] = []
        var standing: [(key: Backfill.Key, state: String)] = []
        var studies: [String: AgentStore.LocalStudy] = [:]
        var unreadable = 0
        for study in try store.localStudies() where Backfill.isOnOrAfter(study.date, since: since) {
            studies[study.uid] = study
            func jobs(_ kind: RoutingEvent.Kind, _ header: DataSet) -> [AgentStore.NewJob] {
                let actions = engine.evaluate(RoutingEvent(kind: kind, header: header, origin: .local, site: configuration.trust, now: Int64(now)))
                return Ingest.jobs(for: actions.filter { only == nil || $0.rule == only }, now: now, log: log).map(Backfill.asBulk)
            }
            var byKey: [Backfill.Key: Backfill.Planned] = [:]
            var order: [Backfill.Key] = []
            func add(_ job: AgentStore.NewJob, _ instances: [(sop: String, path: String, size: Int)]) {
                let key = Backfill.Key(study: study.uid, rule: job.rule, destination: job.destination)
                if byKey[key] == nil {
                    byKey[key] = Backfill.Planned(key: key, job: job, instances: [])
                    order.append(key)
                }
                byKey[key]!.instances += instances
            }
            let instances = try store.localInstances(ofStudy: study.uid)
            var first: DataSet?
            for instance in instances {
                guard let header = try? DICOMFile.read(path: instance.path).dataSet else {
                    unreadable += 1
                    continue
                }
                if first == nil { first = header }
                for job in jobs(.instanceArrived, header) { add(job, [instance]) }
            }
            // The study as it stands, for every instance (as the stability tick fires it).
            if let first {
                for job in jobs(.studyStable, first) { add(job, instances) }
            }
            let split = Backfill.split(order.compactMap { byKey[$0] }, existing: try store.jobStates(ofStudy: study.uid))
            planned += split.fresh
            standing += split.standing
        }
        return (planned, standing, studies, unreadable)
    }
}
