import CommandSupport
import Agent
import DICOM
import Foundation
import Transport

/// `consort status`: is this trust's agent well, and if not, what needs a person. The live part
/// (up since, rules in force, watch roots, circuits) comes from the running agent on its admin
/// socket; the spool and inventory from its database, so it still answers with the agent down.
enum StatusCommand {
    static let help = """
        Usage: consort status [--config FILE] [--json] [--malformed]

        The agent's health at a glance: up since; the rules in force (when loaded, whether the
        last reload was refused); each watched folder (inotify or polling, files seen, the
        catch-up scan, the last file taken and how far behind); the inventory (studies,
        instances, bytes; local and received); each peer (reachable, circuit, last success,
        last error, queue depth, MB/s over the last minute); results back from each peer that
        sends them (received, refused, awaited, overdue); deadlines missed in the last 24 h;
        stuck jobs (active with no answer from the peer for 5 minutes); the DIMSE SCP, if there
        is one (where it listens, associations open, instances stored and refused, the last
        stored, refused and rejected, with who); failed jobs; received
        studies that their senders' manifests say are missing instances; malformed files; when
        this trust's certificate, the consortium CA and the CRL expire (the CRL: its next
        update), as the running agent has them in force, or as the files say when it is down.

        With the agent stopped it says so and shows what its database knows.

        Options:
          --config FILE   the agent's configuration (default /etc/consort/agent.conf)
          --json          one JSON object
          --malformed     list the files recorded as malformed (newest first, up to 1000)

        Exit codes: 0 all well; 1 something needs a person (the agent down, a peer down, a
        missed deadline, a stuck job, a failed job, a received study missing instances with
        nothing arriving for 5 minutes, an association rejected by the DIMSE SCP in the last
        hour (a modality sending under an AE title or from an address not listed loses its
        studies), a result a rule expected that has not come in time, a study from another
        trust waiting for identity, a copy
        whose origin has since corrected or withdrawn the study, a refused rule set, the certificate, CA or CRL expired
        or within 14 days of it); 2 usage error.
        """

    static let stuckAfter = 300.0

