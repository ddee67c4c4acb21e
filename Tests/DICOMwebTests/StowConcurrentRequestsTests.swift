import Foundation
import Testing

@testable import DICOMweb

#if canImport(Glibc)
    import Glibc
#endif

/// Two requests of one receiver on one store, interleaved at the moment that matters: one has
/// linked its names and is making them durable when the other arrives with the same instance, or
/// into the study folder it has just made. A request whose folder fsync fails removes what it
/// linked (so that a retry does not find it "already held"); the other must never acknowledge a
/// name that is then removed, nor rest its acknowledgement on a folder name nobody has made
/// durable. The interleaving is forced through `StowIngest.fsyncFolder`: the first request's
/// fsync of the chosen folder reports that it has begun, waits until the test lets it go on,
/// then fails with EIO (as a dying disk would). Every other fsync is the real one.
@Suite("Concurrent STOW-RS requests on one store", .serialized, .timeLimit(.minutes(2)))
struct StowConcurrentRequestsTests {
    /// What a request answered, gathered on its thread.
    final class Outcome: @unchecked Sendable {
        private let lock = NSLock()
        private var _stored: [String] = []
        private var _failed: [String: UInt16] = [:]
        private var _log: [String] = []
        private var _folderSyncs: [String] = []
        private var _done = false

        var stored: [String] { lock.withLock { _stored } }
        var failed: [String: UInt16] { lock.withLock { _failed } }
        var log: [String] { lock.withLock { _log } }
        /// Every folder this request fsynced (or tried to), in order.
        var folderSyncs: [String] { lock.withLock { _folderSyncs } }

        func synced(_ path: String) { lock.withLock { _folderSyncs.append(path) } }
        func record(_ response: StowResponse?, _ ingest: StowIngest?, _ error: Error?) {
            lock.withLock {
                _stored = response?.stored.map(\.sopInstanceUID) ?? []
                for failure in response?.failed ?? [] { _failed[failure.sopInstanceUID] = failure.reason }
                _log = (ingest?.log ?? []) + (error.map { ["threw \($0)"] } ?? [])
            }
        }
        func finish() { lock.withLock { _done = true } }
        /// Whether the request has answered, waiting for it at most `seconds`.
        func finished(within seconds: Double) -> Bool {
            StowConcurrentRequestsTests.eventually(within: seconds) { lock.withLock { _done } }
        }
    }

    /// A fault for one request: its fsync of `folder` says it has begun, waits to be let go,
    /// then fails with EIO.
    final class Gate: Sendable {
        let folder: String
        let reached = DispatchSemaphore(value: 0)
        let release = DispatchSemaphore(value: 0)
        init(failing folder: String) { self.folder = folder }
    }

    /// Runs one request carrying `instances` into `inbound` on a thread of its own.
    static func request(
        _ instances: [[UInt8]], into inbound: String, staging: String, gate: Gate? = nil, failing failed: String? = nil,
        inFlightWait: TimeInterval? = nil
    ) -> Outcome {
        let outcome = Outcome()
        let body = StowIngestTests.body(instances, boundary: "b0und")
        Thread.detachNewThread {
            var ingest: StowIngest?
            do {
                let made = try StowIngest(inbound: inbound, staging: staging, boundary: "b0und", baseURL: "https://test")
                ingest = made
                if let inFlightWait { made.inFlightWait = inFlightWait }
                made.fsyncFolder = { path, descriptor in
                    outcome.synced(path)
                    if let gate, path == gate.folder {
                        gate.reached.signal()
                        // Bounded: a test that never lets it go still ends.
                        _ = gate.release.wait(timeout: .now() + 30)
                        return EIO
                    }
                    if path == failed { return EIO }
                    return fsync(descriptor) == 0 ? 0 : errno
                }
                try made.consume(body)
                outcome.record(try made.finish(), made, nil)
            } catch {
                outcome.record(nil, ingest, error)
            }
            outcome.finish()
        }
        return outcome
    }

    /// Polls, with a deadline, until `condition` holds.
    static func eventually(within seconds: Double, _ condition: () -> Bool) -> Bool {
        let deadline = Date().addingTimeInterval(seconds)
        while Date() < deadline {
            if condition() { return true }
            usleep(2_000)
        }
        return condition()
    }

    static func scratch() throws -> (folder: String, inbound: String) {
        let folder = try StowIngestTests.scratch()
        // A spelling of its own: the registry goes by the folder's real path.
        let real = realpath(folder, nil).map { p in defer { free(p) }; return String(cString: p) } ?? folder
        return (real, real + "/inbound")
    }

    static let study = "1.2.826.0.1.3680043.10.77"

