import Foundation
import TestSupport
import Testing

/// `consort receive` and `consort send`, the binaries, talking mutual TLS on loopback, with curl
/// as a third-party client for what our sender will not do (malformed bodies, no certificate).
@Suite("consort send and receive", .serialized, .timeLimit(.minutes(5)))
struct TransferTests {
    static func files(under folder: String) -> [String] {
        (FileManager.default.enumerator(atPath: folder)?.allObjects as? [String] ?? []).filter { $0.hasSuffix(".dcm") && !$0.hasPrefix(".") }.sorted()
    }

    @Test func instancesArriveWholeOnceAndOnlyOnce() throws {
        let pki = try TestPKI()
        let folder = try ScratchFolder()
        let fixtures = try makeFixtures(in: folder.path + "/fixtures")
        let sendable = ["explicit_le.dcm", "implicit_le.dcm", "explicit_be.dcm", "deflated.dcm", "jpeg_baseline_bot.dcm", "charset_ISO_IR_192.dcm"]
        let receiver = try ReceiverProcess(store: folder.path + "/inbox", pki: pki)
        let tls = ["--cert", pki.clientCertificate, "--key", pki.clientKey, "--ca", pki.ca]
        // One instance a request over three connections at once: six requests, in parallel.
        let sent = try Run.program(Run.consort, ["send", receiver.url] + sendable.map { fixtures + "/" + $0 } + tls + ["--batch", "1", "--connections", "3"])
        #expect(sent.status == 0, "\(sent.stderr)")
        #expect(sent.stdout.contains("6 stored, 0 already present, 0 to retry, 0 refused"), "\(sent.stdout)")
        let received = Self.files(under: receiver.store)
        #expect(received.count == 6)
        // Byte for byte what was sent.
        let sentDigests = Set(try sendable.map { try Data(contentsOf: URL(fileURLWithPath: fixtures + "/" + $0)) })
        let storedDigests = Set(try received.map { try Data(contentsOf: URL(fileURLWithPath: receiver.store + "/" + $0)) })
        #expect(sentDigests == storedDigests)
        // Again, with one new instance among them: acknowledged, no second copy, and the sender
        // is told which ones the receiver held before.
        let again = try Run.program(Run.consort, ["send", receiver.url] + (sendable + ["rle.dcm"]).map { fixtures + "/" + $0 } + tls + ["--verbose"])
        #expect(again.status == 0, "\(again.stderr)")
        #expect(again.stdout.contains("1 stored, 6 already present, 0 to retry, 0 refused, 0 unreadable, of 7"), "\(again.stdout)")
        #expect(again.stderr.contains("explicit_le.dcm (") && again.stderr.contains("): already present"), "\(again.stderr)")
        #expect(again.stderr.contains("rle.dcm (") && again.stderr.contains("): stored"), "\(again.stderr)")
        #expect(Self.files(under: receiver.store).count == 7)
        let (status, log) = receiver.stop()
        #expect(status == 0)
        #expect(log.contains("from RSCH: stored"))
        #expect(log.contains("already held"))
        #expect(log.contains("stopping"))
    }

    @Test func refusedPartsAndBrokenBodiesLeaveNothingBehind() throws {
        let pki = try TestPKI()
        let folder = try ScratchFolder()
        let receiver = try ReceiverProcess(store: folder.path + "/inbox", pki: pki)
        defer { _ = receiver.stop() }
        let tls = ["--cacert", pki.ca, "--cert", pki.clientCertificate, "--key", pki.clientKey]
        // A part that is not DICOM: refused with a reason, 409 (nothing stored).
        let notDICOM = folder.path + "/not.bin"
        try "--b1\r\nContent-Type: application/dicom\r\n\r\nthis is not DICOM\r\n--b1--\r\n".write(toFile: notDICOM, atomically: true, encoding: .utf8)
        let refused = try runProgram("/usr/bin/curl", ["-s", "--max-time", "60", "-w", "\n%{http_code}", "-H", "Content-Type: multipart/related; type=\"application/dicom\"; boundary=b1", "--data-binary", "@\(notDICOM)", receiver.url + "/studies"] + tls)
        #expect(refused.stdout.hasSuffix("409"), "\(refused.stdout)")
        #expect(refused.stdout.contains("\"00081197\""))
        // A body that breaks off inside a part: 400, and the half-received part is gone.
        let truncated = folder.path + "/cut.bin"
        try "--b1\r\nContent-Type: application/dicom\r\n\r\nDICM and then nothing".write(toFile: truncated, atomically: true, encoding: .utf8)
        let cut = try runProgram("/usr/bin/curl", ["-s", "--max-time", "60", "-w", "\n%{http_code}", "-H", "Content-Type: multipart/related; type=\"application/dicom\"; boundary=b1", "--data-binary", "@\(truncated)", receiver.url + "/studies"] + tls)
        #expect(cut.stdout.hasSuffix("400"), "\(cut.stdout)")
        // Not multipart at all: 415.
        let wrongType = try runProgram("/usr/bin/curl", ["-s", "--max-time", "60", "-o", "/dev/null", "-w", "%{http_code}", "-H", "Content-Type: application/json", "--data", "{}", receiver.url + "/studies"] + tls)
        #expect(wrongType.stdout == "415")
        // No client certificate: no answer at all.
        let anonymous = try runProgram("/usr/bin/curl", ["-s", "--max-time", "60", "--cacert", pki.ca, receiver.url + "/studies"])
        #expect(anonymous.status != 0)
        #expect(Self.files(under: receiver.store).isEmpty)
        #expect((try? FileManager.default.contentsOfDirectory(atPath: receiver.store + "/.staging"))?.filter { $0 != ".lock" }.isEmpty ?? true)
    }