    static func run(_ args: [String]) throws -> ExitCode {
        let arguments = try Arguments(args, command: "status", flags: ["--json", "--malformed"], options: ["--config"])
        if let stray = arguments.positional.first { throw UsageError(message: "unexpected argument \"\(stray)\"", command: "status") }
        guard let context = OperatorContext.open(arguments, command: "status") else { return .someFailed }
        let now = Date().timeIntervalSince1970
        let live = context.liveStatus()
        let state = live == nil ? context.agentState() : .running(pid: (live?["pid"] as? NSNumber)?.intValue ?? 0)
        let store = context.store
        let counts = try store.counts()
        let depth = try store.depthWithWaiting(minuteOfDay: QueueCommand.minute)
        let history = try store.peerHistory(since: now - 60)
        let missed = try store.missedDeadlines(since: now - 86_400)
        let stuck = try store.stuckJobs(now: now, after: stuckAfter)
        let malformed = arguments.flag("--malformed") ? try store.problems(limit: 1000) : []
        // Received studies their senders' manifests say are not all here (a database from an
        // older agent, not yet upgraded, has none).
        let incomplete = (try? store.incompleteManifests(limit: 20)) ?? (count: 0, manifests: [])
        // Results back (issue 29): per peer, and those a rule expected that have not come.
        // (A spool an older version wrote has no results yet: none.)
        let results = (try? store.resultCounts()) ?? [:]
        let overdueResults = (try? store.overdueResults(limit: 20)) ?? []
        let incompleteStalled = incomplete.manifests.filter { now - max($0.received, $0.lastInstance ?? 0) > stuckAfter }

        // Peers: the configuration's, with the live circuit when the agent runs.
        let livePeers = Dictionary(uniqueKeysWithValues: (live?["peers"] as? [[String: Any]] ?? []).compactMap { peer in (peer["name"] as? String).map { ($0, peer) } })
        let names = context.configuration.peers.map(\.name) + context.configuration.locals.map(\.name)
        var attention: [String] = []
        switch state {
        case .running: break
        case .down: attention.append("the agent is not running")
        case .noPermission(let why): attention.append("cannot ask the agent: \(why)")
        }
        if let refused = (live?["rules"] as? [String: Any])?["last_reload_refused"] as? String {
            attention.append("the last rules reload was refused (the old rules stay in force): \(refused)")
        }
        for problem in live?["problems"] as? [String] ?? [] { attention.append(problem) }
        // Studies from other trusts held for their identity: not at hand for anyone until placed.
        let identityHolds = (try? store.identityHolds()) ?? []
        for hold in identityHolds.prefix(10) {
            attention.append("study \(hold.study) from \(hold.sender) is waiting for identity: \(hold.reason) (consort identity)")
        }
        if identityHolds.count > 10 { attention.append("\(identityHolds.count - 10) more studies are waiting for identity (consort identity list)") }
        // Copies whose origin has since corrected or withdrawn the study.
        let copyFlags = ((try? store.copyFlags()) ?? []).filter { $0.seen == nil }
        for flag in copyFlags.prefix(10) {
            attention.append("the copy of study \(flag.study) from \(flag.origin) needs a person: \(flag.kind) (\(flag.detail)) (consort identity acknowledge once seen to)")
        }
        if copyFlags.count > 10 { attention.append("\(copyFlags.count - 10) more copies need a person (consort identity list)") }
        // Studies the coordinator refused to record (a header field out of kind or range).
        for refusal in ((try? store.announceRefusals()) ?? []).prefix(10) {
            attention.append("the coordinator refuses study \(refusal.uid) (not announced, so no other trust can find it): \(refusal.reason.prefix(160))")
        }
        // The coordinators: which is in use, which are passed over as down.
        let coordinators = live?["coordinators"] as? [[String: Any]] ?? []
        let downCoordinators = coordinators.filter { $0["down"] as? Bool == true }
        if !coordinators.isEmpty && downCoordinators.count == coordinators.count {
            attention.append("no coordinator answers (\(downCoordinators.compactMap { $0["url"] as? String }.joined(separator: ", "))): prefetch, gather and query wait; pushes go on")
        } else {
            for down in downCoordinators {
                attention.append("coordinator \(down["url"] as? String ?? "?") is down (\((down["last_error"] as? String ?? "").prefix(80))); the agent uses \(coordinators.first { $0["in_use"] as? Bool == true }?["url"] as? String ?? "another")")
            }
        }
        // The DIMSE SCP: a caller turned away recently is a modality whose studies are not coming.
        let dimse = live?["dimse"] as? [String: Any]
        if let dimse, let recent = (dimse["rejected_last_hour"] as? NSNumber)?.intValue, recent > 0 {
            let last = dimse["last_rejected"] as? [String: Any]
            attention.append("the DIMSE SCP rejected \(recent) association\(recent == 1 ? "" : "s") in the last hour (last: \(last?["calling"] as? String ?? "?") from \(last?["address"] as? String ?? "?"): \(last?["detail"] as? String ?? "")); a dimse-peer line may be missing or wrong")
        }
        // Urgent before bulk rests on thread priorities, which a service sandbox may forbid.
        let priorities = live?["priorities"] as? [String: Any]
        if let priorities, priorities["lower_cpu"] as? Bool == false || priorities["idle_io"] as? Bool == false {
            attention.append("urgent work is not ranked above bulk work: the agent cannot lower a bulk transfer's CPU or disk priority (\(priorities["refusal"] as? String ?? "refused")); the service's system call filter must allow setpriority and ioprio_set")
        }
        struct PeerLine {
            var name: String
            var reachable: Bool?
            var circuit: String?
            var lastSuccess: Double?
            var lastError: String?
            var jobs = 0, instances = 0
            var bytes: Int64 = 0
            var bytesPerSecond: Double = 0
        }
        let peerLines: [PeerLine] = names.map { name in
            var line = PeerLine(name: name)
            let livePeer = livePeers[name]
            line.reachable = livePeer?["reachable"] as? Bool
            line.circuit = livePeer?["circuit"] as? String
            let recorded = history[name]
            line.lastSuccess = max((livePeer?["last_success"] as? NSNumber)?.doubleValue ?? 0, recorded?.lastSuccess ?? 0)
            if line.lastSuccess == 0 { line.lastSuccess = nil }
            line.lastError = livePeer?["last_error"] as? String ?? recorded?.lastError
            for (_, d) in depth[name] ?? [:] {
                line.jobs += d.jobs
                line.instances += d.instances
                line.bytes += d.bytes
            }
            line.bytesPerSecond = Double(recorded?.recentBytes ?? 0) / 60
            return line
        }
        for peer in peerLines where peer.reachable == false { attention.append("peer \(peer.name) is down: \(peer.lastError ?? peer.circuit ?? "")") }
        // Failed jobs wait for a person (`consort queue retry` or `drop`), however old.
        let failed = depth.values.reduce(0) { $0 + ($1["failed"]?.jobs ?? 0) }
        if failed > 0 { attention.append("\(failed) failed job\(failed == 1 ? "" : "s") (past max-age, or refused for good): `consort queue list --state failed`, then retry or drop") }
        // The TLS material: what the agent has in force, or what it would load.
        let tls = TLSStatus(live: live?["tls"] as? [String: Any], configuration: context.configuration, now: now)
        attention += tls.attention
        if !missed.isEmpty { attention.append("\(missed.count) deadline\(missed.count == 1 ? "" : "s") missed in the last 24 h") }
        for (peer, count) in results.sorted(by: { $0.key < $1.key }) where count.overdue > 0 {
            attention.append("\(count.overdue) result\(count.overdue == 1 ? "" : "s") overdue from \(peer): studies sent under a rule that expects a result, none back in the time it allows")
        }
        if !stuck.isEmpty { attention.append("\(stuck.count) job\(stuck.count == 1 ? "" : "s") active with no progress for \(Int(stuckAfter / 60)) minutes") }
        if !incompleteStalled.isEmpty {
            attention.append("\(incompleteStalled.count) received stud\(incompleteStalled.count == 1 ? "y is" : "ies are") missing instances \(incompleteStalled.count == 1 ? "its sender" : "their senders") listed, nothing arriving for \(Int(stuckAfter / 60)) minutes")
        }

        let rules = live?["rules"] as? [String: Any]
        let watch = live?["watch"] as? [[String: Any]] ?? []
        if arguments.flag("--json") {
            func number(_ v: Double?) -> JSON { v.map(JSON.double) ?? .null }
            func text(_ v: String?) -> JSON { v.map(JSON.string) ?? .null }
            func jobs(_ list: [AgentStore.Job]) -> JSON {
                .array(list.map { .object([("id", .int($0.id)), ("peer", .string($0.destination)), ("study", .string($0.study)), ("rule", .string($0.rule)),
                    ("missed_by", number($0.deadlineMissed)), ("progress_at", number($0.progressAt))]) })
            }
            var fields: [(String, JSON)] = [
                ("trust", .string(context.configuration.trust)), ("agent_running", .bool(live != nil)),
                ("pid", live.flatMap { ($0["pid"] as? NSNumber).map { JSON.int($0.int64Value) } } ?? .null),
                ("started", number((live?["started"] as? NSNumber)?.doubleValue)),
                ("rules", .object([("folder", .string(context.configuration.rules)), ("count", (rules?["count"] as? NSNumber).map { JSON.int($0.int64Value) } ?? .null),
                    ("loaded", number((rules?["loaded"] as? NSNumber)?.doubleValue)), ("last_reload_refused", text(rules?["last_reload_refused"] as? String))])),
                ("watch", .array(context.configuration.watches.map { configured in
                    let root = watch.first { $0["root"] as? String == configured.path }
                    return .object([
                        ("root", .string(configured.path)), ("mode", .string(configured.pollSeconds.map { "poll \(Int($0)) s" } ?? "inotify")),
                        ("files_seen", (root?["files_seen"] as? NSNumber).map { JSON.int($0.int64Value) } ?? .null),
                        ("last_file", text(root?["last_file"] as? String)), ("last_taken", number((root?["last_taken"] as? NSNumber)?.doubleValue)),
                        ("lag_seconds", number((root?["lag_seconds"] as? NSNumber)?.doubleValue)),
                        ("catch_up_running", (root?["catch_up_running"] as? Bool).map(JSON.bool) ?? .null),
                    ])
                })),
                ("inventory", .object([("studies", .int(Int64(counts.studies))), ("instances", .int(Int64(counts.instances))),
                    ("instances_received", .int(Int64(counts.receivedInstances))), ("bytes", .int(counts.bytes)), ("bytes_received", .int(counts.receivedBytes))])),
                ("peers", .array(peerLines.map { peer in
                    .object([("name", .string(peer.name)), ("reachable", peer.reachable.map(JSON.bool) ?? .null), ("circuit", text(peer.circuit)),
                        ("last_success", number(peer.lastSuccess)), ("last_error", text(peer.lastError)), ("queue_jobs", .int(Int64(peer.jobs))),
                        ("queue_instances", .int(Int64(peer.instances))), ("queue_bytes", .int(peer.bytes)), ("bytes_per_second", .double(peer.bytesPerSecond))])
                })),
                ("results", .array(results.sorted(by: { $0.key < $1.key }).map { peer, count in
                    .object([("peer", .string(peer)), ("received", .int(Int64(count.received))), ("refused", .int(Int64(count.refused))),
                        ("awaited", .int(Int64(count.awaited))), ("overdue", .int(Int64(count.overdue)))])
                })),
                ("results_overdue", .array(overdueResults.map { item in
                    .object([("job", .int(item.job)), ("peer", .string(item.peer)), ("study", .string(item.study)), ("rule", .string(item.rule)), ("due", .double(item.due))])
                })),
                ("missed_deadlines_24h", jobs(missed)), ("stuck_jobs", jobs(stuck)), ("malformed_files", .int(Int64(counts.malformedFiles))),
                ("incomplete_studies", .object([("count", .int(Int64(incomplete.count))), ("studies", .array(incomplete.manifests.map { manifest in
                    .object([("study", .string(manifest.study)), ("sender", .string(manifest.sender)), ("listed", .int(Int64(manifest.listed))),
                        ("held", .int(Int64(manifest.held))), ("manifest_received", .double(manifest.received)), ("last_instance", number(manifest.lastInstance))])
                }))])),
                ("priorities", priorities.map { p in
                    .object([("lower_cpu", (p["lower_cpu"] as? Bool).map(JSON.bool) ?? .null), ("idle_io", (p["idle_io"] as? Bool).map(JSON.bool) ?? .null),
                        ("full_priority_for_locks", (p["full_priority_for_locks"] as? Bool).map(JSON.bool) ?? .null), ("refusal", text(p["refusal"] as? String))])
                } ?? .null),
                ("dimse", context.configuration.dimse.map { Self.dimseJSON($0, live: dimse) } ?? .null),
                ("coordinators", .array(context.configuration.coordinators.map { url in
                    let seen = coordinators.first { $0["url"] as? String == url }
                    return .object([
                        ("url", .string(url)), ("in_use", (seen?["in_use"] as? Bool).map(JSON.bool) ?? .null), ("down", (seen?["down"] as? Bool).map(JSON.bool) ?? .null),
                        ("last_error", text(seen?["last_error"] as? String)), ("last_success", number((seen?["last_success"] as? NSNumber)?.doubleValue)),
                    ])
                })),
                ("failed_jobs", .int(Int64(failed))), ("tls", tls.json),
                ("waiting_for_identity", .array(identityHolds.map(IdentityCommand.json))),
                ("copies_needing_a_person", .array(copyFlags.map(IdentityCommand.json))),
                ("needs_attention", .array(attention.map(JSON.string))),
            ]
            if arguments.flag("--malformed") {
                fields.append(("malformed", .array(malformed.map { .object([("path", .string($0.path)), ("problem", .string($0.problem))]) })))
            }
            standardOutput.line(JSON.object(fields).serialized())
            return attention.isEmpty ? .success : .someFailed
        }

        let bold = { (text: String) in OperatorFormat.paint(text, .bold) }
        switch state {
        case .running(let pid):
            let started = (live?["started"] as? NSNumber)?.doubleValue ?? now
            standardOutput.line(bold("Agent \(context.configuration.trust)") + ": running (pid \(pid)), up since \(OperatorFormat.time(started)) (\(OperatorFormat.duration(now - started)))")
        case .down:
            standardOutput.line(bold("Agent \(context.configuration.trust)") + ": " + OperatorFormat.paint("NOT RUNNING", .red) + " (what follows is from \(context.configuration.databasePath))")
        case .noPermission(let why):
            standardOutput.line(bold("Agent \(context.configuration.trust)") + ": state unknown: \(why)")
        }
        if let rules {
            let count = (rules["count"] as? NSNumber)?.intValue ?? 0
            let loaded = (rules["loaded"] as? NSNumber)?.doubleValue ?? now
            var line = "\(count) rules from \(context.configuration.rules), loaded \(OperatorFormat.time(loaded))"
            if let refused = rules["last_reload_refused"] as? String { line += "; " + OperatorFormat.paint("last reload REFUSED: \(refused)", .red) }
            standardOutput.line(bold("Rules") + ":     " + line)
        } else {
            standardOutput.line(bold("Rules") + ":     \(context.configuration.rules) (in force: unknown while the agent is down)")
        }
        if let priorities {
            let ranked = priorities["lower_cpu"] as? Bool == true && priorities["idle_io"] as? Bool == true
            var line = ranked ? "urgent before normal before bulk, on the CPU and the disk" : OperatorFormat.paint("NOT ranked: \(priorities["refusal"] as? String ?? "refused")", .red)
            if ranked && priorities["full_priority_for_locks"] as? Bool == false { line += " (bulk threads keep their lower priority while they hold the database lock: no LimitNICE=+0)" }
            standardOutput.line(bold("Priorities") + ": " + line)
        }
        standardOutput.line(bold("Watching") + ":")
        for configured in context.configuration.watches {
            let mode = configured.pollSeconds.map { "polling every \(Int($0)) s" } ?? "inotify"
            guard let root = watch.first(where: { $0["root"] as? String == configured.path }) else {
                standardOutput.line("  \(configured.path) (\(mode))")
                continue
            }
            var line = "  \(configured.path) (\(mode)): \(OperatorFormat.count((root["files_seen"] as? NSNumber)?.intValue ?? 0)) files seen"
            if root["catch_up_running"] as? Bool == true {
                line += "; catch-up scan running (\(OperatorFormat.count((root["catch_up_files"] as? NSNumber)?.intValue ?? 0)) files so far)"
            } else if let started = (root["catch_up_started"] as? NSNumber)?.doubleValue, let finished = (root["catch_up_finished"] as? NSNumber)?.doubleValue {
                line += "; catch-up done in \(OperatorFormat.duration(finished - started))"
            }
            standardOutput.line(line)
            if let last = root["last_file"] as? String, let taken = (root["last_taken"] as? NSNumber)?.doubleValue {
                standardOutput.line("    last file \(OperatorFormat.duration(now - taken)) ago, \(String(format: "%.1f", (root["lag_seconds"] as? NSNumber)?.doubleValue ?? 0)) s behind: \(last)")
            }
        }
        standardOutput.line(bold("Inventory") + ": \(OperatorFormat.count(counts.studies)) studies, \(OperatorFormat.count(counts.instances)) instances (\(OperatorFormat.count(counts.instances - counts.receivedInstances)) local, \(OperatorFormat.count(counts.receivedInstances)) received), \(OperatorFormat.bytes(counts.bytes))")
        standardOutput.line(bold("Peers") + ":")
        for peer in peerLines {
            let health: String
            switch peer.reachable {
            case true? where peer.lastSuccess == nil && peer.lastError == nil: health = "no contact".padding(to: 10)
            case true?: health = OperatorFormat.paint("reachable".padding(to: 10), .green)
            case false?: health = OperatorFormat.paint("DOWN".padding(to: 10), .red)
            case nil: health = "?".padding(to: 10)
            }
            var line = "  " + peer.name.padding(to: 8) + health
            line += "queue \(peer.jobs) job\(peer.jobs == 1 ? "" : "s") (\(OperatorFormat.count(peer.instances)) inst, \(OperatorFormat.bytes(peer.bytes)))"
            line += ", \(String(format: "%.1f", peer.bytesPerSecond / 1e6)) MB/s"
            standardOutput.line(line)
            var detail: [String] = []
            if let circuit = peer.circuit { detail.append("circuit \(circuit)") }
            detail.append(peer.lastSuccess.map { "last success \(OperatorFormat.duration(now - $0)) ago" } ?? "no success yet")
            if let error = peer.lastError, peer.reachable != true || peer.lastSuccess == nil { detail.append("last error: \(error.prefix(70))") }
            standardOutput.line("          " + detail.joined(separator: "; "))
        }
        if !context.configuration.coordinators.isEmpty {
            standardOutput.line(bold("Coordinators") + ":")
            for url in context.configuration.coordinators {
                let seen = coordinators.first { $0["url"] as? String == url }
                var line = "  " + url
                if seen?["down"] as? Bool == true {
                    line += " " + OperatorFormat.paint("DOWN", .red) + ((seen?["last_error"] as? String).map { ": " + String($0.prefix(70)) } ?? "")
                } else if seen?["in_use"] as? Bool == true {
                    line += " (in use" + ((seen?["last_success"] as? NSNumber).map { ", last answer \(OperatorFormat.duration(now - $0.doubleValue)) ago" } ?? "") + ")"
                }
                standardOutput.line(line)
            }
        }
        if let listener = context.configuration.dimse {
            for line in Self.dimseLines(listener, live: dimse, now: now) { standardOutput.line(line) }
        }
        if !results.isEmpty {
            standardOutput.line(bold("Results back") + ":")
            for (peer, count) in results.sorted(by: { $0.key < $1.key }) {
                var line = "  " + peer.padding(to: 8) + "\(OperatorFormat.count(count.received)) received, \(OperatorFormat.count(count.refused)) refused, \(count.awaited) awaited"
                if count.overdue > 0 { line += ", " + OperatorFormat.paint("\(count.overdue) OVERDUE", .red) }
                standardOutput.line(line)
            }
            for item in overdueResults {
                standardOutput.line("  job \(item.job) \(item.rule) → \(item.peer), study \(item.study): result due \(OperatorFormat.duration(now - item.due)) ago")
            }
        }
        standardOutput.line(bold("Deadlines missed in the last 24 h") + ": \(missed.count)")
        for job in missed.prefix(20) {
            standardOutput.line("  job \(job.id) \(job.rule) → \(job.destination), study \(job.study): missed by \(OperatorFormat.duration(job.deadlineMissed ?? 0))")
        }
        standardOutput.line(bold("Stuck jobs") + " (active, no answer for \(Int(stuckAfter / 60)) min): \(stuck.count)")
        for job in stuck.prefix(20) {
            standardOutput.line("  job \(job.id) → \(job.destination), study \(job.study): last progress \(OperatorFormat.duration(now - (job.progressAt ?? job.created))) ago")
        }
        standardOutput.line(bold("Received studies incomplete") + " (by their senders' manifests): \(incomplete.count)")
        for manifest in incomplete.manifests {
            let last = manifest.lastInstance.map { "last instance \(OperatorFormat.duration(now - $0)) ago" } ?? "none arrived yet"
            standardOutput.line("  study \(manifest.study) from \(manifest.sender): \(manifest.held) of \(manifest.listed) instances here; manifest \(OperatorFormat.duration(now - manifest.received)) ago, \(last)")
        }
        standardOutput.line(bold("Failed jobs") + ": \(failed)" + (failed > 0 ? " (`consort queue list --state failed`)" : ""))
        standardOutput.line(bold("Waiting for identity") + ": \(identityHolds.count)" + (identityHolds.isEmpty ? "" : " (`consort identity list`)"))
        standardOutput.line(bold("TLS") + " (\(tls.source)):")
        for line in tls.lines { standardOutput.line("  " + line) }
        standardOutput.line(bold("Malformed files recorded") + ": \(counts.malformedFiles)" + (counts.malformedFiles > 0 && !arguments.flag("--malformed") ? " (--malformed lists them)" : ""))
        for item in malformed { standardOutput.line("  \(item.path): \(item.problem)") }
        if attention.isEmpty {
            standardOutput.line(OperatorFormat.paint("All well.", .green))
            return .success
        }
        standardOutput.line(OperatorFormat.paint("Needs a person:", .red))
        for item in attention { standardOutput.line("  - " + item) }
        return .someFailed
    }

