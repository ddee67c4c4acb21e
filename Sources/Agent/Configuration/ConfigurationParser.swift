import ConfigurationText
import DIMSE
import Foundation
import Routing

/// Reads an agent's configuration file: one setting per line, `#` comments, quoted strings where
/// there are spaces, `{ }` for a setting's options — the routing rules' lexical style. Every
/// problem is a `Diagnostic` with file:line:column; an unknown word is an error (with the closest
/// known word as a hint), never ignored.
public enum ConfigurationParser {
    /// nil configuration when there were errors.
    public typealias Outcome = ConfigurationOutcome<AgentConfiguration>
    /// A word of a configuration line (the lexer is shared with the coordinator's configuration).
    public typealias Token = ConfigurationLexer.Token

    static let settings = [
        "trust", "state", "watch", "inbound", "listen", "certificate", "key", "ca", "crl", "rules", "peer", "local",
        "coordinator", "lists", "free-space", "retry-min", "retry-max", "max-age", "circuit-after", "stable-after", "scan-rate",
        "metrics", "inbound-keep", "identity", "unknown-patient", "dimse", "dimse-peer",
    ]
    static let required = ["trust", "state", "watch", "inbound", "listen", "certificate", "key", "ca", "rules"]

    public static func parse(file: String) -> Outcome {
        guard let text = ConfigurationLexer.read(file: file) else { return .unreadable(file: file) }
        return parse(text, file: file)
    }

