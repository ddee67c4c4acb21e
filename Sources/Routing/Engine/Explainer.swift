import DICOM

/// Why a rule did or did not fire for an event: each test with its result and the value it saw,
/// and the actions it would take (with any destination an agreement refused).
public struct RuleExplanation: Sendable {
    public struct Line: Sendable {
        public enum Mark: String, Sendable {
            case passed = "✓", failed = "✗", info = "·"
        }
        public var mark: Mark
        public var depth: Int
        public var text: String
    }

    public var rule: String
    public var location: SourceLocation
    public var fired: Bool
    public var lines: [Line]
    public var actions: [PlannedAction]
    public var notes: [String]

    /// Human text, one rule: the verdict, the tests, the actions.
    public var text: String {
        var out = "rule \"\(rule)\" (\(location)): " + (fired ? "FIRES" : "does not fire") + "\n"
        for line in lines {
            out += String(repeating: "  ", count: line.depth + 1) + line.mark.rawValue + " " + line.text + "\n"
        }
        for action in actions { out += "  → " + action.description + "\n" }
        for note in notes { out += "  ! " + note + "\n" }
        return out
    }
}

extension RuleEngine {
    /// Explains every rule for the event, in rule order.
    public func explain(_ event: RoutingEvent) -> [RuleExplanation] {
        rules.map { compiled in
            let rule = compiled.rule
            var lines: [RuleExplanation.Line] = []
            var fired = true
            if compiled.triggerKind != event.triggerKind {
                lines.append(.init(mark: .failed, depth: 0, text: "runs on \(rule.trigger), not on \(event.triggerKind)"))
                fired = false
            } else {
                lines.append(.init(mark: .passed, depth: 0, text: "runs on \(rule.trigger)"))
            }
            if !compiled.sites.contains(event.site) {
                let at = rule.at?.joined(separator: ", ") ?? "every member"
                lines.append(.init(mark: .failed, depth: 0, text: "runs at \(at), not at \(event.site)"))
                fired = false
            }
            if let condition = rule.condition {
                let resolved = Self.resolveNames(condition, ruleSet)
                if !trace(resolved, event, depth: 0, into: &lines) { fired = false }
            }
            var notes: [String] = []
            let actions = fired ? self.actions(of: rule, for: event, refused: { notes.append($0) }) : []
            if fired && actions.isEmpty { notes.append("fired, but every destination was refused") }
            return RuleExplanation(rule: rule.name, location: rule.location, fired: fired, lines: lines, actions: actions, notes: notes)
        }
    }

    /// Evaluates every test (not short-circuited, so the explanation shows them all).
    private func trace(_ condition: Condition, _ event: RoutingEvent, depth: Int, into lines: inout [RuleExplanation.Line]) -> Bool {
        switch condition {
        case .all(let cs), .any(let cs):
            let isAll: Bool
            if case .all = condition { isAll = true } else { isAll = false }
            let at = lines.count
            lines.append(.init(mark: .info, depth: depth, text: isAll ? "all of:" : "any of:"))
            var results: [Bool] = []
            for c in cs { results.append(trace(c, event, depth: depth + 1, into: &lines)) }
            let result = isAll ? !results.contains(false) : results.contains(true)
            lines[at].mark = result ? .passed : .failed
            return result
        case .not(let c, _):
            let at = lines.count
            lines.append(.init(mark: .info, depth: depth, text: "not:"))
            let result = !trace(c, event, depth: depth + 1, into: &lines)
            lines[at].mark = result ? .passed : .failed
            return result
        case .origin(let test, _):
            let result = Self.holds(condition, event)
            let wanted: String
            switch test {
            case .local: wanted = "origin is local"
            case .received(let from): wanted = "origin is received" + (from.map { " from " + $0.joined(separator: ", ") } ?? "")
            }
            lines.append(.init(mark: result ? .passed : .failed, depth: depth, text: "\(wanted)  (the study is \(event.origin))"))
            return result
        case .host(let hosts, _):
            let result = Self.holds(condition, event)
            var actual = "no list"
            if case .listArrived(let entry) = event.kind { actual = "the list's host is \(entry.host)" }
            lines.append(.init(mark: result ? .passed : .failed, depth: depth, text: "host in (\(hosts.joined(separator: ", ")))  (\(actual))"))
            return result
        case .attribute(let test):
            let result = Self.holds(condition, event)
            let actual = event.header.map { describeValues(test, in: $0) } ?? "no header"
            lines.append(.init(mark: result ? .passed : .failed, depth: depth, text: "\(describe(test))  (\(actual))"))
            return result
        }
    }

    private func describe(_ test: AttributeTest) -> String {
        switch test.test {
        case .oneOf(let v): return v.count == 1 ? "\(test.name) = \(v[0])" : "\(test.name) in (\(v.map(\.text).joined(separator: ", ")))"
        case .noneOf(let v): return v.count == 1 ? "\(test.name) != \(v[0])" : "\(test.name) not in (\(v.map(\.text).joined(separator: ", ")))"
        case .matches(let p): return "\(test.name) ~ \"\(p.source)\""
        case .present: return "\(test.name) is present"
        case .absent: return "\(test.name) is absent"
        case .compare(let c, let n): return "\(test.name) \(c.rawValue) \(n == n.rounded() ? String(Int(n)) : String(n))"
        case .withinLast(let days): return "\(test.name) within last \(days) days"
        }
    }

    /// What the header holds at the test's path: "Modality is \"CT\"", "absent".
    private func describeValues(_ test: AttributeTest, in header: DataSet) -> String {
        var found: [String] = []
        _ = AttributeMatcher.anyElement(test.path[...], in: header) { element, ds in
            switch element.value {
            case .bytes:
                let values = element.vr.isText
                    ? element.strings(characterSet: ds.characterSet)
                    : AttributeMatcher.numbers(element, ds).map { $0 == $0.rounded() ? String(Int($0)) : String($0) }
                found.append(values.isEmpty ? "empty" : values.map { "\"\($0)\"" }.joined(separator: "\\"))
            case .sequence(let items): found.append("\(items.count) items")
            default: found.append("bulk data")
            }
            return false
        }
        if found.isEmpty { return "\(test.name) is absent" }
        return "\(test.name) is " + found.joined(separator: " | ")
    }
}
