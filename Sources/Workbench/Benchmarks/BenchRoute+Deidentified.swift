import CommandSupport
import DICOM
import Deidentification
import Foundation

/// `consort bench route --deidentified`: what de-identification costs a push (issue 29). The
/// bulk study goes alone from RSCH to UHSX by fresh pairs of agents, plainly and with the rule
/// saying `deidentified` (each instance's header de-identified in memory, its pixel data
/// streamed from the original file into the request), three of
/// each in turn; the medians and their ratio, and the sender's peak RSS in each. The target is
/// ≥ 0.8× the plain push, and memory the same.
extension BenchCommand {
    /// The UID the bulk study arrives under at UHSX: the sending agent's key (made at its first
    /// start) for that destination, applied as its push executor applies it.
    static func deidentifiedUID(of study: String, keyIn state: String) throws -> String {
        guard let key = FileManager.default.contents(atPath: state + "/deidentification.key") else {
            throw UsageError(message: "the sending agent made no de-identification key in \(state)", command: "bench route")
        }
        return try Deidentifier(key: [UInt8](key)).forDestination("UHSX").uid(study)
    }

    /// Whether a file UHSX placed is de-identified (no patient, marked so): a bench that sent
    /// the study plainly would report a ratio of nothing.
    static func arrivedDeidentified(inbound: String, study: String) -> Bool {
        guard let name = ((try? FileManager.default.contentsOfDirectory(atPath: inbound + "/" + study)) ?? []).first(where: { $0.hasSuffix(".dcm") }),
            let data = try? DICOMFile.read(path: inbound + "/" + study + "/" + name).dataSet
        else { return false }
        return (data.string(.patientID) ?? "").isEmpty && data.string(Tag(0x0012, 0x0062)) == "YES"
    }

    static func benchDeidentified(
        json: Bool, instances: Int, bytes: Int, run: String, finished: inout Bool,
        sendAlone: (_ prefix: String, _ deidentify: Bool) throws -> (seconds: Double, senderPeakKiB: Int)
    ) throws -> ExitCode {
        // Three of each in turn, the medians: one transfer lasts a few seconds on a shared
        // machine whose single runs vary by a third.
        var plain: [(seconds: Double, senderPeakKiB: Int)] = [], deidentified: [(seconds: Double, senderPeakKiB: Int)] = []
        for round in 1...3 {
            plain.append(try sendAlone("plain-\(round)", false))
            deidentified.append(try sendAlone("deidentified-\(round)", true))
        }
        let plainSeconds = median(plain.map(\.seconds)), deidentifiedSeconds = median(deidentified.map(\.seconds))
        let plainMBs = Double(bytes) / 1e6 / plainSeconds, deidentifiedMBs = Double(bytes) / 1e6 / deidentifiedSeconds
        let plainPeak = plain.map(\.senderPeakKiB).max() ?? 0, deidentifiedPeak = deidentified.map(\.senderPeakKiB).max() ?? 0
        if json {
            standardOutput.line(
                JSON.object([
                    ("benchmark", .string("route-deidentified")), ("instances", .int(Int64(instances))), ("bytes", .int(Int64(bytes))),
                    ("plain_mb_per_second", .double(plainMBs)), ("deidentified_mb_per_second", .double(deidentifiedMBs)),
                    ("ratio", .double(deidentifiedMBs / plainMBs)),
                    ("plain_seconds", .array(plain.map { .double($0.seconds) })), ("deidentified_seconds", .array(deidentified.map { .double($0.seconds) })),
                    ("plain_sender_peak_rss_kib", .int(Int64(plainPeak))), ("deidentified_sender_peak_rss_kib", .int(Int64(deidentifiedPeak))),
                    ("profile", .string(ConfidentialityProfile.tableEdition)),
                ]).serialized())
        } else {
            standardOutput.line("route, de-identified: RSCH → UHSX agents, mutual TLS on loopback; the bulk study alone, \(instances) instances, \(bytes / 1_000_000) MB")
            standardOutput.line(String(format: "  plain:         %.0f MB/s (median of %@ s); sender peak RSS %d MB", plainMBs,
                plain.map { String(format: "%.2f", $0.seconds) }.joined(separator: ", "), plainPeak / 1024))
            standardOutput.line(String(format: "  de-identified: %.0f MB/s (median of %@ s); sender peak RSS %d MB", deidentifiedMBs,
                deidentified.map { String(format: "%.2f", $0.seconds) }.joined(separator: ", "), deidentifiedPeak / 1024))
            standardOutput.line(String(format: "  ratio: %.2f× the plain push (%@)", deidentifiedMBs / plainMBs, ConfidentialityProfile.tableEdition))
        }
        finished = true
        return .success
    }
}
