import CommandSupport
import Agent
import DICOM
import DICOMweb
import Foundation
import Platform
import Routing

/// `consort pull`: a patient's imaging from across the consortium, fetched here by the running
/// agent's spool (issue 27) — unlike `consort fetch`, a one-off tool, the fetches resume after a
/// restart, are listed by `consort queue`, and are audited at this trust.
enum PullCommand {
    static let help = """
        Usage: consort pull --nhs NUMBER [--modality M] [--since YYYYMMDD] [--study UID]
                            [--config FILE] [--json]

        Asks the running agent to fetch the patient's studies held by other trusts of the
        consortium: the coordinator is asked where they are, and each one not here yet is
        fetched by the spool from a trust that holds it (WADO-RS over mutual TLS, purpose
        direct-care, urgent), checked against the patient and placed in this trust's identity
        like any prior. The plan and the fetches are jobs in the spool: `consort queue` lists
        them, they survive a restart, and a trust that is down is retried with backoff. The
        request is audited at this trust with who asked.

        Options:
          --nhs NUMBER      the patient's NHS number (10 digits, spaces allowed; checked)
          --modality M      only studies with this modality (CT, MR, ...)
          --since YYYYMMDD  only studies on or after this date
          --study UID       only this study
          --config FILE     the agent's configuration (default /etc/consort/agent.conf)
          --json            the answer as one JSON object

        Exit codes: 0 queued (the plan's job id printed); 1 the agent is down or refused (an
        invalid NHS number, no coordinator configured); 2 usage error.
        """

    static func run(_ args: [String]) throws -> ExitCode {
        let arguments = try Arguments(args, command: "pull", flags: ["--json"], options: ["--config", "--nhs", "--modality", "--since", "--study"])
        if let stray = arguments.positional.first { throw UsageError(message: "unexpected argument \"\(stray)\"", command: "pull") }
        guard let text = arguments.option("--nhs") else { throw UsageError(message: "--nhs NUMBER is required: a pull is for one patient", command: "pull") }
        guard let nhs = NHSNumber(text) else { throw UsageError(message: "\"\(text)\" is not a valid NHS number (10 digits with a Modulus 11 check digit)", command: "pull") }
        if let modality = arguments.option("--modality"), !(1...16).contains(modality.count) || !modality.allSatisfy({ $0.isLetter || $0.isNumber }) {
            throw UsageError(message: "--modality takes a modality code such as CT or MR", command: "pull")
        }
        if let since = arguments.option("--since"), !CalendarDay.isReal(since) {
            throw UsageError(message: "--since takes a date as YYYYMMDD", command: "pull")
        }
        if let study = arguments.option("--study"), !UID.isValid(study) {
            throw UsageError(message: "--study takes a Study Instance UID", command: "pull")
        }
        guard let context = OperatorContext.open(arguments, command: "pull") else { return .someFailed }
        var request: [(String, JSON)] = [("action", .string("pull")), ("nhs", .string(nhs.digits))]
        for (option, field) in [("--modality", "modality"), ("--since", "since"), ("--study", "study")] {
            if let value = arguments.option(option) { request.append((field, .string(value))) }
        }
        guard let answer = context.ask(request, timeout: 30) else { return .someFailed }
        let job = (answer["job"] as? NSNumber)?.int64Value
        if arguments.flag("--json") {
            standardOutput.line(JSON.object([("nhs", .string(nhs.digits)), ("job", job.map { .int($0) } ?? .null)]).serialized())
        } else {
            standardOutput.line("queued: the studies of \(nhs.digits) are being found and fetched (plan job \(job.map(String.init) ?? "?"); consort queue lists it and its fetches)")
        }
        return .success
    }
}
