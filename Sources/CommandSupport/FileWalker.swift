#if canImport(Glibc)
    import Glibc
#endif

/// One input file: where it is, and the name it goes by in output (relative to the directory
/// argument it was found under, "/"-separated; a file argument's name is the argument as given).
public struct InputFile: Sendable {
    public let path: String
    public let name: String
}

/// Expands file and directory arguments into the regular files under them, sorted by name,
/// recursing into directories (symbolic links to files are followed, links to directories are not,
/// so a loop cannot trap the walk). Problems (no such file, unreadable folder) are collected.
public enum FileWalker {
    public static func expand(_ arguments: [String]) -> (files: [InputFile], problems: [String]) {
        var files: [InputFile] = []
        var problems: [String] = []
        for argument in arguments {
            var info = stat()
            guard stat(argument, &info) == 0 else {
                problems.append("\(argument): \(String(cString: strerror(errno)))")
                continue
            }
            if info.st_mode & S_IFMT == S_IFDIR {
                var found: [InputFile] = []
                walk(directory: argument, relative: "", into: &found, problems: &problems)
                found.sort { $0.name < $1.name }
                files += found
            } else {
                files.append(InputFile(path: argument, name: argument))
            }
        }
        return (files, problems)
    }

    private static func walk(directory: String, relative: String, into files: inout [InputFile], problems: inout [String]) {
        guard let dir = opendir(directory) else {
            problems.append("\(directory): \(String(cString: strerror(errno)))")
            return
        }
        defer { closedir(dir) }
        while let entry = readdir(dir) {
            let name = withUnsafePointer(to: entry.pointee.d_name) {
                $0.withMemoryRebound(to: CChar.self, capacity: 256) { String(cString: $0) }
            }
            if name == "." || name == ".." { continue }
            let path = directory.hasSuffix("/") ? directory + name : directory + "/" + name
            let rel = relative.isEmpty ? name : relative + "/" + name
            var type = Int32(entry.pointee.d_type)
            if type == Int32(DT_UNKNOWN) || type == Int32(DT_LNK) {
                var info = stat()
                let ok = type == Int32(DT_LNK) ? stat(path, &info) : lstat(path, &info)
                guard ok == 0 else { continue }
                let mode = info.st_mode & S_IFMT
                type = mode == S_IFREG ? Int32(DT_REG) : mode == S_IFDIR && entry.pointee.d_type != UInt8(DT_LNK) ? Int32(DT_DIR) : Int32(DT_UNKNOWN)
            }
            if type == Int32(DT_DIR) {
                walk(directory: path, relative: rel, into: &files, problems: &problems)
            } else if type == Int32(DT_REG) {
                files.append(InputFile(path: path, name: rel))
            }
        }
    }
}
