import Foundation
import TestSupport
import Testing

import DICOM
import Digest
@testable import DICOMweb

/// The STOW-RS receiver's storage path on real files: staged instances written in aligned
/// blocks around the page cache (where the filesystem allows), their headers read from the
/// bytes kept in memory, linked into place whole.
@Suite("STOW-RS ingest to disk", .timeLimit(.minutes(5)))
struct StowIngestTests {
    /// UIDs name files (`<Study>/<SOP>.dcm`): only PS3.5 §9.1's form passes — digits in
    /// dot-separated components, none empty, no leading zero, at most 64 characters.
    @Test func uidsAreCheckedByTheirForm() {
        for valid in ["1", "0", "1.2", "1.0.3", "2.25.101", "1.2.840.10008.5.1.4.1.1.2", String(repeating: "1", count: 64), "10.20"] {
            #expect(UID.isValid(valid), "\(valid)")
        }
        for invalid in ["", ".", "1.", ".1", "1..2", "01", "1.02", "1.2.00", "1.2a", "1 .2", "1.2 ", "1/2", "../1", "１.2", String(repeating: "1", count: 65), "1.2\u{0}"] {
            #expect(!UID.isValid(invalid), "\(invalid)")
        }
    }

    /// A small explicit VR little endian Part 10 instance: `headerPadding` bytes of a private OB
    /// value before Pixel Data (to make a header longer than any prefix), then `pixels` bytes.
    static func instance(_ uid: String, study: String, headerPadding: Int = 0, pixels: Int, patientID: String? = nil) -> [UInt8] {
        func element(_ group: UInt16, _ number: UInt16, _ vr: String, _ value: [UInt8]) -> [UInt8] {
            var value = value
            if value.count % 2 == 1 { value.append(vr == "UI" || vr == "OB" ? 0 : 0x20) }
            var out: [UInt8] = [UInt8(group & 0xFF), UInt8(group >> 8), UInt8(number & 0xFF), UInt8(number >> 8)] + Array(vr.utf8)
            if ["OB", "OW", "UN", "SQ", "UT"].contains(vr) {
                out += [0, 0] + withUnsafeBytes(of: UInt32(value.count).littleEndian, Array.init)
            } else {
                out += withUnsafeBytes(of: UInt16(value.count).littleEndian, Array.init)
            }
            return out + value
        }
        let secondaryCapture = "1.2.840.10008.5.1.4.1.1.7"
        let metaBody =
            element(0x0002, 0x0001, "OB", [0, 1]) + element(0x0002, 0x0002, "UI", Array(secondaryCapture.utf8))
            + element(0x0002, 0x0003, "UI", Array(uid.utf8)) + element(0x0002, 0x0010, "UI", Array("1.2.840.10008.1.2.1".utf8))
        var bytes = [UInt8](repeating: 0, count: 128) + Array("DICM".utf8)
        bytes += element(0x0002, 0x0000, "UL", withUnsafeBytes(of: UInt32(metaBody.count).littleEndian, Array.init)) + metaBody
        bytes += element(0x0008, 0x0016, "UI", Array(secondaryCapture.utf8)) + element(0x0008, 0x0018, "UI", Array(uid.utf8))
        if headerPadding > 0 {
            bytes += element(0x0009, 0x0010, "LO", Array("CONSORT TEST".utf8))
            bytes += element(0x0009, 0x1001, "OB", (0..<headerPadding).map { UInt8(truncatingIfNeeded: $0 &* 31) })
        }
        if let patientID { bytes += element(0x0010, 0x0020, "LO", Array(patientID.utf8)) }
        bytes += element(0x0020, 0x000D, "UI", Array(study.utf8))
        bytes += element(0x7FE0, 0x0010, "OB", (0..<pixels).map { UInt8(truncatingIfNeeded: $0 &* 7 &+ $0 >> 9) })
        return bytes
    }

    static func body(_ parts: [[UInt8]], boundary: String) -> [UInt8] {
        var body: [UInt8] = []
        for part in parts { body += Array("--\(boundary)\r\nContent-Type: application/dicom\r\n\r\n".utf8) + part + Array("\r\n".utf8) }
        return body + Array("--\(boundary)--\r\n".utf8)
    }