    /// The DIMSE SCP's lines: where and as whom it listens, then (agent running) how busy and
    /// the last of each outcome.
    static func dimseLines(_ listener: AgentConfiguration.DIMSEListener, live: [String: Any]?, now: Double) -> [String] {
        let bold = { (text: String) in OperatorFormat.paint(text, .bold) }
        let address = live?["address"] as? String ?? "\(listener.host):\(listener.port)"
        var lines = [bold("DIMSE SCP") + ": \(listener.aeTitle) on \(address)\(listener.tls ? " (DICOM TLS)" : "")"]
        guard let live else { return lines }
        func int(_ key: String) -> Int { (live[key] as? NSNumber)?.intValue ?? 0 }
        let peers = (live["peers"] as? [String] ?? []).joined(separator: ", ")
        lines.append("  \(int("active_associations")) of \(int("maximum_associations")) associations open; peers: \(peers.isEmpty ? "none listed (every caller is rejected)" : peers)")
        lines.append("  since start: \(OperatorFormat.count(int("associations"))) associations, \(int("rejected")) rejected, \(int("aborted")) aborted; "
            + "\(OperatorFormat.count(int("stored"))) instances stored (\(OperatorFormat.bytes(Int64(int("stored_bytes"))))), \(int("refused")) refused"
            + (live["query_offered"] as? Bool == true ? "; \(int("finds")) C-FIND, \(int("moves")) C-MOVE answered" : ""))
        for (key, what) in [("last_stored", "last stored"), ("last_refused", "last refused"), ("last_rejected", "last rejected")] {
            guard let event = live[key] as? [String: Any], let time = (event["time"] as? NSNumber)?.doubleValue else { continue }
            let who = "\(event["calling"] as? String ?? "?") (\(event["address"] as? String ?? "?"))"
            var line = "  \(what) \(OperatorFormat.duration(now - time)) ago from \(who)"
            if key != "last_stored", let detail = event["detail"] as? String { line += ": " + String(detail.prefix(100)) }
            lines.append(key == "last_rejected" && now - time < 3600 ? OperatorFormat.paint(line, .red) : line)
        }
        return lines
    }

