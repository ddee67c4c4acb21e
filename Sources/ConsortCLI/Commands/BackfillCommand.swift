import CommandSupport
import Agent
import DICOM
import Foundation
import Routing

/// `consort backfill`: the routing rules applied to the archive's history, on purpose. An
/// agent's first start indexes the studies already in its watched folders without firing rules
/// (issue 23); this queues, through the running agent's admin socket and audited there, what
/// the rules would have queued for the studies dated on or after a day — at bulk priority.
/// Without --yes it only says what it would queue.
enum BackfillCommand {
    static let help = """
        Usage: consort backfill --config FILE --since YYYYMMDD [--rule NAME] [--yes] [--all]

        Applies the routing rules in force to studies of this trust's archive (local origin)
        whose StudyDate is on or after --since, as if they had just arrived and become stable:
        pushes, deliveries and prefetches, one job per study, rule and destination.

        The first start of an agent over an existing archive indexes and announces what it
        finds without firing any rule; this is how a trust sends history, when it decides to.

        Without --yes, a dry run: counts the jobs it would queue by rule, action and peer, lists
        the first 50 (study date, modality, study, rule, action and peer, instances; --all lists
        every one) and queues nothing. With --yes, queues them and says the same of what it
        queued. Every job at bulk priority, whatever its rule says, without the rule's deadline,
        in the rule's time window. A study, rule and peer that already has a job gets no second
        one: a done job that lacks some of the study's instances (a history study that later got
        a live instance: its job holds that one) is given the rest and queued again at bulk
        priority; one queued, running, failed, held or dropped stands, listed as already there.
        Both are asked of the running agent on its admin socket and written to its audit log
        with who asked.

        Planning reads the header of every instance it takes: on a large archive, minutes. This
        waits up to 30 minutes for the answer; the agent goes on to the end whatever the client
        does, so with --yes a backfill cut off by the wait or by Ctrl-C may still be queued:
        `consort queue` and the agent's log say.

        Options:
          --config FILE      the agent's configuration (default /etc/consort/agent.conf)
          --since YYYYMMDD   the earliest StudyDate to take (required)
          --rule NAME        only this rule (its name as in the rules files)
          --yes              queue the jobs (otherwise nothing is queued)
          --all              list every job, not only the first 50

        Exit codes: 0 listed or queued (nothing to do included); 1 the agent is not running or
        refused; 2 usage error (a missing or malformed --since, a rule that does not exist).
        """

    static func run(_ args: [String]) throws -> ExitCode {
        let arguments = try Arguments(args, command: "backfill", flags: ["--yes", "--all"], options: ["--config", "--since", "--rule"])
        if let stray = arguments.positional.first { throw UsageError(message: "unexpected argument \"\(stray)\"", command: "backfill") }
        guard let since = arguments.option("--since") else { throw UsageError(message: "give --since YYYYMMDD: the earliest StudyDate to backfill", command: "backfill") }
        guard Backfill.isDate(since) else { throw UsageError(message: "--since takes a date as YYYYMMDD (20220131), not \"\(since)\"", command: "backfill") }
        let rule = arguments.option("--rule")
        let apply = arguments.flag("--yes")
        guard let context = OperatorContext.open(arguments, command: "backfill") else { return .someFailed }
        // A rule name checked against the rules files first, so that a typo is a usage error
        // whether or not the agent runs; the agent checks again against the rules in force.
        if let rule, let set = RuleSetLoader.load(context.configuration.rules).ruleSet, !set.rules.contains(where: { $0.name == rule }) {
            throw unknownRule(rule, close: Backfill.closeNames(rule, among: set.rules.map(\.name)))
        }
        var request: [(String, JSON)] = [("action", .string("backfill")), ("since", .string(since)), ("apply", .bool(apply)), ("all", .bool(arguments.flag("--all")))]
        if let rule { request.append(("rule", .string(rule))) }
        if let user = OperatorContext.claimedUser { request.append(("user", .string(user))) }
        let answer: [String: Any]
        do {
            // Planning reads a header of every instance of the studies it takes: minutes for a
            // large archive.
            answer = try AdminClient.ask(context.socket, .object(request), timeout: 1800)
        } catch {
            // Once asked, the agent plans and queues to the end whether or not anyone waits.
            let asked: Bool
            switch error {
            case .notRunning, .permissionDenied: asked = false
            // Every failure after the request was sent is about the answer.
            case .failed(let message): asked = message.contains("answer")
            }
            standardError.line(
                "consort backfill: \(error); "
                    + (apply && asked ? "the agent may still queue the jobs: see `consort queue` and the agent's log" : "nothing queued"))
            return .someFailed
        }
        guard answer["ok"] as? Bool == true else {
            let message = answer["error"] as? String ?? "no reason given"
            if answer["usage"] as? Bool == true, let rule {
                throw unknownRule(rule, close: answer["close"] as? [String] ?? [])
            }
            standardError.line("consort backfill: the agent refused: \(message); nothing queued")
            return .someFailed
        }
        report(answer, trust: context.configuration.trust, applied: apply)
        return .success
    }

