import Foundation
import TestSupport
import Testing

/// What a receiver keeps is whole and never silently replaced (issue 14): a file cut short is
/// refused with where it ends — so the whole instance, sent later, is stored — and an instance
/// whose UID is held with other bytes is refused, kept aside for a person, and logged as an error.
@Suite("Whole files and conflicts", .serialized, .timeLimit(.minutes(5)))
struct IntegrityTests {
    /// A STOW-RS body of these instances, as a third-party client would send it.
    static func multipart(_ parts: [Data]) -> Data {
        var body = Data()
        for part in parts {
            body += Data("--b1\r\nContent-Type: application/dicom\r\n\r\n".utf8) + part + Data("\r\n".utf8)
        }
        return body + Data("--b1--\r\n".utf8)
    }

    static func stow(_ body: Data, to url: String, in folder: String) throws -> ProgramOutcome {
        let path = folder + "/body-\(UUID().uuidString)"
        try body.write(to: URL(fileURLWithPath: path))
        defer { try? FileManager.default.removeItem(atPath: path) }
        return try runProgram("/usr/bin/curl", [
            "-s", "--max-time", "60", "-w", "\n%{http_code}", "-H", "Content-Type: multipart/related; type=\"application/dicom\"; boundary=b1",
            "--data-binary", "@" + path, url + "/studies",
        ], timeout: 90)
    }

    static func sha256(_ path: String) throws -> String {
        let outcome = try runProgram("/usr/bin/sha256sum", [path], timeout: 60)
        return String(outcome.stdout.prefix(64))
    }

    /// A small synthetic CT study: its instance files, sorted.
    static func study(in folder: String, instances: Int = 3) throws -> [String] {
        #expect(try Run.consort("demo", "study", "--out", folder, "--instances", String(instances)).status == 0)
        let study = try #require(try FileManager.default.contentsOfDirectory(atPath: folder).first)
        return try FileManager.default.contentsOfDirectory(atPath: folder + "/" + study).sorted().map { "\(folder)/\(study)/\($0)" }
    }

    /// The scenario that was found: an instance cut inside its Pixel Data was stored "complete",
    /// and the whole instance was then refused for ever. Now the cut one is refused — at every
    /// kind of cut point — and the whole one is stored.
    @Test func aCutInstanceIsRefusedAndTheWholeOneIsThenStored() throws {
        let folder = try ScratchFolder()
        let files = try Self.study(in: folder.path + "/study", instances: 1)
        let whole = try Data(contentsOf: URL(fileURLWithPath: files[0]))
        let receiver = try ReceiverProcess(store: folder.path + "/inbox")
        defer { _ = receiver.stop() }
        // Inside the pixel data (near its start, middle, end), inside the header, at 132 bytes.
        let cuts = [whole.count - 1, whole.count - 100, whole.count / 2, whole.count - 8000, 600, 300, 132]
        for cut in cuts {
            let answer = try Self.stow(Self.multipart([whole.prefix(cut)]), to: receiver.url, in: folder.path)
            #expect(answer.stdout.hasSuffix("409"), "cut at \(cut) of \(whole.count): \(answer.stdout)")
            #expect(answer.stdout.lowercased().contains("the file ends at"), "cut at \(cut): the refusal does not say where the file ends: \(answer.stdout)")
        }
        #expect(TransferTests.files(under: receiver.store).isEmpty, "a cut instance was kept")
        let sent = try Run.program(Run.consort, ["send", receiver.url, files[0]])
        #expect(sent.status == 0, "\(sent.stdout)\(sent.stderr)")
        #expect(sent.stdout.contains("1 stored"), "\(sent.stdout)")
        let stored = TransferTests.files(under: receiver.store)
        #expect(stored.count == 1)
        #expect(try Data(contentsOf: URL(fileURLWithPath: receiver.store + "/" + stored[0])) == whole)
        let (_, log) = receiver.stop()
        #expect(log.contains("not a whole, readable DICOM file: Pixel Data (7FE0,0010) declares"), "\(log)")
    }

