import Foundation
import TestSupport
import Testing

/// A receiver acknowledges an instance only once its name survives a crash (issue 23): when the
/// fsync of its study folder, or of the inbound folder for a study folder it made, fails, the
/// instances are refused with 0xA700 (out of resources: the sender retries), nothing is kept
/// under their names, and the log names the folder and the errno. The failure is injected into a
/// real `consort receive` by an LD_PRELOAD shim (Tests/Support/fail-folder-fsync.c): EIO from
/// fsync of the folders matching a pattern, as a dying disk would give.
@Suite("Folder fsync failures refuse", .serialized, .timeLimit(.minutes(5)))
struct FolderFsyncFailureTests {
    /// What became of a three-instance study sent to a receiver whose folders matching a pattern
    /// cannot be fsynced: the study's files, what `consort send` said and the receiver's log.
    struct Attempt {
        let store: String
        let study: String
        let files: [String]
        let sent: Outcome
        let log: String
    }

    static func send(failing pattern: String, in folder: ScratchFolder) throws -> Attempt {
        let shim = try PreloadShim("fail-folder-fsync")
        let (store, study) = (folder.path + "/inbox", folder.path + "/study")
        let files = try IntegrityTests.study(in: study, instances: 3)
        let receiver = try ReceiverProcess(store: store, environment: shim.environment(["CONSORT_FAIL_FSYNC_DIR": pattern]))
        let sent = try Run.program(Run.consort, ["send", receiver.url, study])
        let (status, log) = receiver.stop()
        #expect(status == 0, "\(log)")
        return Attempt(store: store, study: study, files: files, sent: sent, log: log)
    }

    /// The instances refused and not kept: what every failing case must show.
    static func expectRefusedAndNotKept(_ sent: Outcome, store: String, log: String) {
        #expect(sent.status == 1, "\(sent.stdout)\(sent.stderr)")
        #expect(sent.stdout.contains("0 stored, 0 already present, 3 to retry, 0 refused, 0 unreadable, of 3"), "\(sent.stdout)")
        #expect(sent.stderr.components(separatedBy: "worth retrying: failure reason 0xA700").count == 4, "\(sent.stderr)")
        #expect(log.contains("0 stored, 3 refused"), "\(log)")
        #expect(TransferTests.files(under: store).isEmpty, "a refused instance was kept: \(TransferTests.files(under: store))")
    }

    /// The same study sent again to a receiver on the same store without the fault is stored
    /// afresh — placed and made durable, not found "already present" under a name never made
    /// durable — and byte for byte.
    static func expectStoredAfresh(_ files: [String], store: String, study folder: String) throws {
        let receiver = try ReceiverProcess(store: store)
        let sent = try Run.program(Run.consort, ["send", receiver.url, folder])
        _ = receiver.stop()
        #expect(sent.stdout.contains("3 stored, 0 already present, 0 to retry"), "\(sent.stdout)\(sent.stderr)")
        // Stored under their SOP Instance UIDs, not the sender's file names: compared as a set.
        let stored = try TransferTests.files(under: store).map { try Data(contentsOf: URL(fileURLWithPath: store + "/" + $0)) }
        #expect(stored.count == 3)
        #expect(Set(stored) == Set(try files.map { try Data(contentsOf: URL(fileURLWithPath: $0)) }), "the stored bytes differ from those sent")
    }

    @Test func aStudyFolderThatCannotBeFsyncedRefusesItsInstances() throws {
        let folder = try ScratchFolder()
        let attempt = try Self.send(failing: "*/inbox/[0-9]*", in: folder)
        Self.expectRefusedAndNotKept(attempt.sent, store: attempt.store, log: attempt.log)
        let studyUID = ((attempt.files[0] as NSString).deletingLastPathComponent as NSString).lastPathComponent
        #expect(attempt.log.contains("fail-folder-fsync: fsync("), "the shim did not fire: \(attempt.log)")
        #expect(
            attempt.log.contains("could not be made durable: fsync of the folder \(attempt.store)/\(studyUID) failed: Input/output error (errno 5)"),
            "\(attempt.log)")
        try Self.expectStoredAfresh(attempt.files, store: attempt.store, study: attempt.study)
    }

    @Test func aNewStudyFolderWhoseNameCannotBeFsyncedRefusesItsInstances() throws {
        let folder = try ScratchFolder()
        let attempt = try Self.send(failing: "*/inbox", in: folder)
        Self.expectRefusedAndNotKept(attempt.sent, store: attempt.store, log: attempt.log)
        #expect(attempt.log.contains("could not be made durable: fsync of the folder \(attempt.store) failed: Input/output error (errno 5)"), "\(attempt.log)")
        // The study folder went with them: a later request makes it again, and fsyncs inbound.
        let left = try FileManager.default.contentsOfDirectory(atPath: attempt.store).filter { !$0.hasPrefix(".") }
        #expect(left.isEmpty, "left in the store: \(left)")
        try Self.expectStoredAfresh(attempt.files, store: attempt.store, study: attempt.study)
    }

    /// The control: the shim loaded, its pattern matching no folder, changes nothing — so the
    /// refusals above come from the failures it makes, not from its presence.
    @Test func theShimWithoutAMatchingFolderChangesNothing() throws {
        let folder = try ScratchFolder()
        let attempt = try Self.send(failing: "*/no-such-folder", in: folder)
        #expect(attempt.log.contains("fail-folder-fsync: loaded"), "the shim was not loaded: \(attempt.log)")
        #expect(!attempt.log.contains("fail-folder-fsync: fsync("), "\(attempt.log)")
        #expect(attempt.sent.status == 0, "\(attempt.sent.stdout)\(attempt.sent.stderr)")
        #expect(attempt.sent.stdout.contains("3 stored, 0 already present, 0 to retry"), "\(attempt.sent.stdout)")
        #expect(TransferTests.files(under: attempt.store).count == 3)
    }
}
