import CommandSupport
import Agent
import DICOM
import Foundation
import Routing
import Spool

/// `consort queue`: the spool as the person on call sees it — its shape (peer × state × age),
/// one line per job, one job in full — and the actions that change it in the running agent
/// (retry, hold, release, drop), in the manner of Postfix's mailq, qshape and postsuper.
/// Reads come straight from the agent's database, so they work with the agent down.
enum QueueCommand {
    static let help = """
        Usage: consort queue [--config FILE] [--json]
               consort queue list [FILTERS] [--all] [--json]
               consort queue show ID [--json]
               consort queue retry ID...|FILTERS
               consort queue hold ID...|FILTERS
               consort queue release ID...|FILTERS
               consort queue drop ID...|FILTERS --yes

        consort queue          The shape of the queue: jobs by peer, state (queued, active,
                               deferred, waiting for a time window, held, failed) and age
                               (< 1 min, < 10 min, < 1 h, < 1 d, older), with the instances and
                               bytes still to send and the urgent jobs counted; totals below;
                               then the received studies waiting for identity (consort
                               identity).
        list                   One job a line: id, age, state, priority, peer, rule, the study
                               (date, modality, description), progress (instances and MB sent,
                               the rate while active), tries, next try, deadline, last error.
        show ID                Everything about one job: its instances and which the peer
                               acknowledged, each attempt and the peer's answer, and why the
                               rule fired (as consort rules explain says it).
        retry                  Now, whatever the backoff; with --peer, the peer's open circuit
                               lets one probe through at once. A failed job is tried again.
        hold / release         A held job is not sent until released (an active one stops after
                               the batch in flight).
        drop                   The job is not sent, ever; it is kept, marked with who dropped
                               it. Asks for --yes.

        Filters (for list and every action): --peer P, --state S, --rule R, --study UID,
        --patient ID, --older-than 10m (s, m, h, d). Actions say how many jobs matched before
        acting, and need the agent running (they are sent to it on its admin socket,
        STATE/admin.sock, open to the agent's user and group); reads work with it stopped.

        Options:
          --config FILE   the agent's configuration (default /etc/consort/agent.conf)
          --json          machine-readable: the shape as one object; list as one object a line
          --all           (list) done and dropped jobs too
          --yes           (drop) do it without asking

        Exit codes: 0 done; 1 the agent is down for an action, no job matched, or a read failed;
        2 usage error.
        """

    static let filterOptions: Set<String> = ["--peer", "--state", "--rule", "--study", "--patient", "--older-than"]

    static func run(_ args: [String]) throws -> ExitCode {
        let sub = args.first.flatMap { ["list", "show", "retry", "hold", "release", "drop"].contains($0) ? $0 : nil }
        let rest = sub == nil ? args : Array(args.dropFirst())
        let command = "queue" + (sub.map { " " + $0 } ?? "")
        switch sub {
        case nil:
            let arguments = try Arguments(rest, command: command, flags: ["--json"], options: ["--config"])
            if let stray = arguments.positional.first {
                throw UsageError(message: "unknown queue command \"\(stray)\" (list, show, retry, hold, release, drop)", command: "queue")
            }
            guard let context = OperatorContext.open(arguments, command: command) else { return .someFailed }
            return try shape(context, json: arguments.flag("--json"))
        case "list":
            let arguments = try Arguments(rest, command: command, flags: ["--json", "--all"], options: filterOptions.union(["--config"]))
            var filter = try self.filter(arguments, command: command)
            filter.includeFinished = arguments.flag("--all")
            guard let context = OperatorContext.open(arguments, command: command) else { return .someFailed }
            return try list(context, filter: filter, json: arguments.flag("--json"))
        case "show":
            let arguments = try Arguments(rest, command: command, flags: ["--json"], options: ["--config"])
            guard arguments.positional.count == 1, let id = Int64(arguments.positional[0]) else {
                throw UsageError(message: "give one job id (consort queue list shows them)", command: command)
            }
            guard let context = OperatorContext.open(arguments, command: command) else { return .someFailed }
            return try QueueShow.show(context, id: id, json: arguments.flag("--json"))
        default:
            let action = sub!
            let arguments = try Arguments(rest, command: command, flags: action == "drop" ? ["--yes"] : [], options: filterOptions.union(["--config"]))
            let filter = try self.filter(arguments, command: command)
            if filter.isEmpty {
                throw UsageError(message: "give job ids or a filter (--peer P, --state S, --rule R, --study UID, --patient ID, --older-than AGE)", command: command)
            }
            guard let context = OperatorContext.open(arguments, command: command) else { return .someFailed }
            return try act(action, context: context, filter: filter, arguments: arguments)
        }
    }

