import DICOM
import Digest
import HTTP
import Foundation
internal import CSystem
internal import Durability

#if canImport(Glibc)
    import Glibc
#endif

/// Receives one STOW-RS request body (PS3.18 §10.5) into a folder, streaming: each part is
/// written to a new file in a staging folder on the same filesystem as it arrives (hashed on the
/// way; written around the page cache by `StagingWriter`), then checked — a readable DICOM file,
/// read from its first bytes kept in memory, whose SOP Instance UID is a valid UID. When the body
/// is complete, the staged instances are made durable (a few, each by its fsync; a batch, together
/// by one syncfs: one journal commit rather than one fsync per instance) and only then linked into place as
/// `inbound/<StudyInstanceUID>/<SOPInstanceUID>.dcm` (the folders fsynced), before the answer
/// acknowledges them. An instance that cannot be made durable — its file, or its name, when its
/// folder's fsync fails — is refused with 0xA700 (out of resources: the sender retries) and not
/// kept. Names come from the validated UIDs, never from the request. Requests of one process
/// into one inbound folder run at once: what one has linked and not yet made durable, the others
/// neither acknowledge nor trust until it is settled (`InboundRegistry`).
///
/// Nothing partial is ever visible in the inbound folder: a part that ends early, fails its
/// checks, or belongs to a body that breaks off is removed from staging. An instance already held
/// with the same bytes is reported stored, without a second copy; one held with different bytes
/// is refused and kept aside in `inbound/.quarantine` (a person must decide which is right;
/// nothing is overwritten). Every part is checked whole (`DICOMFile.verify`): a file cut short
/// is refused with where it ends, never stored as complete.
public final class StowIngest {
    public struct Limits: Sendable {
        /// Largest single instance accepted (a multi-frame US cine can be a few GB).
        public var partBytes = 4 << 30
        /// Most instances in one request.
        public var parts = 100_000
        public init() {}
    }

    public let inbound: String
    public let staging: String
    public let limits: Limits
    /// Base for RetrieveURL values in the response, e.g. https://uhsx.consort/dicomweb.
    public let baseURL: String
    /// When retrieving one study (WADO-RS): parts of any other study are refused.
    public var expectedStudy: String?
    /// A last check of each instance's header before it is placed (a fetch checks that it names
    /// the patient it was fetched for): a reason to refuse it, or nil.
    public var admitInstance: (@Sendable (DataSet) -> String?)?
    /// Where this site already holds an instance outside the store (an agent's inventory: its
    /// archive, say), by SOP Instance UID. Such an instance is not stored again: the same bytes
    /// are acknowledged as already held, other bytes are a conflict like one in the store.
    public var heldElsewhere: (@Sendable (String) -> String?)?
    private var decoder: MultipartDecoder
    private var current: Part?
    private var stored: [StowResponse.Stored] = []
    private var failed: [StowResponse.Failed] = []
    private var studies: Set<String> = []
    private var partCount = 0
    /// Checked parts waiting for the request's durability barrier, then their place.
    private var ready: [Ready] = []
    /// Study folders this request created: their names in `inbound` must be made durable too.
    private var createdFolders: Set<String> = []
    /// What this process's requests into `inbound` know of each other's names and folders.
    let registry: InboundRegistry

    struct Ready {
        let staged: String
        let classUID: String
        let instanceUID: String
        let studyUID: String
        let size: Int
        let digest: String
        /// The header, as read when the part was checked (bulk values not loaded).
        let header: DataSet
    }

    /// The outcome per instance, in words, for the caller's log and audit trail.
    public private(set) var log: [String] = []
    /// The outcome per instance, typed, for callers that act on it (a fetch holds a study with
    /// an instance its check did not admit; `consort fetch` reports each refusal): never found
    /// by reading `log`.
    public private(set) var results: [InstanceResult] = []

    public enum InstanceResult: Sendable, Equatable {
        case stored(sop: String)
        /// Held before with the same bytes: acknowledged, not stored twice.
        case alreadyHeld(sop: String)
        /// Refused with a STOW-RS failure reason: 0xA700 (out of resources: send it again) or
        /// 0xC000 (cannot understand: not whole, not valid, not of the study asked for).
        case refused(sop: String, reason: UInt16, why: String)
        /// Held with other bytes: the held file unchanged, the newcomer kept aside for a person.
        case conflict(sop: String, why: String)
        /// Refused by the caller's `admitInstance` check (a fetch: it does not name the patient
        /// it was fetched for).
        case notAdmitted(sop: String, why: String)

