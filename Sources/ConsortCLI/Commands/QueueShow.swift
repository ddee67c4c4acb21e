import CommandSupport
import Agent
import DICOM
import Foundation
import Routing
import Spool

/// `consort queue show ID`: one job in full — its instances and which the peer acknowledged, each
/// attempt with the peer's answer, and why its rule fired, explained as `consort rules explain`
/// explains it (from the study's header as the agent holds it, against the rules on disk).
enum QueueShow {
    static let shownInstances = 200

    static func show(_ context: OperatorContext, id: Int64, json: Bool) throws -> ExitCode {
        let now = Date().timeIntervalSince1970
        var filter = AgentStore.JobFilter()
        filter.ids = [id]
        guard let line = try context.store.jobLines(filter, now: now, minuteOfDay: QueueCommand.minute).first else {
            standardError.line("consort queue show: no job \(id) in \(context.configuration.databasePath)")
            return .someFailed
        }
        let job = line.job
        let instances = try context.store.instances(ofJob: id)
        let attempts = try context.store.attempts(ofJob: id)
        let explanation = explain(job, context: context)
        if json {
            var fields: [(String, JSON)]
            if case .object(let base) = try QueueCommand.jobJSON(line, context: context, now: now) { fields = base } else { fields = [] }
            fields.append(("instances", .array(instances.map { instance in
                .object([("sop", .string(instance.sop)), ("path", .string(instance.path)), ("size", .int(instance.size)), ("state", .string(instance.state)),
                    ("reason", instance.reason.map(JSON.string) ?? .null)])
            })))
            fields.append(("attempts_history", .array(attempts.map { attempt in
                .object([("started", .double(attempt.started)), ("ended", .double(attempt.ended)), ("instances", .int(Int64(attempt.instances))),
                    ("bytes", .int(attempt.bytes)), ("outcome", .string(attempt.outcome))])
            })))
            fields.append(("why", .string(explanation)))
            standardOutput.line(JSON.object(fields).serialized())
            return .success
        }
        standardOutput.line(OperatorFormat.paint("Job \(job.id)", .bold) + ": \(job.kind) of study \(job.study) to \(job.destination)")
        let study = [line.studyDate, line.modality, line.studyDescription.map { "\"\($0)\"" }, line.patientID.map { "patient \($0)" }].compactMap { $0 }
        if !study.isEmpty { standardOutput.line("  Study:     " + study.joined(separator: ", ")) }
        standardOutput.line("  State:     " + OperatorFormat.state(line.shownState) + (line.shownState != job.state.rawValue ? " (stored as \(job.state))" : ""))
        standardOutput.line("  Rule:      \(job.rule) (purpose \(job.purpose)), priority \(OperatorFormat.priority(job.priority))" + (job.window.map { ", window \($0)" } ?? ""))
        standardOutput.line("  Created:   \(OperatorFormat.time(job.created)) (\(OperatorFormat.duration(now - job.created)) ago)")
        if let deadline = job.deadline { standardOutput.line("  Deadline:  \(OperatorFormat.time(deadline)); " + (QueueCommand.deadlineText(job, now: now) ?? "")) }
        standardOutput.line("  Progress:  \(job.acknowledged) of \(job.total) instances acknowledged (\(OperatorFormat.bytes(job.bytesSent)) of \(OperatorFormat.bytes(job.bytesTotal))), \(job.refused) refused")
        standardOutput.line("  Tries:     \(job.attempts)" + (job.nextAttempt > now && [.queued, .deferred].contains(job.state) ? "; next in \(OperatorFormat.duration(job.nextAttempt - now))" : ""))
        if let error = job.lastError { standardOutput.line("  Last error: \(error)") }
        standardOutput.line("")
        standardOutput.line(OperatorFormat.paint("Instances", .bold) + " (\(instances.count)):")
        for instance in instances.prefix(shownInstances) {
            standardOutput.line("  " + OperatorFormat.state(instance.state == "refused" ? "failed" : instance.state == "acknowledged" ? "done" : "queued", width: 0)
                .replacingOccurrences(of: "failed", with: "refused ").replacingOccurrences(of: "done", with: "acked   ").replacingOccurrences(of: "queued", with: "pending ")
                + " " + instance.sop + "  " + OperatorFormat.bytes(instance.size) + (instance.reason.map { "  " + $0 } ?? ""))
        }
        if instances.count > shownInstances { standardOutput.line("  ... and \(instances.count - shownInstances) more (--json lists them all)") }
        standardOutput.line("")
        standardOutput.line(OperatorFormat.paint("Attempts", .bold) + " (\(attempts.count)):")
        for attempt in attempts {
            standardOutput.line("  \(OperatorFormat.time(attempt.started))  \(String(format: "%.2f", attempt.ended - attempt.started)) s  \(attempt.instances) instances, \(OperatorFormat.bytes(attempt.bytes)): \(attempt.outcome)")
        }
        standardOutput.line("")
        standardOutput.line(OperatorFormat.paint("Why", .bold) + ":")
        standardOutput.write(explanation)
        return .success
    }

    /// The rule's explanation for the study, or why it cannot be given now.
    static func explain(_ job: AgentStore.Job, context: OperatorContext) -> String {
        guard let set = RulesCommand.load(context.configuration.rules, quietWarnings: true) else {
            return "  (the rules in \(context.configuration.rules) do not load now; consort rules check says why)\n"
        }
        guard let index = set.rules.firstIndex(where: { $0.name == job.rule }) else {
            return "  (rule \"\(job.rule)\" is no longer in \(context.configuration.rules))\n"
        }
        let paths = ((try? context.store.instances(ofStudy: job.study)) ?? []).prefix(5)
        guard let held = paths.first(where: { (try? DICOMFile.read(path: $0.path)) != nil }), let file = try? DICOMFile.read(path: held.path) else {
            return "  (no instance of the study can be read now to explain it)\n"
        }
        let origin: Origin = held.origin == "local" ? .local : .received(from: held.origin)
        let kind: RoutingEvent.Kind
        switch set.rules[index].trigger {
        case .studyStable: kind = .studyStable
        default: kind = .instanceArrived
        }
        let event = RoutingEvent(kind: kind, header: file.dataSet, origin: origin, site: context.configuration.trust, now: Int64(Date().timeIntervalSince1970))
        return RuleEngine(set).explain(event)[index].text.split(separator: "\n", omittingEmptySubsequences: false).map { "  " + $0 }.joined(separator: "\n")
    }
}
