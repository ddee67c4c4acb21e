import ConfigurationText
import Foundation
import Routing

/// The coordinator's configuration file — a contract, like the agent's (tests outside the
/// project write these words), in the same lexical style:
///
///     listen 0.0.0.0:8444
///     certificate /etc/consort/coordinator.pem
///     key /etc/consort/coordinator.key
///     ca /etc/consort/ca.pem
///     registry /var/lib/consort/registry.sqlite     # or: registry postgresql "host=... dbname=consort"
///     rules /etc/consort/routing-rules              # who the members are
///     nhs-number ESHT from OtherPatientIDsSequence  # per-trust exceptions to the default
///
/// Also: `crl FILE`, `audit FILE` (default: `coordinator-audit.log` beside a SQLite registry,
/// else /var/lib/consort/coordinator-audit.log), `metrics ADDRESS:PORT`.
public struct CoordinatorConfiguration: Sendable {
    public enum Registry: Sendable, Equatable {
        case sqlite(String)
        case postgresql(String)
    }

    public var file: String
    public var listenHost = ""
    public var listenPort: UInt16 = 0
    public var certificate = ""
    public var key = ""
    public var ca = ""
    public var crl: String?
    public var registry = Registry.sqlite("")
    public var rules = ""
    public var audit: String?
    public var metricsHost: String?
    public var metricsPort: UInt16 = 0
    /// Where each trust's headers carry the NHS number, when not where the default looks.
    public var nhsNumberSources: [String: NHSIdentity.Source] = [:]

    public init(file: String) { self.file = file }

    public var auditPath: String {
        if let audit { return audit }
        if case .sqlite(let path) = registry { return (path as NSString).deletingLastPathComponent + "/coordinator-audit.log" }
        return "/var/lib/consort/coordinator-audit.log"
    }
}

public enum CoordinatorConfigurationParser {
    /// nil configuration when there were errors.
    public typealias Outcome = ConfigurationOutcome<CoordinatorConfiguration>

    static let settings = ["listen", "certificate", "key", "ca", "crl", "registry", "rules", "nhs-number", "audit", "metrics"]
    static let required = ["listen", "certificate", "key", "ca", "registry", "rules"]

    public static func parse(file: String) -> Outcome {
        guard let text = ConfigurationLexer.read(file: file) else { return .unreadable(file: file) }
        return parse(text, file: file)
    }

    public static func parse(_ text: String, file: String) -> Outcome {
        var configuration = CoordinatorConfiguration(file: file)
        var diagnostics: [Diagnostic] = []
        func error(_ location: SourceLocation, _ message: String, hint: String? = nil) { diagnostics.append(Diagnostic(.error, location, message, hint: hint)) }
        var seen: [String: SourceLocation] = [:]
        for line in ConfigurationLexer.lines(text, file: file) {
            guard let word = line.first else { continue }
            let key = word.text
            let values = Array(line.dropFirst())
            guard !word.quoted, settings.contains(key) else {
                error(word.location, "unknown setting \"\(key)\"", hint: ConfigurationLexer.closest(key, among: settings).map { "did you mean \"\($0)\"?" })
                continue
            }
            if key != "nhs-number", let first = seen[key] {
                error(word.location, "\"\(key)\" is set twice (first at line \(first.line))")
                continue
            }
            seen[key] = word.location
            func one(_ what: String) -> String? {
                guard values.count == 1 else {
                    error(values.count > 1 ? values[1].location : word.location, values.isEmpty ? "\"\(key)\" needs \(what)" : "\"\(key)\" takes one value, \(what)")
                    return nil
                }
                return values[0].text
            }
            switch key {
            case "listen", "metrics":
                guard let value = one("ADDRESS:PORT") else { continue }
                guard let address = ConfigurationLexer.address(value) else {
                    error(values[0].location, "\"\(key)\" takes ADDRESS:PORT, e.g. \(key == "listen" ? "0.0.0.0:8444" : "127.0.0.1:9465")")
                    continue
                }
                if key == "listen" {
                    (configuration.listenHost, configuration.listenPort) = address
                } else {
                    (configuration.metricsHost, configuration.metricsPort) = address
                }
            case "certificate", "key", "ca", "crl", "rules", "audit":
                guard let text = one("a path") else { continue }
                guard let value = ConfigurationLexer.absolutePath(text) else {
                    error(values[0].location, "\"\(key)\" needs an absolute path", hint: "a service does not know which folder it was started from")
                    continue
                }
                switch key {
                case "certificate": configuration.certificate = value
                case "key": configuration.key = value
                case "ca": configuration.ca = value
                case "crl": configuration.crl = value
                case "rules": configuration.rules = value
                default: configuration.audit = value
                }
            case "registry":
                if values.count == 2, values[0].text == "postgresql" {
                    configuration.registry = .postgresql(values[1].text)
                } else if values.count == 1, values[0].text != "postgresql" {
                    configuration.registry = .sqlite(values[0].text)
                } else {
                    error(values.first?.location ?? word.location, "\"registry\" takes a SQLite file, or postgresql \"CONNINFO\"",
                        hint: "registry /var/lib/consort/registry.sqlite, or registry postgresql \"host=db dbname=consort\"")
                }
            case "nhs-number":
                guard values.count == 3, values[1].text == "from" else {
                    error(values.first?.location ?? word.location, "\"nhs-number\" takes TRUST from PatientID|OtherPatientIDsSequence|OtherPatientIDs")
                    continue
                }
                guard let source = NHSIdentity.Source(rawValue: values[2].text) else {
                    error(values[2].location, "the NHS number comes from PatientID, OtherPatientIDsSequence or OtherPatientIDs, not \"\(values[2].text)\"")
                    continue
                }
                configuration.nhsNumberSources[values[0].text] = source
            default:
                break
            }
        }
        for key in required where seen[key] == nil {
            error(SourceLocation(file: file, line: 1, column: 1), "\"\(key)\" is missing (required: \(required.joined(separator: ", ")))")
        }
        let failed = diagnostics.contains { $0.severity == .error }
        return Outcome(configuration: failed ? nil : configuration, diagnostics: diagnostics, source: text)
    }
}
