import Audit
internal import CSystem
import DICOM
import DICOMweb
import DIMSE
internal import Durability
import Foundation
import Platform
import Transport

/// Where the DIMSE SCP puts what it receives: each instance streamed into a new temporary file
/// in `<intake>/.incoming` (a Part 10 file: preamble, "DICM", File Meta Information with the
/// accepted context's transfer syntax and the command's SOP class and instance, then the data
/// set as it came, fragment by fragment), and once whole: fsynced, checked (a data set that
/// cannot be read: 0xC000; one whose SOP class is not the command's: 0xA900), renamed to
/// `<intake>/<Study>/<SOP>.dcm`, the folders fsynced, audited — and only then answered success.
/// The intake is watched like an archive folder, so the instance is then taken exactly as a
/// file closed there (rules, manifests, completeness: the same code).
///
/// Any failure leaves nothing: a write that fails (ENOSPC: 0xA700, out of resources), a data set
/// refused, a connection cut in the middle — the temporary file is removed. Hidden names keep
/// the watchers off `.incoming`; what an earlier run left there (a kill mid-instance, for which
/// no success was ever sent) is removed at start.
final class DIMSEIntake: DIMSEStoreSink, @unchecked Sendable {
    let folder: String
    let incoming: String
    let audit: AuditLog
    /// The dimse-peer names by calling AE title, for the audit log (SIGHUP replaces them).
    let names: LockedValue<[String: String]>
    let log: Logger
    /// The intake folder, open: syncfs(2) on it makes an instance, its name and its audit line
    /// durable in one call (the audit log is on the same filesystem; otherwise -1).
    let filesystem: Int32

    init(folder: String, audit: AuditLog, names: LockedValue<[String: String]>, log: Logger) throws {
        self.folder = folder
        incoming = folder + "/.incoming"
        self.audit = audit
        self.names = names
        self.log = log
        try FileManager.default.createDirectory(atPath: incoming, withIntermediateDirectories: true)
        let left = (try? FileManager.default.contentsOfDirectory(atPath: incoming)) ?? []
        for name in left { unlink(incoming + "/" + name) }
        if !left.isEmpty { log.info("removed instances an earlier run left half-received (none was answered success)", ["files": left.count]) }
        var a = stat(), b = stat()
        let sameDevice = stat(folder, &a) == 0 && stat((audit.path as NSString).deletingLastPathComponent, &b) == 0 && a.st_dev == b.st_dev
        filesystem = sameDevice ? open(folder, O_RDONLY | O_DIRECTORY | O_CLOEXEC) : -1
    }

    deinit { if filesystem >= 0 { close(filesystem) } }

    func begin(_ request: StoreRequest, from peer: DIMSEServer.Peer) throws -> any DIMSEIncomingInstance {
        let header: [UInt8]
        do {
            header = try DICOMWriter.fileHeader(transferSyntax: request.transferSyntax, sopClassUID: request.sopClass, sopInstanceUID: request.sopInstance, sourceAETitle: peer.aeTitle)
        } catch {
            throw DIMSEStoreRefusal(status: 0xC000, "cannot write a File Meta Information for it: \(error)")
        }
        let file = try Self.refusing { () throws(DurableFileError) in try DurableFile.createTemporary(in: incoming, prefix: "\(request.sopInstance).", mode: 0o640) }
        let instance = Instance(intake: self, request: request, peer: peer, descriptor: file.descriptor, path: file.path)
        do { try instance.write(header) } catch {
            instance.discard()
            throw error
        }
        return instance
    }

    /// A durable write's failure as the C-STORE status it means: out of resources (a full disk,
    /// a quota, an I/O error — trying later may work).
    static func refusing<T>(_ body: () throws(DurableFileError) -> T) throws(DIMSEStoreRefusal) -> T {
        do { return try body() } catch {
            throw DIMSEStoreRefusal(status: 0xA700, error.description)
        }
    }

    /// One instance on its way in.
    final class Instance: DIMSEIncomingInstance {
        let intake: DIMSEIntake
        let request: StoreRequest
        let peer: DIMSEServer.Peer
        var descriptor: Int32
        let path: String
        var size = 0

        init(intake: DIMSEIntake, request: StoreRequest, peer: DIMSEServer.Peer, descriptor: Int32, path: String) {
            self.intake = intake
            self.request = request
            self.peer = peer
            self.descriptor = descriptor
            self.path = path
        }

        /// Fragments gathered to `flushAt` before they are written (a peer's PDUs are often
        /// 16 kB: one write each was 30 system calls an instance), each write's writeback started
        /// at once, so the fsync before success finds most of the file already on its way.
        private var pending: [UInt8] = []
        private var written = 0
        static let flushAt = 256 * 1024

