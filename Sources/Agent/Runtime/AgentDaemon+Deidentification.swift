import Deidentification
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

    /// The key in `state`, made now if there is none (mode 0600, written durably).
    static func deidentificationKey(in state: String) throws -> [UInt8] {
        let path = state + "/" + deidentificationKeyName
        if let data = FileManager.default.contents(atPath: path) {
            guard data.count >= 32 else { throw KeyProblem("\(path) holds \(data.count) bytes; a key is 32 (remove it to make a new one, and lose the mapping)") }
            return [UInt8](data)
        }
        var key = [UInt8](repeating: 0, count: 32)
        guard getentropy(&key, key.count) == 0 else { throw KeyProblem("no randomness for a key: \(String(cString: strerror(errno)))") }
        let temporary = path + ".new"
        let descriptor = open(temporary, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0o600)
        guard descriptor >= 0 else { throw KeyProblem("cannot create \(temporary): \(String(cString: strerror(errno)))") }
        let written = key.withUnsafeBytes { write(descriptor, $0.baseAddress!, $0.count) }
        let synced = fsync(descriptor)
        close(descriptor)
        guard written == key.count, synced == 0, rename(temporary, path) == 0 else {
            unlink(temporary)
            throw KeyProblem("cannot write \(path): \(String(cString: strerror(errno)))")
        }
        let folder = open(state, O_RDONLY | O_DIRECTORY | O_CLOEXEC)
        if folder >= 0 {
            fsync(folder)
            close(folder)
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
