import CommandSupport
import Agent
import DICOM
import Foundation

/// `consort identity`: the studies from other trusts held for their identity (issue 25) — a
/// patient this trust has no number for yet, an identity conflict, a study without a valid NHS
/// number — and a person's release of one.
enum IdentityCommand {
    static let help = """
        Usage: consort identity [list] [--config FILE] [--json]
               consort identity release STUDY-UID... [--config FILE]
               consort identity acknowledge STUDY-UID... [--config FILE]

        Studies from other trusts are placed in this trust's identity: Patient ID and its issuer
        become this trust's own number for the patient's NHS number, as the coordinator knows it
        from this trust's announcements (the sender's number and the NHS number are kept in Other
        Patient IDs Sequence). A study that cannot be is held aside in INBOUND/.held, where no
        PACS takes it, and listed here:
          unknown patient          this trust has no number for the patient yet
                                   (unknown-patient hold): placed automatically once this
                                   trust announces a study of the patient
          coordinator unavailable  looked at again every 30 s
          conflict                 the registry holds an identity conflict about the patient,
                                   or the study's identifiers disagree with it: a person
                                   resolves it (consort coordinator conflicts), then releases
          bad input                no Patient ID, or an NHS number that fails its check digit

        list       the held studies, oldest first (the default)
        Also listed: copies received here whose origin has since announced the study under
        another patient, or withdrawn it (the coordinator says so within a minute): the copy,
        and what the PACS filed of it, need a person. Nothing is changed in the copy by itself:
        the PACS has filed it, and only a person can say what the correction means there.

        release    looks at each study again now and places it: under this trust's number when
                   the registry has one; when it has none, under the NHS number as Patient ID
                   (the person releasing it has decided it should go). A conflict or bad input
                   stays held. Audited with who released it. Needs the agent running.

        acknowledge  a person has seen to these flagged copies: they stay listed (with who and
                   when) while the origin's correction stands, and no longer make consort
                   status exit 1. Audited. Needs the agent running.

        Options:
          --config FILE   the agent's configuration (default /etc/consort/agent.conf)
          --json          (list) one JSON object a study

        Exit codes: 0 done (list: whether or not any is held); 1 the agent is down (release,
        acknowledge), a study stayed held or is not held, a copy is not flagged, or a read
        failed; 2 usage error.
        """

    static func run(_ args: [String]) throws -> ExitCode {
        let sub = args.first.flatMap { ["list", "release", "acknowledge"].contains($0) ? $0 : nil }
        let rest = sub == nil ? args : Array(args.dropFirst())
        let command = "identity" + (sub.map { " " + $0 } ?? "")
        if sub == "release" {
            let arguments = try Arguments(rest, command: command, flags: [], options: ["--config"])
            guard !arguments.positional.isEmpty else { throw UsageError(message: "give the Study Instance UIDs to release (consort identity list shows them)", command: command) }
            guard let context = OperatorContext.open(arguments, command: command) else { return .someFailed }
            return release(arguments.positional, context: context)
        }
        if sub == "acknowledge" {
            let arguments = try Arguments(rest, command: command, flags: [], options: ["--config"])
            guard !arguments.positional.isEmpty else { throw UsageError(message: "give the Study Instance UIDs of the flagged copies (consort identity list shows them)", command: command) }
            guard let context = OperatorContext.open(arguments, command: command) else { return .someFailed }
            return acknowledge(arguments.positional, context: context)
        }
        let arguments = try Arguments(rest, command: command, flags: ["--json"], options: ["--config"])
        if let stray = arguments.positional.first { throw UsageError(message: "unknown identity command \"\(stray)\" (list, release, acknowledge)", command: "identity") }
        guard let context = OperatorContext.open(arguments, command: command) else { return .someFailed }
        let holds = try context.store.identityHolds()
        let flags = try context.store.copyFlags()
        if arguments.flag("--json") {
            for hold in holds { standardOutput.line(json(hold).serialized()) }
            for flag in flags { standardOutput.line(json(flag).serialized()) }
            return .success
        }
        print(holds)
        print(flags)
        return .success
    }

