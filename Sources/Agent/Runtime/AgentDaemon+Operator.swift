import Audit
import DICOM
import DICOMweb
import Foundation
import Platform
import Routing
import Transport

/// The running agent's side of the operator commands: the admin socket's requests, the live
/// status, `/metrics` and `/healthz`.
extension AgentDaemon {
    // MARK: - The admin socket

    func startAdmin() throws {
        let adminLog = log.named("admin")
        let server = AdminServer(path: configuration.adminSocketPath, log: adminLog) { [self] request in answer(request, log: adminLog) }
        try server.start()
        admin = server
    }

    /// One admin request. Actions take job ids (the CLI resolved its filters against the store
    /// and said how many matched); each answer says which jobs it changed.
    func answer(_ request: AdminServer.Request, log adminLog: Logger) -> JSON {
        let now = clock.now
        let ids = (request.fields["jobs"] as? [Any] ?? []).compactMap { ($0 as? NSNumber)?.int64Value }
        let peers = (request.fields["peers"] as? [Any] ?? []).compactMap { $0 as? String }
        // Who: the kernel's word for the uid; the name the command line gives (sudo's user) beside it.
        let claimed = request.fields["user"] as? String
        let who = claimed.map { $0 == request.user ? request.user : "\(request.user) (for \($0))" } ?? request.user
        func failure(_ message: String) -> JSON { .object([("ok", .bool(false)), ("error", .string(message))]) }
        func changed(_ list: [Int64], _ extra: [(String, JSON)] = []) -> JSON {
            .object([("ok", .bool(true)), ("matched", .int(Int64(ids.count))), ("changed", .array(list.map { .int($0) }))] + extra)
        }
        if ["hold", "release", "retry", "drop"].contains(request.action) {
            // Operator actions are audited before they are made (an action not audited is not made).
            do {
                try audit.record(AuditEntry(who: who, action: request.action, why: "consort queue \(request.action)", detail: "jobs \(ids.map(String.init).joined(separator: ","))" + (peers.isEmpty ? "" : "; peers \(peers.joined(separator: ","))")))
            } catch {
                return failure("cannot write the audit log, so nothing was changed: \(error)")
            }
        }
        do {
            switch request.action {
            case "ping":
                return .object([("ok", .bool(true)), ("trust", .string(configuration.trust)), ("pid", .int(Int64(getpid())))])
            case "status":
                return liveStatus(now: now)
            case "hold":
                let list = try store.hold(ids)
                queue.halt(list)
                adminLog.info("jobs held by an operator", ["user": who, "jobs": list.map(String.init).joined(separator: ",")])
                return changed(list)
            case "release":
                let list = try store.release(ids, now: now)
                queue.nudge()
                adminLog.info("jobs released by an operator", ["user": who, "jobs": list.map(String.init).joined(separator: ",")])
                return changed(list)
            case "retry":
                // The peers' circuits first: an open circuit lets one probe through now.
                let unknown = peers.filter { !queue.peers.probeNow($0) }
                if !unknown.isEmpty { return failure("no such peer or local target in the configuration: \(unknown.joined(separator: ", "))") }
                let list = try store.retry(ids, now: now)
                queue.nudge()
                adminLog.info("retry now, asked by an operator", ["user": who, "jobs": list.map(String.init).joined(separator: ","), "peers": peers.joined(separator: ",")])
                return changed(list, [("peers", .array(peers.map { .string($0) }))])
            case "resync":
                guard let announcer else { return failure("this agent has no coordinator line in its configuration: nothing to resync") }
                let count = try announcer.resync()
                try audit.record(AuditEntry(who: who, action: "resync", detail: "\(count) studies to announce again"))
                adminLog.info("resync asked by an operator: every study is announced to the coordinator again", ["user": who, "studies": count])
                return .object([("ok", .bool(true)), ("studies", .int(Int64(count)))])
            case "drop":
                let reason = "dropped by \(who) at \(Self.isoTime(now))"
                let list = try store.drop(ids, reason: reason, now: now)
                queue.halt(list)
                adminLog.warning("JOBS DROPPED by an operator: they will not be sent", ["user": who, "uid": request.uid, "jobs": list.map(String.init).joined(separator: ",")])
                return changed(list)
            case "backfill":
                return backfill(request.fields, who: who, log: adminLog)
            case "pull":
                return pull(request.fields, who: who, log: adminLog)
            case "identity-release":
                return releaseIdentity(request.fields, who: who, log: adminLog)
            case "copy-acknowledge":
                let studies = (request.fields["studies"] as? [Any] ?? []).compactMap { $0 as? String }
                try audit.record(AuditEntry(who: who, action: "copy-acknowledge", why: "consort identity acknowledge", detail: "studies \(studies.joined(separator: ","))"))
                let done = try store.acknowledgeCopyFlags(studies, by: who, now: now)
                adminLog.info("flagged copies acknowledged by an operator", ["user": who, "studies": done.joined(separator: ",")])
                return .object([("ok", .bool(true)), ("acknowledged", .array(done.map { .string($0) }))])
            default:
                return failure("unknown action \"\(request.action)\" (ping, status, hold, release, retry, drop, resync, backfill, pull, identity-release, copy-acknowledge)")
            }
        } catch {
            adminLog.error("admin action failed", ["action": request.action, "user": who, "error": error])
            return failure("\(error)")
        }
    }

