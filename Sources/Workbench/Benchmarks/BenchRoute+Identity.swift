import CommandSupport
import DICOM
import Exchange
import Foundation
import Platform
import Transport

#if canImport(Glibc)
    import Glibc
#endif

/// `consort bench route --identity`: the same route with identity on delivery (issue 25) — a
/// coordinator of the bench's own, both agents announcing to it, and the receiving trust (UHSX)
/// knowing the patient under its own number, so every instance it receives is rewritten into
/// UHSX's identity as it is placed. The bulk study is sent alone twice, without the rewrite and
/// with it, by fresh pairs of agents, and the ratio reported; the urgent instances are timed with
/// it on.
extension BenchCommand {
    /// A coordinator for the bench: the throwaway PKI's COORDINATOR certificate, a registry in
    /// the run folder, the bench's rules.
    struct BenchCoordinator {
        let child: ChildProcess
        let url: String
        let pki: String

        /// The line an agent's configuration takes to announce to it and ask it.
        var agentLine: String { "coordinator \(url)\n" }

        func stop() {
            child.signal(SIGTERM)
            _ = child.wait(within: 10)
        }
    }

    static func startBenchCoordinator(run: String, pki: String, rules: String, consort: String) throws -> BenchCoordinator {
        let folder = run + "/coordinator"
        try FileManager.default.createDirectory(atPath: folder, withIntermediateDirectories: true)
        let port = LoopbackPort.free()
        try """
            listen 127.0.0.1:\(port)
            certificate \(pki)/COORDINATOR.pem
            key \(pki)/COORDINATOR.key
            ca \(pki)/ca.pem
            registry \(folder)/registry.sqlite
            rules \(rules)
            """.write(toFile: folder + "/coordinator.conf", atomically: true, encoding: .utf8)
        let child = try ChildProcess(consort, ["coordinator", "--config", folder + "/coordinator.conf"], stdout: run + "/coordinator.out", stderr: run + "/coordinator.log")
        let deadline = monotonicSeconds() + 30
        while monotonicSeconds() < deadline && child.isRunning {
            if ((try? String(contentsOfFile: run + "/coordinator.out", encoding: .utf8)) ?? "").contains("listening on") {
                return BenchCoordinator(child: child, url: "https://127.0.0.1:\(port)", pki: pki)
            }
            usleep(20_000)
        }
        child.signal(SIGKILL)
        _ = child.wait()
        throw UsageError(message: "the bench's coordinator did not start: \((try? String(contentsOfFile: run + "/coordinator.log", encoding: .utf8)) ?? "")", command: "bench route")
    }

    /// A one-instance study of the bench's patient at UHSX, under UHSX's own number: put in the
    /// receiving agent's watched folder before it starts, indexed and announced at its first
    /// start, so that the coordinator knows UHSX's number for the patient.
    static func writeReceiversOwnStudy(into watch: String, patient nhs: String) throws -> String {
        var own = SyntheticStudy()
        (own.instances, own.seed, own.trust, own.hospitalNumber, own.description) = (1, 7003, "UHSX", "UHSX0000001", "PRIOR CT")
        own.nhsNumber = nhs
        _ = try own.write(into: watch + "/" + own.studyInstanceUID)
        return own.hospitalNumber
    }

    /// Waits until the coordinator gives UHSX `number` for the patient (asked as UHSX, as its
    /// agent asks).
    static func waitForReceiversNumber(_ coordinator: BenchCoordinator, patient nhs: String, number: String, timeout: Double) throws -> Bool {
        let tls = TLSConfiguration(
            certificateChain: coordinator.pki + "/UHSX.pem", privateKey: coordinator.pki + "/UHSX.key", trustedCA: coordinator.pki + "/ca.pem", revocationList: nil)
        let client = try CoordinatorClient(base: coordinator.url, tls: tls, totalTimeout: 5)
        let deadline = monotonicSeconds() + timeout
        while monotonicSeconds() < deadline {
            let answer = try? client.call("GET", "/v1/patients/\(nhs)/identity", purpose: "direct-care")
            let ids = (answer?["identifiers"] as? [[String: Any]] ?? []).compactMap { $0["id"] as? String }
            if ids == [number] { return true }
            usleep(100_000)
        }
        return false
    }

    /// Whether a file UHSX placed carries UHSX's number: the rewrite happened (a bench that
    /// measured the rewrite off would report a ratio of nothing).
    static func placedUnder(_ number: String, inbound: String, study: String) -> Bool {
        guard let name = ((try? FileManager.default.contentsOfDirectory(atPath: inbound + "/" + study)) ?? []).first(where: { $0.hasSuffix(".dcm") }),
            let data = try? DICOMFile.read(path: inbound + "/" + study + "/" + name).dataSet
        else { return false }
        return data.string(.patientID) == number && data.string(Tag(0x0010, 0x0021)) == "UHSX"
    }
}