    static func json(_ hold: AgentStore.IdentityHold) -> JSON {
        let text: (String?) -> JSON = { $0.map(JSON.string) ?? .null }
        return .object([
            ("study", .string(hold.study)), ("from", .string(hold.sender)), ("nhs", text(hold.nhs)), ("patient_id", text(hold.patientID)),
            ("kind", .string(hold.kind)), ("reason", .string(hold.reason)), ("instances", .int(Int64(hold.instances))), ("since", .double(hold.since)),
            ("state", .string("waiting for identity")),
        ])
    }

    static func json(_ flag: AgentStore.CopyFlag) -> JSON {
        .object([
            ("study", .string(flag.study)), ("origin", .string(flag.origin)), ("kind", .string(flag.kind)), ("reason", .string(flag.detail)),
            ("since", .double(flag.since)), ("state", .string(flag.seen == nil ? "copy needs a person" : "copy seen to")),
            ("seen_by", flag.seenBy.map(JSON.string) ?? .null), ("seen", flag.seen.map(JSON.double) ?? .null),
        ])
    }

    /// The flagged copies as lines.
    static func print(_ flags: [AgentStore.CopyFlag], limit: Int = .max) {
        guard !flags.isEmpty else { return }
        let open = flags.filter { $0.seen == nil }.count
        standardOutput.line(OperatorFormat.paint("\(open) cop\(open == 1 ? "y" : "ies") received here need a person: the origin corrected or withdrew the study", open > 0 ? .red : .green)
            + (open > 0 ? " (consort identity acknowledge UID once seen to)" : ""))
        for flag in flags.prefix(limit) {
            let seen = flag.seen.map { " — seen to by \(flag.seenBy ?? "?") at \(OperatorFormat.time($0))" } ?? ""
            standardOutput.line("  \(flag.study)  from \(flag.origin): \(flag.kind) (\(flag.detail))\(seen)")
        }
        if flags.count > limit { standardOutput.line("  … and \(flags.count - limit) more (consort identity list)") }
    }

    /// The held studies as lines (also `consort queue`'s and `consort status`'s section).
    static func print(_ holds: [AgentStore.IdentityHold], limit: Int = .max) {
        guard !holds.isEmpty else {
            standardOutput.line("No study is waiting for identity.")
            return
        }
        standardOutput.line(OperatorFormat.paint("\(holds.count) stud\(holds.count == 1 ? "y" : "ies") waiting for identity", .red) + " (held in INBOUND/.held; consort identity release UID):")
        let now = Date().timeIntervalSince1970
        for hold in holds.prefix(limit) {
            standardOutput.line("  \(hold.study)  from \(hold.sender), NHS \(hold.nhs ?? "none"), Patient ID \(hold.patientID ?? "none"), \(hold.instances) instances, held \(OperatorFormat.duration(now - hold.since) + " ago")")
            standardOutput.line("      \(hold.reason)")
        }
        if holds.count > limit { standardOutput.line("  … and \(holds.count - limit) more (consort identity list)") }
    }

    static func release(_ studies: [String], context: OperatorContext) -> ExitCode {
        // Placing a study is a few seconds a hundred instances: time enough for a large one.
        guard let answer = context.ask([("action", .string("identity-release")), ("studies", .array(studies.map { JSON.string($0) }))], timeout: 300) else {
            return .someFailed
        }
        var allPlaced = true
        for item in answer["studies"] as? [[String: Any]] ?? [] {
            let study = item["study"] as? String ?? "?"
            let outcome = item["outcome"] as? String ?? "?"
            if outcome != "placed" { allPlaced = false }
            standardOutput.line("\(study): \(item["detail"] as? String ?? outcome)")
        }
        return allPlaced ? .success : .someFailed
    }

    static func acknowledge(_ studies: [String], context: OperatorContext) -> ExitCode {
        guard let answer = context.ask([("action", .string("copy-acknowledge")), ("studies", .array(studies.map { JSON.string($0) }))], timeout: 30) else {
            return .someFailed
        }
        let flagged = Set(answer["acknowledged"] as? [String] ?? [])
        for study in studies {
            standardOutput.line(flagged.contains(study) ? "\(study): acknowledged" : "\(study): not a flagged copy here (consort identity list)")
        }
        return flagged.count == Set(studies).count ? .success : .someFailed
    }
}
