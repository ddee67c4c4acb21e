import Foundation
import Testing

@testable import ArchiveWatch
import TestSupport

#if canImport(Glibc)
    import Glibc
#endif

/// The catch-up scanner on real folders: every file once, with size and time; exclusions;
/// no symlink followed; its rate kept, measured on an injected clock that only its injected
/// sleep advances (no real sleeping, no timing assertions).
@Suite("Catch-up scans", .timeLimit(.minutes(3)))
struct CatchUpScannerTests {
    /// A clock that moves only when the scanner sleeps.
    final class FakeClock: @unchecked Sendable {
        private let lock = NSLock()
        private var seconds = 1000.0
        private var sleeps = 0

        var now: Double { lock.withLock { seconds } }
        var sleepCount: Int { lock.withLock { sleeps } }

        func sleep(_ duration: Double) {
            lock.withLock {
                seconds += duration
                sleeps += 1
            }
        }
    }

    static func scanAll(_ scanner: CatchUpScanner) -> [ScannedFile] {
        var files: [ScannedFile] = []
        while let batch = scanner.nextBatch() { files += batch }
        return files
    }

    @Test func everyFileIsYieldedOnceWithItsSizeAndModificationTime() throws {
        let folder = try TemporaryFolder()
        var expected: [String: Int] = [:]
        for (index, relative) in ["a", "a/b", "a/b/c", "d"].enumerated() {
            let made = try folder.folder(relative)
            for number in 0..<3 {
                let text = String(repeating: "x", count: index * 10 + number)
                try TestFiles.write(made + "/\(number).dcm", text)
                expected[made + "/\(number).dcm"] = text.utf8.count
            }
        }
        try TestFiles.write(folder.path + "/top.dcm", "DICM")
        expected[folder.path + "/top.dcm"] = 4
        try TestFiles.write(try folder.folder(".staging") + "/hidden.dcm")
        try TestFiles.write(try folder.folder("state") + "/excluded.dcm")
        try TestFiles.write(folder.path + "/a/.dat.nosync1.x")

        let scanner = CatchUpScanner(roots: [folder.path], excluding: [folder.path + "/state"], filesPerSecond: 1e9, batchSize: 4)
        let files = Self.scanAll(scanner)
        #expect(files.count == expected.count)
        #expect(Dictionary(files.map { ($0.path, Int($0.size)) }, uniquingKeysWith: { first, _ in first }) == expected)
        let attributes = try FileManager.default.attributesOfItem(atPath: folder.path + "/top.dcm")
        let modified = try #require(attributes[.modificationDate] as? Date).timeIntervalSince1970
        #expect(abs((files.first { $0.path == folder.path + "/top.dcm" }?.mtimeSeconds ?? 0) - modified) < 0.001)
        #expect(scanner.progress.filesSeen == expected.count)
        #expect(scanner.progress.foldersSeen == 5)
        #expect(scanner.progress.foldersWaiting == 0)
        #expect(scanner.nextBatch() == nil)
    }

    @Test func scannerKeepsToItsRateBySleepingBetweenBatches() throws {
        let folder = try TemporaryFolder()
        for series in 0..<5 {
            let made = try folder.folder("study/series\(series)")
            for number in 0..<50 { try TestFiles.write(made + "/\(number).dcm") }
        }
        let clock = FakeClock()
        let rate = 50.0
        let batchSize = 10
        let scanner = CatchUpScanner(
            roots: [folder.path], filesPerSecond: rate, batchSize: batchSize,
            clock: { clock.now }, sleep: { clock.sleep($0) })
        var yielded = 0
        var seen: Set<String> = []
        while let batch = scanner.nextBatch() {
            #expect(batch.count <= batchSize)
            yielded += batch.count
            seen.formUnion(batch.map(\.path))
            let elapsed = clock.now - (scanner.progress.startedAt ?? 0)
            // Never ahead of the rate by more than one batch.
            #expect(Double(yielded) <= rate * elapsed + Double(batchSize) + 1e-9, "\(yielded) files after \(elapsed) s")
        }
        #expect(yielded == 250)
        #expect(seen.count == 250)
        // 25 batches: the first at once, each later one 10 / 50 s after the one before.
        #expect(abs(scanner.progress.sleptSeconds - 24 * 0.2) < 1e-6)
        #expect(clock.sleepCount == 24)
        #expect(abs(scanner.lag - 24 * 0.2) < 1e-6)
    }

    @Test func symlinksAreNeverFollowedOutOfTheRoot() throws {
        let folder = try TemporaryFolder()
        let root = try folder.folder("root")
        let outside = try folder.folder("outside")
        try TestFiles.write(outside + "/elsewhere.dcm")
        try TestFiles.write(root + "/inside.dcm")
        #expect(symlink(outside, root + "/link-to-folder") == 0)
        #expect(symlink(outside + "/elsewhere.dcm", root + "/link-to-file.dcm") == 0)
        #expect(symlink(root, root + "/loop") == 0)
        let files = Self.scanAll(CatchUpScanner(roots: [root], filesPerSecond: 1e9))
        #expect(files.map(\.path) == [root + "/inside.dcm"])
    }

    @Test func unreadableRootIsAProblemAndTheOtherRootsAreScanned() throws {
        let folder = try TemporaryFolder()
        let present = try folder.folder("present")
        try TestFiles.write(present + "/a.dcm")
        let missing = folder.path + "/missing"
        let scanner = CatchUpScanner(roots: [missing, present], filesPerSecond: 1e9)
        let files = Self.scanAll(scanner)
        #expect(files.map(\.path) == [present + "/a.dcm"])
        let problems = scanner.takeProblems()
        #expect(problems.count == 1)
        #expect(problems.first?.contains(missing) == true)
        #expect(scanner.takeProblems().isEmpty)
        #expect(scanner.progress.problems == 1)
    }
}