    @Test func plainHTTPIsOnlyForLoopback() throws {
        let outcome = try Run.consort("receive", "--listen", "0.0.0.0:0", "--store", "/tmp/consort-never")
        #expect(outcome.status == 2)
        #expect(outcome.stderr.contains("plain HTTP is for a local PACS"))
        let partial = try Run.consort("send", "https://localhost:1", "/tmp", "--cert", "x.pem")
        #expect(partial.status == 2)
        let noConnections = try Run.consort("send", "http://127.0.0.1:1", "/tmp", "--connections", "0")
        #expect(noConnections.status == 2)
        #expect(noConnections.stderr.contains("--connections"))
    }

    /// Files that are not DICOM, and paths that do not exist, are reported and counted; the
    /// rest is sent; the exit status says not everything went.
    @Test func unreadableInputsAreReportedAndTheRestIsSent() throws {
        let folder = try ScratchFolder()
        let fixtures = try makeFixtures(in: folder.path + "/fixtures")
        try "not DICOM".write(toFile: folder.path + "/notes.dcm", atomically: true, encoding: .utf8)
        let receiver = try ReceiverProcess(store: folder.path + "/inbox")
        defer { _ = receiver.stop() }
        let outcome = try Run.program(
            Run.consort, ["send", receiver.url, fixtures + "/explicit_le.dcm", folder.path + "/notes.dcm", folder.path + "/missing.dcm", "--batch", "2"])
        #expect(outcome.status == 1)
        #expect(outcome.stdout.contains("1 stored, 0 already present, 0 to retry, 0 refused, 2 unreadable, of 3"), "\(outcome.stdout)")
        #expect(outcome.stderr.contains("notes.dcm: not sent"), "\(outcome.stderr)")
        #expect(outcome.stderr.contains("missing.dcm"), "\(outcome.stderr)")
        #expect(Self.files(under: receiver.store).count == 1)
    }

    @Test func aPeerThatIsDownIsReportedAsWorthRetrying() throws {
        let folder = try ScratchFolder()
        let fixtures = try makeFixtures(in: folder.path + "/fixtures")
        let outcome = try Run.consort("send", "http://127.0.0.1:1", fixtures + "/explicit_le.dcm")
        #expect(outcome.status == 1)
        #expect(outcome.stderr.contains("not stored, worth retrying"))
        #expect(outcome.stdout.contains("0 stored, 0 already present, 1 to retry"))
    }

    /// Whether this machine lets an ordinary process mount a filesystem of its own (a user and
    /// mount namespace): how the full-disk test gets a small disk without root.
    static let canMountPrivately: Bool = {
        (try? runProgram("/usr/bin/unshare", ["--user", "--map-root-user", "--mount", "/bin/true"]).status) == 0
    }()