    /// The same for --json: the configured listener, with what the running agent counts.
    static func dimseJSON(_ listener: AgentConfiguration.DIMSEListener, live: [String: Any]?) -> JSON {
        var fields: [(String, JSON)] = [
            ("address", .string(live?["address"] as? String ?? "\(listener.host):\(listener.port)")), ("aet", .string(listener.aeTitle)), ("tls", .bool(listener.tls)),
        ]
        guard let live else { return .object(fields) }
        fields.append(("peers", .array((live["peers"] as? [String] ?? []).map(JSON.string))))
        for key in ["active_associations", "maximum_associations", "associations", "rejected", "rejected_last_hour", "aborted", "echoes", "stored", "stored_bytes", "refused", "finds", "moves"] {
            fields.append((key, .int((live[key] as? NSNumber)?.int64Value ?? 0)))
        }
        for key in ["last_stored", "last_refused", "last_rejected"] {
            guard let event = live[key] as? [String: Any] else {
                fields.append((key, .null))
                continue
            }
            fields.append((key, .object([
                ("time", .double((event["time"] as? NSNumber)?.doubleValue ?? 0)), ("calling", .string(event["calling"] as? String ?? "")),
                ("address", .string(event["address"] as? String ?? "")), ("detail", .string(event["detail"] as? String ?? "")),
            ])))
        }
        return .object(fields)
    }
}