        public var sopInstanceUID: String {
            switch self {
            case .stored(let sop), .alreadyHeld(let sop), .refused(let sop, _, _), .conflict(let sop, _), .notAdmitted(let sop, _): return sop
            }
        }
    }
    /// Oddities in instances that were accepted (bytes after the data set), for the log.
    public private(set) var warnings: [String] = []
    /// Every instance now held because of this request (stored now, or held before with the
    /// same bytes): where it is, for the agent's inventory.
    public private(set) var placed: [PlacedInstance] = []

    public struct PlacedInstance: Sendable {
        public var sopInstanceUID: String
        public var studyInstanceUID: String
        public var sopClassUID: String
        public var path: String
        public var size: Int
        public var sha256: String
        public var alreadyHeld: Bool
        /// Its header as read when it was checked (no need to read the file again).
        public var header: DataSet
    }
    /// Instances refused because one with the same UID and other bytes is held (quarantined).
    public private(set) var conflicts = 0

    /// How much of each part is kept in memory to read its header from, without reading the
    /// staged file back (it was written around the page cache). A longer header is read from
    /// the file.
    static let headerPrefixBytes = 64 * 1024
    /// How staged parts are named (then six random characters): what `StagingClaim` clears.
    public static let stagedPrefix = "part-"
    private let writer = StagingWriter()
    /// Decided once per request: direct writes only where they help (`StagingWriter.directIOSuits`).
    private let directIO: Bool

    final class Part {
        let path: String
        let descriptor: Int32
        let hasher = SHA256Hasher()
        var size = 0
        var prefix: [UInt8] = []
        var contentTypeOK: Bool
        init(path: String, descriptor: Int32, contentTypeOK: Bool) {
            self.path = path
            self.descriptor = descriptor
            self.contentTypeOK = contentTypeOK
        }
    }

    /// Prepares to receive a body with this multipart boundary. The staging folder is made if
    /// missing and must share a filesystem with `inbound` (a rename cannot cross filesystems).
    public init(inbound: String, staging: String, boundary: String, baseURL: String, limits: Limits = Limits()) throws(HTTPError) {
        self.inbound = inbound
        self.staging = staging
        self.baseURL = baseURL
        self.limits = limits
        decoder = MultipartDecoder(boundary: boundary)
        for folder in [inbound, staging] {
            do {
                try FileManager.default.createDirectory(atPath: folder, withIntermediateDirectories: true)
            } catch {
                throw HTTPError(500, "Cannot create \(folder): \(error.localizedDescription)")
            }
        }
        var a = stat(), b = stat()
        guard stat(inbound, &a) == 0, stat(staging, &b) == 0, a.st_dev == b.st_dev else {
            throw HTTPError(500, "The staging folder \(staging) is not on the same filesystem as \(inbound)")
        }
        directIO = StagingWriter.directIOSuits(staging)
        registry = InboundRegistry.of(inbound)
    }

    deinit { abandonCurrent() }

    /// The next piece of the request body.
    public func consume(_ piece: some Collection<UInt8>) throws(HTTPError) {
        try consume(ArraySlice(piece))
    }

    /// The next piece of the request body, as a server hands it out: decoded without copying.
    public func consume(_ piece: ArraySlice<UInt8>) throws(HTTPError) {
        let events: [MultipartDecoder.Event]
        do {
            events = try decoder.feed(piece)
        } catch {
            abandonCurrent()
            throw HTTPError(400, "The multipart body is malformed: \(error)")
        }
        try handle(events)
    }

    /// The body ended: checks it ended well and answers what was stored.
    public func finish() throws(HTTPError) -> StowResponse {
        do {
            try handle(try decoder.finish())
        } catch let error as HTTPError {
            abandonCurrent()
            throw error
        } catch {
            abandonCurrent()
            throw HTTPError(400, "The multipart body is malformed: \(error)")
        }
        place()
        let url = studies.count == 1 ? "\(baseURL)/studies/\(studies.first!)" : nil
        return StowResponse(retrieveURL: url, stored: stored, failed: failed)
    }