    public static func parse(_ text: String, file: String) -> Outcome {
        var configuration = AgentConfiguration(file: file)
        var diagnostics: [Diagnostic] = []
        func error(_ location: SourceLocation, _ message: String, hint: String? = nil) {
            diagnostics.append(Diagnostic(.error, location, message, hint: hint))
        }
        var seen: [String: SourceLocation] = [:]
        for line in ConfigurationLexer.lines(text, file: file) {
            guard let word = line.first else { continue }
            let arguments = Array(line.dropFirst())
            let key = word.text
            guard !word.quoted, settings.contains(key) else {
                error(word.location, "unknown setting \"\(key)\"", hint: closest(key).map { "did you mean \"\($0)\"?" })
                continue
            }
            let repeatable = ["watch", "peer", "local", "dimse-peer", "coordinator"].contains(key)
            if !repeatable, let first = seen[key] {
                error(word.location, "\"\(key)\" is set twice (first at line \(first.line))")
                continue
            }
            seen[key] = word.location
            configuration.locations[key] = configuration.locations[key] ?? word.location
            // The options block, if any: `{ name value [unit] ... }` at the end of the line.
            var plain = arguments
            var options: [Token] = []
            if let open = arguments.firstIndex(where: \.isOpen) {
                plain = Array(arguments[..<open])
                guard let close = arguments.lastIndex(where: \.isClose), close > open, close == arguments.count - 1 else {
                    error(arguments[open].location, "this \"{\" is not closed on the same line", hint: "options go in { } on the setting's line")
                    continue
                }
                options = Array(arguments[(open + 1)..<close])
            } else if let stray = arguments.first(where: \.isClose) {
                error(stray.location, "\"}\" without \"{\"")
                continue
            }
            func one(_ what: String) -> Token? {
                guard plain.count == 1 else {
                    error(plain.count > 1 ? plain[1].location : word.location, plain.isEmpty ? "\"\(key)\" needs \(what)" : "\"\(key)\" takes one value, \(what)",
                        hint: plain.count > 1 ? "quote a value that has spaces" : nil)
                    return nil
                }
                return plain[0]
            }
            func noOptions() -> Bool {
                if let first = options.first { error(first.location, "\"\(key)\" takes no options"); return false }
                return true
            }
            func quantity(_ tokens: [Token], _ kind: Quantity, at location: SourceLocation) -> Double? {
                guard let value = Quantity.parse(tokens, kind) else {
                    error(tokens.first?.location ?? location, "\"\(key)\" needs \(kind.example)")
                    return nil
                }
                return value
            }
            switch key {
            case "trust":
                guard noOptions(), let value = one("the trust's code (e.g. RSCH)") else { continue }
                configuration.trust = value.text
            case "state", "inbound", "certificate", "key", "ca", "crl", "rules", "lists":
                guard noOptions(), let value = one("a path") else { continue }
                // The folders the inventory's paths begin with, normal as the watchers report them.
                let normal = ["state", "inbound", "lists"].contains(key)
                guard let path = normal ? ConfigurationLexer.normalAbsolutePath(value.text) : ConfigurationLexer.absolutePath(value.text) else {
                    error(value.location, "\"\(key)\" needs an absolute path", hint: "a service does not know which folder it was started from")
                    continue
                }
                switch key {
                case "state": configuration.state = path
                case "inbound": configuration.inbound = path
                case "certificate": configuration.certificate = path
                case "key": configuration.key = path
                case "ca": configuration.ca = path
                case "crl": configuration.crl = path
                case "rules": configuration.rules = path
                default: configuration.lists = path
                }
            case "watch":
                guard let value = one("a folder") else { continue }
                guard let path = ConfigurationLexer.normalAbsolutePath(value.text) else {
                    error(value.location, "\"watch\" needs an absolute path")
                    continue
                }
                var watch = AgentConfiguration.Watch(path: path, location: value.location)
                if !options.isEmpty {
                    guard options[0].text == "poll" else {
                        error(options[0].location, "unknown option \"\(options[0].text)\" of \"watch\"", hint: "the one option is poll, e.g. { poll 10 s }")
                        continue
                    }
                    guard let seconds = quantity(Array(options.dropFirst()), .duration, at: options[0].location), seconds >= 1 else {
                        if diagnostics.last?.location != options.dropFirst().first?.location { error(options[0].location, "poll needs a period of at least 1 s") }
                        continue
                    }
                    watch.pollSeconds = seconds
                }
                configuration.watches.append(watch)
            case "listen", "metrics":
                // metrics is plain HTTP: keep it on loopback (as the examples do) or a monitoring
                // network; it carries counts, never patient data.
                guard noOptions(), let value = one("ADDRESS:PORT") else { continue }
                guard let address = ConfigurationLexer.address(value.text) else {
                    error(value.location, "\"\(key)\" takes ADDRESS:PORT, e.g. \(key == "listen" ? "0.0.0.0:8443" : "127.0.0.1:9464")")
                    continue
                }
                if key == "listen" {
                    (configuration.listenHost, configuration.listenPort) = address
                } else {
                    (configuration.metricsHost, configuration.metricsPort) = address
                }
            case "peer":
                guard plain.count == 2 else {
                    error(plain.first?.location ?? word.location, "\"peer\" takes a name and a URL, e.g. peer UHSX https://uhsx.example:8443")
                    continue
                }
                guard plain[1].text.hasPrefix("https://") || plain[1].text.hasPrefix("http://") else {
                    error(plain[1].location, "a peer's address is an https:// URL")
                    continue
                }
                if let earlier = configuration.peer(plain[0].text) {
                    error(plain[0].location, "peer \(plain[0].text) is defined twice (first at line \(earlier.location.line))")
                    continue
                }
                var peer = AgentConfiguration.Peer(name: plain[0].text, url: trimmedURL(plain[1].text), location: plain[0].location)
                var index = 0
                var ok = true
                /// The whole number after an option, within `range`; nil (and the error) otherwise.
                func count(_ option: Token, _ range: ClosedRange<Int>, _ what: String) -> Int? {
                    guard index + 1 < options.count, let n = Int(options[index + 1].text), range.contains(n) else {
                        error(option.location, "\(option.text) takes \(what) from \(range.lowerBound) to \(range.upperBound)")
                        return nil
                    }
                    index += 2
                    return n
                }
                while index < options.count, ok {
                    let option = options[index]
                    switch option.text {
                    case "connections":
                        guard let n = count(option, 1...16, "a number") else { ok = false; continue }
                        peer.connections = n
                    case "batch":
                        guard let n = count(option, 1...1000, "a number of instances a request") else { ok = false; continue }
                        peer.batch = n
                    case "bandwidth":
                        // A number and a rate unit: 200 MB/s, 50 Mbit/s.
                        let tokens = Array(options[(index + 1)..<min(options.count, index + 3)])
                        guard let rate = Quantity.parse(tokens, .rate), rate >= 1 else {
                            error(option.location, "bandwidth takes a rate, e.g. 200 MB/s or 100 Mbit/s")
                            ok = false
                            continue
                        }
                        peer.bandwidth = Int(rate)
                        index += 3
                    default:
                        error(option.location, "unknown option \"\(option.text)\" of \"peer\"", hint: "the options are connections N, bandwidth RATE and batch N")
                        ok = false
                    }
                }
                if ok { configuration.peers.append(peer) }
            case "local":
                guard plain.count == 3, ["dicomweb", "dimse"].contains(plain[1].text) else {
                    error(plain.first?.location ?? word.location, "\"local\" takes a name, dicomweb or dimse, and an address, e.g. local PACS dicomweb http://127.0.0.1:8042/dicom-web or local PACS dimse PACS@10.1.2.3:104")
                    continue
                }
                if configuration.local(plain[0].text) != nil {
                    error(plain[0].location, "local target \(plain[0].text) is defined twice")
                    continue
                }
                if plain[1].text == "dicomweb" {
                    guard noOptions() else { continue }
                    guard plain[2].text.hasPrefix("http://") || plain[2].text.hasPrefix("https://") else {
                        error(plain[2].location, "a local target's address is an http:// or https:// URL")
                        continue
                    }
                    configuration.locals.append(AgentConfiguration.LocalTarget(name: plain[0].text, url: trimmedURL(plain[2].text), location: plain[0].location))
                    continue
                }
                guard let node = DIMSENode(plain[2].text) else {
                    error(plain[2].location, "a DIMSE node is AET@HOST:PORT: the PACS's AE title (1 to 16 characters, no backslash), its host and port, e.g. PACS@10.1.2.3:104")
                    continue
                }
                var target = AgentConfiguration.LocalTarget(name: plain[0].text, url: "dicom://\(node)", location: plain[0].location, dimse: node)
                var index = 0
                var ok = true
                while index < options.count, ok {
                    let option = options[index]
                    let value = index + 1 < options.count ? options[index + 1].text : ""
                    switch option.text {
                    case "connections":
                        guard let n = Int(value), (1...16).contains(n) else {
                            error(option.location, "connections takes a number of associations at once from 1 to 16")
                            ok = false
                            continue
                        }
                        target.connections = n
                    case "calling-aet":
                        guard AETitle.isValid(value) else {
                            error(option.location, "calling-aet takes an AE title (1 to 16 characters, no backslash)")
                            ok = false
                            continue
                        }
                        target.callingAET = value
                    case "timeout":
                        guard let seconds = Double(value), (1...3600).contains(seconds) else {
                            error(option.location, "timeout takes seconds from 1 to 3600 (each step: connect, each send, each answer)")
                            ok = false
                            continue
                        }
                        target.timeout = seconds
                    case "tls":
                        // A word alone: DICOM TLS with the trust's certificate.
                        target.tls = true
                        index += 1
                        continue
                    default:
                        error(option.location, "unknown option \"\(option.text)\" of a DIMSE local target", hint: "the options are connections N, calling-aet AET, timeout SECONDS and tls")
                        ok = false
                    }
                    index += 2
                }
                if ok { configuration.locals.append(target) }
            case "dimse":
                guard let value = one("ADDRESS:PORT") else { continue }
                guard let address = ConfigurationLexer.address(value.text) else {
                    error(value.location, "\"dimse\" takes ADDRESS:PORT, e.g. 0.0.0.0:11112")
                    continue
                }
                if let listener = dimseListener(address, options, at: value.location, error: error) { configuration.dimse = listener }
            case "dimse-peer":
                guard plain.count == 2 else {
                    error(plain.first?.location ?? word.location, "\"dimse-peer\" takes a name and AET@HOST:PORT, e.g. dimse-peer CT1 CT_SCANNER_1@10.1.2.3:104")
                    continue
                }
                // `{ query  tls }`: words alone.
                var mayQuery = false, tls = false, ok = true
                for option in options {
                    switch option.text {
                    case "query": mayQuery = true
                    case "tls": tls = true
                    default:
                        error(option.location, "unknown option \"\(option.text)\" of a dimse-peer", hint: "the options are query (it may ask the consortium: C-FIND, C-MOVE) and tls (C-MOVE sends to it over DICOM TLS)")
                        ok = false
                    }
                }
                guard ok else { continue }
                guard let node = DIMSENode(plain[1].text) else {
                    error(plain[1].location, "a dimse-peer's address is AET@HOST:PORT (an AE title of 1 to 16 characters, no backslash)")
                    continue
                }
                if let earlier = configuration.dimsePeers.first(where: { $0.name == plain[0].text }) {
                    error(plain[0].location, "dimse-peer \(plain[0].text) is defined twice (first at line \(earlier.location.line))")
                    continue
                }
                // One AE title, one peer: who may query, and where a move to it goes, follow it.
                if let earlier = configuration.dimsePeers.first(where: { $0.aeTitle == node.ae }) {
                    error(plain[1].location, "AE title \(node.ae) is dimse-peer \(earlier.name)'s already (line \(earlier.location.line)): each peer needs its own")
                    continue
                }
                configuration.dimsePeers.append(
                    AgentConfiguration.DIMSEPeer(name: plain[0].text, aeTitle: node.ae, host: node.host, port: node.port, mayQuery: mayQuery, tls: tls, location: plain[0].location))
            case "identity":
                guard noOptions(), let value = one("reconcile or keep") else { continue }
                guard let mode = AgentConfiguration.IdentityMode(rawValue: value.text) else {
                    error(value.location, "identity is reconcile (studies from other trusts placed in this trust's identity) or keep (as sent), not \"\(value.text)\"")
                    continue
                }
                configuration.identity = mode
            case "unknown-patient":
                guard noOptions(), let first = plain.first else {
                    error(word.location, "unknown-patient takes hold, or nhs-number and optionally the issuer to name, e.g. unknown-patient nhs-number NHS")
                    continue
                }
                switch (first.text, plain.count) {
                case ("hold", 1):
                    configuration.unknownPatient = .hold
                case ("nhs-number", 1), ("nhs-number", 2):
                    let issuer = plain.count == 2 ? plain[1].text : "NHS"
                    guard !issuer.isEmpty, issuer.count <= 64, issuer.allSatisfy({ $0.isASCII && !$0.isNewline && $0 != "\\" }) else {
                        error(plain[1].location, "the issuer is up to 64 printable ASCII characters (Issuer of Patient ID), e.g. NHS or 2.16.840.1.113883.2.1.4.1")
                        continue
                    }
                    configuration.unknownPatient = .nhsNumber(issuer: issuer)
                default:
                    error(first.location, "unknown-patient takes hold, or nhs-number and optionally the issuer to name, not \"\(plain.map(\.text).joined(separator: " "))\"")
                    continue
                }
            case "coordinator":
                guard noOptions(), let value = one("the coordinator's https:// URL") else { continue }
                guard value.text.hasPrefix("https://") else {
                    error(value.location, "the coordinator is reached by https://")
                    continue
                }
                let url = trimmedURL(value.text)
                guard !configuration.coordinators.contains(url) else {
                    error(value.location, "coordinator \(url) is named twice")
                    continue
                }
                configuration.coordinators.append(url)
            case "free-space":
                guard noOptions(), let percent = quantity(plain, .percent, at: word.location) else { continue }
                guard percent >= 0 && percent < 100 else {
                    error(plain[0].location, "free-space is a share of the disk under 100 %")
                    continue
                }
                configuration.freeSpacePercent = percent
            case "retry-min", "retry-max", "max-age", "stable-after", "inbound-keep":
                guard noOptions(), let seconds = quantity(plain, .duration, at: word.location) else { continue }
                // Out of range is an error at its line, saying the range: never quietly changed
                // (`max-age 5 s` was once taken as 60 s without a word).
                if let range = Self.durationRanges[key], !range.contains(seconds) {
                    error(plain[0].location, "\"\(key)\" is \(Self.formatSeconds(seconds)); it must be from \(Self.formatSeconds(range.lowerBound)) to \(Self.formatSeconds(range.upperBound))")
                    continue
                }
                switch key {
                case "retry-min": configuration.retryMinimumSeconds = seconds
                case "retry-max": configuration.retryMaximumSeconds = seconds
                case "max-age": configuration.maximumAgeSeconds = seconds
                case "inbound-keep": configuration.inboundKeepSeconds = seconds
                default: configuration.stableAfterSeconds = seconds
                }
            case "circuit-after", "scan-rate":
                guard noOptions(), let value = one("a number"), let n = Double(value.text), n >= 1 else {
                    if diagnostics.last?.location.line != word.location.line { error(plain.first?.location ?? word.location, "\"\(key)\" takes a number of at least 1") }
                    continue
                }
                if key == "circuit-after" { configuration.circuitAfter = Int(n) } else { configuration.scanFilesPerSecond = n }
            default:
                break
            }
        }
        let end = SourceLocation(file: file, line: max(1, text.split(separator: "\n", omittingEmptySubsequences: false).count), column: 1)
        for key in required where seen[key] == nil {
            error(end, "\"\(key)\" is required and missing", hint: "every agent needs: \(required.joined(separator: ", "))")
        }
        if configuration.retryMaximumSeconds < configuration.retryMinimumSeconds, let at = configuration.locations["retry-max"] {
            error(at, "retry-max is shorter than retry-min")
        }
        if !configuration.trust.isEmpty, configuration.peer(configuration.trust) != nil, let at = configuration.peer(configuration.trust)?.location {
            error(at, "a trust is not its own peer")
        }
        return Outcome(configuration: diagnostics.contains { $0.severity == .error } ? nil : configuration, diagnostics: diagnostics, source: text)
    }