    /// Every instance acknowledged is in the store with the bytes sent: the invariant the race
    /// broke.
    static func expectHeld(_ acknowledged: [String], by request: String, in inbound: String, bytes: [String: [UInt8]]) {
        for uid in acknowledged {
            let path = "\(inbound)/\(study)/\(uid).dcm"
            let held = FileManager.default.contents(atPath: path).map([UInt8].init)
            #expect(held != nil, "\(request) acknowledged \(uid), which is no longer in the store")
            if let held { #expect(held == bytes[uid], "\(uid) is held with other bytes") }
        }
    }

    /// A links X and is fsyncing the study folder when B arrives with X: B finds the name, same
    /// bytes — and must not acknowledge it, as A's fsync then fails and A removes it. B waits for
    /// A's outcome, then stores X itself.
    @Test func aNameAnotherRequestMayStillRemoveIsNotAcknowledged() throws {
        let (folder, inbound) = try Self.scratch()
        defer { try? FileManager.default.removeItem(atPath: folder) }
        let x = StowIngestTests.instance("1.2.3.7001", study: Self.study, pixels: 3000)
        let gate = Gate(failing: "\(inbound)/\(Self.study)")
        let a = Self.request([x], into: inbound, staging: folder + "/staging", gate: gate)
        #expect(gate.reached.wait(timeout: .now() + 30) == .success, "A never reached its folder fsync: \(a.log)")
        #expect(FileManager.default.fileExists(atPath: "\(inbound)/\(Self.study)/1.2.3.7001.dcm"), "A has not linked X")

        let b = Self.request([x], into: inbound, staging: folder + "/staging")
        // B is waiting for A's outcome (or, broken, has already answered).
        let registry = InboundRegistry.of(inbound)
        #expect(Self.eventually(within: 10) { registry.waiters(for: "\(Self.study)/1.2.3.7001.dcm") > 0 || b.finished(within: 0) })
        gate.release.signal()
        #expect(a.finished(within: 30) && b.finished(within: 30), "a request did not finish")

        #expect(a.stored.isEmpty, "\(a.log)")
        #expect(a.failed["1.2.3.7001"] == 0xA700, "\(a.log)")
        #expect(b.stored == ["1.2.3.7001"], "\(b.log)")
        Self.expectHeld(a.stored + b.stored, by: "a request", in: inbound, bytes: ["1.2.3.7001": x])
        // B stored it afresh (A's copy was removed): as "stored", not "already held".
        #expect(b.log.contains { $0.hasPrefix("stored 1.2.3.7001") }, "\(b.log)")
    }

    /// The same, A's fsync never ending: B waits only so long, then refuses X with 0xA700 (its
    /// sender retries) rather than acknowledge a name that may yet go.
    @Test func aRequestWaitsForAnotherOnlySoLong() throws {
        let (folder, inbound) = try Self.scratch()
        defer { try? FileManager.default.removeItem(atPath: folder) }
        let x = StowIngestTests.instance("1.2.3.7101", study: Self.study, pixels: 1000)
        let y = StowIngestTests.instance("1.2.3.7102", study: Self.study, pixels: 1000)
        let gate = Gate(failing: "\(inbound)/\(Self.study)")
        let a = Self.request([x], into: inbound, staging: folder + "/staging", gate: gate)
        #expect(gate.reached.wait(timeout: .now() + 30) == .success, "A never reached its folder fsync: \(a.log)")
        // B carries X and Y: Y is its own, and is stored meanwhile.
        let b = Self.request([x, y], into: inbound, staging: folder + "/staging", inFlightWait: 0.3)
        #expect(b.finished(within: 30), "B did not give up waiting")
        #expect(b.stored == ["1.2.3.7102"], "\(b.log)")
        #expect(b.failed["1.2.3.7101"] == 0xA700, "\(b.log)")
        #expect(b.log.contains { $0.contains("another request was still storing it") }, "\(b.log)")
        gate.release.signal()
        #expect(a.finished(within: 30))
        #expect(a.failed["1.2.3.7101"] == 0xA700, "\(a.log)")
        Self.expectHeld(a.stored + b.stored, by: "a request", in: inbound, bytes: ["1.2.3.7101": x, "1.2.3.7102": y])
        #expect(!FileManager.default.fileExists(atPath: "\(inbound)/\(Self.study)/1.2.3.7101.dcm"), "X, refused by both, was kept")
        #expect(try FileManager.default.contentsOfDirectory(atPath: folder + "/staging").isEmpty, "staged parts left behind")
    }

    /// A makes the study folder and is fsyncing inbound for it when C stores another instance of
    /// the study there. C did not make the folder, but nobody has yet made its name durable: C
    /// fsyncs inbound itself before acknowledging. That fsync, succeeding after the folder was
    /// made, makes the folder's name durable for A too: A's own failure no longer matters.
    /// A, storing X, has made the study folder, linked X and fsynced the study folder, and is
    /// held in its fsync of inbound (which will fail); the folder's name is durable for nobody yet.
    struct FolderMadeByA {
        let folder: String, inbound: String, x: [UInt8], y: [UInt8], a: Outcome, gate: Gate
    }

    static func startA(x uid: String, y other: String) throws -> FolderMadeByA {
        let (folder, inbound) = try scratch()
        let x = StowIngestTests.instance(uid, study: study, pixels: 1000)
        try FileManager.default.createDirectory(atPath: inbound, withIntermediateDirectories: true)
        let gate = Gate(failing: inbound)
        let a = request([x], into: inbound, staging: folder + "/staging", gate: gate)
        #expect(gate.reached.wait(timeout: .now() + 30) == .success, "A never reached its fsync of inbound: \(a.log)")
        return FolderMadeByA(folder: folder, inbound: inbound, x: x, y: StowIngestTests.instance(other, study: study, pixels: 1000), a: a, gate: gate)
    }

    @Test func aStudyFolderAnotherRequestHasJustMadeIsMadeDurableBeforeItIsTrusted() throws {
        let started = try Self.startA(x: "1.2.3.7201", y: "1.2.3.7202")
        let (folder, inbound, x, y, a, gate) = (started.folder, started.inbound, started.x, started.y, started.a, started.gate)
        defer { try? FileManager.default.removeItem(atPath: folder) }
        let c = Self.request([y], into: inbound, staging: folder + "/staging")
        #expect(c.finished(within: 30), "C waited for A: \(c.log)")
        #expect(c.stored == ["1.2.3.7202"], "\(c.log)")
        #expect(c.folderSyncs == ["\(inbound)/\(Self.study)", inbound], "C trusted a study folder nobody has made durable: \(c.folderSyncs)")

        gate.release.signal()
        #expect(a.finished(within: 30))
        #expect(a.stored == ["1.2.3.7201"], "\(a.log)")
        Self.expectHeld(a.stored + c.stored, by: "a request", in: inbound, bytes: ["1.2.3.7201": x, "1.2.3.7202": y])
    }

    /// As above, C's fsync of inbound failing too: C refuses its instance and removes it (the
    /// folder is not its to remove); then A, whose fsync fails, removes its instance and the
    /// folder it made. Nothing acknowledged, nothing left.
    @Test func whenNobodyCanMakeTheStudyFolderDurableNothingIsAcknowledged() throws {
        let started = try Self.startA(x: "1.2.3.7301", y: "1.2.3.7302")
        let (folder, inbound, y, a, gate) = (started.folder, started.inbound, started.y, started.a, started.gate)
        defer { try? FileManager.default.removeItem(atPath: folder) }
        let c = Self.request([y], into: inbound, staging: folder + "/staging", failing: inbound)
        #expect(c.finished(within: 30), "C waited for A: \(c.log)")
        #expect(c.stored.isEmpty, "C acknowledged an instance in a folder whose name nobody made durable: \(c.log)")
        #expect(c.failed["1.2.3.7302"] == 0xA700, "\(c.log)")
        #expect(FileManager.default.fileExists(atPath: "\(inbound)/\(Self.study)"), "C removed a folder it did not make")

        gate.release.signal()
        #expect(a.finished(within: 30))
        #expect(a.stored.isEmpty, "\(a.log)")
        #expect(a.failed["1.2.3.7301"] == 0xA700, "\(a.log)")
        let left = try FileManager.default.contentsOfDirectory(atPath: inbound).filter { !$0.hasPrefix(".") }
        #expect(left.isEmpty, "left in the store: \(left)")
    }

    /// The fast path keeps its cost: the inbound folder is fsynced once for a study folder, by
    /// the first request to use it — the one that made it, or, for a folder found on disk (left
    /// by an earlier run of the receiver, perhaps never made durable), the first to use it.
    @Test func theInboundFolderIsFsyncedOnceAStudyFolder() throws {
        let (folder, inbound) = try Self.scratch()
        defer { try? FileManager.default.removeItem(atPath: folder) }
        let other = "1.2.826.0.1.3680043.10.78"
        // Found on disk, not made by any request of this process.
        try FileManager.default.createDirectory(atPath: "\(inbound)/\(other)", withIntermediateDirectories: true)
        var syncs: [[String]] = []
        for (i, study) in [Self.study, Self.study, other, other].enumerated() {
            let request = Self.request(
                [StowIngestTests.instance("1.2.3.74\(i)", study: study, pixels: 100)], into: inbound, staging: folder + "/staging")
            #expect(request.finished(within: 30))
            #expect(request.stored == ["1.2.3.74\(i)"], "\(request.log)")
            syncs.append(request.folderSyncs)
        }
        #expect(
            syncs == [
                ["\(inbound)/\(Self.study)", inbound], ["\(inbound)/\(Self.study)"], ["\(inbound)/\(other)", inbound], ["\(inbound)/\(other)"],
            ], "\(syncs)")
    }
}