    /// Up to this many instances in a request are made durable each by its own fsync; more, by
    /// one syncfs of the filesystem.
    ///
    /// Why two ways: syncfs makes everything written to the filesystem durable, other programs'
    /// writes included. For a bulk batch, whose own data is most of what waits, one journal
    /// commit for fifty files is what took the receiver from 239 to 320 MB/s. For an urgent
    /// instance, it meant waiting for whatever else was being written there: beside another
    /// process writing 4 GB through the page cache (a PACS import, a backup), a syncfs after a
    /// 512 KB file took p50 9–10 ms and at worst 0.4–0.7 s, the file's own fsync and its
    /// folder's p50 0.7 ms (2026-12-02, this project's test machine).
    public static let ownFsyncAtMost = 4

    /// The durability barrier, then every checked instance into its place, then the new names
    /// made durable; only then is an instance in the store acknowledged.
    private func place() {
        guard !ready.isEmpty else { return }
        let (durable, reason) = makeReadyDurable()
        guard durable else {
            for item in ready {
                unlink(item.staged)
                failed.append(StowResponse.Failed(sopClassUID: item.classUID, sopInstanceUID: item.instanceUID, reason: 0xA700))
                log.append("refused \(item.instanceUID): cannot make it durable: \(reason)")
                results.append(.refused(sop: item.instanceUID, reason: 0xA700, why: "cannot make it durable: \(reason)"))
            }
            ready.removeAll()
            return
        }
        // An instance whose name another request of this process has linked and not yet settled
        // waits for that: tried again once it is settled (kept, or removed because it could not
        // be made durable), after this request has settled its own names — so two requests
        // never wait for each other.
        let deadline = Date().addingTimeInterval(inFlightWait)
        var todo = ready
        ready.removeAll()
        while !todo.isEmpty {
            var named: [Named] = []
            var deferred: [Ready] = []
            for item in todo {
                switch link(item) {
                case .named(let name): named.append(name)
                case .claimedElsewhere: deferred.append(item)
                case .settled: break
                }
            }
            settle(named)
            todo = []
            for item in deferred {
                if registry.waitUntilSettled(Self.key(item), before: deadline) {
                    todo.append(item)
                } else {
                    unlink(item.staged)
                    failed.append(
                        StowResponse.Failed(
                            sopClassUID: item.classUID, sopInstanceUID: item.instanceUID, reason: 0xA700,
                            reasonText: "another request is still storing it; send it again"))
                    log.append("refused \(item.instanceUID): another request was still storing it after \(Int(inFlightWait)) s")
                    results.append(.refused(sop: item.instanceUID, reason: 0xA700, why: "another request was still storing it"))
                }
            }
        }
    }

    /// How long an instance another request is storing waits for that request's outcome before
    /// it is refused with 0xA700 (the sender retries): that request has only its folders' fsyncs
    /// left to do, milliseconds unless the disk is failing.
    var inFlightWait: TimeInterval = 10

    /// Makes the names durable — each study folder's entries, and the folder's own entry in
    /// inbound unless known durable — then acknowledges them, or refuses them and removes the
    /// ones this request linked.
    private func settle(_ named: [Named]) {
        // The names survive a crash: each study folder's entries, then each study folder's own
        // entry in inbound, when this request made it or when it is not known durable (another
        // request may have made it and not yet, or not successfully, fsynced inbound for it): a
        // filesystem without a journal that orders them would otherwise lose the folder with
        // every instance acknowledged in it. A folder known durable costs nothing more.
        var lost: [String: String] = [:]  // study folder → why its names may not survive a crash
        let folders = Set(named.map(\.folder))
        for folder in folders.sorted() {
            lost[folder] = syncFolder(folder)
        }
        let unsure = folders.filter { createdFolders.contains($0) || !registry.isDurable(folder: Self.name(ofFolder: $0)) }
        if !unsure.isEmpty, let failure = syncFolder(inbound) {
            // Unless another request's fsync of inbound has made the folder's entry durable
            // meanwhile: then its names need only their own folder's fsync.
            for folder in unsure where lost[folder] == nil && !registry.isDurable(folder: Self.name(ofFolder: folder)) {
                lost[folder] = failure
            }
        } else if !unsure.isEmpty {
            registry.markDurable(folders: unsure.map(Self.name(ofFolder:)))
        }
        for name in named {
            guard let failure = lost[name.folder] else {
                // Settled before it is acknowledged: from now on another request may acknowledge
                // it too, and nobody removes it.
                if !name.alreadyHeld { registry.settle(Self.key(name.item), by: owner) }
                accept(name.item, at: name.destination, name.note, alreadyHeld: name.alreadyHeld)
                continue
            }
            // Refused like an instance whose own fsync failed: 0xA700 (out of resources, the
            // sender retries), and nothing of it left under its name. A name kept would be found
            // by the retry as "already held" and acknowledged — never having been made durable.
            // Removed under the registry's lock while still claimed by this request, so no other
            // request can have acknowledged it. A name held before this request is not ours to
            // remove: only refused.
            if !name.alreadyHeld { registry.settle(Self.key(name.item), by: owner, removing: name.destination) }
            failed.append(
                StowResponse.Failed(
                    sopClassUID: name.item.classUID, sopInstanceUID: name.item.instanceUID, reason: 0xA700,
                    reasonText: "its name in the store could not be made durable; send it again"))
            log.append("refused \(name.item.instanceUID): its name \(name.destination) could not be made durable: \(failure)")
            results.append(.refused(sop: name.item.instanceUID, reason: 0xA700, why: "its name could not be made durable: \(failure)"))
        }
        // A study folder made by this request whose name may not survive goes too (empty now,
        // unless another request has just placed an instance in it: then rmdir fails and it
        // stays): the next request to need it makes it again and fsyncs inbound for it.
        for folder in createdFolders where lost[folder] != nil {
            registry.removeIfNotDurable(folder: Self.name(ofFolder: folder), at: folder)
        }
        createdFolders.removeAll()
    }