    /// `dimse ADDRESS:PORT { aet AET  associations N  max-pdu BYTES  timeout S  idle S  move-wait S
    /// tls }`: `aet` is required; the rest have their defaults (`AgentConfiguration.DIMSEListener`).
    static func dimseListener(
        _ address: (String, UInt16), _ options: [Token], at location: SourceLocation, error: (SourceLocation, String, String?) -> Void
    ) -> AgentConfiguration.DIMSEListener? {
        var listener = AgentConfiguration.DIMSEListener(host: address.0, port: address.1, aeTitle: "", location: location)
        let hint = "the options are aet AET, associations N, max-pdu BYTES, timeout S, idle S, move-wait S and tls, e.g. { aet CONSORT_RSCH }"
        var index = 0
        while index < options.count {
            let option = options[index]
            if option.text == "tls" {
                listener.tls = true
                index += 1
                continue
            }
            guard index + 1 < options.count else {
                error(option.location, "\(option.text) needs a value", hint)
                return nil
            }
            let value = options[index + 1]
            index += 2
            switch option.text {
            case "aet":
                guard AETitle.isValid(value.text) else {
                    error(value.location, "\"\(value.text)\" is not an AE title (1 to 16 characters, no backslash)", nil)
                    return nil
                }
                listener.aeTitle = value.text
            case "associations", "max-pdu":
                let range = option.text == "associations" ? 1...256 : 4096...(16 << 20)
                guard let n = Int(value.text), range.contains(n) else {
                    error(value.location, "\(option.text) takes a whole number from \(range.lowerBound) to \(range.upperBound)", nil)
                    return nil
                }
                if option.text == "associations" { listener.associations = n } else { listener.maximumPDU = n }
            case "timeout", "idle", "move-wait":
                // A unit may follow the number: `timeout 30 s`.
                var tokens = [value]
                if index < options.count, Double(options[index].text) == nil, !["aet", "associations", "max-pdu", "timeout", "idle", "move-wait", "tls"].contains(options[index].text) {
                    tokens.append(options[index])
                    index += 1
                }
                guard let seconds = Quantity.parse(tokens, .duration) ?? Double(value.text), (1...3600).contains(seconds) else {
                    error(value.location, "\(option.text) takes a duration from 1 s to 1 h, e.g. \(option.text) 30 s", nil)
                    return nil
                }
                switch option.text {
                case "timeout": listener.timeoutSeconds = seconds
                case "idle": listener.idleSeconds = seconds
                default: listener.moveWaitSeconds = seconds
                }
            default:
                error(option.location, "unknown option \"\(option.text)\" of \"dimse\"", hint)
                return nil
            }
        }
        guard !listener.aeTitle.isEmpty else {
            error(location, "\"dimse\" needs the AE title it answers to, e.g. dimse 0.0.0.0:11112 { aet CONSORT_RSCH }", nil)
            return nil
        }
        return listener
    }