    /// Feeds `body` in pieces of the given sizes, round and round; returns the response.
    static func ingest(_ body: [UInt8], into folder: String, pieces: [Int]) throws -> (StowResponse, StowIngest) {
        let ingest = try StowIngest(inbound: folder + "/inbound", staging: folder + "/staging", boundary: "b0und", baseURL: "https://test")
        var at = 0, turn = 0
        while at < body.count {
            let n = min(pieces[turn % pieces.count], body.count - at)
            try ingest.consume(body[at..<at + n])
            at += n
            turn += 1
        }
        return (try ingest.finish(), ingest)
    }

    static func scratch() throws -> String {
        let path = NSTemporaryDirectory() + "consort-stow-\(UUID().uuidString)"
        try FileManager.default.createDirectory(atPath: path, withIntermediateDirectories: true)
        return path
    }

    @Test func instancesOfEverySizeAroundTheBlockEdgesArriveExact() throws {
        let folder = try Self.scratch()
        defer { try? FileManager.default.removeItem(atPath: folder) }
        let study = "1.2.826.0.1.3680043.10.1"
        let plain = Self.instance("1.2.3.0", study: study, pixels: 0).count
        // Whole files (always of even length in DICOM) just short of, on, and past 4 KiB, 1 MiB
        // (the writer's block) and 2 MiB.
        let targets = [0, 4094, 4096, 4098, (1 << 20) - 2, 1 << 20, (1 << 20) + 2, (2 << 20) + 4096]
        let instances = targets.enumerated().map { i, size in
            Self.instance("1.2.3.\(i + 1)", study: study, pixels: max(0, size - plain))
        }
        for pieces in [[16 * 1024], [1, 7, 4096, 65_537, 3]] {
            let run = folder + "/run-\(pieces.count)"
            let (response, ingest) = try Self.ingest(Self.body(instances, boundary: "b0und"), into: run, pieces: pieces)
            #expect(response.failed.isEmpty, "\(ingest.log)")
            #expect(response.stored.count == instances.count)
            for (i, instance) in instances.enumerated() {
                let stored = try [UInt8](Data(contentsOf: URL(fileURLWithPath: "\(run)/inbound/\(study)/1.2.3.\(i + 1).dcm")))
                #expect(stored == instance, "instance \(i + 1) of \(instance.count) bytes came out as \(stored.count) bytes")
            }
            #expect(try FileManager.default.contentsOfDirectory(atPath: run + "/staging").isEmpty)
        }
    }

