import Foundation

/// Who may ask a site for what, decided from the rules alone: the one place the "members only"
/// gates of the agent's receiver and of the coordinator are written, so that a peer (an AI
/// service, a vendor) cannot pass for a trust at any of them.
///
/// Members (trusts) hold patients' imaging and share it under the agreements: they store,
/// retrieve, search and announce. Peers only receive what rules push to them; they never look a
/// patient up, never retrieve or search, and store into a trust only where an agreement that
/// lets the trust send to them says `results back` — and then only objects that refer to a study
/// the trust sent them, which the trust's agent checks instance by instance (`ResultCheck`). Every request that discloses patient data
/// names its purpose (the `X-Consort-Purpose` field: `ConsortField.purpose`); one that names none is refused, never taken as
/// direct care.
public enum PartyAccess {
    /// What a caller asks to do.
    public enum Act: String, Sendable, CaseIterable {
        /// STOW-RS into the site (and the study manifest that precedes a push).
        case store
        /// WADO-RS of a study the site holds.
        case retrieve
        /// QIDO-RS: which studies the site holds (a patient's, a date's …).
        case search
        /// QIDO-RS at instance level: which instances of one named study the site holds (a
        /// sender resuming a push asks it).
        case listInstances
        /// The coordinator: where a patient's imaging is held.
        case lookup
        /// The coordinator: a trust announcing or withdrawing its own holdings (the registry's
        /// upkeep: it discloses nothing to the caller, and names no purpose).
        case announce
    }

    /// Why a request is refused: `label` is the metric label and the audit log's words.
    public enum Refusal: Sendable, Equatable, CustomStringConvertible {
        /// No certificate, or a certificate name the rules do not declare.
        case notAMember(String?)
        /// Declared with `peer`: receives what rules push to it, and nothing else.
        case peer(String)
        /// The request names no purpose.
        case noPurpose
        /// No agreement allows this flow for the purpose named.
        case noAgreement(purpose: String, from: String, to: String)
        /// The agreement that allows it requires de-identification (issue 29): imaging goes
        /// that way only by a de-identified push, never retrieved, searched or looked up with
        /// the patient's identity.
        case identityNotAllowed(purpose: String, from: String, to: String)

        public var label: String {
            switch self {
            case .notAMember: return "not_a_member"
            case .peer: return "peer_not_member"
            case .noPurpose: return "no_purpose"
            case .noAgreement: return "no_agreement"
            case .identityNotAllowed: return "deidentification_required"
            }
        }

        public var description: String {
            switch self {
            case .notAMember(let caller):
                return "\(caller.map { "'\($0)'" } ?? "a client without a certificate") is not a consortium member named in the routing rules"
            case .peer(let caller):
                return "\(caller) is a peer, not a member: it receives what rules push to it and may not retrieve, search, store or look up (it may store results only where an agreement says results back)"
            case .noPurpose:
                return "the request names no purpose (X-Consort-Purpose): every request for patient data must say why"
            case .noAgreement(let purpose, let from, let to):
                return "no agreement allows imaging from \(from) to \(to) for \(purpose)"
            case .identityNotAllowed(let purpose, let from, let to):
                return "the agreement for \(purpose) from \(from) to \(to) requires de-identification: imaging goes only by a de-identified push, never retrieved, searched or looked up with the patient's identity"
            }
        }
    }

    /// nil if `caller` (from its certificate) may do `act` at `site` for `purpose`; else why not.
    /// `site` is the trust answering (nil at the coordinator, which holds nothing itself).
    public static func decide(_ act: Act, caller: String?, purpose: String?, site: String?, rules: RuleSet) -> Refusal? {
        guard let caller, let member = rules.member(caller) else { return .notAMember(caller) }
        guard member.isTrust else {
            // Results back: a peer may store into a trust that an agreement lets send to it with
            // `results back` (the purpose, when it names one, must be that agreement's).
            if act == .store, let site, rules.resultsBack(to: site, from: caller, purpose: purpose?.trimmingCharacters(in: .whitespaces).nonEmpty) {
                return nil
            }
            return .peer(caller)
        }
        if act == .announce { return nil }
        guard let purpose = purpose?.trimmingCharacters(in: .whitespaces), !purpose.isEmpty else { return .noPurpose }
        switch act {
        case .store, .retrieve, .search, .listInstances:
            // Acts at a site: without one named there is nothing an agreement could allow.
            guard let site else { return .noAgreement(purpose: purpose, from: caller, to: "(no site)") }
            let toCaller = rules.permits(from: site, to: caller, purpose: purpose)
            // Where the agreement requires de-identification, nothing goes with identity: only
            // a de-identified push (whose UIDs the caller could not ask by anyway).
            let identityToCaller = toCaller && !rules.requiresDeidentification(from: site, to: caller, purpose: purpose)
            switch act {
            case .store:
                return rules.permits(from: caller, to: site, purpose: purpose) ? nil : .noAgreement(purpose: purpose, from: caller, to: site)
            case .listInstances:
                // A sender resuming a push asks which instances of the study it names are here
                // already; a requester, what it could fetch: either direction will do, as the
                // answer names only instances of a study the caller already knows.
                if identityToCaller || (rules.permits(from: caller, to: site, purpose: purpose) && !rules.requiresDeidentification(from: caller, to: site, purpose: purpose)) {
                    return nil
                }
                return toCaller ? .identityNotAllowed(purpose: purpose, from: site, to: caller) : .noAgreement(purpose: purpose, from: site, to: caller)
            default:
                // Retrieving, and searching which studies are held (patients' names and numbers,
                // other trusts' studies among them), only where imaging may flow to the caller
                // with its identity.
                if identityToCaller { return nil }
                return toCaller ? .identityNotAllowed(purpose: purpose, from: site, to: caller) : .noAgreement(purpose: purpose, from: site, to: caller)
            }
        case .lookup:
            // The coordinator answers where a patient's imaging is: worth asking only if some
            // trust may give the caller imaging for that purpose.
            // (Its answer names the patient's studies: not where imaging may flow only de-identified.)
            let trusts = rules.members.filter(\.isTrust).map(\.code)
            let permitting = trusts.filter { rules.permits(from: $0, to: caller, purpose: purpose) }
            if permitting.contains(where: { !rules.requiresDeidentification(from: $0, to: caller, purpose: purpose) }) { return nil }
            return permitting.isEmpty
                ? .noAgreement(purpose: purpose, from: "any trust", to: caller) : .identityNotAllowed(purpose: purpose, from: "any trust", to: caller)
        case .announce:
            return nil
        }
    }
}

extension String {
    /// nil for the empty string: an empty header field names nothing.
    fileprivate var nonEmpty: String? { isEmpty ? nil : self }
}