    /// The durations a setting may take, in seconds. A retry sooner than a second would hammer a
    /// peer that is down; a job's life shorter than a minute would fail it before its first
    /// retries; longer than a year, a job would wait past any clinical use. A received copy kept
    /// less than a minute could go before a PACS polling its import folder has seen it; longer
    /// than ten years is keeping it.
    static let durationRanges: [String: ClosedRange<Double>] = [
        "retry-min": 1...(6 * 3600), "retry-max": 1...86_400, "max-age": 60...(365 * 86_400), "stable-after": 1...86_400,
        "inbound-keep": 60...(3650 * 86_400),
    ]

    /// A duration as the configuration writes it: `90 days`, `6 h`, `1 min`, `5 s`, `0.5 s`.
    public static func formatSeconds(_ seconds: Double) -> String {
        for (unit, size) in [("days", 86_400.0), ("h", 3600), ("min", 60)] where seconds >= size && seconds.truncatingRemainder(dividingBy: size) == 0 {
            let n = Int(seconds / size)
            return "\(n) \(unit == "days" && n == 1 ? "day" : unit)"
        }
        return seconds == seconds.rounded() ? "\(Int(seconds)) s" : "\(seconds) s"
    }

    static func trimmedURL(_ url: String) -> String { url.hasSuffix("/") ? String(url.dropLast()) : url }