    static func filter(_ arguments: Arguments, command: String) throws -> AgentStore.JobFilter {
        var filter = AgentStore.JobFilter()
        for text in arguments.positional {
            guard let id = Int64(text), id > 0 else { throw UsageError(message: "\"\(text)\" is not a job id (a whole number)", command: command) }
            filter.ids.append(id)
        }
        filter.peer = arguments.option("--peer")
        filter.rule = arguments.option("--rule")
        filter.study = arguments.option("--study")
        filter.patient = arguments.option("--patient")
        if let state = arguments.option("--state") {
            guard AgentStore.shownStates.contains(state) else {
                throw UsageError(message: "--state is one of \(AgentStore.shownStates.joined(separator: ", ")), not \"\(state)\"", command: command)
            }
            filter.state = state
        }
        if let text = arguments.option("--older-than") {
            guard let seconds = OperatorFormat.parseDuration(text) else {
                throw UsageError(message: "--older-than takes an age such as 90s, 10m, 2h or 1d, not \"\(text)\"", command: command)
            }
            filter.olderThan = seconds
        }
        return filter
    }

    static var now: Double { Date().timeIntervalSince1970 }
    static var minute: Int {
        var t = time_t(now)
        var parts = tm()
        localtime_r(&t, &parts)
        return Int(parts.tm_hour) * 60 + Int(parts.tm_min)
    }

    static func agentLine(_ context: OperatorContext) -> (text: String, running: Bool) {
        switch context.agentState() {
        case .running(let pid): return ("agent running (pid \(pid))", true)
        case .down: return (OperatorFormat.paint("agent NOT running", .red) + " (read from \(context.configuration.databasePath))", false)
        case .noPermission: return ("agent state unknown (no permission on its admin socket)", false)
        }
    }

    // MARK: - The shape

    static let ageBuckets: [(key: String, label: String, limit: Double)] = [
        ("1m", "<1m", 60), ("10m", "<10m", 600), ("1h", "<1h", 3600), ("1d", "<1d", 86_400), ("older", "older", .infinity),
    ]
    static let shapeStates = ["queued", "active", "deferred", "waiting", "held", "failed"]

    struct ShapeRow {
        var peer: String
        var state: String
        var ages = [Int](repeating: 0, count: 5)
        var jobs = 0, urgent = 0, instances = 0
        var bytes: Int64 = 0

        mutating func add(_ job: AgentStore.Job, now: Double) {
            let age = now - job.created
            ages[QueueCommand.ageBuckets.firstIndex { age < $0.limit } ?? 4] += 1
            jobs += 1
            if job.priority == .urgent { urgent += 1 }
            instances += job.instancesLeft
            bytes += job.bytesLeft
        }

        mutating func add(_ row: ShapeRow) {
            for index in ages.indices { ages[index] += row.ages[index] }
            jobs += row.jobs
            urgent += row.urgent
            instances += row.instances
            bytes += row.bytes
        }

        var json: JSON {
            .object([
                ("peer", .string(peer)), ("state", .string(state)),
                ("ages", .object(zip(QueueCommand.ageBuckets, ages).map { ($0.0.key, .int(Int64($0.1))) })),
                ("jobs", .int(Int64(jobs))), ("urgent", .int(Int64(urgent))), ("instances", .int(Int64(instances))), ("bytes", .int(bytes)),
            ])
        }
    }

