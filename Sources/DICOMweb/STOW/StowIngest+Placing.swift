import Digest
import Foundation
internal import CSystem
internal import Durability

#if canImport(Glibc)
    import Glibc
#endif

/// The second half of a request: once its body is whole, the checked instances are made durable
/// (the barrier), linked into the store under their names, the names made durable (their
/// folders' fsyncs), and only then acknowledged — or refused, or kept aside as conflicts.
extension StowIngest {
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
    func place() {
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
        let unsure = folders.filter { createdFolders.contains($0) || !registry.isDurable(folder: name(ofFolder: $0)) }
        // Each unsure folder's entry lives in its parent: inbound, or the held folder (spelled
        // as inbound is, never normalised: a log and a test name the folder as it was given).
        func parentOf(_ folder: String) -> String { folder.hasPrefix(heldRoot + "/") ? heldRoot : inbound }
        for parent in Set(unsure.map(parentOf)).sorted() {
            let under = unsure.filter { parentOf($0) == parent }
            if let failure = syncFolder(parent) {
                // Unless another request's fsync of the parent has made the folder's entry
                // durable meanwhile: then its names need only their own folder's fsync.
                for folder in under where lost[folder] == nil && !registry.isDurable(folder: name(ofFolder: folder)) {
                    lost[folder] = failure
                }
            } else {
                registry.markDurable(folders: under.map(name(ofFolder:)))
            }
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
            registry.removeIfNotDurable(folder: name(ofFolder: folder), at: folder)
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
    /// inbound folder differently share it (a held one's under the held folder).
    private static func key(_ item: Ready) -> String { "\(relativeFolder(item))/\(item.instanceUID).dcm" }
    /// A study folder relative to inbound: `<StudyUID>`, or `.held/<StudyUID>`.
    private static func relativeFolder(_ item: Ready) -> String {
        let study = item.placedStudyUID ?? item.studyUID
        return item.held ? "\(heldFolderName)/\(study)" : study
    }
    private func name(ofFolder path: String) -> String {
        path.hasPrefix(inbound + "/") ? String(path.dropFirst(inbound.count + 1)) : (path as NSString).lastPathComponent
    }

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
        let folder = "\(inbound)/\(Self.relativeFolder(item))"
        let destination = "\(folder)/\(item.instanceUID).dcm"
        // The sender is told why without this site's paths (they name the study's folder: for
        // a result re-identified here, the study's own UID, which the sender was never given);
        // the log has them.
        func refuse(_ reason: UInt16, _ why: String, here: String) {
            unlink(item.staged)
            failed.append(StowResponse.Failed(sopClassUID: item.classUID, sopInstanceUID: item.instanceUID, reason: reason, reasonText: why))
            log.append("refused \(item.instanceUID): \(why) (\(here))")
            results.append(.refused(sop: item.instanceUID, reason: reason, why: why))
        }
        do {
            if item.held { try makeHeldFolder() }
            if access(folder, F_OK) != 0 {
                registry.forget(folder: Self.relativeFolder(item))
                try FileManager.default.createDirectory(atPath: folder, withIntermediateDirectories: true)
                createdFolders.insert(folder)
            }
        } catch {
            refuse(0xA700, "cannot create the study's folder here; send it again", here: "\(folder): \(error.localizedDescription)")
            return .settled
        }
        // Held elsewhere at this site (the agent's archive): one copy per site, never two. (Not
        // asked for an instance held for its identity: its bytes are the sender's, not this
        // site's; it is compared when it is placed in the store.)
        if !item.held, let other = heldElsewhere?(item.instanceUID), other != destination, FileManager.default.fileExists(atPath: other) {
            let otherDigest = SHA256Hasher.hex(ofFile: other)
            if otherDigest == item.digestNow() {
                unlink(item.staged)
                accept(item, at: destination, "already held \(item.instanceUID) at \(other) (same bytes, \(item.digestNote))", alreadyHeld: true)
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
                    note: "stored \(item.instanceUID) (\(item.size) bytes, \(item.digestNote))", alreadyHeld: false))
        }
        let code = errno
        // Not linked by this request: the claim goes (a name found here, unclaimed, is one a
        // request has settled as durable, or one left from before this process).
        // Unless this request linked it already (an instance sent twice in one request): that
        // claim stays until the first copy is settled.
        if claim == .claimed { registry.settle(key, by: owner) }
        let heldDigest = code == EEXIST ? SHA256Hasher.hex(ofFile: destination) : nil
        if code == EEXIST, heldDigest == item.digestNow() {
            unlink(item.staged)
            // Waits for its folder's fsync too: the name may be one this request has just linked
            // (an instance sent twice in one request) or one left by a receiver killed before it
            // fsynced the folder.
            return .named(
                Named(
                    item: item, folder: folder, destination: destination,
                    note: "already held \(item.instanceUID) (same bytes, \(item.digestNote))", alreadyHeld: true))
        }
        if code == EEXIST {
            quarantine(item, heldDigest: heldDigest ?? "unreadable")
        } else {
            // ENOENT: the study folder went between its check and the link (another request
            // removed it, having failed to make its name durable): worth sending again.
            refuse(code == ENOSPC || code == ENOENT ? 0xA700 : 0xC000, "cannot place the instance here: \(String(cString: strerror(code)))", here: destination)
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
        var instance = PlacedInstance(
            sopInstanceUID: item.instanceUID, studyInstanceUID: item.placedStudyUID ?? item.studyUID, sopClassUID: item.classUID, path: destination,
            size: item.size, sha256: item.digest, alreadyHeld: alreadyHeld, header: item.header)
        instance.held = item.held
        instance.rewritten = item.rewritten
        instance.sentSHA256 = item.sentDigest
        instance.transformed = item.transformed
        instance.sentStudyInstanceUID = item.transformed == nil ? nil : item.studyUID
        placed.append(instance)
    }

    private var heldRoot: String { "\(inbound)/\(Self.heldFolderName)" }

    /// The held folder, made durable in inbound the first time it is needed.
    private func makeHeldFolder() throws {
        let held = heldRoot
        guard access(held, F_OK) != 0 else { return }
        try FileManager.default.createDirectory(atPath: held, withIntermediateDirectories: true)
        try DurableFile.syncFolder(inbound)
    }

    /// Where instances that conflict with one already held are kept aside, beside the store:
    /// `inbound/.quarantine/<StudyUID>/<SOPUID>.<sha256>.dcm`. Never served, never routed.
    public static let quarantineFolderName = ".quarantine"

    /// Same SOP Instance UID, different bytes: the held file stays as it is (nothing is ever
    /// overwritten silently), the newcomer is kept aside — it may be the right one — and a
    /// person decides. The refusal names both hashes; the caller logs it at error level.
    private func quarantine(_ item: Ready, heldDigest: String) {
        let folder = "\(inbound)/\(Self.quarantineFolderName)/\(item.placedStudyUID ?? item.studyUID)"
        let digest = item.digestNow()
        let kept = "\(folder)/\(item.instanceUID).\(digest).dcm"
        var placed = "not kept: "
        do {
            try FileManager.default.createDirectory(atPath: folder, withIntermediateDirectories: true)
            // The same conflicting copy sent again is already there (same name, same bytes).
            if Glibc.link(item.staged, kept) == 0 || errno == EEXIST {
                placed = "the received copy is kept aside as \(Self.quarantineFolderName)/\(item.placedStudyUID ?? item.studyUID)/\(item.instanceUID).\(digest.prefix(16))….dcm"
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
        let why = "CONFLICT: \(item.instanceUID) is already held with different content (held sha256 \(heldDigest), received sha256 \(digest)); the held file is unchanged"
        failed.append(StowResponse.Failed(sopClassUID: item.classUID, sopInstanceUID: item.instanceUID, reason: 0xC000, reasonText: why + "; a person must decide which is right"))
        log.append("refused \(why); \(placed); a person must decide which is right")
        results.append(.conflict(sop: item.instanceUID, why: why))
        conflicts += 1
    }

    private func retrieveURL(_ study: String, _ instance: String) -> String {
        "\(baseURL)/studies/\(study)/instances/\(instance)"
    }
}
