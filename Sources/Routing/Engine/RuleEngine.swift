import DICOM

/// Where a study came from, as the agent knows it.
public enum Origin: Sendable, Hashable, CustomStringConvertible {
    /// Acquired at this site (from its modalities or archive).
    case local
    /// Received from a peer trust (its code comes from the peer's certificate).
    case received(from: String)

    public var description: String {
        switch self {
        case .local: return "local"
        case .received(let from): return "received from \(from)"
        }
    }
}

/// One line of an MDT list: a patient to discuss, when, and at which trust.
public struct ListEntry: Sendable, Hashable {
    public var nhsNumber: String
    public var meetingDate: DICOMDate
    public var host: String
    public init(nhsNumber: String, meetingDate: DICOMDate, host: String) {
        self.nhsNumber = nhsNumber
        self.meetingDate = meetingDate
        self.host = host
    }
}

/// What happened, as the engine sees it: the trigger, the header (none for lists), the origin, the
/// site whose agent is asking, and the time (for "within last N days" and list lead times).
public struct RoutingEvent: Sendable {
    public enum Kind: Sendable {
        case instanceArrived
        case studyStable
        case listArrived(ListEntry)
    }

    public var kind: Kind
    public var header: DataSet?
    public var origin: Origin
    public var site: String
    /// Seconds since 1970-01-01 UTC.
    public var now: Int64
    /// Where the instance's study came from, when that differs from where the instance did: an
    /// AI service's report (origin: the service) on a study received from another trust. What
    /// `push to origin` sends to.
    public var studyOrigin: Origin?

    public init(kind: Kind, header: DataSet?, origin: Origin, site: String, now: Int64, studyOrigin: Origin? = nil) {
        self.kind = kind
        self.header = header
        self.origin = origin
        self.site = site
        self.now = now
        self.studyOrigin = studyOrigin
    }

    /// The trust the study came from, if it came from another one.
    var studySource: String? {
        if case .received(let from)? = studyOrigin { return from }
        if case .received(let from) = origin { return from }
        return nil
    }

    var triggerKind: String {
        switch kind {
        case .instanceArrived: return "instance-arrival"
        case .studyStable: return "study-stable"
        case .listArrived: return "list-arrival"
        }
    }
}

/// A job the agent should queue: which rule asked for it and why, what to move, to or from where.
public struct PlannedAction: Sendable, Hashable, CustomStringConvertible {
    public enum Kind: String, Sendable { case push, prefetchPriors = "prefetch priors", deliver, gather }

    public var rule: String
    public var purpose: String
    public var kind: Kind
    /// push: the peers; deliver: the local target; prefetch: this site; gather: the host.
    public var destinations: [String]
    /// prefetch and gather: the trusts to fetch from (agreements permitting).
    public var sources: [String]
    public var query: PriorQuery?
    public var scheduling: Scheduling
    /// List rules: not before this time (seconds since 1970), the lead time before the meeting.
    public var notBefore: Int64?

    public var description: String {
        var text = "\(kind.rawValue)"
        switch kind {
        case .push, .deliver: text += " to \(destinations.joined(separator: ", "))"
        case .prefetchPriors, .gather:
            text += " from \(sources.joined(separator: ", ")) to \(destinations.joined(separator: ", "))"
            if let q = query {
                if q.sameModality { text += ", same modality" }
                if q.sameBodyPart { text += ", same body part" }
                if let d = q.withinDays { text += ", last \(d) days" }
                if let k = q.atMost { text += ", at most \(k), newest first" }
            }
        }
        text += ", priority \(scheduling.priority.name)"
        if let w = scheduling.window { text += ", window \(w)" }
        if let d = scheduling.deadlineSeconds { text += ", deadline \(formatDuration(d))" }
        if let r = scheduling.expectResultSeconds { text += ", expect result within \(formatDuration(r))" }
        if scheduling.deidentified { text += ", de-identified (\(scheduling.deidentification))" }
        return text
    }
}

/// The routing decision: a pure function of (rule set, event) → planned actions. No I/O, no clock,
/// no state; safe to call from any thread. Conditions are compiled once: regular expressions
/// compiled at load, groups expanded, values prepared for byte comparison, and the tests inside
/// each `and` / `or` reordered cheapest first.
public struct RuleEngine: Sendable {
    public let ruleSet: RuleSet
    let rules: [CompiledRule]
    /// For each site, the rules that run there, in file order.
    let rulesBySite: [String: [Int]]
    /// Every flow the agreements allow, expanded once: "purpose from to".
    let permittedFlows: Set<Flow>
    /// The flows an agreement allows only de-identified (`requires deidentification`).
    let deidentifiedFlows: Set<Flow>
    /// Names (members, groups) expanded once.
    let expansions: [String: [String]]