    /// An instance named in the store by this request, or found there already with the same
    /// bytes: acknowledged once its folder's entries are durable.
    struct Named {
        let item: Ready
        let folder: String
        let destination: String
        let note: String
        let alreadyHeld: Bool
    }

    /// This request, as the claimant of the names it links (`InboundRegistry`).
    private var owner: InboundRegistry.Owner { ObjectIdentifier(self) }

    /// An instance's name in the registry: relative to inbound, so requests that spell the
    /// inbound folder differently share it.
    private static func key(_ item: Ready) -> String { "\(item.studyUID)/\(item.instanceUID).dcm" }
    private static func name(ofFolder path: String) -> String { (path as NSString).lastPathComponent }

    /// Makes a folder's entries durable (its fsync); nil when done, else what failed, naming the
    /// folder and the errno, for the log.
    private func syncFolder(_ folder: String) -> String? {
        do {
            try DurableFile.syncFolder(folder, using: fsyncFolder)
            return nil
        } catch {
            return error.description
        }
    }

    /// A folder's fsync: 0, or the errno. A seam for tests, which fail one request's fsync of a
    /// folder at a moment they choose, to interleave it with another request's; in production
    /// it is always this, the real call.
    var fsyncFolder: (_ path: String, _ descriptor: Int32) -> Int32 = DurableFile.fsyncFolder

    /// Every staged instance of the request on stable storage (see `ownFsyncAtMost`); the reason
    /// when that failed.
    private func makeReadyDurable() -> (Bool, String) {
        if ready.count <= Self.ownFsyncAtMost {
            for item in ready {
                let fd = open(item.staged, O_RDONLY | O_CLOEXEC)
                let synced = fd >= 0 && fsync(fd) == 0
                let reason = String(cString: strerror(errno))
                if fd >= 0 { close(fd) }
                if !synced { return (false, reason) }
            }
            return (true, "")
        }
        let fd = open(staging, O_RDONLY | O_DIRECTORY | O_CLOEXEC)
        let durable = fd >= 0 && consort_syncfs(fd) == 0
        let reason = String(cString: strerror(errno))
        if fd >= 0 { close(fd) }
        return (durable, reason)
    }

    private func handle(_ events: [MultipartDecoder.Event]) throws(HTTPError) {
        for event in events {
            switch event {
            case .partBegin(let headers):
                partCount += 1
                if partCount > limits.parts { throw HTTPError(413, "More than \(limits.parts) instances in one request") }
                let type = headers.first { $0.name == "content-type" }.flatMap { MediaType($0.value) }?.type
                current = try openPart(contentTypeOK: type == nil || type == "application/dicom")
            case .partData(let bytes):
                guard let part = current else { continue }
                part.size += bytes.count
                if part.size > limits.partBytes {
                    abandonCurrent()
                    throw HTTPError(413, "An instance exceeds \(limits.partBytes) bytes")
                }
                try write(bytes, to: part)
            case .partEnd:
                if let part = current {
                    do throws(StagingWriter.Failure) {
                        try writer.finish()
                    } catch {
                        abandonCurrent()
                        throw writeFailure(error)
                    }
                    current = nil
                    settle(part)
                }
            case .end:
                break
            }
        }
    }