    /// `consort pull`: a patient's studies anywhere in the consortium (or some of them) fetched
    /// here by the spool — planned like an MDT list's gather (the coordinator asked where they
    /// are, each study fetched from a trust holding it, checked against the patient, placed in
    /// this trust's identity), urgent, purpose direct-care, audited before it is queued.
    func pull(_ fields: [String: Any], who: String, log adminLog: Logger) -> JSON {
        func failure(_ message: String) -> JSON { .object([("ok", .bool(false)), ("error", .string(message))]) }
        guard coordinator != nil else { return failure("this agent has no coordinator line in its configuration: it cannot find where the patient's studies are") }
        guard let text = fields["nhs"] as? String, let nhs = NHSNumber(text) else {
            return failure("\"\(fields["nhs"] as? String ?? "")\" is not a valid NHS number (10 digits with a Modulus 11 check digit)")
        }
        var search = PriorSearch.patient(nhs.digits)
        search.modality = (fields["modality"] as? String)?.uppercased()
        search.since = fields["since"] as? String
        search.study = fields["study"] as? String
        // Checked here too: the admin socket is not only the CLI's.
        if let modality = search.modality, !(1...16).contains(modality.count) || !modality.allSatisfy({ $0.isASCII && ($0.isLetter || $0.isNumber) }) {
            return failure("modality \"\(modality)\" is not a modality code such as CT or MR")
        }
        if let since = search.since, !CalendarDay.isReal(since) { return failure("since \"\(since)\" is not a date as YYYYMMDD") }
        if let study = search.study, !UID.isValid(study) { return failure("study \"\(study)\" is not a Study Instance UID") }
        let now = clock.now
        do {
            try audit.record(AuditEntry(
                who: who, action: "pull", nhs: nhs.digits, study: search.study, why: ConsortiumQuery.purpose,
                detail: "consort pull" + (search.modality.map { " --modality \($0)" } ?? "") + (search.since.map { " --since \($0)" } ?? "")))
            let job = AgentStore.NewJob(kind: .gather, destination: "", rule: "pull", purpose: ConsortiumQuery.purpose, priority: .urgent, search: search)
            let key = "pull:\(nhs.digits):\(Int(now * 1000))"
            try store.queue([job], study: key, now: now)
            queue.nudge()
            var filter = AgentStore.JobFilter()
            filter.study = key
            let id = try store.jobLines(filter, now: now, minuteOfDay: 0).first?.job.id
            adminLog.info("pull queued by an operator", ["user": who, "nhs": nhs.digits, "job": id.map(String.init) ?? "?"])
            return .object([("ok", .bool(true)), ("job", id.map { .int($0) } ?? .null)])
        } catch {
            return failure("nothing was queued: \(error)")
        }
    }

