import Audit
import DICOM
import DICOMweb
import Digest
import Foundation
import Platform
internal import Durability

#if canImport(Glibc)
    import Glibc
#endif

/// Identity on delivery (issue 25), the daemon's side: what arrived from another trust is
/// recorded as placed (in this trust's identity, or as sent) or as held for its identity; held
/// studies are looked at again — every `identityRecheck` seconds, after this trust announces
/// studies, and when a person releases one — and placed once their identity is settled.
extension AgentDaemon {
    /// How often held studies are looked at again without a nudge.
    static let identityRecheck = 30.0

    /// The held folder: `inbound/.held/<StudyUID>/<SOPUID>.dcm`.
    var heldFolder: String { configuration.inbound + "/" + StowIngest.heldFolderName }

    /// Instances a request or a fetch placed: the held ones recorded as waiting for identity,
    /// the rewritten ones audited (from which number to which), and the rest recorded in the
    /// inventory and run through the rules (`recordPlaced`). Throws when a record cannot be
    /// made: the sender is answered 503 and sends them again.
    @discardableResult
    func recordArrived(_ ingest: StowIngest, origin: String, why: String?) throws -> (count: Int, bytes: Int64, studies: [String: (instances: Int, nhs: String?, patient: String?)]) {
        let held = ingest.placed.filter(\.held)
        let placed = ingest.placed.filter { !$0.held }
        let now = clock.now
        for (study, instances) in Dictionary(grouping: held.filter { !$0.alreadyHeld }, by: \.studyInstanceUID) {
            let identity = IdentityBook.study(of: instances[0].header)
            var nhs: String?
            if case .valid(let number) = identity.nhs { nhs = number.digits }
            let reason = ingest.holdReasons[study] ?? "waiting for identity"
            let kind = IdentityDecision.Hold.Kind.allCases.first { reason.hasPrefix($0.rawValue + ":") } ?? .unknownPatient
            try store.recordIdentityHold(
                study: study, sender: origin, nhs: nhs, patientID: identity.patientID, kind: kind.rawValue, reason: reason, instances: instances.count, now: now)
            try audit.record(AuditEntry(
                who: origin, action: "receive", nhs: nhs, patient: identity.patientID, study: study, why: why,
                detail: "\(instances.count) instances held for identity: \(reason)"))
        }
        try auditRewrites(placed, origin: origin)
        return try recordPlaced(placed, origin: origin)
    }

    /// One audit line a study placed in this trust's identity: who sent it, from which number to
    /// which.
    private func auditRewrites(_ placed: [StowIngest.PlacedInstance], origin: String) throws {
        for (study, instances) in Dictionary(grouping: placed.filter { $0.rewritten != nil && !$0.alreadyHeld }, by: \.studyInstanceUID) {
            guard let outcome = instances[0].rewritten else { continue }
            let facts = Ingest.facts(of: instances[0].header, study: study)
            var nhs: String?
            if case .valid(let number) = Announcer.nhs(facts) { nhs = number.digits }
            let from = "\(outcome.previousPatientID) (\(outcome.previousIssuer ?? origin))"
            let to = "\(facts.patientID ?? "?") (\(facts.patientIssuer ?? "?"))"
            try audit.record(AuditEntry(
                who: configuration.trust, action: "identity", nhs: nhs, patient: facts.patientID, study: study, why: "identity reconciliation",
                detail: "\(instances.count) instances from \(origin) placed as \(to), from \(from)"))
        }
    }

    // MARK: - Looking again, releasing

    /// One turn of the releaser: every held study looked at again (the registry asked afresh
    /// for those waiting on it).
    func identityTurn() -> Double? {
        guard let holds = try? store.identityHolds() else { return nil }
        for hold in holds {
            if stopping.isSet { break }
            _ = releaseHeld(hold, force: false, who: configuration.trust)
        }
        return nil
    }