    private func openPart(contentTypeOK: Bool) throws(HTTPError) -> Part {
        let file: (descriptor: Int32, path: String)
        do {
            // 0640: the group (the local PACS's import account) may read what is stored.
            file = try DurableFile.createTemporary(in: staging, prefix: Self.stagedPrefix, mode: 0o640)
        } catch {
            // The answer goes to the peer: the reason, not the server's folders.
            throw HTTPError(503, "Cannot create a staging file: \(String(cString: strerror(error.code)))")
        }
        writer.begin(file.descriptor, direct: directIO)
        return Part(path: file.path, descriptor: file.descriptor, contentTypeOK: contentTypeOK)
    }

    private func write(_ bytes: ArraySlice<UInt8>, to part: Part) throws(HTTPError) {
        if part.prefix.count < Self.headerPrefixBytes {
            part.prefix += bytes.prefix(Self.headerPrefixBytes - part.prefix.count)
        }
        let result = bytes.withUnsafeBytes { raw in
            part.hasher.update(raw)
            return Result { () throws(StagingWriter.Failure) in try writer.append(raw) }
        }
        if case .failure(let error) = result {
            abandonCurrent()
            throw writeFailure(error)
        }
    }

    /// A full disk is the server's trouble, not the client's: 503, try later.
    private func writeFailure(_ error: StagingWriter.Failure) -> HTTPError {
        HTTPError(error.code == ENOSPC ? 503 : 500, "Cannot write the instance to disk: \(error.reason)")
    }

    /// A part is complete: check it and queue it for placement, or refuse it.
    private func settle(_ part: Part) {
        close(part.descriptor)
        let digest = part.hasher.finalize()
        var classUID = "", instanceUID = ""
        func refuse(_ reason: UInt16, _ why: String, admitted: Bool = true) {
            unlink(part.path)
            failed.append(
                StowResponse.Failed(sopClassUID: classUID, sopInstanceUID: instanceUID.isEmpty ? "unknown" : instanceUID, reason: reason, reasonText: why))
            log.append("refused \(instanceUID.isEmpty ? "a part" : instanceUID): \(why)")
            let sop = instanceUID.isEmpty ? "unknown" : instanceUID
            results.append(admitted ? .refused(sop: sop, reason: reason, why: why) : .notAdmitted(sop: sop, why: why))
        }
        guard part.contentTypeOK else { return refuse(0xC000, "the part is not application/dicom") }
        // The whole file's structure, not only its header: an instance cut short (inside its
        // pixel data, or between two elements) is refused, never stored as if complete — a
        // stored cut copy would make the whole instance a conflict for ever. The header comes
        // from the bytes kept in memory; the rest is checked by seeking in the staged file.
        let file: DICOMFile
        do {
            file = part.size <= part.prefix.count ? try DICOMFile.verify(bytes: part.prefix) : try DICOMFile.verify(prefix: part.prefix[...], path: part.path)
        } catch {
            return refuse(0xC000, "not a whole, readable DICOM file: \(error)")
        }
        for warning in file.warnings where warning.message.contains("after Pixel Data") || warning.message.contains("trailing bytes") {
            warnings.append("\(file.dataSet.string(.sopInstanceUID) ?? "a part"): \(warning)")
        }
        classUID = file.dataSet.string(.sopClassUID) ?? file.meta.string(.mediaStorageSOPClassUID) ?? ""
        instanceUID = file.dataSet.string(.sopInstanceUID) ?? ""
        let studyUID = file.dataSet.string(.studyInstanceUID) ?? ""
        guard UID.isValid(instanceUID) else { return refuse(0xC000, "SOP Instance UID \"\(instanceUID)\" is not a valid UID") }
        guard UID.isValid(studyUID) else { return refuse(0xC000, "Study Instance UID \"\(studyUID)\" is not a valid UID") }
        if let expectedStudy, studyUID != expectedStudy {
            return refuse(0xC000, "belongs to study \(studyUID), not the study asked for (\(expectedStudy))")
        }
        guard UID.isValid(classUID) else { return refuse(0xC000, "SOP Class UID \"\(classUID)\" is not a valid UID") }
        if let reason = admitInstance?(file.dataSet) { return refuse(0xC000, reason, admitted: false) }
        ready.append(Ready(staged: part.path, classUID: classUID, instanceUID: instanceUID, studyUID: studyUID, size: part.size, digest: digest, header: file.dataSet))
    }