    static func isoTime(_ seconds: Double) -> String {
        var time = time_t(seconds)
        var parts = tm()
        gmtime_r(&time, &parts)
        return String(format: "%04d-%02d-%02dT%02d:%02d:%02dZ", parts.tm_year + 1900, parts.tm_mon + 1, parts.tm_mday, parts.tm_hour, parts.tm_min, parts.tm_sec)
    }

    // MARK: - Live status

    /// What only the running process knows: since when, the rules in force, the watch roots'
    /// progress, the peers' circuits, its health. (The spool and inventory are read from the store.)
    func liveStatus(now: Double) -> JSON {
        func number(_ value: Double?) -> JSON { value.map(JSON.double) ?? .null }
        func text(_ value: String?) -> JSON { value.map(JSON.string) ?? .null }
        let (loaded, refused, ruleCount) = stateLock.withLock { (rulesLoaded.timeIntervalSince1970, lastReloadRefused, rules.current.rules.count) }
        let health = self.health()
        let watch: [JSON] = telemetry.watchRoots.map { root in
            .object([
                ("root", .string(root.path)), ("mode", .string(root.mode)), ("files_seen", .int(Int64(root.filesSeen))),
                ("last_file", text(root.lastFile)), ("last_taken", number(root.lastTaken)), ("lag_seconds", .double(root.lagSeconds)),
                ("catch_up_running", .bool(root.catchUpRunning)), ("catch_up_files", .int(Int64(root.catchUpFiles))),
                ("catch_up_started", number(root.catchUpStarted)), ("catch_up_finished", number(root.catchUpFinished)),
            ])
        }
        let counters = telemetry.peerCounters
        let peers: [JSON] = queue.peers.status.map { peer in
            let c = counters[peer.name] ?? Telemetry.PeerCounters()
            return .object([
                ("name", .string(peer.name)), ("url", .string(peer.url)), ("local", .bool(peer.isLocal)), ("circuit", .string(peer.circuit)),
                ("reachable", .bool(peer.reachable)), ("configuration_fault", .bool(peer.configurationFault)), ("busy", .int(Int64(peer.busy))),
                ("last_success", number(peer.lastSuccess)), ("last_error", text(peer.lastError)),
                ("sent_instances", .int(Int64(c.sentInstances))), ("sent_bytes", .int(c.sentBytes)),
                ("received_instances", .int(Int64(c.receivedInstances))), ("received_bytes", .int(c.receivedBytes)),
            ])
        }
        let expiry = tls.expires
        let material = tls.configuration
        let tlsJSON: JSON = .object([
            ("certificate", .object([("path", .string(material.certificateChain)), ("expires", .double(expiry.certificate))])),
            ("ca", .object([("path", .string(material.trustedCA)), ("expires", .double(expiry.ca))])),
            ("crl", material.revocationList.map { path in .object([("path", .string(path)), ("next_update", number(expiry.crl))]) } ?? .null),
            ("loaded", .double(tls.loadedAt)),
            ("last_reload_refused", text(stateLock.withLock { lastTLSReloadRefused })),
            ("needing_attention", .array(expiry.needingAttention(at: now).map { JSON.string($0.name) })),
            ("reloads", .object(telemetry.tlsMaterialReloads.sorted { $0.key < $1.key }.map { ($0.key, JSON.int(Int64($0.value))) })),
        ])
        // The DIMSE SCP: where it listens, how busy, and the last of each outcome.
        var dimseJSON: JSON = .null
        if let dimse, let listener = configuration.dimse {
            let c = dimse.counters
            func event(_ e: DIMSEServer.Event?) -> JSON {
                e.map { .object([("time", .double($0.time)), ("calling", .string($0.calling)), ("address", .string($0.address)), ("detail", .string($0.detail))]) } ?? .null
            }
            let refused = c.stores.filter { $0.key != 0 }.values.reduce(0, +)
            dimseJSON = .object([
                ("address", .string("\(listener.host):\(dimse.port)")), ("aet", .string(listener.aeTitle)), ("tls", .bool(listener.tls)),
                ("peers", .array(configuration.dimsePeers.map { .string($0.name) })),
                ("active_associations", .int(Int64(dimse.activeAssociations))), ("maximum_associations", .int(Int64(listener.associations))),
                ("associations", .int(Int64(c.associations))), ("rejected", .int(Int64(c.rejected))), ("rejected_last_hour", .int(Int64(c.rejections(before: now)))),
                ("aborted", .int(Int64(c.aborted))), ("echoes", .int(Int64(c.echoes))),
                ("stored", .int(Int64(c.stores[0] ?? 0))), ("stored_bytes", .int(c.storedBytes)), ("refused", .int(Int64(refused))),
                ("finds", .int(Int64(c.finds.values.reduce(0, +)))), ("moves", .int(Int64(c.moves.values.reduce(0, +)))),
                ("query_offered", .bool(configuration.queryRetrieveUnavailable == nil)),
                ("last_stored", event(c.lastStored)), ("last_refused", event(c.lastRefused)), ("last_rejected", event(c.lastRejected)),
            ])
        }
        // The coordinators as the client sees them: the one in use, those passed over.
        let coordinatorsJSON: JSON = .array((coordinator?.endpoints ?? []).map { endpoint in
            .object([("url", .string(endpoint.url)), ("in_use", .bool(endpoint.inUse)), ("down", .bool(endpoint.down)),
                ("last_error", text(endpoint.lastError)), ("last_success", number(endpoint.lastSuccess))])
        })
        return .object([
            ("ok", .bool(true)), ("trust", .string(configuration.trust)), ("pid", .int(Int64(getpid()))), ("started", .double(started.timeIntervalSince1970)),
            ("dimse", dimseJSON), ("coordinators", coordinatorsJSON),
            ("rules", .object([("folder", .string(configuration.rules)), ("count", .int(Int64(ruleCount))), ("loaded", .double(loaded)), ("last_reload_refused", text(refused))])),
            ("watch", .array(watch)), ("peers", .array(peers)), ("tls", tlsJSON),
            ("refused_requests", .object(telemetry.refusedRequests.sorted { $0.key < $1.key }.map { ($0.key, JSON.int(Int64($0.value))) })),
            ("healthy", .bool(health.isEmpty)), ("problems", .array(health.map { .string($0) })),
            ("priorities", .object([
                ("lower_cpu", .bool(priorities.lower)), ("idle_io", .bool(priorities.idleIO)), ("full_priority_for_locks", .bool(priorities.comeBack)),
                ("refusal", text(priorities.refusal)),
            ])),
        ])
    }