    static func shape(_ context: OperatorContext, json: Bool) throws -> ExitCode {
        let now = self.now
        let lines = try context.store.jobLines(AgentStore.JobFilter(), now: now, minuteOfDay: minute)
        var rows: [String: ShapeRow] = [:]
        for line in lines {
            let key = line.job.destination + "\u{1}" + line.shownState
            rows[key, default: ShapeRow(peer: line.job.destination, state: line.shownState)].add(line.job, now: now)
        }
        let ordered = rows.values.sorted { ($0.peer, shapeStates.firstIndex(of: $0.state) ?? 9) < ($1.peer, shapeStates.firstIndex(of: $1.state) ?? 9) }
        var total = ShapeRow(peer: "", state: "")
        for row in ordered { total.add(row) }
        let agent = agentLine(context)
        // Received studies held for their identity wait too, though no job carries them.
        let holds = (try? context.store.identityHolds()) ?? []
        if json {
            standardOutput.line(JSON.object([
                ("trust", .string(context.configuration.trust)), ("agent_running", .bool(agent.running)),
                ("rows", .array(ordered.map(\.json))), ("totals", total.json),
                ("waiting_for_identity", .array(holds.map(IdentityCommand.json))),
            ]).serialized())
            return .success
        }
        standardOutput.line("Queue of \(context.configuration.trust): \(agent.text)")
        defer { if !holds.isEmpty { IdentityCommand.print(holds, limit: 10) } }
        guard !ordered.isEmpty else {
            standardOutput.line("The queue is empty: nothing waits to be sent.")
            return .success
        }
        let header = "Peer".padding(to: 9) + "State".padding(to: 9) + ageBuckets.map { OperatorFormat.right($0.label, 6) }.joined()
            + OperatorFormat.right("Jobs", 6) + OperatorFormat.right("Urg", 5) + OperatorFormat.right("Instances", 10) + OperatorFormat.right("Size", 10)
        standardOutput.line(OperatorFormat.paint(header, .bold))
        func render(_ row: ShapeRow, peer: String, state: String) -> String {
            let urgent = row.urgent > 0 ? OperatorFormat.paint(OperatorFormat.right(String(row.urgent), 5), .red) : OperatorFormat.right("0", 5)
            return String(peer.prefix(8)).padding(to: 9) + OperatorFormat.state(state, width: 9) + row.ages.map { OperatorFormat.right(String($0), 6) }.joined()
                + OperatorFormat.right(String(row.jobs), 6) + urgent + OperatorFormat.right(OperatorFormat.count(row.instances), 10)
                + OperatorFormat.right(OperatorFormat.bytes(row.bytes), 10)
        }
        var lastPeer = ""
        for row in ordered {
            standardOutput.line(render(row, peer: row.peer == lastPeer ? "" : row.peer, state: row.state))
            lastPeer = row.peer
        }
        standardOutput.line(String(repeating: "-", count: 78))
        standardOutput.line(render(total, peer: "Total", state: ""))
        if total.urgent > 0 { standardOutput.line("Urg: urgent jobs among them.") }
        return .success
    }

    // MARK: - The list

    static func list(_ context: OperatorContext, filter: AgentStore.JobFilter, json: Bool) throws -> ExitCode {
        let now = self.now
        let lines = try context.store.jobLines(filter, now: now, minuteOfDay: minute)
        if json {
            for line in lines { standardOutput.line(try jobJSON(line, context: context, now: now).serialized()) }
            return .success
        }
        standardOutput.line("Jobs of \(context.configuration.trust): \(agentLine(context).text)")
        for line in lines { standardOutput.write(try jobText(line, context: context, now: now)) }
        standardOutput.line("\(lines.count) job\(lines.count == 1 ? "" : "s")")
        return .success
    }

    /// Bytes a second over the last minute, for an active job.
    static func rate(_ job: AgentStore.Job, context: OperatorContext, now: Double) throws -> Double? {
        guard job.state == .active else { return nil }
        let recent = try context.store.recentBytes(ofJob: job.id, since: now - 60)
        guard recent.seconds > 0.001 else { return nil }
        return Double(recent.bytes) / recent.seconds
    }

    static func deadlineText(_ job: AgentStore.Job, now: Double) -> String? {
        if let missed = job.deadlineMissed { return "deadline MISSED by \(OperatorFormat.duration(missed))" }
        guard let deadline = job.deadline, job.state != .done else { return nil }
        return deadline >= now ? "deadline in \(OperatorFormat.duration(deadline - now))" : "deadline passed \(OperatorFormat.duration(now - deadline)) ago"
    }