    /// A full disk: the receiver, its store on a 3 MB tmpfs of its own, is sent 6 MB in one
    /// request. It answers 503 (worth retrying), keeps nothing of that request, and once the
    /// staged parts are gone it has room again and stores a smaller request whole.
    @Test func aFullDiskIsA503AndLeavesNothingBehind() throws {
        try Skip.unless(Self.canMountPrivately, "needs unshare --user --mount (user namespaces), which this machine refuses")
        let folder = try ScratchFolder()
        // 12 CT-sized instances of 525 KB.
        #expect(try Run.consort("demo", "study", "--out", folder.path + "/study", "--instances", "12", "--size", "512x512").status == 0)
        let store = folder.path + "/inbox"
        try FileManager.default.createDirectory(atPath: store, withIntermediateDirectories: true)
        // The shell mounts the small disk over the store, runs the receiver, passes on SIGTERM,
        // and lists what the store holds once the receiver has stopped (the mount goes with it).
        let script = """
            mount -t tmpfs -o size=3m consort-full "$STORE" || exit 97
            "$@" & pid=$!
            trap 'kill -TERM $pid' TERM
            while kill -0 $pid 2>/dev/null; do wait $pid; status=$?; done
            find "$STORE" -type f > "$LISTING"
            exit $status
            """
        let listing = folder.path + "/listing"
        let receiver = try ReceiverProcess(
            store: store, launcher: ["/usr/bin/unshare", "--user", "--map-root-user", "--mount", "/bin/sh", "-c", script, "sh"],
            environment: ["STORE": store, "LISTING": listing])
        let files = try FileManager.default.contentsOfDirectory(atPath: folder.path + "/study").flatMap { study in
            try FileManager.default.contentsOfDirectory(atPath: folder.path + "/study/" + study).map { folder.path + "/study/\(study)/\($0)" }
        }.sorted()
        #expect(files.count == 12)
        let tooMuch = try Run.program(Run.consort, ["send", receiver.url] + files + ["--batch", "12", "--connections", "1"])
        #expect(tooMuch.status == 1)
        #expect(tooMuch.stdout.contains("0 stored, 0 already present, 12 to retry"), "\(tooMuch.stdout)")
        #expect(tooMuch.stderr.contains("HTTP 503"), "\(tooMuch.stderr)")
        #expect(tooMuch.stderr.contains("No space left on device"))
        #expect(!tooMuch.stderr.contains(store), "the answer to a peer names the server's folders")
        let fits = try Run.program(Run.consort, ["send", receiver.url] + Array(files.prefix(2)))
        #expect(fits.status == 0, "\(fits.stderr)")
        let (_, log) = receiver.stop()
        #expect(log.contains("No space left on device"), "\(log)")
        let left = try String(contentsOfFile: listing, encoding: .utf8).split(separator: "\n").map(String.init)
        #expect(left.filter { $0.hasSuffix(".dcm") && !$0.contains("/.staging/") }.count == 2, "\(left)")
        #expect(!left.contains { $0.contains("/.staging/part-") }, "\(left)")
    }

    /// A receiver killed mid-request leaves a staged part; the next one to start on the store
    /// removes it (nothing of it was acknowledged) and says so. Files that are not staged parts
    /// are left alone, and a second receiver on a store in use is refused.
    @Test func aKilledReceiversStagedPartsAreClearedByTheNextAndAStoreHasOneReceiver() throws {
        let folder = try ScratchFolder()
        let store = folder.path + "/inbox"
        let first = try ReceiverProcess(store: store)
        // A part trickling in: 1 MB at 200 KB/s.
        let body = folder.path + "/body"
        var bytes = Array("--b1\r\nContent-Type: application/dicom\r\n\r\n".utf8)
        bytes += [UInt8](repeating: 0x44, count: 1 << 20) + Array("\r\n--b1--\r\n".utf8)
        try Data(bytes).write(to: URL(fileURLWithPath: body))
        let upload = try RunningProgram(["/usr/bin/curl", "-s", "--max-time", "60", "-o", "/dev/null", "--limit-rate", "200K", "-H", "Content-Type: multipart/related; type=\"application/dicom\"; boundary=b1", "--data-binary", "@" + body, first.url + "/studies"])
        let staged = { (try? FileManager.default.contentsOfDirectory(atPath: store + "/.staging"))?.filter { $0.hasPrefix("part-") } ?? [] }
        let deadline = Date().addingTimeInterval(5)
        while staged().isEmpty && Date() < deadline { usleep(20_000) }
        #expect(staged().count == 1, "the upload never reached the staging folder")
        first.program.kill()
        _ = first.stop()
        try upload.waitForExit(within: 30)  // its server is gone: it ends at once
        #expect(staged().count == 1, "a killed receiver cannot have cleaned up")
        try "not ours".write(toFile: store + "/.staging/notes.txt", atomically: true, encoding: .utf8)

        let second = try ReceiverProcess(store: store)
        let refused = try Run.program(Run.consort, ["receive", "--listen", "127.0.0.1:0", "--store", store], timeout: 10)
        #expect(refused.status == 1)
        #expect(refused.stderr.contains("Another receiver is using"), "\(refused.stderr)")
        let (_, log) = second.stop()
        #expect(log.contains("removed 1 unfinished staged part"), "\(log)")
        #expect(staged().isEmpty)
        #expect(FileManager.default.fileExists(atPath: store + "/.staging/notes.txt"))
        #expect(Self.files(under: store).isEmpty)
    }