    static func closest(_ word: String) -> String? { ConfigurationLexer.closest(word, among: settings) }
}

/// Numbers with units, as the configuration writes them: `10 s`, `2 min`, `3 d`, `200 MB/s`,
/// `5 %` (or run together: `10s`, `5%`).
enum Quantity {
    case duration, rate, percent

    var example: String {
        switch self {
        case .duration: return "a duration, e.g. 10 s, 5 min, 2 h or 3 d"
        case .rate: return "a rate, e.g. 200 MB/s"
        case .percent: return "a percentage, e.g. 5 %"
        }
    }

    static func parse(_ tokens: [ConfigurationParser.Token], _ kind: Quantity) -> Double? {
        var text = tokens.prefix(2).map(\.text).joined(separator: " ")
        if tokens.count == 1 || (tokens.count >= 2 && Double(tokens[1].text) != nil) { text = tokens.first?.text ?? "" }
        let number = text.prefix { $0.isNumber || $0 == "." }
        guard let value = Double(number) else { return nil }
        let unit = text.dropFirst(number.count).trimmingCharacters(in: .whitespaces)
        switch kind {
        case .duration:
            let factors: [String: Double] = ["s": 1, "sec": 1, "second": 1, "seconds": 1, "min": 60, "minute": 60, "minutes": 60, "h": 3600, "hour": 3600, "hours": 3600, "d": 86_400, "day": 86_400, "days": 86_400]
            return factors[unit].map { value * $0 }
        case .rate:
            let factors: [String: Double] = ["B/s": 1, "kB/s": 1e3, "KB/s": 1e3, "MB/s": 1e6, "GB/s": 1e9, "Mbit/s": 125_000, "Gbit/s": 125_000_000]
            return factors[unit].map { value * $0 }
        case .percent:
            return unit == "%" ? value : nil
        }
    }
}