    /// Placed rewritten (identity on delivery): the rewritten file is not hashed as it is
    /// written, so the same instance sent again is compared by reading both files then — the
    /// same rewrite is already held; another rewrite of it is a conflict, kept aside by its hash.
    @Test func aRewrittenInstanceSentAgainIsAlreadyHeldAndAnotherRewriteOfItIsAConflict() throws {
        let folder = try Self.scratch()
        defer { try? FileManager.default.removeItem(atPath: folder) }
        let study = "1.2.826.0.1.3680043.10.3"
        let original = Self.instance("1.2.3.77", study: study, pixels: 3000, patientID: "R123")
        func ingest(_ local: String) throws -> (StowResponse, StowIngest) {
            let ingest = try StowIngest(inbound: folder + "/inbound", staging: folder + "/staging", boundary: "b0und", baseURL: "https://test")
            let rewrite = IdentityRewrite(
                local: PatientIdentifier(id: local, issuer: "UHSX"), senderIssuer: "RSCH",
                additionalIdentifiers: [PatientIdentifier(id: "9990000018", issuer: "NHS")], accessionNumberIssuer: "RSCH")
            ingest.placement = { _ in .rewrite(rewrite) }
            try ingest.consume(Self.body([original], boundary: "b0und")[...])
            return (try ingest.finish(), ingest)
        }
        let (first, placed) = try ingest("U1")
        #expect(first.stored.count == 1 && placed.placed.first?.rewritten != nil, "\(placed.log)")
        #expect(placed.placed.first?.sha256 == "" && placed.placed.first?.sentSHA256 == SHA256Hasher.hex(original), "only the sender's hash is taken")
        let stored = try [UInt8](Data(contentsOf: URL(fileURLWithPath: "\(folder)/inbound/\(study)/1.2.3.77.dcm")))
        #expect(stored != original, "rewritten")
        // Byte for byte what the rewriter makes of the file on its own (there the unchanged
        // ranges go through user memory; here inside the kernel).
        try Data(original).write(to: URL(fileURLWithPath: folder + "/original.dcm"))
        try IdentityRewriter.rewrite(folder + "/original.dcm", to: folder + "/expected.dcm", IdentityRewrite(
            local: PatientIdentifier(id: "U1", issuer: "UHSX"), senderIssuer: "RSCH",
            additionalIdentifiers: [PatientIdentifier(id: "9990000018", issuer: "NHS")], accessionNumberIssuer: "RSCH"))
        #expect(try [UInt8](Data(contentsOf: URL(fileURLWithPath: folder + "/expected.dcm"))) == stored)
        let (again, _) = try ingest("U1")
        #expect(again.stored.first?.alreadyHeld == true && again.failed.isEmpty)
        let (other, conflicted) = try ingest("U2")
        #expect(other.failed.count == 1 && conflicted.log.contains { $0.contains("CONFLICT") }, "\(conflicted.log)")
        #expect(try [UInt8](Data(contentsOf: URL(fileURLWithPath: "\(folder)/inbound/\(study)/1.2.3.77.dcm"))) == stored, "the held file unchanged")
        #expect(try FileManager.default.contentsOfDirectory(atPath: "\(folder)/inbound/\(StowIngest.quarantineFolderName)/\(study)").count == 1)
    }

