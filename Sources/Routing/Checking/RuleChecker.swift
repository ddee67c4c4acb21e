import DICOM

/// Checks a parsed rule set before it may be loaded: every name resolves, every flow of imaging
/// is covered by a data-sharing agreement for the rule's purpose, actions fit their trigger.
/// Errors refuse the rule set; warnings (a rule that can never match, a push back to where a study
/// came from, a deadline on a non-urgent action) load with a word.
///
/// The issue lists unknown keywords, unknown peers, duplicate rule names and bad regular
/// expressions as warnings; we refuse them instead, because each leaves a rule that cannot do what
/// it says (a typo in a keyword silently never matches).
struct RuleChecker {
    let rules: RuleSet
    private(set) var diagnostics: [Diagnostic] = []

    init(_ rules: RuleSet) { self.rules = rules }

    private mutating func error(_ location: SourceLocation, _ message: String, hint: String? = nil) {
        diagnostics.append(Diagnostic(.error, location, message, hint: hint))
    }

    private mutating func warning(_ location: SourceLocation, _ message: String, hint: String? = nil) {
        diagnostics.append(Diagnostic(.warning, location, message, hint: hint))
    }

    private var knownNames: [String] { rules.members.map(\.code) + rules.groups.map(\.name) + ["any-member"] }

    /// Checks that `name` is a member or group; reports it otherwise.
    @discardableResult
    private mutating func resolve(_ name: String, at given: SourceLocation, kind what: String = "member or group", in rule: Rule? = nil) -> [String] {
        if let expanded = rules.expand(name) { return expanded }
        let location = rule?.nameLocations[name] ?? given
        let hint = closest(to: name, among: knownNames).map { "did you mean \($0)?" }
            ?? "members are declared with member/peer, groups with group (see consortium.rules)"
        error(location, "unknown \(what) \"\(name)\"", hint: hint)
        return []
    }

    mutating func check() -> [Diagnostic] {
        checkDeclarations()
        let purposes = Set(rules.agreements.flatMap(\.purposes))
        var seenRules: [String: SourceLocation] = [:]
        for rule in rules.rules {
            if let first = seenRules[rule.name] {
                error(rule.location, "a second rule is named \"\(rule.name)\"", hint: "the first is at \(first); explanations and logs name rules, so names must be unique")
            } else {
                seenRules[rule.name] = rule.location
            }
            if !purposes.contains(rule.purpose) {
                let hint = closest(to: rule.purpose, among: purposes).map { "did you mean \($0)?" }
                    ?? "purposes come from the agreements: \(purposes.sorted().joined(separator: ", "))"
                error(rule.location, "rule \"\(rule.name)\" has purpose \"\(rule.purpose)\", which no data-sharing agreement covers", hint: hint)
            }
            checkRule(rule)
        }
        return diagnostics.sorted { $0.location < $1.location }
    }

    private mutating func checkDeclarations() {
        var seen: [String: SourceLocation] = [:]
        for (name, location) in rules.members.map({ ($0.code, $0.location) }) + rules.groups.map({ ($0.name, $0.location) })
        where [RuleSet.studyOriginName, "any-member", "all-members"].contains(name) {
            error(location, "\(name) is a word of the rules language, not a name to declare", hint: "push to origin means the trust a study came from")
        }
        for member in rules.members {
            if let first = seen[member.code] { error(member.location, "\(member.code) is declared twice", hint: "first at \(first)") }
            seen[member.code] = member.location
        }
        for group in rules.groups {
            if let first = seen[group.name] { error(group.location, "\(group.name) is declared twice", hint: "first at \(first)") }
            seen[group.name] = group.location
            for name in group.members { resolve(name, at: group.location) }
            if let cycle = rules.groupCycle(from: group.name) {
                error(group.location, "group \(group.name) includes itself (\(cycle.joined(separator: " → ")))",
                      hint: "a group lists members and other groups; it cannot contain itself")
            }
        }
        for agreement in rules.agreements {
            for name in agreement.from + agreement.to { resolve(name, at: agreement.location) }
            if agreement.from.isEmpty || agreement.to.isEmpty {
                error(agreement.location, "agreement \"\(agreement.name)\" says neither between whom nor from whom to whom")
            }
        }
    }

    /// The trusts a rule runs at.
    private func sites(of rule: Rule) -> [String] {
        rule.at.map { $0.flatMap { rules.expand($0) ?? [] } } ?? rules.members.filter(\.isTrust).map(\.code)
    }

