import CommandSupport
import Agent
import DICOM
import Foundation
import Transport

/// The TLS part of `consort status`: when this trust's certificate, the consortium CA and the
/// CRL expire, and which of them needs a person (expired, or within 14 days: past that day the
/// agent's handshakes fail, with an expired CRL as with an expired certificate). From the
/// running agent (the material in force) or, when it is down, from the files it would load.
struct TLSStatus {
    struct Item {
        var name: String
        var path: String
        var expires: Double?
        var problem: String?
    }

    var source: String
    var items: [Item] = []
    var attention: [String] = []
    let now: Double

    init(live: [String: Any]?, configuration: AgentConfiguration, now: Double) {
        self.now = now
        if let live {
            source = "in force at the agent"
            if let refused = live["last_reload_refused"] as? String {
                attention.append("the last reload of the TLS material was REFUSED, and the earlier material stays in force (a new CRL not loaded leaves a revoked trust trusted): \(refused)")
            }
            for name in ["certificate", "ca", "crl"] {
                guard let entry = live[name] as? [String: Any], let path = entry["path"] as? String else { continue }
                items.append(Item(name: name, path: path, expires: ((entry[name == "crl" ? "next_update" : "expires"]) as? NSNumber)?.doubleValue))
            }
        } else {
            source = "read from the files: the agent is not running"
            let paths = TLSConfiguration(certificateChain: configuration.certificate, privateKey: configuration.key, trustedCA: configuration.ca, revocationList: configuration.crl)
            do {
                let expiry = try TLSExpiry.read(paths)
                items = [Item(name: "certificate", path: paths.certificateChain, expires: expiry.certificate), Item(name: "ca", path: paths.trustedCA, expires: expiry.ca)]
                if let crl = paths.revocationList { items.append(Item(name: "crl", path: crl, expires: expiry.crl)) }
            } catch {
                items = [Item(name: "certificate", path: paths.certificateChain, expires: nil, problem: "\(error)")]
            }
        }
        for item in items {
            if let problem = item.problem {
                attention.append("the TLS material cannot be read: \(problem)")
                continue
            }
            guard let expires = item.expires, expires - now < TLSExpiry.warningSeconds else { continue }
            attention.append("\(TLSExpiry.words(item.name)) \(TLSExpiry.when(expires, now: now)) (\(item.path)): " + (item.name == "crl"
                ? "publish a new CRL (consort pki crl), give it to every site and send SIGHUP; past its next update every handshake is refused"
                : "renew it and send SIGHUP; past it every handshake fails"))
        }
    }

    /// A line an item, for the human view.
    var lines: [String] {
        items.map { item in
            let name = item.name.padding(toLength: 12, withPad: " ", startingAt: 0)
            guard let expires = item.expires else { return name + (item.problem ?? "no expiry (the CRL names no next update)") + "  \(item.path)" }
            let text = (item.name == "crl" ? "next update " : "expires ") + OperatorFormat.time(expires) + " (" + TLSExpiry.when(expires, now: now) + ")"
            return name + (expires - now < TLSExpiry.warningSeconds ? OperatorFormat.paint(text, .red) : text) + "  \(item.path)"
        }
    }

    var json: JSON {
        .object(items.map { item in
            (item.name, .object([
                ("path", .string(item.path)), ("expires", item.expires.map(JSON.double) ?? .null),
                ("needs_attention", .bool(item.problem != nil || (item.expires.map { $0 - now < TLSExpiry.warningSeconds } ?? false))),
            ]))
        })
    }
}