    /// Where instances may be placed rewritten, a part up to `inMemoryPartBytes` is kept in
    /// memory and written once, rewritten; a larger one is staged as it comes and rewritten from
    /// the staged file. Either way the stored file is byte for byte what the rewriter makes of
    /// the instance, whatever pieces the body arrives in; an instance placed as sent or held by
    /// the same placement is stored as it was sent; nothing is left in staging.
    @Test func aPartKeptInMemoryIsWrittenOnceRewrittenAndALargerOneFromItsStagedFile() throws {
        let folder = try Self.scratch()
        defer { try? FileManager.default.removeItem(atPath: folder) }
        let study = "1.2.826.0.1.3680043.10.4"
        let plain = Self.instance("1.2.4.0", study: study, pixels: 0, patientID: "R123").count
        let limit = StowIngest.inMemoryPartBytes
        let sizes = [3000, limit - 2, limit, limit + 2, 2 * limit + 4096]
        let instances = sizes.enumerated().map { i, size in Self.instance("1.2.4.\(i + 1)", study: study, pixels: max(0, size - plain), patientID: "R123") }
        let asSent = Self.instance("1.2.4.90", study: study, pixels: 2000, patientID: "KEEP")
        let held = Self.instance("1.2.4.91", study: study, pixels: 2000, patientID: "HOLD")
        // A rewrite that cannot be made (a local number outside LO's repertoire): held as sent.
        let unrewritable = Self.instance("1.2.4.92", study: "1.2.826.0.1.3680043.10.5", pixels: 2000, patientID: "BAD")
        let badRewrite = IdentityRewrite(
            local: PatientIdentifier(id: "U\u{00DC}1", issuer: "UHSX"), senderIssuer: "RSCH", additionalIdentifiers: [], accessionNumberIssuer: "RSCH")
        let rewrite = IdentityRewrite(
            local: PatientIdentifier(id: "U1", issuer: "UHSX"), senderIssuer: "RSCH",
            additionalIdentifiers: [PatientIdentifier(id: "9990000018", issuer: "NHS")], accessionNumberIssuer: "RSCH")
        for pieces in [[1 << 20], [7, 65_537, 4096, 3]] {
            let run = folder + "/run-\(pieces.count)"
            let ingest = try StowIngest(inbound: run + "/inbound", staging: run + "/staging", boundary: "b0und", baseURL: "https://test")
            ingest.placement = { header in
                switch header.string(.patientID) {
                case "KEEP": return .asSent
                case "HOLD": return .hold(reason: "a test")
                case "BAD": return .rewrite(badRewrite)
                default: return .rewrite(rewrite)
                }
            }
            let body = Self.body(instances + [asSent, held, unrewritable], boundary: "b0und")
            var at = 0
            for size in pieces.cycled(until: body.count) {
                let n = min(size, body.count - at)
                try ingest.consume(body[at..<(at + n)])
                at += n
            }
            let response = try ingest.finish()
            #expect(response.failed.isEmpty && response.stored.count == instances.count + 3, "\(ingest.log)")
            for (i, instance) in instances.enumerated() {
                try Data(instance).write(to: URL(fileURLWithPath: run + "/original.dcm"))
                try IdentityRewriter.rewrite(run + "/original.dcm", to: run + "/expected.dcm", rewrite)
                let stored = try [UInt8](Data(contentsOf: URL(fileURLWithPath: "\(run)/inbound/\(study)/1.2.4.\(i + 1).dcm")))
                #expect(stored == (try [UInt8](Data(contentsOf: URL(fileURLWithPath: run + "/expected.dcm")))), "\(sizes[i]) bytes in pieces of \(pieces)")
                let placed = ingest.placed.first { $0.sopInstanceUID == "1.2.4.\(i + 1)" }
                #expect(placed?.rewritten != nil && placed?.sentSHA256 == SHA256Hasher.hex(instance) && placed?.header.string(.patientID) == "U1")
            }
            #expect(try [UInt8](Data(contentsOf: URL(fileURLWithPath: "\(run)/inbound/\(study)/1.2.4.90.dcm"))) == asSent)
            #expect(try [UInt8](Data(contentsOf: URL(fileURLWithPath: "\(run)/inbound/\(StowIngest.heldFolderName)/\(study)/1.2.4.91.dcm"))) == held)
            #expect(try [UInt8](Data(contentsOf: URL(fileURLWithPath: "\(run)/inbound/\(StowIngest.heldFolderName)/1.2.826.0.1.3680043.10.5/1.2.4.92.dcm"))) == unrewritable)
            #expect(ingest.holdReasons["1.2.826.0.1.3680043.10.5"]?.contains("cannot be placed in this trust's identity") == true, "\(ingest.holdReasons)")
            #expect(try FileManager.default.contentsOfDirectory(atPath: run + "/staging").isEmpty)
        }
    }

    @Test func aHeaderLongerThanTheKeptPrefixIsReadFromTheStagedFile() throws {
        let folder = try Self.scratch()
        defer { try? FileManager.default.removeItem(atPath: folder) }
        let study = "1.2.826.0.1.3680043.10.2"
        let long = Self.instance("1.2.3.99", study: study, headerPadding: StowIngest.headerPrefixBytes + 10_000, pixels: 5000)
        let (response, ingest) = try Self.ingest(Self.body([long], boundary: "b0und"), into: folder, pieces: [20_000])
        #expect(response.stored.map(\.sopInstanceUID) == ["1.2.3.99"], "\(ingest.log)")
        #expect(try [UInt8](Data(contentsOf: URL(fileURLWithPath: "\(folder)/inbound/\(study)/1.2.3.99.dcm"))) == long)
        // And one that is simply not DICOM past the prefix still fails with a reason.
        let bogus = [UInt8](repeating: 0x41, count: StowIngest.headerPrefixBytes + 1000)
        let (refused, log) = try Self.ingest(Self.body([bogus], boundary: "b0und"), into: folder + "/2", pieces: [4096])
        #expect(refused.stored.isEmpty)
        #expect(refused.failed.count == 1)
        #expect(log.log.contains { $0.contains("not a whole, readable DICOM file") })
    }

