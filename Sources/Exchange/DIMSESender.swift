import DICOM
import DIMSE
import Foundation
import Transport

/// C-STORE from files to a DICOM node (a PACS that speaks DIMSE only): what `consort store` and
/// the agent's `local NAME dimse AET@HOST:PORT` deliveries share. One association a batch; each
/// data set streamed from its file as stored (memory flat in file size); each
/// instance's answer classified by what the caller does next, as STOW-RS answers are
/// (`FailureClassifier`'s classes). An uncompressed little-endian instance is sent in the other
/// of implicit and explicit VR only when the node refuses the stored one.
public enum DIMSESender {
    /// Why a file cannot be offered.
    public struct FileProblem: Error, CustomStringConvertible {
        public let description: String
        init(_ description: String) { self.description = description }
    }

    /// A Part 10 file's SOP class and instance, transfer syntax and where its data set starts.
    public static func item(path: String) throws -> DIMSEAssociation.StoreItem {
        let file: DICOMFile
        do { file = try DICOMFile.read(path: path) } catch { throw FileProblem("\(path): not readable DICOM: \(error)") }
        guard file.isPart10, let syntax = file.transferSyntaxUID else {
            throw FileProblem("\(path): not a DICOM Part 10 file (no File Meta Information to say its transfer syntax)")
        }
        guard let sopClass = file.meta.string(.mediaStorageSOPClassUID) ?? file.dataSet.string(.sopClassUID),
            let sopInstance = file.meta.string(.mediaStorageSOPInstanceUID) ?? file.dataSet.string(.sopInstanceUID)
        else { throw FileProblem("\(path): no SOP Class or SOP Instance UID") }
        // The data set starts after the meta group, whose length (0002,0000) is its first
        // element, at byte 132: tag, "UL", length 4, value (PS3.10 §7.1).
        let handle = try FileHandle(forReadingFrom: URL(fileURLWithPath: path))
        defer { try? handle.close() }
        try handle.seek(toOffset: 132)
        let head = [UInt8](handle.readData(ofLength: 12))
        guard head.count == 12, head[0..<8] == [0x02, 0x00, 0x00, 0x00, 0x55, 0x4C, 0x04, 0x00] else {
            throw FileProblem("\(path): its File Meta Information does not begin with its group length (0002,0000)")
        }
        let groupLength = Int(head[8]) | Int(head[9]) << 8 | Int(head[10]) << 16 | Int(head[11]) << 24
        let size = Int((try FileManager.default.attributesOfItem(atPath: path)[.size] as? NSNumber)?.int64Value ?? 0)
        guard 144 + groupLength <= size else { throw FileProblem("\(path): shorter than its File Meta Information says") }
        // Uncompressed little endian: the other of implicit and explicit VR is offered beside the
        // stored one, for a node that takes only that (converted only if it is refused as stored).
        let alternative = [TransferSyntax.explicitVRLittleEndian, TransferSyntax.implicitVRLittleEndian].first {
            TransferSyntaxConversion.canConvert(from: syntax, to: $0)
        }
        return DIMSEAssociation.StoreItem(
            path: path, sopClass: sopClass, sopInstance: sopInstance, transferSyntax: syntax, dataSetOffset: 144 + groupLength, size: size,
            alternative: alternative, convert: alternative == nil ? nil : { @Sendable target in try converted(path, to: target) })
    }

    /// The data set of `path` in `target` (`TransferSyntaxConversion`), as pieces to send.
    static func converted(_ path: String, to target: String) throws -> [DIMSEAssociation.DataSetPiece] {
        try TransferSyntaxConversion.dataSet(of: path, to: target).map { piece in
            switch piece {
            case .bytes(let bytes): return .bytes(bytes)
            case .copy(let offset, let count): return .file(offset: offset, count: count)
            }
        }
    }

    /// The batch on one association to `node`, calling as `calling`; what became of each
    /// instance, in the batch's order:
    /// - stored (success, or a warning: stored with a remark) → delivered;
    /// - out of resources (0xA7xx), or not answered because the association failed or could
    ///   not be made → transient (retried with backoff; counts against the node's circuit);
    /// - the association rejected permanently for our AE titles (the node does not know us, or
    ///   is not the AE title configured) → configuration (a person fixes one side);
    /// - any other failure status, or the SOP class / transfer syntax not accepted → refused,
    ///   with the node's status in words (trying again will not change it).
    /// With `tls`, DICOM TLS with this site's certificate (a context made for the batch, so a
    /// reloaded certificate or CRL is used by the next).
    public static func deliver(_ batch: [OutgoingInstance], to node: DIMSENode, calling: String, timeout: Double, tls: TLSConfiguration? = nil) -> [InstanceOutcome] {
        var context: TLSContext?
        if let tls {
            do { context = try TLSContext(tls, role: .client) } catch {
                return batch.map { InstanceOutcome(instance: $0, delivery: .failed(.local), reason: "cannot set up TLS for \(node) (a configuration fault here): \(error)") }
            }
        }
        var outcomes: [String: InstanceOutcome] = [:]
        var items: [DIMSEAssociation.StoreItem] = []
        for instance in batch {
            do {
                items.append(try item(path: instance.path))
            } catch {
                outcomes[instance.uid] = InstanceOutcome(instance: instance, delivery: .failed(.refused), reason: "\(error)")
            }
        }
        let byPath = Dictionary(batch.map { ($0.path, $0) }, uniquingKeysWith: { first, _ in first })
        if !items.isEmpty {
            do {
                let (results, broken) = try DIMSEAssociation.store(items, host: node.host, port: node.port, called: node.ae, calling: calling, timeout: timeout, tls: context)
                for result in results {
                    guard let instance = byPath[result.item.path] else { continue }
                    outcomes[instance.uid] = outcome(instance, status: result.status, reason: result.reason)
                }
                for item in items.dropFirst(results.count) {
                    guard let instance = byPath[item.path] else { continue }
                    outcomes[instance.uid] = InstanceOutcome(instance: instance, delivery: .failed(.transient), reason: "not sent: the association with \(node) failed: \(broken ?? "?")")
                }
            } catch {
                let words = "\(error)"
                // PS3.8 §9.3.4: a permanent rejection by the service user for the calling or
                // called AE title is a fault in configuration, not a node that is down.
                let rejection = (error as? DIMSEAssociation.Failure)?.rejection
                // So is a TLS handshake refused for a certificate (ours or the PACS's).
                let ours = rejection.map { $0.result == .permanent && $0.source == 1 && ($0.reason == 3 || $0.reason == 7) }
                    ?? ((error as? DIMSEAssociation.Failure)?.inHandshake ?? false)
                for item in items {
                    guard let instance = byPath[item.path] else { continue }
                    outcomes[instance.uid] = InstanceOutcome(instance: instance, delivery: .failed(ours ? .configuration : .transient), reason: "\(node): \(words)")
                }
            }
        }
        return batch.compactMap { outcomes[$0.uid] }
    }

    static func outcome(_ instance: OutgoingInstance, status: UInt16?, reason: String) -> InstanceOutcome {
        guard let status else { return InstanceOutcome(instance: instance, delivery: .failed(.refused), reason: reason) }
        switch Command.outcome(ofStoreStatus: status) {
        case .success, .warning: return InstanceOutcome(instance: instance, delivery: .delivered, reason: status == 0 ? nil : reason, status: Int(status))
        case .failure(retryable: true): return InstanceOutcome(instance: instance, delivery: .failed(.transient), reason: reason, status: Int(status))
        case .failure(retryable: false): return InstanceOutcome(instance: instance, delivery: .failed(.refused), reason: reason, status: Int(status))
        }
    }
}