    @Test func aStagingLockThatCannotBeOpenedStopsTheReceiverWithThePathAndReason() throws {
        let folder = try ScratchFolder()
        let store = folder.path + "/inbox"
        // A directory where the lock file belongs: open(2) fails as it would on a folder the
        // service account may not write (which cannot be staged here: the tests run as root).
        try FileManager.default.createDirectory(atPath: store + "/.staging/.lock", withIntermediateDirectories: true)
        let refused = try Run.program(Run.consort, ["receive", "--listen", "127.0.0.1:0", "--store", store], timeout: 10)
        #expect(refused.status == 1)
        #expect(refused.stderr.contains("Cannot open \(store)/.staging/.lock: Is a directory"), "\(refused.stderr)")
        #expect(!refused.stdout.contains("listening"))
    }

    @Test func aStartingReceiverClearsOnlyTheStagingFoldersWhoseOwnerIsGone() throws {
        let folder = try ScratchFolder()
        let store = folder.path + "/inbox"
        let staging = store + "/.staging"
        // Two fetches' folders: one whose owner was killed, one whose owner (here flock(1),
        // holding the lock as a fetch does) is alive.
        for name in ["own-dead01", "own-live01"] {
            try FileManager.default.createDirectory(atPath: staging + "/" + name, withIntermediateDirectories: true)
            #expect(FileManager.default.createFile(atPath: staging + "/\(name)/.lock", contents: nil))
            #expect(FileManager.default.createFile(atPath: staging + "/\(name)/part-abcdef", contents: Data(repeating: 7, count: 100)))
        }
        // --no-fork: flock(1) becomes the sleep, so killing it ends the holder at once.
        let owner = try RunningProgram([try Run.require("flock", package: "util-linux"), "--no-fork", "--exclusive", staging + "/own-live01/.lock", "sleep", "30"])
        defer { owner.kill() }
        // flock(1) has the lock once a second locker is refused.
        let deadline = Date().addingTimeInterval(5)
        while Date() < deadline, try Run.program("/usr/bin/flock", ["--nonblock", staging + "/own-live01/.lock", "true"]).status == 0 { usleep(20_000) }
        let receiver = try ReceiverProcess(store: store)
        let (_, log) = receiver.stop()
        #expect(log.contains("removed 1 unfinished staged part"), "\(log)")
        #expect(!FileManager.default.fileExists(atPath: staging + "/own-dead01"))
        #expect(FileManager.default.fileExists(atPath: staging + "/own-live01/part-abcdef"))
    }

    @Test func progressIsShownOnATerminalAndNowhereElse() throws {
        let folder = try ScratchFolder()
        #expect(try Run.consort("demo", "study", "--out", folder.path + "/study", "--instances", "4").status == 0)
        let uid = try #require(try FileManager.default.contentsOfDirectory(atPath: folder.path + "/study").first)
        let receiver = try ReceiverProcess(store: folder.path + "/inbox")
        defer { _ = receiver.stop() }
        // script(1) runs each command on a pseudo-terminal and copies what it wrote.
        let script = try Run.require("script", package: "bsdutils")
        let send = try Run.program(script, ["-qec", "'\(Run.consort)' send \(receiver.url) '\(folder.path)/study'", "/dev/null"])
        #expect(send.stdout.contains("consort send: 4 of 4 instances sent"), "\(send.stdout)")
        let fetch = try Run.program(script, ["-qec", "'\(Run.consort)' fetch \(receiver.url) \(uid) --out '\(folder.path)/fetched'", "/dev/null"])
        #expect(fetch.stdout.contains("MB received"), "\(fetch.stdout)")
        #expect(fetch.stdout.contains("4 instances stored"), "\(fetch.stdout)")
        // Not on a terminal (a log, a pipe): no progress lines.
        let quiet = try Run.program(Run.consort, ["fetch", receiver.url, uid, "--out", folder.path + "/fetched-again"])
        #expect(quiet.status == 0)
        #expect(!quiet.stderr.contains("MB received") && !quiet.stdout.contains("MB received"))
    }

