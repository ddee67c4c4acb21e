import Foundation
import Routing
import Transport

/// `consort config check`: beyond the syntax, what would stop the agent or make it misroute —
/// folders that do not exist or cannot be written, a certificate for another trust, rules that
/// do not load, a peer the rules send to without an address. Each problem has the place of the
/// setting it concerns.
public enum ConfigurationCheck {
    public static func problems(_ c: AgentConfiguration) -> [Diagnostic] {
        var found: [Diagnostic] = []
        func at(_ key: String) -> SourceLocation { c.locations[key] ?? SourceLocation(file: c.file, line: 1, column: 1) }
        func error(_ key: String, _ message: String, hint: String? = nil) { found.append(Diagnostic(.error, at(key), message, hint: hint)) }
        let files = FileManager.default
        for (key, path) in [("state", c.state), ("inbound", c.inbound)] {
            var isFolder: ObjCBool = false
            if files.fileExists(atPath: path, isDirectory: &isFolder) {
                if !isFolder.boolValue { error(key, "\(path) is not a folder") } else if !files.isWritableFile(atPath: path) {
                    error(key, "\(path) is not writable by this user", hint: "the service's user must own it (systemd's StateDirectory= does this for state)")
                }
            } else if !files.isWritableFile(atPath: (path as NSString).deletingLastPathComponent) {
                error(key, "\(path) does not exist and cannot be created here")
            }
        }
        for watch in c.watches {
            var isFolder: ObjCBool = false
            if !files.fileExists(atPath: watch.path, isDirectory: &isFolder) || !isFolder.boolValue {
                found.append(Diagnostic(.error, watch.location, "the watched folder \(watch.path) does not exist"))
            } else if !files.isReadableFile(atPath: watch.path) {
                found.append(Diagnostic(.error, watch.location, "the watched folder \(watch.path) cannot be read by this user"))
            }
        }
        for (key, path) in [("certificate", c.certificate), ("key", c.key), ("ca", c.ca)] + (c.crl.map { [("crl", $0)] } ?? []) {
            if !files.isReadableFile(atPath: path) { error(key, "\(path) cannot be read") }
        }
        if files.isReadableFile(atPath: c.certificate) {
            do {
                let summary = try CertificateFile.summary(of: c.certificate)
                if summary.commonName != c.trust {
                    error("certificate", "the certificate is for \(summary.commonName), not for this trust (\(c.trust))", hint: "a site's identity is its certificate's Common Name")
                }
                if summary.secondsLeft < 0 {
                    error("certificate", "the certificate expired \(-summary.secondsLeft / 86_400) days ago")
                } else if summary.secondsLeft < 30 * 86_400 {
                    found.append(Diagnostic(.warning, at("certificate"), "the certificate expires in \(summary.secondsLeft / 86_400) days"))
                }
            } catch let failure {
                error("certificate", "\(failure)")
            }
        }
        // The CA and the CRL run out too, and with them every handshake (an expired CRL is
        // refused by OpenSSL like an expired certificate): warned weeks ahead, an error past it.
        let tls = TLSConfiguration(certificateChain: c.certificate, privateKey: c.key, trustedCA: c.ca, revocationList: c.crl)
        if [c.certificate, c.ca].allSatisfy(files.isReadableFile), c.crl.map(files.isReadableFile) ?? true {
            do {
                let expiry = try TLSExpiry.read(tls)
                let now = Date().timeIntervalSince1970
                for item in expiry.needingAttention(at: now) where item.name != "certificate" {
                    let days = Int(((item.expires - now) / 86_400).rounded(.down))
                    let what = item.name == "ca" ? "the consortium CA certificate" : "the CRL's next update"
                    if item.expires < now {
                        error(item.name, "\(what) passed \(-days) days ago: every handshake fails", hint: item.name == "crl" ? "publish a new CRL (consort pki crl) and send SIGHUP" : nil)
                    } else {
                        found.append(Diagnostic(.warning, at(item.name), "\(what) is in \(days) days: past it every handshake fails",
                            hint: item.name == "crl" ? "publish a new CRL before then (consort pki crl; Deploy/consort-crl.timer does it daily)" : nil))
                    }
                }
            } catch let failure {
                error(c.crl != nil ? "crl" : "ca", "\(failure)")
            }
        }
        // The DIMSE SCP: who may associate, said before the first modality is refused.
        if let dimse = c.dimse {
            if c.dimsePeers.isEmpty {
                found.append(Diagnostic(.warning, dimse.location, "dimse: no dimse-peer line, so every association will be rejected", hint: "add: dimse-peer NAME AET@HOST:PORT"))
            }
            for peer in c.dimsePeers where DIMSEServer.addresses(of: peer.host).isEmpty {
                found.append(Diagnostic(.error, peer.location, "dimse-peer \(peer.name): \(peer.host) does not resolve to an IPv4 address, so it could never associate"))
            }
        } else if let first = c.dimsePeers.first {
            found.append(Diagnostic(.warning, first.location, "dimse-peer lines without a dimse line: no C-STORE SCP is started", hint: "add: dimse 0.0.0.0:11112 { aet CONSORT_\(c.trust) }"))
        }
        let outcome = RuleSetLoader.load(c.rules)
        guard let set = outcome.ruleSet else {
            error("rules", "the rules at \(c.rules) do not load (\(outcome.errors.count) error\(outcome.errors.count == 1 ? "" : "s"))")
            found += outcome.errors
            return found
        }
        if let member = set.member(c.trust), !member.isTrust {
            error("trust", "\(c.trust) is declared a peer in the routing rules, not a member: an agent runs at a trust", hint: "declare it with `member`")
        } else if set.member(c.trust) == nil {
            error("trust", "\(c.trust) is not a member in the routing rules", hint: "members: \(set.members.filter(\.isTrust).map(\.code).joined(separator: ", "))")
        }
        // Every destination the rules may send to from here needs an address.
        for rule in set.rules where rule.at.map({ $0.flatMap { set.expand($0) ?? [] }.contains(c.trust) }) ?? true {
            for action in rule.actions {
                switch action {
                case .push(let names, _):
                    for peer in names.flatMap({ set.expand($0) ?? [] }) where peer != c.trust && c.peer(peer) == nil {
                        found.append(Diagnostic(.error, rule.location, "rule \"\(rule.name)\" sends to \(peer), which has no peer line in \(c.file)", hint: "add: peer \(peer) https://…"))
                    }
                case .deliver(let target, _):
                    if c.local(target) == nil {
                        found.append(Diagnostic(.error, rule.location, "rule \"\(rule.name)\" delivers to local \(target), which has no local line in \(c.file)", hint: "add: local \(target) dicomweb http://… or local \(target) dimse AET@HOST:PORT"))
                    }
                default:
                    break
                }
            }
        }
        return found
    }
}
