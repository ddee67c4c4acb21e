import Foundation
import Platform

/// The agent's `/metrics` page in the Prometheus text exposition format 0.0.4: names by
/// Prometheus's conventions (`consort_` prefix, counters end in `_total`, base units: bytes and
/// seconds), every series of a family written even when zero, so that a dashboard tells "none"
/// from "not reported". Checked in the tests by `promtool check metrics` and a real scrape.
enum MetricsPage {
    static let jobStates = ["queued", "active", "deferred", "waiting", "held", "failed"]
    static let errorClasses = ["transient", "configuration", "refused"]

    static func render(_ agent: AgentDaemon, now: Double) -> String {
        var page = Page()
        let peers = agent.queue.peers.status
        let names = peers.map(\.name)
        let counters = agent.telemetry.peerCounters
        let allPeers = Array(Set(names).union(counters.keys)).sorted()

        page.family("consort_agent_info", "gauge", "The agent's trust and version (always 1).")
        page.sample("consort_agent_info", ["trust": agent.configuration.trust, "version": ConsortVersion.current], 1)
        page.family("process_start_time_seconds", "gauge", "Start time of the process since the Unix epoch, in seconds.")
        page.sample("process_start_time_seconds", [:], agent.started.timeIntervalSince1970)

        let depth = (try? agent.store.depthWithWaiting(minuteOfDay: agent.clock.minuteOfDay(at: now))) ?? [:]
        let queuePeers = Array(Set(allPeers).union(depth.keys)).sorted()
        page.family("consort_jobs", "gauge", "Jobs in the spool by destination and state (done and dropped jobs are not counted).")
        for peer in queuePeers {
            for state in jobStates { page.sample("consort_jobs", ["peer": peer, "state": state], Double(depth[peer]?[state]?.jobs ?? 0)) }
        }
        page.family("consort_queue_instances", "gauge", "Instances still to send, by destination.")
        for peer in queuePeers { page.sample("consort_queue_instances", ["peer": peer], Double(depth[peer]?.values.reduce(0) { $0 + $1.instances } ?? 0)) }
        page.family("consort_queue_bytes", "gauge", "Bytes still to send, by destination.")
        for peer in queuePeers { page.sample("consort_queue_bytes", ["peer": peer], Double(depth[peer]?.values.reduce(0) { $0 + $1.bytes } ?? 0)) }

        let perPeer: [(String, String, (Telemetry.PeerCounters) -> Double)] = [
            ("consort_sent_instances_total", "Instances the destination acknowledged.", { Double($0.sentInstances) }),
            ("consort_sent_bytes_total", "Bytes of the instances the destination acknowledged.", { Double($0.sentBytes) }),
            ("consort_received_instances_total", "Instances received from the peer and recorded.", { Double($0.receivedInstances) }),
            ("consort_received_bytes_total", "Bytes of the instances received from the peer.", { Double($0.receivedBytes) }),
            ("consort_deadline_misses_total", "Jobs whose deadline passed before the study was at the destination.", { Double($0.deadlineMisses) }),
        ]
        for (name, help, value) in perPeer {
            page.family(name, "counter", help)
            for peer in allPeers { page.sample(name, ["peer": peer], value(counters[peer] ?? Telemetry.PeerCounters())) }
        }
        page.family("consort_transfer_errors_total", "counter", "Failed transfers by destination and class (transient: retried; configuration: certificates; refused: an instance refused for good).")
        for peer in allPeers {
            for kind in errorClasses { page.sample("consort_transfer_errors_total", ["peer": peer, "class": kind], Double(counters[peer]?.errors[kind] ?? 0)) }
        }
        page.family("consort_peer_up", "gauge", "1 when the destination's circuit is closed and its certificates work, else 0.")
        for peer in peers { page.sample("consort_peer_up", ["peer": peer.name], peer.reachable ? 1 : 0) }

        page.family("consort_watch_lag_seconds", "gauge", "Seconds between the last file's modification and its taking, by watched folder.")
        let roots = agent.telemetry.watchRoots
        for root in roots { page.sample("consort_watch_lag_seconds", ["root": root.path], root.lagSeconds) }
        page.family("consort_watch_files_total", "counter", "Files seen in the watched folder since the start.")
        for root in roots { page.sample("consort_watch_files_total", ["root": root.path], Double(root.filesSeen)) }
        page.family("consort_watch_catch_up_running", "gauge", "1 while the catch-up scan of the folder runs.")
        for root in roots { page.sample("consort_watch_catch_up_running", ["root": root.path], root.catchUpRunning ? 1 : 0) }

        if let counts = try? agent.store.counts() {
            page.family("consort_inventory_studies", "gauge", "Studies in the inventory.")
            page.sample("consort_inventory_studies", [:], Double(counts.studies))
            page.family("consort_inventory_instances", "gauge", "Instances in the inventory, by origin (local: this trust's archive).")
            page.sample("consort_inventory_instances", ["origin": "local"], Double(counts.instances - counts.receivedInstances))
            page.sample("consort_inventory_instances", ["origin": "received"], Double(counts.receivedInstances))
            page.family("consort_inventory_bytes", "gauge", "Bytes of the instances in the inventory.")
            page.sample("consort_inventory_bytes", [:], Double(counts.bytes))
            page.family("consort_malformed_files", "gauge", "Files in the watched folders recorded as not readable DICOM.")
            page.sample("consort_malformed_files", [:], Double(counts.malformedFiles))
        }
        // Results back (issue 29): every peer that is not a trust, and any that sent results.
        if let results = try? agent.store.resultCounts() {
            let ruleSet = agent.rules.current
            let resultPeers = Set(results.keys).union(agent.configuration.peers.map(\.name).filter { ruleSet.member($0)?.isTrust == false }).sorted()
            page.family("consort_results_total", "counter", "Objects a peer sent back as results, by outcome: received (a result for a study this trust sent it), refused.")
            for peer in resultPeers {
                for outcome in ["received", "refused"] {
                    let counts = results[peer] ?? AgentStore.ResultCounts()
                    page.sample("consort_results_total", ["peer": peer, "outcome": outcome], Double(outcome == "received" ? counts.received : counts.refused))
                }
            }
            page.family("consort_results_awaited", "gauge", "Studies pushed under a rule that expects a result, whose result has not come and is not due yet.")
            for peer in resultPeers { page.sample("consort_results_awaited", ["peer": peer], Double(results[peer]?.awaited ?? 0)) }
            page.family("consort_results_overdue", "gauge", "Studies whose expected result has not come in the time the rule allows (expect result within): alert on > 0.")
            for peer in resultPeers { page.sample("consort_results_overdue", ["peer": peer], Double(results[peer]?.overdue ?? 0)) }
        }
        page.family("consort_rule_reloads_total", "counter", "Rule reloads (SIGHUP) by result: ok, or refused (the set had errors; the old one stays).")
        for (result, count) in agent.telemetry.ruleReloads.sorted(by: { $0.key < $1.key }) { page.sample("consort_rule_reloads_total", ["result": result], Double(count)) }
        // What urgent-before-bulk rests on, which a service sandbox may forbid: alert on 0.
        page.family("consort_agent_priority_ability", "gauge",
            "1 when the agent may do it: lower_cpu (a bulk transfer's threads nicer), idle_io (bulk data in the idle I/O class), full_priority_for_locks (a lowered thread back up while it holds the inventory lock).")
        for (ability, can) in [("lower_cpu", agent.priorities.lower), ("idle_io", agent.priorities.idleIO), ("full_priority_for_locks", agent.priorities.comeBack)] {
            page.sample("consort_agent_priority_ability", ["ability": ability], can ? 1 : 0)
        }
        page.family("consort_tls_reloads_total", "counter", "Reloads of the TLS material (SIGHUP) by result: ok, or refused (the files did not load; the material in force stays).")
        for (result, count) in agent.telemetry.tlsMaterialReloads.sorted(by: { $0.key < $1.key }) { page.sample("consort_tls_reloads_total", ["result": result], Double(count)) }
        // Seconds since the epoch, the Prometheus way: alert on `… - time() < 14 * 86400`.
        page.family("consort_tls_expiry_timestamp_seconds", "gauge",
            "When the TLS material in force expires, in seconds since the epoch: certificate (this trust's), ca (the soonest in the CA file), crl (its next update; past it every handshake fails).")
        for item in agent.tls.expires.items { page.sample("consort_tls_expiry_timestamp_seconds", ["item": item.name], item.expires) }
        page.family("consort_refused_requests_total", "counter",
            "Requests the receiver refused (403), by reason: not_a_member, peer_not_member (a peer may not retrieve, search or store), no_purpose, no_agreement, deidentification_required (the agreement lets imaging go only by a de-identified push).")
        let refusals = agent.telemetry.refusedRequests
        for reason in ["not_a_member", "peer_not_member", "no_purpose", "no_agreement", "deidentification_required"] { page.sample("consort_refused_requests_total", ["reason": reason], Double(refusals[reason] ?? 0)) }
        if let dimse = agent.dimse {
            let counts = dimse.counters
            page.family("consort_dimse_associations_total", "counter", "DIMSE associations by result: accepted, rejected (who may associate, or too many), aborted (a deadline, a cut, a protocol error).")
            for (result, value) in [("accepted", counts.associations), ("rejected", counts.rejected), ("aborted", counts.aborted)] {
                page.sample("consort_dimse_associations_total", ["result": result], Double(value))
            }
            page.family("consort_dimse_active_associations", "gauge", "DIMSE associations open now.")
            page.sample("consort_dimse_active_associations", [:], Double(dimse.activeAssociations))
            page.family("consort_dimse_stores_total", "counter", "C-STORE requests answered, by status (0x0000: kept, durable, in the intake).")
            for status in Array(Set(counts.stores.keys).union([0x0000, 0xA700, 0xA900, 0xC000])).sorted() {
                page.sample("consort_dimse_stores_total", ["status": String(format: "0x%04X", status)], Double(counts.stores[status] ?? 0))
            }
            page.family("consort_dimse_received_bytes_total", "counter", "Bytes of the data sets kept from C-STORE.")
            page.sample("consort_dimse_received_bytes_total", [:], Double(counts.storedBytes))
            page.family("consort_dimse_echoes_total", "counter", "C-ECHO requests answered.")
            page.sample("consort_dimse_echoes_total", [:], Double(counts.echoes))
        }
        page.family("consort_healthy", "gauge", "1 when /healthz answers 200.")
        page.sample("consort_healthy", [:], agent.health().isEmpty ? 1 : 0)
        return page.text
    }

    /// The exposition format's text.
    struct Page {
        var text = ""

        mutating func family(_ name: String, _ type: String, _ help: String) {
            text += "# HELP \(name) \(help.replacingOccurrences(of: "\\", with: "\\\\").replacingOccurrences(of: "\n", with: "\\n"))\n# TYPE \(name) \(type)\n"
        }

        mutating func sample(_ name: String, _ labels: [String: String], _ value: Double) {
            text += name
            if !labels.isEmpty {
                text += "{" + labels.sorted { $0.key < $1.key }.map { "\($0.key)=\"\(Self.escape($0.value))\"" }.joined(separator: ",") + "}"
            }
            text += " " + Self.format(value) + "\n"
        }

        static func escape(_ value: String) -> String {
            value.replacingOccurrences(of: "\\", with: "\\\\").replacingOccurrences(of: "\"", with: "\\\"").replacingOccurrences(of: "\n", with: "\\n")
        }

        static func format(_ value: Double) -> String {
            if value.isNaN { return "NaN" }
            if value.isInfinite { return value > 0 ? "+Inf" : "-Inf" }
            if value == value.rounded(), abs(value) < 1e15 { return String(Int64(value)) }
            return String(value)
        }
    }
}