    /// What came of releasing a held study.
    enum HeldRelease: Equatable {
        /// Placed in the store: how many instances, under which identity.
        case placed(instances: Int, identity: String)
        /// Still held: why.
        case stillHeld(String)
        /// Nothing of it is held.
        case notHeld
        /// It could not be placed now (the disk, the database): why; tried again.
        case failed(String)
    }

    /// Looks at a held study again; places it when its identity is settled. `force`: a person
    /// released it (`IdentityDecision.decide`).
    func releaseHeld(_ hold: AgentStore.IdentityHold, force: Bool, who: String) -> HeldRelease {
        guard let book = identityBook else { return .stillHeld("this agent does not reconcile identity (no coordinator, or identity keep)") }
        let folder = heldFolder + "/" + hold.study
        let files = ((try? FileManager.default.contentsOfDirectory(atPath: folder)) ?? []).filter { $0.hasSuffix(".dcm") }.sorted().map { folder + "/" + $0 }
        guard let first = files.first else {
            try? store.removeIdentityHold(study: hold.study)
            return .notHeld
        }
        let header: DataSet
        do { header = try DICOMFile.read(path: first).dataSet } catch { return .failed("cannot read \(first): \(error)") }
        // The registry is asked afresh only for a hold that waits on it (or a person's release):
        // a conflict or a bad file changes when a person changes it.
        let fresh = force || hold.kind == IdentityDecision.Hold.Kind.unknownPatient.rawValue || hold.kind == IdentityDecision.Hold.Kind.unavailable.rawValue
        let (outcome, _) = book.decide(IdentityBook.study(of: header), sender: hold.sender, fresh: fresh, force: force)
        let rewrite: IdentityRewrite?
        switch outcome {
        case .hold(let still):
            let reason = "\(still.kind.rawValue): \(still.reason)"
            if reason != hold.reason { try? store.updateIdentityHold(study: hold.study, kind: still.kind.rawValue, reason: reason, now: clock.now) }
            return .stillHeld(reason)
        case .asSent: rewrite = nil
        case .rewrite(let r): rewrite = r
        }
        do {
            let placed = try placeHeld(files, study: hold.study, rewrite: rewrite)
            try auditRewrites(placed, origin: hold.sender)
            try recordPlaced(placed, origin: hold.sender)
            try audit.record(AuditEntry(
                who: who, action: "identity-release", nhs: hold.nhs, patient: hold.patientID, study: hold.study, why: force ? "released by a person" : "identity settled",
                detail: "\(placed.count) instances from \(hold.sender) placed \(rewrite.map { "as \($0.local)" } ?? "as sent"); held since \(Self.isoTime(hold.since))"))
            for file in files { unlink(file) }
            rmdir(folder)
            try? DurableFile.syncFolder(heldFolder)
            try store.removeIdentityHold(study: hold.study)
            let identity = rewrite.map { $0.local.description } ?? "as sent"
            log.named("identity").info("held study placed", ["study": hold.study, "from": hold.sender, "instances": placed.count, "as": identity, "by": who])
            return .placed(instances: placed.count, identity: identity)
        } catch let conflict as HeldConflict {
            try? store.updateIdentityHold(study: hold.study, kind: IdentityDecision.Hold.Kind.conflict.rawValue, reason: "conflict: \(conflict.message)", now: clock.now)
            log.named("identity").error("HELD STUDY NOT PLACED: a person must decide", ["study": hold.study, "reason": conflict.message])
            return .stillHeld("conflict: \(conflict.message)")
        } catch {
            log.named("identity").warning("held study not placed now; tried again", ["study": hold.study, "error": error])
            return .failed("\(error)")
        }
    }

    struct HeldConflict: Error {
        let message: String
    }

