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
    /// How each checked instance is placed (issue 25: a study from another trust is placed in
    /// this trust's identity): as sent (the default), rewritten, or held aside for a person.
    public var placement: (@Sendable (DataSet) -> Placement)?

    /// How an instance is placed in the store.
    public enum Placement: Sendable, Equatable {
        /// The bytes as they were sent.
        case asSent
        /// Rewritten by `IdentityRewriter` as it is staged (streaming; the rewritten file is the
        /// one made durable, compared with what is held, and acknowledged).
        case rewrite(IdentityRewrite)
        /// As sent, but aside: `inbound/.held/<StudyUID>/<SOPUID>.dcm`, where no PACS takes it,
        /// until its identity is settled. Durable and acknowledged like any other.
        case hold(reason: String)
        /// Not placed: refused with this STOW-RS failure reason and why (a peer's object that is
        /// not a result for a study the site sent it: 0xA900).
        case refuse(reason: UInt16, why: String)
        /// Written again with its data set changed by the caller (issue 29: a result put back
        /// into the trust's identity and study), streaming (`StreamingRewrite`), and placed in
        /// the study its new header names; the sender is answered about the instance as it
        /// sent it. One that cannot be (a big-endian or deflated file, a transform that refuses
        /// it) is refused with 0xC000 and why.
        case transform(DataSetTransform)
    }

    /// A change to an instance's data set, named (for the log, and so that placements compare).
    public struct DataSetTransform: Sendable, Equatable {
        public var name: String
        public var apply: @Sendable (DataSet) throws -> DataSet

        public init(name: String, apply: @escaping @Sendable (DataSet) throws -> DataSet) {
            self.name = name
            self.apply = apply
        }

        public static func == (a: DataSetTransform, b: DataSetTransform) -> Bool { a.name == b.name }
    }

    /// Where held instances wait, beside the store (`Placement.hold`).
    public static let heldFolderName = ".held"
    private var decoder: MultipartDecoder
    private var current: Part?
    // The outcomes, and what is waiting to be placed, are internal rather than private: the
    // placing half of a request (StowIngest+Placing.swift) records them too.
    var stored: [StowResponse.Stored] = []
    var failed: [StowResponse.Failed] = []
    var studies: Set<String> = []
    private var partCount = 0
    /// Checked parts waiting for the request's durability barrier, then their place.
    var ready: [Ready] = []
    /// Study folders this request created: their names in `inbound` must be made durable too.
    var createdFolders: Set<String> = []
    /// What this process's requests into `inbound` know of each other's names and folders.
    let registry: InboundRegistry

    struct Ready {
        let staged: String
        let classUID: String
        let instanceUID: String
        let studyUID: String
        let size: Int
        /// The staged file's SHA-256, hashed as it was written; empty for a rewritten one (its
        /// bytes are this site's, hashed only where a comparison needs it: `digestNow`).
        let digest: String
        /// The header, as read when the part was checked (bulk values not loaded); of the
        /// rewritten file when it was rewritten.
        let header: DataSet
        /// Placed in the held folder rather than the store (`Placement.hold`).
        var held = false
        /// What the rewrite changed, when it was rewritten (for the caller's audit line).
        var rewritten: IdentityRewriteOutcome?
        /// The SHA-256 of the bytes as the sender sent them, when they were rewritten: what the
        /// sender's study manifest lists.
        var sentDigest: String?
        /// The study it is placed in, when a transform changed it (`studyUID` stays the one the
        /// sender named, which is all the sender is told of).
        var placedStudyUID: String?
        /// What a transform did (its name), when one did.
        var transformed: String?

        /// The staged file's SHA-256: as hashed, or read now (a rewritten one, when a copy of
        /// the same instance is found and must be compared).
        func digestNow() -> String { digest.isEmpty ? (SHA256Hasher.hex(ofFile: staged) ?? "unreadable") : digest }

        /// For the log: the hash as received and, for a rewritten one, that it was.
        var digestNote: String { digest.isEmpty ? "sent sha256 \((sentDigest ?? "").prefix(16))…, rewritten" : "sha256 \(digest.prefix(16))…" }
    }

    /// The outcome per instance, in words, for the caller's log and audit trail.
    public internal(set) var log: [String] = []
    /// The outcome per instance, typed, for callers that act on it (a fetch holds a study with
    /// an instance its check did not admit; `consort fetch` reports each refusal): never found
    /// by reading `log`.
    public internal(set) var results: [InstanceResult] = []

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
    public internal(set) var placed: [PlacedInstance] = []

    public struct PlacedInstance: Sendable {
        public var sopInstanceUID: String
        public var studyInstanceUID: String
        public var sopClassUID: String
        public var path: String
        public var size: Int
        /// The file's SHA-256; empty for one placed rewritten (not hashed again: `sentSHA256`).
        public var sha256: String
        public var alreadyHeld: Bool
        /// Its header as read when it was checked (no need to read the file again); as
        /// rewritten, when it was.
        public var header: DataSet
        /// In the held folder, waiting for its identity (`Placement.hold`): not in the store.
        public var held = false
        /// What the identity rewrite changed (nil: placed as sent, or held).
        public var rewritten: IdentityRewriteOutcome?
        /// The SHA-256 of the bytes as sent, when they were rewritten (`sha256` is of the file
        /// placed): the sender's manifest lists this one.
        public var sentSHA256: String?
        /// The transform it was placed through (`Placement.transform`'s name), and the study
        /// the sender named (`studyInstanceUID` is the one it was placed in).
        public var transformed: String?
        public var sentStudyInstanceUID: String?

        public init(
            sopInstanceUID: String, studyInstanceUID: String, sopClassUID: String, path: String, size: Int, sha256: String, alreadyHeld: Bool,
            header: DataSet
        ) {
            self.sopInstanceUID = sopInstanceUID
            self.studyInstanceUID = studyInstanceUID
            self.sopClassUID = sopClassUID
            self.path = path
            self.size = size
            self.sha256 = sha256
            self.alreadyHeld = alreadyHeld
            self.header = header
        }
    }
    /// Instances refused because one with the same UID and other bytes is held (quarantined).
    public internal(set) var conflicts = 0

    /// How much of each part is kept in memory to read its header from, without reading the
    /// staged file back (it was written around the page cache). A longer header is read from
    /// the file.
    static let headerPrefixBytes = 64 * 1024
    /// When instances may be placed rewritten (identity on delivery), a part up to this size is
    /// kept in memory as it arrives and written once its placement is known, rewritten in
    /// memory or as sent, around the page cache like any part: not staged through the page
    /// cache and written again (0.55–0.60× the throughput without the rewrite in consort bench
    /// route --identity; this way 0.79–0.94×). A larger part is written as it comes, and
    /// rewritten from its staged file. One part at a time per request: memory stays bounded by
    /// this (and the rewritten copy), not by the study.
    static let inMemoryPartBytes = 4 << 20
    /// How staged parts are named (then six random characters): what `StagingClaim` clears.
    public static let stagedPrefix = "part-"
    private let writer = StagingWriter()
    /// Decided once per request: direct writes only where they help (`StagingWriter.directIOSuits`).
    private let directIO: Bool

    /// How long an instance another request is storing waits for that request's outcome before
    /// it is refused with 0xA700 (the sender retries): that request has only its folders' fsyncs
    /// left to do, milliseconds unless the disk is failing.
    var inFlightWait: TimeInterval = 10

    /// A folder's fsync: 0, or the errno. A seam for tests, which fail one request's fsync of a
    /// folder at a moment they choose, to interleave it with another request's; in production
    /// it is always this, the real call.
    var fsyncFolder: (_ path: String, _ descriptor: Int32) -> Int32 = DurableFile.fsyncFolder

    final class Part {
        let path: String
        let descriptor: Int32
        let hasher = SHA256Hasher()
        var size = 0
        var prefix: [UInt8] = []
        var contentTypeOK: Bool
        /// Every byte so far is in `prefix` and none in the staged file (`inMemoryPartBytes`).
        var inMemory: Bool
        init(path: String, descriptor: Int32, contentTypeOK: Bool, inMemory: Bool = false) {
            self.path = path
            self.descriptor = descriptor
            self.contentTypeOK = contentTypeOK
            self.inMemory = inMemory
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
        // Not direct when instances may be placed rewritten (identity on delivery): the rewrite
        // reads the staged part back, from the page cache rather than the disk, and the staged
        // part, unlinked once rewritten, need never reach the disk at all (direct, every byte
        // went to the disk twice and was read back once: 0.57× of the throughput without the
        // rewrite in consort bench route --identity).
        writer.begin(file.descriptor, direct: directIO && placement == nil)
        return Part(path: file.path, descriptor: file.descriptor, contentTypeOK: contentTypeOK, inMemory: placement != nil)
    }

    private func write(_ bytes: ArraySlice<UInt8>, to part: Part) throws(HTTPError) {
        if part.inMemory {
            if part.prefix.count + bytes.count <= Self.inMemoryPartBytes {
                part.prefix += bytes
                bytes.withUnsafeBytes { part.hasher.update($0) }
                return
            }
            // Too large to keep: what was kept goes to the staged file, the rest as it comes.
            part.inMemory = false
            let kept = part.prefix
            let result = kept.withUnsafeBytes { raw in Result { () throws(StagingWriter.Failure) in try writer.append(raw) } }
            if case .failure(let error) = result {
                abandonCurrent()
                throw writeFailure(error)
            }
            part.prefix.removeSubrange(Self.headerPrefixBytes...)
        }
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
        var item = Ready(staged: part.path, classUID: classUID, instanceUID: instanceUID, studyUID: studyUID, size: part.size, digest: digest, header: file.dataSet)
        let decision = placement?(file.dataSet) ?? .asSent
        // A part kept in memory is written now: rewritten, or as it was sent.
        if part.inMemory {
            var heldAfterFailure: String?
            if case .refuse = decision {
                // Nothing to write.
            } else if case .rewrite(let rewrite) = decision {
                do {
                    item = try rewrittenFromMemory(item, rewrite, bytes: part.prefix)
                    ready.append(item)
                    return
                } catch {
                    // As one staged first: held for a person, as sent (never refused, never
                    // placed under the sender's identity).
                    heldAfterFailure = "it cannot be placed in this trust's identity: \(error)"
                }
            }
            if case .refuse = decision {} else {
                let failure = writeStaged(part.prefix, at: part.path)
                if failure != 0 { return refuse(failure == ENOSPC ? 0xA700 : 0xC000, "cannot stage the instance: \(String(cString: strerror(failure)))") }
            }
            if let heldAfterFailure {
                item.held = true
                holdReasons[studyUID] = heldAfterFailure
                ready.append(item)
                return
            }
        }
        switch decision {
        case .asSent:
            break
        case .refuse(let reason, let why):
            return refuse(reason, why)
        case .hold(let reason):
            item.held = true
            holdReasons[studyUID] = reason
        case .rewrite(let rewrite):
            do {
                item = try rewritten(item, rewrite)
            } catch {
                // Bytes that cannot be rewritten (a deflated or big-endian file, an identifier
                // that does not fit) are whole and valid: held for a person, never refused (the
                // sender would only send them again) nor placed under the sender's identity.
                item.held = true
                holdReasons[studyUID] = "it cannot be placed in this trust's identity: \(error)"
            }
        case .transform(let transform):
            do {
                item = try transformed(item, transform)
            } catch {
                // The transform's name is for the log: it may name what the sender was not given.
                log.append("\(instanceUID): \(transform.name) failed")
                return refuse(0xC000, "it cannot be placed here: \(error)")
            }
        }
        ready.append(item)
    }

    /// `bytes`, the whole of a part kept in memory (as sent, or rewritten), written into its
    /// staged file (empty until now) as any part is written: in large blocks around the page
    /// cache where the filesystem allows (`StagingWriter`). 0, or errno.
    private func writeStaged(_ bytes: [UInt8], at path: String) -> Int32 {
        let descriptor = open(path, O_WRONLY | O_TRUNC | O_CLOEXEC)
        guard descriptor >= 0 else { return errno }
        defer { close(descriptor) }
        writer.begin(descriptor, direct: directIO)
        let result = bytes.withUnsafeBytes { raw in Result { () throws(StagingWriter.Failure) in try writer.append(raw) } }
        do throws(StagingWriter.Failure) {
            try result.get()
            try writer.finish()
        } catch {
            return error.code
        }
        return 0
    }

    /// A part kept in memory, rewritten in memory and written so into its staged file; its
    /// header taken from the new bytes; what the rewrite changed kept for the audit line. On a
    /// failure the staged file is left for `writeStaged` to write over.
    private func rewrittenFromMemory(_ item: Ready, _ rewrite: IdentityRewrite, bytes: [UInt8]) throws -> Ready {
        let (made, outcome) = try IdentityRewriter.rewritten(bytes: bytes, name: item.staged, rewrite)
        let failure = writeStaged(made, at: item.staged)
        guard failure == 0 else { throw DICOMError(.io, "Cannot write \(item.staged): \(String(cString: strerror(failure)))") }
        var placed = Ready(
            staged: item.staged, classUID: item.classUID, instanceUID: item.instanceUID, studyUID: item.studyUID, size: made.count,
            digest: "", header: try DICOMFile.read(bytes: made).dataSet)
        placed.rewritten = outcome
        placed.sentDigest = item.digest
        return placed
    }

    /// The instance as rewritten at `path`: its header read back (from the page cache), its
    /// size; not hashed (the sender's hash is kept: `sentDigest`).
    private static func placedRewritten(_ item: Ready, at path: String, _ outcome: IdentityRewriteOutcome) throws -> Ready {
        let header = try DICOMFile.read(path: path).dataSet
        var info = stat()
        guard stat(path, &info) == 0 else { throw DICOMError(.io, "Cannot measure \(path)") }
        var placed = Ready(
            staged: path, classUID: item.classUID, instanceUID: item.instanceUID, studyUID: item.studyUID, size: Int(info.st_size),
            digest: "", header: header)
        placed.rewritten = outcome
        placed.sentDigest = item.digest
        return placed
    }

    /// A staged instance written again through a transform into a new staged file (made durable
    /// as it is written: transforms are for the few instances a peer sends back), its header read
    /// again; the original goes.
    private func transformed(_ item: Ready, _ transform: DataSetTransform) throws -> Ready {
        let path = staging + "/" + Self.stagedPrefix + "transformed-" + UUID().uuidString
        do {
            try StreamingRewrite.rewrite(item.staged, to: path, meta: { $0 }, dataSet: transform.apply)
        } catch {
            unlink(path)
            throw error
        }
        let header: DataSet
        var info = stat()
        do {
            header = try DICOMFile.read(path: path).dataSet
            guard stat(path, &info) == 0 else { throw DICOMError(.io, "Cannot measure \(path)") }
        } catch {
            unlink(path)
            throw error
        }
        guard header.string(.sopInstanceUID) == item.instanceUID, let study = header.string(.studyInstanceUID), UID.isValid(study) else {
            unlink(path)
            throw DICOMError(.malformed, "the transform changed the instance's own UID or left no valid study")
        }
        unlink(item.staged)
        var placed = Ready(
            staged: path, classUID: item.classUID, instanceUID: item.instanceUID, studyUID: item.studyUID, size: Int(info.st_size),
            digest: SHA256Hasher.hex(ofFile: path) ?? "", header: header)
        placed.placedStudyUID = study
        placed.transformed = transform.name
        placed.sentDigest = item.digest
        return placed
    }

    /// Why instances of a study were held (`Placement.hold`, or a rewrite that failed), by study.
    public internal(set) var holdReasons: [String: String] = [:]

    /// A staged instance rewritten into a new staged file (not yet durable: the request's
    /// barrier makes it so), its header read again; the original goes. Not hashed: a second
    /// SHA-256 of every instance cost a fifth of the throughput (`consort bench route
    /// --identity`), and the hash that matters, the sender's, is kept (`sentDigest`); the new
    /// file is hashed only when a copy must be compared (`digestNow`) or a manifest lists it.
    private func rewritten(_ item: Ready, _ rewrite: IdentityRewrite) throws -> Ready {
        let file = try DurableFile.createTemporary(in: staging, prefix: Self.stagedPrefix, mode: 0o640)
        let outcome: IdentityRewriteOutcome
        do {
            defer { close(file.descriptor) }
            // The unchanged ranges (the pixel data, most of the file) copied inside the kernel.
            outcome = try IdentityRewriter.rewrite(
                item.staged, into: file.descriptor, target: file.path, rewrite,
                copyRange: { from, offset, to, count in Int(consort_copy_range(from, Int64(offset), to, Int64(count))) })
            // Its writeback started now, beside the next instances' arrival, rather than all at
            // the request's durability barrier (the staged part was not written direct).
            _ = consort_start_writeback(file.descriptor, 0, 0)
        } catch {
            unlink(file.path)
            throw error
        }
        let placed: Ready
        do {
            placed = try Self.placedRewritten(item, at: file.path, outcome)
        } catch {
            unlink(file.path)
            throw error
        }
        unlink(item.staged)
        return placed
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