    @Test func studiesCanBeFoundAndFetchedBack() throws {
        let pki = try TestPKI()
        let folder = try ScratchFolder()
        #expect(try Run.consort("demo", "study", "--out", folder.path + "/study", "--instances", "12").status == 0)
        let receiver = try ReceiverProcess(store: folder.path + "/inbox", pki: pki)
        defer { _ = receiver.stop() }
        let tls = ["--cert", pki.clientCertificate, "--key", pki.clientKey, "--ca", pki.ca]
        #expect(try Run.program(Run.consort, ["send", receiver.url, folder.path + "/study"] + tls).status == 0)
        // QIDO-RS: found by patient, date range and modality; not by another modality.
        let found = try Run.program(Run.consort, ["find", receiver.url, "--patient-id", "RSCH0000001", "--date", "20260101-", "--modality", "CT"] + tls)
        #expect(found.status == 0, "\(found.stderr)")
        #expect(found.stdout.contains("CT HEAD WITHOUT CONTRAST"))
        #expect(found.stdout.contains("1       12"))
        let none = try Run.program(Run.consort, ["find", receiver.url, "--modality", "MR", "--json"] + tls)
        #expect(none.status == 0)
        #expect(none.stdout.isEmpty)
        let uid = try #require(try FileManager.default.contentsOfDirectory(atPath: folder.path + "/study").first)
        // WADO-RS: the study comes back byte for byte.
        let fetched = try Run.program(Run.consort, ["fetch", receiver.url, uid, "--out", folder.path + "/fetched"] + tls)
        #expect(fetched.status == 0, "\(fetched.stderr)")
        #expect(fetched.stdout.contains("12 instances stored"))
        let original = try FileManager.default.contentsOfDirectory(atPath: receiver.store + "/" + uid).sorted()
        let copies = try FileManager.default.contentsOfDirectory(atPath: folder.path + "/fetched/" + uid).sorted()
        #expect(original == copies)
        for name in original {
            #expect(FileManager.default.contentsEqual(atPath: receiver.store + "/\(uid)/\(name)", andPath: folder.path + "/fetched/\(uid)/\(name)"))
        }
        // Into the store the receiver serves, while it runs: every instance is already there,
        // and the fetch's own staging folder is gone afterwards.
        let beside = try Run.program(Run.consort, ["fetch", receiver.url, uid, "--out", receiver.store] + tls)
        #expect(beside.status == 0, "\(beside.stderr)")
        #expect(beside.stdout.contains("0 instances stored in \(receiver.store)/\(uid), 12 already present, 0 refused"), "\(beside.stdout)")
        #expect(try FileManager.default.contentsOfDirectory(atPath: receiver.store + "/.staging").sorted() == [".lock"])
        // QIDO-RS at instance level: the study's 12 SOP Instance UIDs (what a resuming sender asks).
        let instances = try runProgram("/usr/bin/curl", ["-s", "--max-time", "60", "--cacert", pki.ca, "--cert", pki.clientCertificate, "--key", pki.clientKey, receiver.url + "/studies/\(uid)/instances"])
        let listed = (try JSONSerialization.jsonObject(with: Data(instances.stdout.utf8)) as? [[String: Any]]) ?? []
        let sops = Set(listed.compactMap { (($0["00080018"] as? [String: Any])?["Value"] as? [String])?.first })
        #expect(sops == Set(original.map { String($0.dropLast(4)) }), "\(instances.stdout.prefix(300))")
        // A study that is not there, and a misspelled query key.
        let missing = try Run.program(Run.consort, ["fetch", receiver.url, "1.2.3.4", "--out", folder.path + "/none"] + tls)
        #expect(missing.status == 1)
        #expect(missing.stderr.contains("HTTP 404"))
        let typo = try runProgram("/usr/bin/curl", ["-s", "--max-time", "60", "-w", "%{http_code}", "--cacert", pki.ca, "--cert", pki.clientCertificate, "--key", pki.clientKey, receiver.url + "/studies?PatientNmae=X"])
        #expect(typo.stdout.hasSuffix("400"))
        #expect(typo.stdout.contains("Unknown query key"))
    }
}