    /// Why the agent is not working now (empty: it is): a loop that stopped beating, a store it
    /// cannot read, a disk too full to receive.
    func health() -> [String] {
        var problems: [String] = []
        for (loop, silent) in telemetry.silentLoops(longerThan: 30) {
            problems.append("the \(loop) loop has not run for \(Int(silent)) s")
        }
        do { try store.ping() } catch { problems.append("cannot read the spool database: \(error)") }
        let minimum = freeSpaceThreshold.value
        for folder in [configuration.inbound, configuration.state] {
            if let free = Self.freePercent(folder), free < minimum {
                problems.append(String(format: "%@ has %.1f %% free, below the %g %% threshold: incoming transfers are refused", folder, free, minimum))
            }
        }
        return problems
    }

    /// One line for systemd's STATUS=: what waits, what moves, which peers are down.
    public func summary() -> String {
        var states: [String: Int] = [:]
        for (_, byState) in (try? store.depth()) ?? [:] {
            for (state, depth) in byState { states[state, default: 0] += depth.jobs }
        }
        let down = queue.peers.status.filter { !$0.reachable }.map(\.name)
        var text = "\(states["queued", default: 0]) queued, \(states["active", default: 0]) active, \(states["deferred", default: 0]) deferred"
        if let held = states["held"], held > 0 { text += ", \(held) held" }
        if let failed = states["failed"], failed > 0 { text += ", \(failed) failed" }
        text += down.isEmpty ? "; all peers reachable" : "; peers down: \(down.joined(separator: ", "))"
        return text
    }