    private mutating func checkRule(_ rule: Rule) {
        for site in rule.at ?? [] { resolve(site, at: rule.location, in: rule) }
        let isList: Bool
        if case .listArrival = rule.trigger { isList = true } else { isList = false }
        if let condition = rule.condition { checkCondition(condition, rule: rule, isList: isList) }
        let sites = sites(of: rule)
        for (index, action) in rule.actions.enumerated() {
            let location = index < rule.actionLocations.count ? rule.actionLocations[index] : rule.location
            let scheduling = action.scheduling
            if scheduling.deadlineSeconds != nil && scheduling.priority != .urgent {
                warning(location, "a deadline on a \(scheduling.priority.name) action", hint: "deadlines are tracked for urgent actions; add priority urgent")
            }
            var isPush = false
            if case .push = action { isPush = true }
            if let conflict = scheduling.deidentification.conflict {
                error(location, conflict, hint: "choose one: retain-full-dates keeps them, retain-modified-dates moves each patient's by a fixed number of days")
            }
            if scheduling.deidentified && !isPush {
                error(location, "deidentified belongs to a push", hint: "write: push to RESEARCH-AI deidentified")
            }
            if scheduling.expectResultSeconds != nil && !isPush {
                error(location, "expect result belongs to a push to a peer that sends results back", hint: "write it after push to …")
            }
            switch action {
            case .push(let destinations, _):
                if isList { error(location, "push has nothing to send in a list rule", hint: "list rules gather imaging: gather imaging to host") }
                // `origin` is the study's own source, known when the rule fires: the engine
                // checks the agreement then.
                let expanded = destinations.filter { $0 != RuleSet.studyOriginName }.flatMap { resolve($0, at: location, in: rule) }
                for site in sites {
                    for destination in expanded where destination != site
                        && !rules.permits(from: site, to: destination, purpose: rule.purpose)
                    {
                        error(location, "no data-sharing agreement lets \(site) send to \(destination) for \(rule.purpose)", hint: agreementHint(rule))
                    }
                }
                checkSendBack(rule, destinations: Set(expanded), at: location)
                if !scheduling.deidentified {
                    for site in sites {
                        for destination in expanded where destination != site && rules.requiresDeidentification(from: site, to: destination, purpose: rule.purpose) {
                            error(
                                location, "the agreement that lets \(site) send to \(destination) for \(rule.purpose) requires de-identification; this push would send identity",
                                hint: "write: push to \(destination) deidentified")
                        }
                    }
                }
                if let seconds = scheduling.expectResultSeconds {
                    if seconds <= 0 { error(location, "expect result within 0 s can never be met", hint: "give the time a result takes, e.g. expect result within 30 min") }
                    // Results come back from peers (AI services), whose results the receiver
                    // checks and counts; a trust sends imaging, not results.
                    let trusts = destinations.flatMap { name in
                        name == RuleSet.studyOriginName ? [name] : (rules.expand(name) ?? []).filter { rules.member($0)?.isTrust == true }
                    }
                    for trust in trusts {
                        error(location, "expect result names \(trust), a trust: results come back from peers such as AI services",
                              hint: "expect result belongs to a push to a peer whose agreement says results back")
                    }
                    for site in sites {
                        for destination in expanded
                        where destination != site && rules.member(destination)?.isTrust != true && !rules.resultsBack(to: site, from: destination, purpose: rule.purpose) {
                            error(
                                location, "\(destination) may not send results back to \(site) for \(rule.purpose): no agreement covering the push says results back",
                                hint: "add results back to the agreement that lets \(site) send to \(destination), or drop expect result")
                        }
                    }
                }
            case .prefetchPriors(let query, _):
                if isList { error(location, "prefetch priors needs a study; in a list rule use gather imaging") }
                checkSources(query, rule: rule, sites: sites, at: location)
            case .deliver:
                if isList { error(location, "deliver needs a study; in a list rule use gather imaging") }
            case .gather(let query, let destination, _):
                if !isList { error(location, "gather imaging belongs in a list rule (on list-arrival)", hint: "for a new study, use prefetch priors") }
                let targets = destination.map { resolve($0, at: location, in: rule) } ?? rules.members.filter(\.isTrust).map(\.code)
                checkSources(query, rule: rule, sites: targets, at: location, named: destination != nil)
            }
        }
    }