    struct Flow: Hashable, Sendable {
        let purpose: String
        let from: String
        let to: String
    }

    struct CompiledRule: Sendable {
        let rule: Rule
        let condition: Condition?
        let sites: Set<String>
        let triggerKind: String
    }

    public init(_ set: RuleSet) {
        ruleSet = set
        var compiled: [CompiledRule] = []
        var bySite: [String: [Int]] = [:]
        let allTrusts = set.members.filter(\.isTrust).map(\.code)
        for (index, rule) in set.rules.enumerated() {
            let sites = Set(rule.at.map { $0.flatMap { set.expand($0) ?? [] } } ?? allTrusts)
            compiled.append(
                CompiledRule(
                    rule: rule, condition: rule.condition.map { Self.resolveNames($0.cheapestFirst(), set) }, sites: sites,
                    triggerKind: rule.trigger.kind))
            for site in sites { bySite[site, default: []].append(index) }
        }
        rules = compiled
        rulesBySite = bySite
        var names = Set(["any-member"] + set.members.map(\.code) + set.groups.map(\.name))
        for rule in set.rules {
            for action in rule.actions {
                switch action {
                case .push(let to, _): names.formUnion(to)
                case .prefetchPriors(let q, _), .gather(let q, _, _): names.formUnion(q.from)
                case .deliver: break
                }
            }
        }
        expansions = Dictionary(uniqueKeysWithValues: names.map { ($0, set.expand($0) ?? []) })
        var flows = Set<Flow>(), deidentified = Set<Flow>()
        for agreement in set.agreements {
            let sources = agreement.from.flatMap { set.expand($0) ?? [] }
            let destinations = agreement.to.flatMap { set.expand($0) ?? [] }
            for purpose in agreement.purposes {
                for a in sources {
                    for b in destinations where a != b {
                        flows.insert(Flow(purpose: purpose, from: a, to: b))
                        if agreement.requiresDeidentification { deidentified.insert(Flow(purpose: purpose, from: a, to: b)) }
                    }
                }
            }
        }
        permittedFlows = flows
        deidentifiedFlows = deidentified
    }

    func permits(from source: String, to destination: String, purpose: String) -> Bool {
        permittedFlows.contains(Flow(purpose: purpose, from: source, to: destination))
    }

    func expand(_ name: String) -> [String] { expansions[name] ?? ruleSet.expand(name) ?? [] }

    /// Expands member and group names in origin and host tests once, at compile time.
    static func resolveNames(_ condition: Condition, _ set: RuleSet) -> Condition {
        switch condition {
        case .all(let cs): return .all(cs.map { resolveNames($0, set) })
        case .any(let cs): return .any(cs.map { resolveNames($0, set) })
        case .not(let c, let l): return .not(resolveNames(c, set), l)
        case .origin(.received(let from?), let l): return .origin(.received(from: from.flatMap { set.expand($0) ?? [] }), l)
        case .host(let hosts, let l): return .host(hosts.flatMap { set.expand($0) ?? [] }, l)
        default: return condition
        }
    }

    /// The actions for an event, in rule order. Destinations the data-sharing agreements do not
    /// allow for the rule's purpose are left out, and so is the trust a study came from (no
    /// ping-pong) and the site itself.
    public func evaluate(_ event: RoutingEvent) -> [PlannedAction] {
        guard let candidates = rulesBySite[event.site] else { return [] }
        var planned: [PlannedAction] = []
        let trigger = event.triggerKind
        for index in candidates {
            let compiled = rules[index]
            if compiled.triggerKind != trigger { continue }
            if let condition = compiled.condition, !Self.holds(condition, event) { continue }
            planned += actions(of: compiled.rule, for: event, refused: nil)
        }
        return planned
    }

    // MARK: - Conditions

    static func holds(_ condition: Condition, _ event: RoutingEvent) -> Bool {
        switch condition {
        case .all(let cs):
            for c in cs where !holds(c, event) { return false }
            return true
        case .any(let cs):
            for c in cs where holds(c, event) { return true }
            return false
        case .not(let c, _):
            return !holds(c, event)
        case .origin(let test, _):
            switch (test, event.origin) {
            case (.local, .local): return true
            case (.received(nil), .received): return true
            case (.received(let from?), .received(let peer)): return from.contains(peer)
            default: return false
            }
        case .host(let hosts, _):
            if case .listArrived(let entry) = event.kind { return hosts.contains(entry.host) }
            return false
        case .attribute(let test):
            guard let header = event.header else { return false }
            return AttributeMatcher.holds(test, in: header, now: event.now)
        }
    }

    // MARK: - Actions