    /// Each held file into the store, rewritten (or as it is), durably, never over another file:
    /// written to a staged name, fsynced, linked into place (link(2) fails if the name is taken),
    /// the study folder fsynced. A name held with the same bytes is taken as placed (a release
    /// interrupted by a crash and run again); with other bytes, a conflict for a person.
    private func placeHeld(_ files: [String], study: String, rewrite: IdentityRewrite?) throws -> [StowIngest.PlacedInstance] {
        let target = configuration.inbound + "/" + study
        if access(target, F_OK) != 0 {
            try FileManager.default.createDirectory(atPath: target, withIntermediateDirectories: true)
            try DurableFile.syncFolder(configuration.inbound)
        }
        var placed: [StowIngest.PlacedInstance] = []
        for file in files {
            let name = (file as NSString).lastPathComponent
            let destination = target + "/" + name
            let staged = try DurableFile.createTemporary(in: configuration.stagingFolder, prefix: StowIngest.stagedPrefix, mode: 0o640)
            defer { unlink(staged.path) }
            let hasher = SHA256Hasher()
            var changed: IdentityRewriteOutcome?
            do {
                defer { close(staged.descriptor) }
                if let rewrite {
                    changed = try IdentityRewriter.rewrite(file, into: staged.descriptor, target: staged.path, rewrite, observe: { hasher.update($0) })
                } else {
                    try Self.copy(file, into: staged.descriptor, hasher: hasher)
                }
                guard fsync(staged.descriptor) == 0 else { throw HeldConflict(message: "cannot fsync \(staged.path): \(String(cString: strerror(errno)))") }
            }
            let digest = hasher.finalize()
            var alreadyHeld = false
            if link(staged.path, destination) != 0 {
                guard errno == EEXIST else { throw DICOMError(.io, "cannot place \(destination): \(String(cString: strerror(errno)))") }
                guard SHA256Hasher.hex(ofFile: destination) == digest else {
                    throw HeldConflict(message: "\(destination) is already in the store with other bytes; the held copy stays at \(file)")
                }
                alreadyHeld = true
            }
            let header = try DICOMFile.read(path: destination).dataSet
            var info = stat()
            _ = stat(destination, &info)
            var instance = StowIngest.PlacedInstance(
                sopInstanceUID: (name as NSString).deletingPathExtension, studyInstanceUID: study,
                sopClassUID: header.string(.sopClassUID) ?? "", path: destination, size: Int(info.st_size), sha256: digest, alreadyHeld: alreadyHeld,
                header: header)
            instance.rewritten = changed
            // The held file is as the sender sent it: its hash is what the sender's manifest lists.
            if rewrite != nil { instance.sentSHA256 = SHA256Hasher.hex(ofFile: file) }
            placed.append(instance)
        }
        try DurableFile.syncFolder(target)
        return placed
    }

    /// A held file's bytes as they are, into `descriptor` (a study whose identity needs no
    /// rewrite), hashed on the way.
    private static func copy(_ path: String, into descriptor: Int32, hasher: SHA256Hasher) throws {
        let source = open(path, O_RDONLY | O_CLOEXEC)
        guard source >= 0 else { throw DICOMError(.io, "cannot open \(path): \(String(cString: strerror(errno)))") }
        defer { close(source) }
        let chunk = UnsafeMutableRawBufferPointer.allocate(byteCount: 1 << 20, alignment: 16)
        defer { chunk.deallocate() }
        while true {
            let n = read(source, chunk.baseAddress, chunk.count)
            if n < 0 && errno == EINTR { continue }
            guard n >= 0 else { throw DICOMError(.io, "cannot read \(path): \(String(cString: strerror(errno)))") }
            if n == 0 { return }
            let part = UnsafeRawBufferPointer(rebasing: chunk[0..<n])
            var written = 0
            while written < n {
                let w = write(descriptor, part.baseAddress! + written, n - written)
                if w < 0 && errno == EINTR { continue }
                guard w > 0 else { throw DICOMError(.io, "cannot write a staged copy of \(path): \(String(cString: strerror(errno)))") }
                written += w
            }
            hasher.update(part)
        }
    }
}