    static func jobText(_ line: AgentStore.JobLine, context: OperatorContext, now: Double) throws -> String {
        let job = line.job
        var out = String(job.id).padding(to: 7) + OperatorFormat.duration(now - job.created).padding(to: 7) + OperatorFormat.state(line.shownState, width: 9)
            + (job.priority == .urgent ? OperatorFormat.paint("urgent", .red) + " " : OperatorFormat.priority(job.priority).padding(to: 7))
            + job.destination.padding(to: 7) + job.rule + "\n"
        let study = [line.studyDate, line.modality, line.studyDescription.map { "\"\($0)\"" }].compactMap { $0 }.joined(separator: " ")
        out += "       " + (study.isEmpty ? "" : study + " ") + job.study + "\n"
        var progress = OperatorFormat.bar(job.total > 0 ? Double(job.acknowledged) / Double(job.total) : 0)
        progress += "\(job.acknowledged)/\(job.total) instances, \(OperatorFormat.bytes(job.bytesSent))/\(OperatorFormat.bytes(job.bytesTotal))"
        if job.refused > 0 { progress += ", \(job.refused) refused" }
        if let rate = try rate(job, context: context, now: now) { progress += ", \(OperatorFormat.bytes(Int64(rate)))/s" }
        progress += "; tries \(job.attempts)"
        if ["queued", "deferred", "waiting"].contains(line.shownState) {
            progress += job.nextAttempt <= now ? "; next try now" : "; next try in \(OperatorFormat.duration(job.nextAttempt - now))"
        }
        if line.shownState == "waiting", let window = job.window { progress += "; window \(window)" }
        if let deadline = deadlineText(job, now: now) { progress += "; " + (job.deadlineMissed != nil ? OperatorFormat.paint(deadline, .red) : deadline) }
        out += "       " + progress + "\n"
        if var error = job.lastError, job.state != .done {
            // The peer's URL is in the configuration: the words after it say what went wrong.
            if error.hasPrefix("http"), let colon = error.range(of: ": ") { error = String(error[colon.upperBound...]) }
            out += "       " + OperatorFormat.paint("last error: " + String(error.prefix(60)), .dim) + "\n"
        }
        return out
    }

    static func jobJSON(_ line: AgentStore.JobLine, context: OperatorContext, now: Double) throws -> JSON {
        let job = line.job
        func text(_ v: String?) -> JSON { v.map(JSON.string) ?? .null }
        func number(_ v: Double?) -> JSON { v.map(JSON.double) ?? .null }
        return .object([
            ("id", .int(job.id)), ("state", .string(line.shownState)), ("stored_state", .string(job.state.rawValue)), ("kind", .string(job.kind.rawValue)),
            ("peer", .string(job.destination)), ("study", .string(job.study)), ("rule", .string(job.rule)), ("purpose", .string(job.purpose)),
            ("priority", .string(OperatorFormat.priority(job.priority))), ("window", text(job.window?.description)),
            ("study_date", text(line.studyDate)), ("modality", text(line.modality)), ("description", text(line.studyDescription)), ("patient_id", text(line.patientID)),
            ("instances_sent", .int(Int64(job.acknowledged))), ("instances_total", .int(Int64(job.total))), ("instances_refused", .int(Int64(job.refused))),
            ("bytes_sent", .int(job.bytesSent)), ("bytes_total", .int(job.bytesTotal)), ("bytes_left", .int(job.bytesLeft)),
            ("rate_bytes_per_second", number(try rate(job, context: context, now: now))),
            ("attempts", .int(Int64(job.attempts))), ("created", .double(job.created)), ("age_seconds", .double(now - job.created)),
            ("next_attempt", .double(job.nextAttempt)), ("last_error", text(job.lastError)), ("deadline", number(job.deadline)),
            ("deadline_missed_by", number(job.deadlineMissed)), ("finished", number(job.finished)),
        ])
    }

    // MARK: - Actions

    static func act(_ action: String, context: OperatorContext, filter: AgentStore.JobFilter, arguments: Arguments) throws -> ExitCode {
        let lines = try context.store.jobLines(filter, now: now, minuteOfDay: minute)
        let ids = lines.map(\.job.id)
        let missing = filter.ids.filter { !ids.contains($0) }
        if !missing.isEmpty { standardError.line("consort queue \(action): no such job (or done): \(OperatorContext.list(missing))") }
        // `retry --peer P` is about the peer too: its circuit, even when no job is deferred.
        let peers = action == "retry" && filter.ids.isEmpty ? filter.peer.map { [$0] } ?? [] : []
        standardOutput.line("\(lines.count) job\(lines.count == 1 ? "" : "s") matched\(lines.isEmpty ? "" : ": " + OperatorContext.list(ids))")
        guard !lines.isEmpty || !peers.isEmpty else { return .someFailed }
        if action == "drop" && !arguments.flag("--yes") {
            guard standardOutput.isTerminal, isatty(0) == 1 else {
                standardError.line("consort queue drop: say --yes to drop \(lines.count == 1 ? "this job" : "these \(lines.count) jobs"): they will never be sent")
                return .usage
            }
            standardOutput.write("Drop \(lines.count == 1 ? "this job" : "these \(lines.count) jobs")? They will never be sent. [y/N] ")
            standardOutput.flush()
            guard let reply = readLine(), ["y", "yes"].contains(reply.lowercased()) else {
                standardOutput.line("Nothing dropped.")
                return .success
            }
        }
        let verbs = ["retry": "retrying now", "hold": "held", "release": "released", "drop": "dropped"]
        return context.act(action, jobs: ids, peers: peers, verb: verbs[action] ?? action)
    }
}
