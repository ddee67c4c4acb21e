import Foundation
import Testing

@testable import Durability
import TestSupport

#if canImport(Glibc)
    import Glibc
#endif

/// DurableFile's promise, on real files in a fresh folder: the content lands whole under its name
/// or not at all, nothing temporary is left behind either way, the mode asked for is the mode
/// given, the folder is fsynced after the rename, and every failure names its path and errno.
@Suite("Durable files")
struct DurableFileTests {
    struct Refused: Error, Equatable {}

    static func contents(_ path: String) -> [UInt8]? { FileManager.default.contents(atPath: path).map { [UInt8]($0) } }
    static func mode(_ path: String) -> mode_t {
        var status = stat()
        return stat(path, &status) == 0 ? status.st_mode & 0o7777 : 0
    }

    @Test func contentLandsWholeAndReplacesWhatWasThere() throws {
        let folder = try TemporaryFolder()
        let target = folder.path + "/study.dcm"
        let first = (0..<300_000).map { UInt8(truncatingIfNeeded: $0) }
        try DurableFile.write(first, to: target)
        #expect(Self.contents(folder.path + "/study.dcm") == first)
        #expect(folder.names() == ["study.dcm"])  // no temporary left behind
        try DurableFile.write(Array("second".utf8), to: target)
        #expect(Self.contents(folder.path + "/study.dcm") == Array("second".utf8))
        #expect(folder.names() == ["study.dcm"])
    }

    @Test func aBodyWritesIntoTheOpenDescriptorAtItsOwnPace() throws {
        let folder = try TemporaryFolder()
        try DurableFile.write(to: folder.path + "/key.pem") { descriptor in
            for piece in ["-----BEGIN", " KEY-----\n", "-----END KEY-----\n"] {
                try DurableFile.writeAll(Array(piece.utf8), to: descriptor, path: "key.pem")
            }
        }
        #expect(Self.contents(folder.path + "/key.pem") == Array("-----BEGIN KEY-----\n-----END KEY-----\n".utf8))
        #expect(folder.names() == ["key.pem"])
    }

    @Test func aFailingBodyLeavesTheTargetAsItWasAndNoTemporaryFile() throws {
        let folder = try TemporaryFolder()
        let target = folder.path + "/crl.pem"
        try DurableFile.write(Array("old".utf8), to: target)
        #expect(throws: Refused.self) {
            try DurableFile.write(to: target) { descriptor in
                try DurableFile.writeAll(Array("half of the new".utf8), to: descriptor, path: target)
                throw Refused()
            }
        }
        #expect(Self.contents(folder.path + "/crl.pem") == Array("old".utf8))
        #expect(folder.names() == ["crl.pem"])
    }

    @Test func aFailedRenameRemovesTheTemporaryFile() throws {
        let folder = try TemporaryFolder()
        // A folder where the file should go: rename(2) of a file over a folder fails (EISDIR).
        try FileManager.default.createDirectory(atPath: folder.path + "/taken", withIntermediateDirectories: false)
        let error = try #require(throws: DurableFileError.self) { try DurableFile.write(Array("x".utf8), to: folder.path + "/taken") }
        #expect(error.step == .rename(to: folder.path + "/taken"))
        #expect(error.code == EISDIR)
        #expect(folder.names() == ["taken"])
    }

    @Test func aFolderThatDoesNotExistIsNamedInTheError() throws {
        let folder = try TemporaryFolder()
        let missing = folder.path + "/missing"
        let error = try #require(throws: DurableFileError.self) { try DurableFile.write(Array("x".utf8), to: missing + "/out.dcm") }
        #expect(error.step == .createTemporary)
        #expect(error.path == missing)
        #expect(error.code == ENOENT)
        #expect(error.description == "cannot create a temporary file in \(missing): No such file or directory (errno 2)")
        #expect(folder.names().isEmpty)
    }

    @Test(arguments: [(nil, 0o600), (0o600, 0o600), (0o640, 0o640), (0o644, 0o644)] as [(mode_t?, mode_t)])
    func theModeAskedForIsTheModeGiven(asked: mode_t?, expected: mode_t) throws {
        let folder = try TemporaryFolder()
        try DurableFile.write(Array("x".utf8), to: folder.path + "/file", mode: asked)
        #expect(Self.mode(folder.path + "/file") == expected)
    }

    @Test func theFolderIsFsyncedAfterTheRename() throws {
        let folder = try TemporaryFolder()
        var synced: [(path: String, contentThen: [UInt8]?)] = []
        try DurableFile.write(Array("new".utf8), to: folder.path + "/list.csv", mode: nil) { path, descriptor in
            synced.append((path, Self.contents(folder.path + "/list.csv")))
            return DurableFile.fsyncFolder(path, descriptor)
        }
        #expect(synced.count == 1)
        #expect(synced.first?.path == folder.path)
        #expect(synced.first?.contentThen == Array("new".utf8))  // the new name was there to be made durable
    }

    @Test func aFailedFsyncOfTheFolderIsThrown() throws {
        let folder = try TemporaryFolder()
        let error = try #require(throws: DurableFileError.self) {
            try DurableFile.write(Array("new".utf8), to: folder.path + "/crl.pem", mode: nil) { _, _ in EIO }
        }
        #expect(error.step == .syncFolder)
        #expect(error.description == "fsync of the folder \(folder.path) failed: Input/output error (errno 5)")
        // In place, but not known durable: the caller must not acknowledge it; nothing else is left.
        #expect(folder.names() == ["crl.pem"])
    }

    @Test func syncFolderNamesAFolderItCannotOpen() throws {
        let folder = try TemporaryFolder()
        let error = try #require(throws: DurableFileError.self) { try DurableFile.syncFolder(folder.path + "/gone") }
        #expect(error.step == .openFolder)
        #expect(error.description == "cannot open the folder \(folder.path)/gone: No such file or directory (errno 2)")
        try DurableFile.syncFolder(folder.path)
    }

    @Test func aTemporaryFileIsMadeInTheFolderWithItsPrefixAndMode() throws {
        let folder = try TemporaryFolder()
        let file = try DurableFile.createTemporary(in: folder.path, prefix: "part-", mode: 0o640)
        defer { close(file.descriptor) }
        let name = String(file.path.dropFirst(folder.path.count + 1))
        #expect(file.path.hasPrefix(folder.path + "/part-") && name.count == "part-".count + 6)
        #expect(folder.names() == [name])
        #expect(Self.mode(file.path) == 0o640)
        #expect(fcntl(file.descriptor, F_GETFD) & FD_CLOEXEC != 0)
    }

    @Test(arguments: [("a/b/c.dcm", "a/b", "c.dcm"), ("c.dcm", ".", "c.dcm"), ("/c.dcm", "/", "c.dcm"), ("/srv/in/c", "/srv/in", "c")])
    func aPathIsSplitIntoItsFolderAndName(path: String, folder: String, name: String) {
        let split = DurableFile.split(path)
        #expect(split.folder == folder)
        #expect(split.name == name)
    }
}
