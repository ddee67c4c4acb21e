#if canImport(Glibc)
    import Glibc
#endif

/// What every watcher and the scanner leave alone: excluded folders, and hidden names.
///
/// - Hidden names: any file or folder whose name begins with "." is skipped, with everything
///   under it. That covers Foundation's `.dat.nosync…` temporary files (`createFile` and
///   `.atomic` writes go through them on Linux) and the agent's own `.staging`, `.quarantine`.
///   A root whose own name begins with "." is still watched: the operator named it.
/// - Excluded folders match by normalised path (wherever they are, even inside a root; created
///   later too), and, for those that exist when the filter is made, by identity (device and
///   inode) — so a spelling through a symlink matches as well. An identity match is confirmed
///   against the excluded path at the time, so a reused inode number does not hide a folder.
struct PathFilter: Sendable {
    private let excludedPaths: Set<String>
    private let excludedIdentities: [FileIdentity: String]

    init(excluding folders: [String]) {
        var paths = Set<String>()
        var identities: [FileIdentity: String] = [:]
        for folder in folders {
            let path = PathFilter.normalize(folder)
            paths.insert(path)
            var status = stat()
            if stat(path, &status) == 0 { identities[FileIdentity(status)] = path }
        }
        excludedPaths = paths
        excludedIdentities = identities
    }

    /// A name the watchers never report nor descend into.
    static func isHidden(_ name: String) -> Bool { name.hasPrefix(".") }

    /// Whether `path` (normalised, absolute) is an excluded folder.
    func isExcluded(_ path: String) -> Bool { excludedPaths.contains(path) }

    /// Whether the folder with this identity is an excluded folder (still at its excluded path).
    func isExcluded(_ identity: FileIdentity) -> Bool {
        guard let path = excludedIdentities[identity] else { return false }
        var status = stat()
        return stat(path, &status) == 0 && FileIdentity(status) == identity
    }

    /// `path` made absolute (against the working folder) and lexically normal: no empty or "."
    /// components, ".." applied, no trailing slash.
    static func normalize(_ path: String) -> String {
        var absolute = path
        if !path.hasPrefix("/") {
            var cwd = [CChar](repeating: 0, count: Int(PATH_MAX) + 1)
            if getcwd(&cwd, cwd.count) != nil {
                let prefix = String(decoding: cwd.prefix { $0 != 0 }.map { UInt8(bitPattern: $0) }, as: UTF8.self)
                absolute = prefix + "/" + path
            }
        }
        var parts: [Substring] = []
        for part in absolute.split(separator: "/") {
            if part == "." { continue }
            if part == ".." {
                _ = parts.popLast()
                continue
            }
            parts.append(part)
        }
        return "/" + parts.joined(separator: "/")
    }

    /// `folder` + "/" + `name`, without doubling the slash of "/".
    static func join(_ folder: String, _ name: String) -> String {
        folder == "/" ? "/" + name : folder + "/" + name
    }
}