    /// Two valid files with one SOP Instance UID and different bytes: the second is refused with
    /// 409 naming both hashes, kept aside in the quarantine, logged at error level and listed;
    /// the held file is untouched.
    @Test func aConflictIsQuarantinedLoggedAndAnsweredWithBothHashes() throws {
        let folder = try ScratchFolder()
        let files = try Self.study(in: folder.path + "/study", instances: 1)
        let original = try Data(contentsOf: URL(fileURLWithPath: files[0]))
        // The same instance with one pixel changed: as valid as the first, and different.
        var altered = original
        altered[altered.count - 2] ^= 0xFF
        let alteredPath = folder.path + "/altered.dcm"
        try altered.write(to: URL(fileURLWithPath: alteredPath))
        let (heldHash, newHash) = (try Self.sha256(files[0]), try Self.sha256(alteredPath))
        let store = folder.path + "/inbox"
        let receiver = try ReceiverProcess(store: store)
        #expect(try Run.program(Run.consort, ["send", receiver.url, files[0]]).status == 0)
        let stored = try #require(TransferTests.files(under: store).first)
        for attempt in 1...2 {
            let conflict = try Run.program(Run.consort, ["send", receiver.url, alteredPath])
            #expect(conflict.status == 1, "attempt \(attempt)")
            #expect(conflict.stdout.contains("0 stored, 0 already present, 0 to retry, 1 refused"), "\(conflict.stdout)")
            #expect(conflict.stderr.contains("CONFLICT") && conflict.stderr.contains(heldHash) && conflict.stderr.contains(newHash),
                "the refusal must name both hashes: \(conflict.stderr)")
        }
        // A third-party client sees the 409 and the same words.
        let raw = try Self.stow(Self.multipart([altered]), to: receiver.url, in: folder.path)
        #expect(raw.stdout.hasSuffix("409") && raw.stdout.contains(heldHash) && raw.stdout.contains(newHash), "\(raw.stdout)")
        // The held file is untouched; the newcomer is kept aside, once however often it came.
        #expect(try Data(contentsOf: URL(fileURLWithPath: store + "/" + stored)) == original)
        let study = String(stored.split(separator: "/")[0])
        let quarantined = try FileManager.default.contentsOfDirectory(atPath: store + "/.quarantine/" + study)
        #expect(quarantined.count == 1, "\(quarantined)")
        #expect(quarantined.first?.contains(newHash) == true)
        #expect(try Data(contentsOf: URL(fileURLWithPath: store + "/.quarantine/\(study)/\(quarantined[0])")) == altered)
        #expect(TransferTests.files(under: store) == [stored], "the quarantine must not be served as part of the store")
        let (_, log) = receiver.stop()
        #expect(log.contains("error: request") && log.contains("CONFLICT") && log.contains("kept aside"), "\(log)")
        // Listed for a person, with both hashes; exit 1 while anything waits.
        let listed = try Run.consort("receive", "--quarantined", "--store", store)
        #expect(listed.status == 1)
        #expect(listed.stdout.contains(heldHash) && listed.stdout.contains(newHash) && listed.stdout.contains("1 conflicting instance"), "\(listed.stdout)")
        // And a receiver starting on the store says so at once.
        let next = try ReceiverProcess(store: store)
        let (_, nextLog) = next.stop()
        #expect(nextLog.contains("1 conflicting instance kept aside"), "\(nextLog)")
        // An empty quarantine: exit 0.
        let none = try Run.consort("receive", "--quarantined", "--store", folder.path + "/empty")
        #expect(none.status == 0)
    }

    /// `consort send` checks each whole file before sending: a cut one is reported unreadable
    /// with where it ends, and never reaches the peer; the rest go.
    @Test func aCutFileIsNeverSent() throws {
        let folder = try ScratchFolder()
        let files = try Self.study(in: folder.path + "/study", instances: 3)
        let whole = try Data(contentsOf: URL(fileURLWithPath: files[1]))
        try whole.prefix(whole.count - 4096).write(to: URL(fileURLWithPath: files[1]))
        let receiver = try ReceiverProcess(store: folder.path + "/inbox")
        defer { _ = receiver.stop() }
        let sent = try Run.program(Run.consort, ["send", receiver.url, folder.path + "/study"])
        #expect(sent.status == 1)
        #expect(sent.stdout.contains("2 stored, 0 already present, 0 to retry, 0 refused, 1 unreadable, of 3"), "\(sent.stdout)")
        #expect(sent.stderr.contains((files[1] as NSString).lastPathComponent + ": not sent") && sent.stderr.contains("the file ends at"), "\(sent.stderr)")
        #expect(TransferTests.files(under: receiver.store).count == 2)
        let (_, log) = receiver.stop()
        #expect(log.contains("2 stored, 0 refused") && !log.contains("refused 2."), "the cut file reached the receiver: \(log)")
    }

    /// Durable before visible: strace shows every instance's staged file made durable after it
    /// was created and before it is linked to its name — by its own fsync in a request of a few
    /// instances, by a syncfs of its filesystem in a larger batch — and the study folder fsynced
    /// after the links. A receiver that skipped the barrier would acknowledge instances a power
    /// cut could lose; no other test could see that.
    @Test func eachInstanceIsMadeDurableBeforeItIsNamed() throws {
        let strace = try Run.require("strace", package: "strace")
        let folder = try ScratchFolder()
        // Requests of 2 (under the receiver's own-fsync limit, `StowIngest.ownFsyncAtMost`, 4)
        // and of 6 (over it).
        #expect(try Run.consort("synth", "--out", folder.path + "/few", "--instances", "6", "--seed", "11").status == 0)
        #expect(try Run.consort("synth", "--out", folder.path + "/batch", "--instances", "6", "--seed", "12").status == 0)
        // One trace file a thread (-ff): a request is received, made durable and linked by one
        // thread, and its lines are never split by another's ("<unfinished ...>").
        let traces = folder.path + "/traces"
        try FileManager.default.createDirectory(atPath: traces, withIntermediateDirectories: true)
        let store = folder.path + "/inbox"
        let receiver = try ReceiverProcess(
            store: store, launcher: [strace, "-f", "-ff", "-qq", "-e", "trace=openat,syncfs,link,fsync", "-o", traces + "/trace"])
        for (study, batch) in [("few", "2"), ("batch", "6")] {
            let sent = try Run.program(Run.consort, ["send", receiver.url, folder.path + "/" + study, "--batch", batch, "--connections", "1"])
            #expect(sent.status == 0, "\(sent.stderr)")
        }
        // SIGTERM to the receiver itself (strace's child): strace then exits with its status.
        let children = try String(contentsOfFile: "/proc/\(receiver.program.pid)/task/\(receiver.program.pid)/children", encoding: .utf8)
        let receiverPID = try #require(children.split(separator: " ").first.flatMap { Int32($0) }, "strace has no child")
        kill(receiverPID, SIGTERM)
        let (status, _) = try receiver.program.waitForExit(within: 30)
        #expect(status == 0, "\(receiver.program.log)")
        var links = 0, ownFsyncs = 0, syncfsLinks = 0, folderSyncsAfterLinks = 0, inboundSyncs = 0
        for name in try FileManager.default.contentsOfDirectory(atPath: traces) {
            let lines = try String(contentsOfFile: traces + "/" + name, encoding: .utf8).split(separator: "\n").map(String.init)
            // Which path each descriptor was opened on: every open counts, as the next open after
            // a close reuses the number.
            var created: [String: Int] = [:], durableAt: [String: Int] = [:], open: [String: String] = [:]
            var lastSyncfs = -1, linkedSinceFolderSync = false
            for (index, line) in lines.enumerated() {
                if line.hasPrefix("openat("), let path = line.split(separator: "\"").dropFirst().first {
                    if let fd = line.split(separator: "=").last?.trimmingCharacters(in: .whitespaces) { open[fd] = String(path) }
                    if path.contains("/.staging/part-") && line.contains("O_CREAT") { created[String(path)] = index }
                } else if line.hasPrefix("syncfs(") && line.hasSuffix("= 0") {
                    lastSyncfs = index
                } else if line.hasPrefix("fsync("), line.hasSuffix("= 0"), let path = open[String(line.dropFirst("fsync(".count).prefix(while: \.isNumber))] {
                    if path.contains("/.staging/part-") {
                        durableAt[path] = index
                        ownFsyncs += 1
                    } else if path.hasPrefix(store + "/") && linkedSinceFolderSync {
                        folderSyncsAfterLinks += 1
                        linkedSinceFolderSync = false
                    } else if path == store {
                        inboundSyncs += 1
                    }
                } else if line.hasPrefix("link(\""), line.hasSuffix("= 0"), let staged = line.split(separator: "\"").dropFirst().first {
                    links += 1
                    linkedSinceFolderSync = true
                    let made = try #require(created[String(staged)], "link of a file not seen created: \(line)")
                    let own = durableAt[String(staged)].map { $0 > made } ?? false
                    if !own { syncfsLinks += 1 }
                    #expect(own || lastSyncfs > made, "linked before it was made durable: \(line)")
                }
            }
        }
        #expect(links == 12, "\(links) links in the traces")
        // The three requests of two by their files' own fsyncs; the request of six by a syncfs.
        #expect(ownFsyncs == 6 && syncfsLinks == 6, "own fsyncs \(ownFsyncs), linked after a syncfs \(syncfsLinks)")
        // Each of the four requests' study folder fsynced after its new names.
        #expect(folderSyncsAfterLinks == 4, "\(folderSyncsAfterLinks) study folders fsynced after their links")
        // Each new study folder's own name in the inbound folder: once a study, by the request
        // that made it.
        #expect(inboundSyncs == 2, "the inbound folder fsynced \(inboundSyncs) times for two new study folders")
    }
}