    private func agreementHint(_ rule: Rule) -> String {
        "add the flow to an agreement for \(rule.purpose), or change the rule's purpose (agreements: \(rules.agreements.map { "\"\($0.name)\"" }.joined(separator: ", ")))"
    }

    /// Imaging flows from each source to each site: every named source must be allowed.
    private mutating func checkSources(_ query: PriorQuery, rule: Rule, sites: [String], at location: SourceLocation, named: Bool = true) {
        let anyMember = query.from == ["any-member"]
        let sources = query.from.flatMap { resolve($0, at: location, in: rule) }
        for site in sites {
            let allowed = sources.filter { $0 != site && rules.permits(from: $0, to: site, purpose: rule.purpose) }
            if !anyMember {
                for source in sources where source != site && !allowed.contains(source) {
                    error(location, "no data-sharing agreement lets \(source) send to \(site) for \(rule.purpose)", hint: agreementHint(rule))
                }
            } else if allowed.isEmpty && named {
                error(location, "no trust may send imaging to \(site) for \(rule.purpose)", hint: agreementHint(rule))
            }
            // A fetch brings the patient's identity with the images: never under an agreement
            // that lets them flow only de-identified (the source refuses such a retrieve too).
            for source in allowed where !anyMember && rules.requiresDeidentification(from: source, to: site, purpose: rule.purpose) {
                error(
                    location, "the agreement that lets \(source) send to \(site) for \(rule.purpose) requires de-identification; fetching would bring identity",
                    hint: "such imaging goes by a de-identified push from \(source): push to \(site) deidentified")
            }
        }
    }

    private mutating func checkCondition(_ condition: Condition, rule: Rule, isList: Bool) {
        switch condition {
        case .all(let cs):
            for c in cs { checkCondition(c, rule: rule, isList: isList) }
            checkContradictions(cs, rule: rule)
        case .any(let cs):
            for c in cs { checkCondition(c, rule: rule, isList: isList) }
        case .not(let c, _):
            checkCondition(c, rule: rule, isList: isList)
        case .attribute(let test):
            if isList { error(test.location, "a list rule has no DICOM header to test", hint: "list rules may test the host: host in (RSCH)") }
        case .origin(let test, let location):
            if isList { error(location, "a list rule has no study origin to test") }
            if case .received(let from?) = test { for name in from { resolve(name, at: location, in: rule) } }
        case .host(let hosts, let location):
            if !isList { error(location, "host is a list rule's test (the list's host trust)") }
            for name in hosts { resolve(name, at: location, in: rule) }
        }
    }

    /// Within one `and`: tests that cannot all hold (a rule that can never match).
    private mutating func checkContradictions(_ terms: [Condition], rule: Rule) {
        var equalities: [[Tag]: (Set<String>, SourceLocation)] = [:]
        var presence: [[Tag]: Bool] = [:]
        var origin: OriginTest?
        for term in terms {
            switch term {
            case .attribute(let test):
                switch test.test {
                case .oneOf(let values):
                    let set = Set(values.map { $0.text.uppercased() })
                    if let (earlier, _) = equalities[test.path], earlier.isDisjoint(with: set) {
                        warning(test.location, "rule \"\(rule.name)\" can never match: \(test.name) cannot be both \(earlier.sorted().joined(separator: "/")) and \(set.sorted().joined(separator: "/"))")
                    }
                    equalities[test.path] = (set, test.location)
                    if presence[test.path] == false { warning(test.location, "rule \"\(rule.name)\" can never match: \(test.name) is required absent and equal to a value") }
                case .present:
                    if presence[test.path] == false { warning(test.location, "rule \"\(rule.name)\" can never match: \(test.name) is both present and absent") }
                    presence[test.path] = true
                case .absent:
                    if presence[test.path] == true || equalities[test.path] != nil {
                        warning(test.location, "rule \"\(rule.name)\" can never match: \(test.name) is both required and absent")
                    }
                    presence[test.path] = false
                default: break
                }
            case .origin(let test, let location):
                if let earlier = origin, (earlier == .local) != (test == .local) {
                    warning(location, "rule \"\(rule.name)\" can never match: a study cannot be both local and received")
                }
                origin = test
            default: break
            }
        }
    }

    /// A rule for studies received from X that pushes to X would send them back.
    private mutating func checkSendBack(_ rule: Rule, destinations: Set<String>, at location: SourceLocation) {
        var received: [String] = []
        switch rule.condition {
        case .origin(.received(let from?), _)?: received = from
        case .all(let terms)?:
            for case .origin(.received(let from?), _) in terms { received += from }
        default: break
        }
        let back = Set(received.flatMap { rules.expand($0) ?? [] }).intersection(destinations)
        if !back.isEmpty {
            warning(location, "rule \"\(rule.name)\" would send studies back to \(back.sorted().joined(separator: ", ")), where they came from", hint: "the agent never sends a study back to the trust it came from; drop the destination")
        }
    }
}