    @Test func theStagingWriterWritesExactlyWhatItIsGivenDirectOrBuffered() throws {
        let folder = try Self.scratch()
        defer { try? FileManager.default.removeItem(atPath: folder) }
        let writer = StagingWriter(blockBytes: 64 * 1024)
        for direct in [true, false] {
            for size in [0, 1, 4095, 4096, 4097, 65_535, 65_536, 65_537, 300_001] {
                let bytes = (0..<size).map { UInt8(truncatingIfNeeded: $0 &* 13 &+ 5) }
                let path = "\(folder)/\(direct)-\(size)"
                let fd = open(path, O_CREAT | O_WRONLY | O_TRUNC, 0o600)
                #expect(fd >= 0)
                writer.begin(fd, direct: direct)
                if !direct { #expect(!writer.isDirect) }
                var at = 0
                for piece in [3, 5000, 70_000, 1].cycled(until: size) {
                    let n = min(piece, size - at)
                    try bytes[at..<at + n].withUnsafeBytes { try writer.append($0) }
                    at += n
                }
                try writer.finish()
                close(fd)
                #expect(writer.length == size)
                #expect(try [UInt8](Data(contentsOf: URL(fileURLWithPath: path))) == bytes, "\(size) bytes, direct \(writer.isDirect)")
            }
        }
    }

    /// A direct write the filesystem refuses (here provoked: 1,000-byte blocks, which no disk
    /// takes direct) falls back to buffered writes for the rest of the file, and the next file
    /// tries direct again; the bytes come out exact either way.
    @Test func aRefusedDirectWriteFallsBackToBufferedWithoutLosingBytes() throws {
        let folder = try Self.scratch()
        defer { try? FileManager.default.removeItem(atPath: folder) }
        let writer = StagingWriter(blockBytes: 3000, alignment: 1000)
        for file in 0..<2 {
            let bytes = (0..<10_001).map { UInt8(truncatingIfNeeded: $0 &* 3 &+ file) }
            let path = "\(folder)/\(file)"
            let fd = open(path, O_CREAT | O_WRONLY | O_TRUNC, 0o600)
            writer.begin(fd)
            try bytes.withUnsafeBytes { try writer.append($0) }
            try writer.finish()
            close(fd)
            #expect(!writer.isDirect, "1,000-byte direct writes were taken; the fall-back went untested")
            #expect(try [UInt8](Data(contentsOf: URL(fileURLWithPath: path))) == bytes)
        }
    }

    /// The mounts of this machine, from the kernel's own table: (mount point, filesystem type).
    static func mounts() throws -> [(point: String, type: String)] {
        let table = try String(contentsOfFile: "/proc/self/mounts", encoding: .utf8)
        return table.split(separator: "\n").compactMap { line in
            let fields = line.split(separator: " ")
            return fields.count >= 3 ? (String(fields[1]), String(fields[2])) : nil
        }
    }

    /// Direct writes are tried only on local disk filesystems: not on tmpfs (nor NFS), not where
    /// the folder cannot be examined.
    @Test func directWritesAreNotTriedOnTmpfsOrAMissingFolder() throws {
        #expect(!StagingWriter.directIOSuits("/no/such/folder"))
        let tmpfs = try Self.mounts().first { $0.type == "tmpfs" }
        try Skip.unless(tmpfs != nil, "no tmpfs is mounted on this machine")
        #expect(!StagingWriter.directIOSuits(tmpfs!.point), "\(tmpfs!.point) is tmpfs")
    }

    @Test func directWritesAreTriedOnALocalDiskFilesystem() throws {
        let disk = try Self.mounts().first { ["ext4", "xfs", "btrfs"].contains($0.type) && FileManager.default.isReadableFile(atPath: $0.point) }
        try Skip.unless(disk != nil, "no ext4, XFS or btrfs filesystem is mounted on this machine")
        #expect(StagingWriter.directIOSuits(disk!.point), "\(disk!.point) is \(disk!.type)")
    }
}

extension Array where Element == Int {
    /// These piece sizes repeated until they cover `total`.
    func cycled(until total: Int) -> [Int] {
        var out: [Int] = []
        var sum = 0
        while sum < total {
            let piece = self[out.count % count]
            out.append(piece)
            sum += piece
        }
        return out
    }
}