    static func unknownRule(_ rule: String, close: [String]) -> UsageError {
        let hint = close.isEmpty ? "" : "; did you mean " + close.map { "\"\($0)\"" }.joined(separator: " or ") + "?"
        return UsageError(message: "no rule named \"\(rule)\"\(hint)", command: "backfill")
    }

    static func report(_ answer: [String: Any], trust: String, applied: Bool) {
        func number(_ value: Any?) -> Int { (value as? NSNumber)?.intValue ?? 0 }
        let jobs = answer["jobs"] as? [[String: Any]] ?? []
        let already = answer["already"] as? [[String: Any]] ?? []
        let jobCount = answer["job_count"] == nil ? jobs.count : number(answer["job_count"])
        let alreadyCount = answer["already_count"] == nil ? already.count : number(answer["already_count"])
        let studies = number(answer["studies"])
        let since = answer["since"] as? String ?? ""
        let scope = (answer["rule"] as? String).map { "rule \"\($0)\"" } ?? "every rule"
        standardOutput.line("Backfill of \(trust): \(studies) stud\(studies == 1 ? "y" : "ies") of the archive dated \(since) or later, \(scope).")
        let count = "\(jobCount) job\(jobCount == 1 ? "" : "s")"
        standardOutput.line(applied ? "Queued \(count) at bulk priority:" : "Would queue \(count) at bulk priority:")
        // The counts first: on a large archive the list below is cut.
        for group in answer["summary"] as? [[String: Any]] ?? [] {
            let adding = number(group["adding"])
            standardOutput.line(
                "  rule \"\(group["rule"] as? String ?? "")\"  \(group["kind"] as? String ?? "") → \(group["peer"] as? String ?? ""):  \(number(group["jobs"])) jobs, \(number(group["instances"])) instances"
                    + (adding > 0 ? " (\(adding) adding to a done job)" : ""))
        }
        if !jobs.isEmpty { standardOutput.line(jobs.count < jobCount ? "The first \(jobs.count) (--all lists every one):" : "Each:") }
        for job in jobs {
            let id = (job["id"] as? NSNumber).map { "#\($0) " } ?? ""
            let study = [job["date"] as? String ?? "-", job["modality"] as? String ?? "-", job["study"] as? String ?? ""].joined(separator: "  ")
            let instances = number(job["instances"])
            let action = "\(job["kind"] as? String ?? "") → \(job["peer"] as? String ?? "")"
            let adds = (job["adds_to"] as? NSNumber).map { "  adding to done job #\($0)" } ?? ""
            standardOutput.line("  \(id)\(study)  rule \"\(job["rule"] as? String ?? "")\"  \(action)" + (instances > 0 ? "  (\(instances) instances)" : "") + adds)
        }
        if jobs.count < jobCount { standardOutput.line("  … and \(jobCount - jobs.count) more.") }
        if alreadyCount > 0 {
            standardOutput.line("Not queued again, a job is already there (\(alreadyCount)):")
            for job in already {
                standardOutput.line("  \(job["study"] as? String ?? "")  rule \"\(job["rule"] as? String ?? "")\" → \(job["peer"] as? String ?? "")  \(job["state"] as? String ?? "")")
            }
            if already.count < alreadyCount { standardOutput.line("  … and \(alreadyCount - already.count) more.") }
        }
        if let unreadable = (answer["unreadable"] as? NSNumber)?.intValue, unreadable > 0 {
            standardOutput.line("\(unreadable) instance file\(unreadable == 1 ? "" : "s") could not be read now and \(unreadable == 1 ? "is" : "are") left out.")
        }
        if !applied {
            standardOutput.line(jobs.isEmpty ? "Dry run: nothing to queue." : "Dry run: nothing was queued. Add --yes to queue these jobs.")
        }
    }
}
