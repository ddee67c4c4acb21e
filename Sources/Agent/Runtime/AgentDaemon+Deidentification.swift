import Deidentification
internal import Durability
import Foundation

#if canImport(Glibc)
    import Glibc
#endif

/// De-identification's key and folder (issue 29). The key is the trust's own: 32 random bytes
/// made at the first start, kept in the state folder readable by the agent alone; it makes the
/// UID mapping (the same study always maps to the same UIDs, so results coming back can be
/// matched and re-identified) and never leaves the machine — not in the log, not in the audit.
/// Losing it loses the link between studies sent before and after.
extension AgentDaemon {
    static let deidentificationKeyName = "deidentification.key"

    /// The key in `state`, made now if there is none (`making`: at start only) — mode 0600,
    /// written durably. Elsewhere a missing key is an error: a key made later would map the
    /// studies already sent differently, and results for them could never be matched.
    static func deidentificationKey(in state: String, making: Bool = false) throws -> [UInt8] {
        let path = state + "/" + deidentificationKeyName
        if let data = FileManager.default.contents(atPath: path) {
            guard data.count >= 32 else { throw KeyProblem("\(path) holds \(data.count) bytes; a key is 32 (remove it to make a new one, and lose the mapping)") }
            return [UInt8](data)
        }
        guard making else { throw KeyProblem("\(path) is missing: the agent makes it at its start") }
        var key = [UInt8](repeating: 0, count: 32)
        guard getentropy(&key, key.count) == 0 else { throw KeyProblem("no randomness for a key: \(String(cString: strerror(errno)))") }
        do {
            try DurableFile.write(key, to: path, mode: 0o600)
        } catch {
            throw KeyProblem("cannot write \(path): \(error)")
        }
        return key
    }

    /// The folder an earlier version wrote de-identified copies to before sending them (they
    /// are streamed into the request now): removed, with anything a crash left in it.
    static func removeDeidentifiedFolder(in state: String) {
        try? FileManager.default.removeItem(atPath: state + "/deidentified")
    }

    struct KeyProblem: Error, CustomStringConvertible {
        let description: String
        init(_ description: String) { self.description = description }
    }
}