        func write(_ fragment: [UInt8]) throws {
            pending += fragment
            size += fragment.count
            if pending.count >= Self.flushAt { try flush() }
        }

        func flush() throws {
            guard !pending.isEmpty else { return }
            try DIMSEIntake.refusing { () throws(DurableFileError) in try DurableFile.writeAll(pending, to: descriptor, path: path) }
            _ = consort_start_writeback(descriptor, Int64(written), Int64(pending.count))
            written += pending.count
            pending.removeAll(keepingCapacity: true)
        }

        func discard() {
            if descriptor >= 0 { close(descriptor) }
            descriptor = -1
            unlink(path)
        }

        func finish() -> (status: UInt16, detail: String) {
            do {
                return try keep()
            } catch let refusal as DIMSEStoreRefusal {
                discard()
                return (refusal.status, refusal.description)
            } catch {
                discard()
                return (0xA700, "\(error)")
            }
        }

        private func keep() throws -> (status: UInt16, detail: String) {
            try flush()
            let fd = descriptor
            // One syncfs makes the file, its name and its audit line durable together (three
            // fsyncs otherwise); without it (the audit log elsewhere) each is synced on its own.
            let together = intake.filesystem >= 0
            try DIMSEIntake.refusing { () throws(DurableFileError) in
                if !together { guard fsync(fd) == 0 else { throw DurableFileError(.syncFile, path, errno: errno) } }
                descriptor = -1
                guard close(fd) == 0 else { throw DurableFileError(.close, path, errno: errno) }
            }
            // The whole file checked as the watcher will check it (PS3.4 B.2.3: 0xC000, cannot
            // understand, for a data set that cannot be read).
            let file: DICOMFile
            do { file = try DICOMFile.verify(path: path) } catch { throw DIMSEStoreRefusal(status: 0xC000, "the data set cannot be read: \(error)") }
            let sopClass = file.dataSet.string(.sopClassUID) ?? ""
            guard sopClass == request.sopClass else {
                throw DIMSEStoreRefusal(status: 0xA900, "the data set's SOP class \(sopClass) is not the command's \(request.sopClass)")
            }
            guard file.dataSet.string(.sopInstanceUID) == request.sopInstance else {
                throw DIMSEStoreRefusal(status: 0xC000, "the data set's SOP Instance UID is not the command's")
            }
            guard let study = file.dataSet.string(.studyInstanceUID), UID.isValid(study) else {
                throw DIMSEStoreRefusal(status: 0xC000, "the data set has no valid Study Instance UID")
            }
            let studyFolder = intake.folder + "/" + study
            let target = studyFolder + "/" + request.sopInstance + ".dcm"
            var existed = false
            try DIMSEIntake.refusing { () throws(DurableFileError) in
                if mkdir(studyFolder, 0o750) == 0 {
                    if !together { try DurableFile.syncFolder(intake.folder) }
                } else if errno != EEXIST {
                    throw DurableFileError(.createTemporary, studyFolder, errno: errno)
                }
                // The same instance sent again replaces the copy here (as a file written again in
                // a watched folder is taken again); a failure below must not remove that one.
                existed = access(target, F_OK) == 0
                guard rename(path, target) == 0 else { throw DurableFileError(.rename(to: target), path, errno: errno) }
                if !together { try DurableFile.syncFolder(studyFolder) }
            }
            // Audited before it is acknowledged: an instance that cannot be audited is not kept.
            let facts = Ingest.facts(of: file.dataSet, study: study)
            var nhs: String?
            if case .valid(let number) = Announcer.nhs(facts) { nhs = number.digits }
            let who = intake.names.value[peer.aeTitle] ?? peer.aeTitle
            do {
                try intake.audit.record(AuditEntry(
                    who: who, action: "receive", nhs: nhs, patient: facts.patientID, study: study, why: "dimse",
                    detail: "C-STORE \(request.sopInstance) from \(peer.aeTitle)@\(peer.address), \(size) bytes"), durable: !together)
                if together { guard consort_syncfs(intake.filesystem) == 0 else { throw DurableFileError(.syncFile, intake.folder, errno: errno) } }
            } catch {
                // Nothing answered success for these bytes: a new name goes; a name that was here
                // (answered success before, its bytes replaced by the same instance) stays.
                if !existed { unlink(target) }
                try? DurableFile.syncFolder(studyFolder)
                throw DIMSEStoreRefusal(status: 0xA700, "the instance cannot be made durable and audited now: \(error)")
            }
            return (0, "kept as \(target)")
        }
    }
}