    /// What became of a durable staged instance's placing (`link`).
    enum Placing {
        /// Named in the store (by this request, or held before): to be acknowledged once its
        /// folder is durable (`settle`).
        case named(Named)
        /// Its name is claimed by another request of this process, which may yet remove it:
        /// neither linked nor compared; tried again once that claim is settled.
        case claimedElsewhere
        /// Settled here: refused, quarantined, or held elsewhere at this site.
        case settled
    }

    /// Links a durable staged instance into its place.
    private func link(_ item: Ready) -> Placing {
        let folder = "\(inbound)/\(item.studyUID)"
        let destination = "\(folder)/\(item.instanceUID).dcm"
        func refuse(_ reason: UInt16, _ why: String) {
            unlink(item.staged)
            failed.append(StowResponse.Failed(sopClassUID: item.classUID, sopInstanceUID: item.instanceUID, reason: reason, reasonText: why))
            log.append("refused \(item.instanceUID): \(why)")
            results.append(.refused(sop: item.instanceUID, reason: reason, why: why))
        }
        do {
            if access(folder, F_OK) != 0 {
                registry.forget(folder: item.studyUID)
                try FileManager.default.createDirectory(atPath: folder, withIntermediateDirectories: true)
                createdFolders.insert(folder)
            }
        } catch {
            refuse(0xA700, "cannot create \(folder): \(error.localizedDescription)")
            return .settled
        }
        // Held elsewhere at this site (the agent's archive): one copy per site, never two.
        if let other = heldElsewhere?(item.instanceUID), other != destination, FileManager.default.fileExists(atPath: other) {
            let otherDigest = SHA256Hasher.hex(ofFile: other)
            if otherDigest == item.digest {
                unlink(item.staged)
                accept(item, at: destination, "already held \(item.instanceUID) at \(other) (same bytes, sha256 \(item.digest.prefix(16))…)", alreadyHeld: true)
            } else {
                quarantine(item, heldDigest: otherDigest ?? "unreadable")
            }
            return .settled
        }
        // Claimed before it is linked: a name another request has linked is not ours to judge
        // until that request has made it durable, or removed it.
        let key = Self.key(item)
        let claim = registry.claim(key, by: owner)
        if claim == .elsewhere { return .claimedElsewhere }
        // link(2) rather than rename(2): it fails if the name exists (an earlier copy, or another
        // request with the same instance), so nothing is ever overwritten.
        if Glibc.link(item.staged, destination) == 0 {
            unlink(item.staged)
            return .named(
                Named(
                    item: item, folder: folder, destination: destination,
                    note: "stored \(item.instanceUID) (\(item.size) bytes, sha256 \(item.digest.prefix(16))…)", alreadyHeld: false))
        }
        let code = errno
        // Not linked by this request: the claim goes (a name found here, unclaimed, is one a
        // request has settled as durable, or one left from before this process).
        // Unless this request linked it already (an instance sent twice in one request): that
        // claim stays until the first copy is settled.
        if claim == .claimed { registry.settle(key, by: owner) }
        let heldDigest = code == EEXIST ? SHA256Hasher.hex(ofFile: destination) : nil
        if code == EEXIST, heldDigest == item.digest {
            unlink(item.staged)
            // Waits for its folder's fsync too: the name may be one this request has just linked
            // (an instance sent twice in one request) or one left by a receiver killed before it
            // fsynced the folder.
            return .named(
                Named(
                    item: item, folder: folder, destination: destination,
                    note: "already held \(item.instanceUID) (same bytes, sha256 \(item.digest.prefix(16))…)", alreadyHeld: true))
        }
        if code == EEXIST {
            quarantine(item, heldDigest: heldDigest ?? "unreadable")
        } else {
            // ENOENT: the study folder went between its check and the link (another request
            // removed it, having failed to make its name durable): worth sending again.
            refuse(code == ENOSPC || code == ENOENT ? 0xA700 : 0xC000, "cannot place \(destination): \(String(cString: strerror(code)))")
        }
        return .settled
    }