    /// The planned actions of a rule that fired; destinations refused by agreements or by the
    /// no-send-back rule are reported through `refused` when given.
    func actions(of rule: Rule, for event: RoutingEvent, refused: ((String) -> Void)?) -> [PlannedAction] {
        var out: [PlannedAction] = []
        let cameFrom: String? = { if case .received(let peer) = event.origin { return peer } else { return nil } }()
        for action in rule.actions {
            switch action {
            case .push(let names, let scheduling):
                var destinations: [String] = []
                // `origin`: the trust the study came from (results going back to the trust that
                // holds the original) — named on purpose, so not refused as a send-back; only
                // what that trust lacks is sent (an instance never goes back where it came from).
                var origin: String?
                if names.contains(RuleSet.studyOriginName) {
                    if let source = event.studySource, ruleSet.member(source)?.isTrust == true {
                        origin = source
                    } else {
                        refused?("push to origin: the study is this trust's own, or did not come from a trust")
                    }
                }
                let named = names.flatMap { $0 == RuleSet.studyOriginName ? (origin.map { [$0] } ?? []) : expand($0) }
                for peer in named where !destinations.contains(peer) {
                    if peer == event.site { continue }
                    if peer == cameFrom && peer != origin {
                        refused?("not sent back to \(peer), where the study came from")
                        continue
                    }
                    guard permits(from: event.site, to: peer, purpose: rule.purpose) else {
                        refused?("\(peer) refused: no data-sharing agreement for \(rule.purpose) from \(event.site)")
                        continue
                    }
                    // Checked when the rules load; again here, as the agreements are.
                    if !scheduling.deidentified && deidentifiedFlows.contains(Flow(purpose: rule.purpose, from: event.site, to: peer)) {
                        refused?("\(peer) refused: its agreement for \(rule.purpose) requires de-identification, and the push does not say deidentified")
                        continue
                    }
                    destinations.append(peer)
                }
                if !destinations.isEmpty {
                    out.append(PlannedAction(rule: rule.name, purpose: rule.purpose, kind: .push, destinations: destinations, sources: [], query: nil, scheduling: scheduling))
                }
            case .deliver(let target, let scheduling):
                out.append(PlannedAction(rule: rule.name, purpose: rule.purpose, kind: .deliver, destinations: [target], sources: [], query: nil, scheduling: scheduling))
            case .prefetchPriors(let query, let scheduling):
                let sources = allowedSources(query, to: event.site, purpose: rule.purpose, refused: refused)
                if !sources.isEmpty {
                    out.append(PlannedAction(rule: rule.name, purpose: rule.purpose, kind: .prefetchPriors, destinations: [event.site], sources: sources, query: query, scheduling: scheduling))
                }
            case .gather(let query, let to, let scheduling):
                guard case .listArrived(let entry) = event.kind else { continue }
                let host = to ?? entry.host
                let sources = allowedSources(query, to: host, purpose: rule.purpose, refused: refused)
                if sources.isEmpty { continue }
                var notBefore: Int64?
                if case .listArrival(_, let lead) = rule.trigger, lead > 0 {
                    let meeting = Int64(daysFromCivil(entry.meetingDate.year, entry.meetingDate.month, entry.meetingDate.day)) * 86400
                    notBefore = meeting - Int64(lead)
                }
                out.append(PlannedAction(rule: rule.name, purpose: rule.purpose, kind: .gather, destinations: [host], sources: sources, query: query, scheduling: scheduling, notBefore: notBefore))
            }
        }
        return out
    }

    private func allowedSources(_ query: PriorQuery, to site: String, purpose: String, refused: ((String) -> Void)?) -> [String] {
        var sources: [String] = []
        for source in query.from.flatMap({ expand($0) }) where source != site && !sources.contains(source) {
            if deidentifiedFlows.contains(Flow(purpose: purpose, from: source, to: site)) {
                // A fetch brings identity; this flow's agreement allows imaging only de-identified.
                if query.from != ["any-member"] { refused?("\(source) left out: its agreement for \(purpose) to \(site) requires de-identification") }
            } else if permits(from: source, to: site, purpose: purpose) {
                sources.append(source)
            } else if query.from != ["any-member"] {
                refused?("\(source) left out: no data-sharing agreement for \(purpose) to \(site)")
            }
        }
        return sources
    }
}


/// Days from 1970-01-01 to a civil date (proleptic Gregorian; H. Hinnant's algorithm).
func daysFromCivil(_ year: Int, _ month: Int, _ day: Int) -> Int {
    let y = month <= 2 ? year - 1 : year
    let era = (y >= 0 ? y : y - 399) / 400
    let yearOfEra = y - era * 400
    let dayOfYear = (153 * (month + (month > 2 ? -3 : 9)) + 2) / 5 + day - 1
    let dayOfEra = yearOfEra * 365 + yearOfEra / 4 - yearOfEra / 100 + dayOfYear
    return era * 146_097 + dayOfEra - 719_468
}