    /// The agent's loops (dispatch, stability, watch) that have not run for `seconds`: the
    /// watchdog is not pinged while any is stuck.
    public func hungLoops(longerThan seconds: Double) -> [String] {
        telemetry.silentLoops(longerThan: seconds).map(\.0)
    }

    // MARK: - Metrics

    func startMetrics() throws {
        guard let host = configuration.metricsHost else { return }
        var settings = ServerConfiguration()
        settings.host = host
        settings.port = configuration.metricsPort
        settings.maximumConnections = 8
        settings.limits.bodyBytes = 0
        let metricsLog = log.named("metrics")
        let http = HTTPServer(settings, log: { metricsLog.debug($0) }) { [self] request, _ in
            let path = request.head.target.split(separator: "?", maxSplits: 1).first.map(String.init) ?? ""
            guard request.head.method == "GET" || request.head.method == "HEAD" else {
                return ServerResponse.text(405, "only GET")
            }
            switch path {
            case "/metrics":
                let text = MetricsPage.render(self, now: clock.now)
                return ServerResponse(status: 200, headers: [("Content-Type", "text/plain; version=0.0.4; charset=utf-8")], body: Array(text.utf8))
            case "/healthz":
                let problems = health()
                return problems.isEmpty ? ServerResponse.text(200, "ok") : ServerResponse.text(503, problems.joined(separator: "\n"))
            default:
                return ServerResponse.text(404, "not found: /metrics and /healthz are served here")
            }
        }
        try http.start()
        metricsServer = http
        log.info("serving metrics", ["address": "http://\(host):\(http.port)/metrics"])
    }

    public var metricsPort: UInt16 { metricsServer?.port ?? 0 }

    /// `consort identity release`: each study looked at again now and placed (under the NHS
    /// number when this trust has no number: the person has decided), audited with who asked.
    func releaseIdentity(_ fields: [String: Any], who: String, log adminLog: Logger) -> JSON {
        let studies = (fields["studies"] as? [Any] ?? []).compactMap { $0 as? String }
        do {
            try audit.record(AuditEntry(who: who, action: "identity-release", why: "consort identity release", detail: "studies \(studies.joined(separator: ","))"))
        } catch {
            return .object([("ok", .bool(false)), ("error", .string("cannot write the audit log, so nothing was changed: \(error)"))])
        }
        guard identityBook != nil else {
            return .object([("ok", .bool(false)), ("error", .string("this agent does not reconcile identity (no coordinator line, or identity keep): nothing is held"))])
        }
        let holds = (try? store.identityHolds()) ?? []
        var results: [JSON] = []
        for study in studies {
            let outcome: HeldRelease
            if let hold = holds.first(where: { $0.study == study }) {
                outcome = releaseHeld(hold, force: true, who: who)
            } else {
                outcome = .notHeld
            }
            let (word, detail): (String, String)
            switch outcome {
            case .placed(let n, let identity): (word, detail) = ("placed", "placed: \(n) instances as \(identity)")
            case .stillHeld(let why): (word, detail) = ("held", "still held: \(why)")
            case .notHeld: (word, detail) = ("not-held", "not held for identity here")
            case .failed(let why): (word, detail) = ("failed", "not placed now (tried again automatically): \(why)")
            }
            adminLog.info("identity release asked by an operator", ["user": who, "study": study, "outcome": detail])
            results.append(.object([("study", .string(study)), ("outcome", .string(word)), ("detail", .string(detail))]))
        }
        return .object([("ok", .bool(true)), ("studies", .array(results))])
    }
}