    /// Acknowledges an instance as held at `destination`, for the answer, the log and the caller.
    private func accept(_ item: Ready, at destination: String, _ note: String, alreadyHeld: Bool) {
        stored.append(
            StowResponse.Stored(
                sopClassUID: item.classUID, sopInstanceUID: item.instanceUID, retrieveURL: retrieveURL(item.studyUID, item.instanceUID),
                alreadyHeld: alreadyHeld))
        studies.insert(item.studyUID)
        log.append(note)
        results.append(alreadyHeld ? .alreadyHeld(sop: item.instanceUID) : .stored(sop: item.instanceUID))
        placed.append(
            PlacedInstance(
                sopInstanceUID: item.instanceUID, studyInstanceUID: item.studyUID, sopClassUID: item.classUID, path: destination,
                size: item.size, sha256: item.digest, alreadyHeld: alreadyHeld, header: item.header))
    }

    /// Where instances that conflict with one already held are kept aside, beside the store:
    /// `inbound/.quarantine/<StudyUID>/<SOPUID>.<sha256>.dcm`. Never served, never routed.
    public static let quarantineFolderName = ".quarantine"

    /// Same SOP Instance UID, different bytes: the held file stays as it is (nothing is ever
    /// overwritten silently), the newcomer is kept aside — it may be the right one — and a
    /// person decides. The refusal names both hashes; the caller logs it at error level.
    private func quarantine(_ item: Ready, heldDigest: String) {
        let folder = "\(inbound)/\(Self.quarantineFolderName)/\(item.studyUID)"
        let kept = "\(folder)/\(item.instanceUID).\(item.digest).dcm"
        var placed = "not kept: "
        do {
            try FileManager.default.createDirectory(atPath: folder, withIntermediateDirectories: true)
            // The same conflicting copy sent again is already there (same name, same bytes).
            if Glibc.link(item.staged, kept) == 0 || errno == EEXIST {
                placed = "the received copy is kept aside as \(Self.quarantineFolderName)/\(item.studyUID)/\(item.instanceUID).\(item.digest.prefix(16))….dcm"
                // The instance is refused either way; the copy kept aside is for a person, and a
                // failed fsync only means that it may not survive a crash: said, not fatal.
                do {
                    try DurableFile.syncFolder(folder)
                } catch {
                    placed += " (it may not survive a crash: \(error))"
                }
            } else {
                placed += String(cString: strerror(errno))
            }
        } catch {
            placed += error.localizedDescription
        }
        unlink(item.staged)
        let why = "CONFLICT: \(item.instanceUID) is already held with different content (held sha256 \(heldDigest), received sha256 \(item.digest)); the held file is unchanged"
        failed.append(StowResponse.Failed(sopClassUID: item.classUID, sopInstanceUID: item.instanceUID, reason: 0xC000, reasonText: why + "; a person must decide which is right"))
        log.append("refused \(why); \(placed); a person must decide which is right")
        results.append(.conflict(sop: item.instanceUID, why: why))
        conflicts += 1
    }

    private func retrieveURL(_ study: String, _ instance: String) -> String {
        "\(baseURL)/studies/\(study)/instances/\(instance)"
    }

    private func abandonCurrent() {
        if let part = current {
            close(part.descriptor)
            unlink(part.path)
            current = nil
        }
        // Checked parts of a body that broke off are not kept either.
        for item in ready { unlink(item.staged) }
        ready.removeAll()
    }

}


/// UID syntax (PS3.5 §9.1): digits and dots, at most 64 characters, no empty component, no
/// leading zero in a component of more than one digit. Checked before a UID names a file.
public enum UID {
    public static func isValid(_ text: String) -> Bool {
        // One pass over the bytes (it runs for every file a catch-up scan reads): digits in
        // components separated by single dots, none empty, none with a leading zero.
        let bytes = text.utf8
        guard !bytes.isEmpty, bytes.count <= 64 else { return false }
        var componentLength = 0
        var leadingZero = false
        for byte in bytes {
            if byte == 0x2E {
                guard componentLength > 0 else { return false }
                componentLength = 0
            } else {
                guard byte >= 0x30 && byte <= 0x39, !(leadingZero && componentLength == 1) else { return false }
                if componentLength == 0 { leadingZero = byte == 0x30 }
                componentLength += 1
            }
        }
        return componentLength > 0
    }
}
