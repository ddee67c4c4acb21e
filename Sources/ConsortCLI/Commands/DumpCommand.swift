import CommandSupport
import DICOM

/// `consort dump FILE|DIR...`: headers in the spirit of DCMTK's dcmdump, or canonical JSON lines.
enum DumpCommand {
    static let help = """
        Usage: consort dump [--json] [--pixel-data] [--width N] FILE|DIR...

        Prints the header of each DICOM file: tag, VR, keyword and value, one element a line,
        sequences indented. Directories are searched recursively, files in name order.

        Options:
          --json          one JSON line per file in the canonical form (see README: "Conformance"),
                          comparable with pydicom's reading of the same file
          --pixel-data    read past Pixel Data too (default: stop before it, without reading it)
          --width N       cut values longer than N characters (default 64; 0: never cut)
          --warnings      also print the reader's warnings for each file (human output)

        Files that cannot be read are named on stderr with the reason, and a summary closes the
        run. Exit status: 0 all files read; 1 some could not be read; 2 usage error.

        """

    static func run(_ args: [String]) throws -> ExitCode {
        let arguments = try Arguments(
            args, command: "dump", flags: ["--json", "--pixel-data", "--warnings"], options: ["--width"])
        guard !arguments.positional.isEmpty else {
            throw UsageError(message: "give at least one file or directory", command: "dump")
        }
        let width = try arguments.integer("--width", default: 64, range: 0...1_000_000)
        let json = arguments.flag("--json")
        var options = ReadOptions.headers
        if arguments.flag("--pixel-data") { options = .everything }

        let (files, problems) = FileWalker.expand(arguments.positional)
        for problem in problems { standardError.line("consort dump: \(problem)") }
        var failures = problems.count
        for input in files {
            do {
                let file = try DICOMFile.read(path: input.path, options: options)
                if json {
                    standardOutput.line(CanonicalDump.record(file: file, name: input.name).serialized())
                } else {
                    HumanDump.write(file, name: input.name, width: width, warnings: arguments.flag("--warnings"))
                }
            } catch {
                failures += 1
                standardError.line("consort dump: \(input.name): \(error)")
                if json { standardOutput.line(CanonicalDump.errorRecord(name: input.name, error: error).serialized()) }
            }
            if standardOutput.failed { break }
        }
        standardOutput.flush()
        if failures > 0 {
            standardError.line("consort dump: \(failures) of \(files.count + problems.count) inputs could not be read")
            return .someFailed
        }
        return .success
    }
}

/// dcmdump-like text: `(0010,0010) PN [Smith^John]    # 10, PatientName`.
enum HumanDump {
    static func write(_ file: DICOMFile, name: String, width: Int, warnings: Bool) {
        standardOutput.line("# File: \(name)")
        let syntax = file.transferSyntaxUID ?? "none"
        let form = file.isPart10 ? "Part 10" : "bare data set"
        standardOutput.line("# \(form), transfer syntax \(syntax), read as \(file.isDeflated ? "deflated " : "")\(file.encoding)")
        if !file.meta.isEmpty {
            standardOutput.line("# File Meta Information")
            write(file.meta, depth: 0, width: width)
        }
        standardOutput.line("# Data set")
        write(file.dataSet, depth: 0, width: width)
        if let offset = file.pixelDataOffset {
            standardOutput.line("(7fe0,0010) -- Pixel Data at byte \(offset), not read")
        }
        if warnings {
            for warning in file.warnings { standardOutput.line("# warning: \(warning)") }
        }
        standardOutput.line("")
    }

    static func write(_ dataSet: DataSet, depth: Int, width: Int) {
        let indent = String(repeating: "  ", count: depth)
        for element in dataSet.elements {
            let tag = "(" + element.tag.hexString.prefix(4).lowercased() + "," + element.tag.hexString.suffix(4).lowercased() + ")"
            let keyword = keyword(for: element, in: dataSet)
            let length = element.length.map(String.init) ?? "u/l"
            switch element.value {
            case .sequence(let items):
                let what = "(Sequence with \(element.length == nil ? "undefined" : "explicit") length, \(items.count) item\(items.count == 1 ? "" : "s"))"
                standardOutput.line("\(indent)\(tag) SQ \(what.padding(to: 40))# \(length), \(keyword)")
                for (i, item) in items.enumerated() {
                    standardOutput.line("\(indent)  (fffe,e000) item \(i + 1), \(item.count) element\(item.count == 1 ? "" : "s")")
                    write(item, depth: depth + 2, width: width)
                }
            case .fragments(let fragments):
                let what = "(Encapsulated, \(fragments.count) fragment\(fragments.count == 1 ? "" : "s"))"
                standardOutput.line("\(indent)\(tag) \(element.vr) \(what.padding(to: 40))# \(length), \(keyword)")
            case .notLoaded(let offset, let count):
                let what = "(not loaded: \(count) bytes at \(offset))"
                standardOutput.line("\(indent)\(tag) \(element.vr) \(what.padding(to: 40))# \(length), \(keyword)")
            case .bytes:
                let shown = cut(display(element, in: dataSet), width)
                standardOutput.line("\(indent)\(tag) \(element.vr) \(shown.padding(to: 40))# \(length), \(keyword)")
            }
        }
    }

    static func keyword(for element: DataElement, in dataSet: DataSet) -> String {
        if let keyword = DataDictionary.keyword(for: element.tag) { return keyword }
        if element.tag.isPrivateCreator { return "PrivateCreator" }
        if element.tag.isGroupLength { return "GroupLength" }
        return element.tag.isPrivate ? "Private" : "Unknown"
    }

    static func display(_ element: DataElement, in dataSet: DataSet) -> String {
        guard case .bytes(let bytes) = element.value else { return "" }
        if bytes.isEmpty { return "(no value)" }
        let order = element.wireVR == .UN ? ByteOrder.littleEndian : dataSet.byteOrder
        let vr = element.vr
        switch vr {
        case .US, .SS, .UL, .SL, .SV, .UV:
            return element.integers(byteOrder: order).map(String.init).joined(separator: "\\")
        case .FL, .FD:
            return element.floats(byteOrder: order).map { "\($0)" }.joined(separator: "\\")
        case .AT:
            return element.tags(byteOrder: order).map(\.description).joined(separator: "\\")
        default:
            if vr.isText {
                return "[" + element.strings(characterSet: dataSet.characterSet).joined(separator: "\\") + "]"
            }
            let hex = bytes.prefix(16).map { byte -> String in
                let digits = Array("0123456789abcdef")
                return String([digits[Int(byte >> 4)], digits[Int(byte & 0xF)]])
            }
            return hex.joined(separator: "\\") + (bytes.count > 16 ? "..." : "")
        }
    }

    static func cut(_ text: String, _ width: Int) -> String {
        guard width > 0, text.count > width else { return text }
        return String(text.prefix(max(0, width - 3))) + "..."
    }
}
