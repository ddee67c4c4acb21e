import Foundation
import Platform
import TestSupport
import Workbench
import Testing

/// Against a real Orthanc with its DICOMweb plugin (Debian's orthanc, orthanc-dicomweb), started
/// here on loopback: our client pushes a study to Orthanc, finds it with QIDO-RS and retrieves it
/// with WADO-RS byte for byte; Orthanc, given our receiver as a DICOMweb server, pushes the study
/// to us and we store it byte for byte.
@Suite("Interop with Orthanc", .serialized, .timeLimit(.minutes(10)))
struct OrthancInteropTests {
    /// A throwaway Orthanc: its own storage, HTTP on a free loopback port, no DICOM port.
    final class Orthanc {
        let process = Process()
        let port: Int
        let folder: String

        let tls: Bool

        /// With `pki`, Orthanc serves HTTPS demanding a client certificate from our CA, and pushes
        /// to our receiver with its own certificate (CN=UHSX), trusting only our CA.
        /// With `dicomPort`, Orthanc's DIMSE server listens there too, as AE title ORTHANC, and
        /// checks the called AE title.
        /// `modalities`: Orthanc's DicomModalities (name → [AET, host, port]), the DIMSE nodes it
        /// may query and retrieve from.
        init(folder: String, consortReceiver: String, pki: TestPKI? = nil, dicomPort: Int? = nil, modalities: [String: [Any]] = [:]) throws {
            tls = pki != nil
            self.folder = folder
            try FileManager.default.createDirectory(atPath: folder + "/db", withIntermediateDirectories: true)
            let orthanc = try Run.require("Orthanc", package: "orthanc")
            let plugin = "/usr/share/orthanc/plugins/libOrthancDicomWeb.so"
            guard FileManager.default.fileExists(atPath: plugin) else {
                Issue.record("\(plugin) is missing: install orthanc-dicomweb (Tests/install-test-dependencies.sh)")
                throw CancellationError()
            }
            // Orthanc cannot be told to bind to loopback; the shim does it.
            let cc = try Run.require("cc", package: "gcc")
            let shim = folder + "/orthanc_preload.so"
            let built = try runProgram(cc, ["-shared", "-fPIC", "-o", shim, Run.packageRoot + "/Tests/ConsortCLITests/Interop/orthanc_preload.c", "-ldl"])
            guard built.status == 0 else {
                Issue.record("cannot build the loopback shim: \(built.stderr)")
                throw CancellationError()
            }
            port = try freePort()
            var config: [String: Any] = [
                "Name": "consort-interop", "StorageDirectory": folder + "/db", "IndexDirectory": folder + "/db",
                "HttpPort": port, "DicomServerEnabled": false, "RemoteAccessAllowed": false, "AuthenticationEnabled": false,
                "HttpTimeout": 120, "StableAge": 1, "Plugins": [plugin],
                "DicomWeb": ["Enable": true, "Root": "/dicom-web/", "Servers": ["consort": [consortReceiver]]],
            ]
            if let dicomPort {
                config["DicomServerEnabled"] = true
                config["DicomPort"] = dicomPort
                config["DicomAet"] = "ORTHANC"
                config["DicomCheckCalledAet"] = true
            }
            if !modalities.isEmpty { config["DicomModalities"] = modalities }
            if let pki {
                // Orthanc wants certificate and key in one PEM file.
                let combined = folder + "/orthanc-server.pem"
                try (String(contentsOfFile: pki.serverCertificate, encoding: .utf8) + String(contentsOfFile: pki.serverKey, encoding: .utf8))
                    .write(toFile: combined, atomically: true, encoding: .utf8)
                config["SslEnabled"] = true
                config["SslCertificate"] = combined
                config["SslVerifyPeers"] = true
                config["SslTrustedClientCertificates"] = pki.ca
                config["HttpsVerifyPeers"] = true
                config["HttpsCACertificates"] = pki.ca
                config["DicomWeb"] = ["Enable": true, "Root": "/dicom-web/", "Servers": ["consort": [
                    "Url": consortReceiver, "CertificateFile": pki.serverCertificate, "CertificateKeyFile": pki.serverKey,
                ]]]
                clientArguments = ["--cacert", pki.ca, "--cert", pki.clientCertificate, "--key", pki.clientKey]
            }
            let configPath = folder + "/orthanc.json"
            try JSONSerialization.data(withJSONObject: config).write(to: URL(fileURLWithPath: configPath))
            process.executableURL = URL(fileURLWithPath: orthanc)
            process.arguments = [configPath]
            process.environment = ["LD_PRELOAD": shim, "PATH": "/usr/bin:/bin"]
            process.standardOutput = FileHandle(forWritingAtPath: "/dev/null")
            process.standardError = FileHandle(forWritingAtPath: "/dev/null")
            try process.run()
            // 30 s in all, whatever Orthanc does: each probe gives up after 2 s (an Orthanc that
            // accepts connections and never answers must not hold the suite).
            let deadline = Date().addingTimeInterval(30)
            while Date() < deadline && process.isRunning {
                let probe = try? runProgram(
                    "/usr/bin/curl", ["-s", "--max-time", "2", "-o", "/dev/null", "-w", "%{http_code}"] + clientArguments + ["\(url)/system"], timeout: 5)
                if probe?.stdout == "200" { return }
                Thread.sleep(forTimeInterval: 0.1)
            }
            stop()
            Issue.record("Orthanc did not answer within 30 s")
            throw CancellationError()
        }

        /// curl's TLS arguments for talking to this Orthanc (as RSCH).
        private(set) var clientArguments: [String] = []

        var url: String { tls ? "https://localhost:\(port)" : "http://127.0.0.1:\(port)" }

        /// SIGTERM, and SIGKILL if it is still there after 10 s (Orthanc 1.10 under the shim does
        /// not always act on SIGTERM).
        func stop() {
            process.terminate()
            for _ in 0..<100 where process.isRunning { Thread.sleep(forTimeInterval: 0.1) }
            if process.isRunning { kill(process.processIdentifier, SIGKILL) }
            process.waitUntilExit()
        }
    }

    /// A free loopback port for a child to listen on (see `LoopbackPort`: below the ephemeral
    /// range, so no connection made meanwhile takes it).
    static func freePort() throws -> Int { LoopbackPort.free() }

    static func curl(_ arguments: [String]) throws -> ProgramOutcome {
        try runProgram("/usr/bin/curl", ["--max-time", "120"] + arguments, timeout: 150)
    }

    @Test func studiesGoBothWaysBetweenOrthancAndConsort() throws {
        let folder = try ScratchFolder()
        #expect(try Run.consort("demo", "study", "--out", folder.path + "/study", "--instances", "20").status == 0)
        let uid = try #require(try FileManager.default.contentsOfDirectory(atPath: folder.path + "/study").first)
        let sentFolder = folder.path + "/study/" + uid

        // Our receiver, plain HTTP on loopback (Orthanc's push goes to it).
        let receiver = try ReceiverProcess(store: folder.path + "/inbox")
        defer { _ = receiver.stop() }
        let orthanc = try Orthanc(folder: folder.path + "/orthanc", consortReceiver: receiver.url + "/dicom-web/")
        defer { orthanc.stop() }

        // 1. consort send → Orthanc (STOW-RS).
        let sent = try Run.program(Run.consort, ["send", orthanc.url + "/dicom-web", sentFolder])
        #expect(sent.status == 0, "\(sent.stdout) \(sent.stderr)")
        #expect(sent.stdout.contains("20 stored"))

        // 2. consort find ← Orthanc (QIDO-RS).
        let found = try Run.program(Run.consort, ["find", orthanc.url + "/dicom-web", "--patient-id", "RSCH0000001", "--json"])
        #expect(found.status == 0, "\(found.stderr)")
        #expect(found.stdout.contains(uid))
        #expect(found.stdout.contains("\"00201208\":{\"Value\":[20]"))

        // 3. consort fetch ← Orthanc (WADO-RS, a close-delimited body): byte for byte.
        let fetched = try Run.program(Run.consort, ["fetch", orthanc.url + "/dicom-web", uid, "--out", folder.path + "/fetched"])
        #expect(fetched.status == 0, "\(fetched.stderr)")
        try Self.expectSameFiles(sentFolder, folder.path + "/fetched/" + uid)

        // 4. Orthanc → consort receive (Orthanc's own DICOMweb client, STOW-RS).
        let studies = try Self.curl(["-s", orthanc.url + "/studies"])
        let ids = try #require(try JSONSerialization.jsonObject(with: Data(studies.stdout.utf8)) as? [String])
        #expect(ids.count == 1)
        let push = try Self.curl(["-s", "-w", "\n%{http_code}", "-X", "POST", orthanc.url + "/dicom-web/servers/consort/stow", "-d", "{\"Resources\": [\"\(ids[0])\"]}"])
        #expect(push.stdout.hasSuffix("200"), "\(push.stdout)")
        try Self.expectSameFiles(sentFolder, folder.path + "/inbox/" + uid)
    }

    @Test func theSameOverMutualTLS() throws {
        let pki = try TestPKI()
        let folder = try ScratchFolder()
        #expect(try Run.consort("demo", "study", "--out", folder.path + "/study", "--instances", "20").status == 0)
        let uid = try #require(try FileManager.default.contentsOfDirectory(atPath: folder.path + "/study").first)
        let sentFolder = folder.path + "/study/" + uid
        let receiver = try ReceiverProcess(store: folder.path + "/inbox", pki: pki)
        let orthanc = try Orthanc(folder: folder.path + "/orthanc", consortReceiver: receiver.url + "/dicom-web/", pki: pki)
        defer { orthanc.stop() }
        let tls = ["--cert", pki.clientCertificate, "--key", pki.clientKey, "--ca", pki.ca]

        let sent = try Run.program(Run.consort, ["send", orthanc.url + "/dicom-web", sentFolder] + tls)
        #expect(sent.status == 0, "\(sent.stdout) \(sent.stderr)")
        let fetched = try Run.program(Run.consort, ["fetch", orthanc.url + "/dicom-web", uid, "--out", folder.path + "/fetched"] + tls)
        #expect(fetched.status == 0, "\(fetched.stderr)")
        try Self.expectSameFiles(sentFolder, folder.path + "/fetched/" + uid)
        // Without a certificate, Orthanc refuses in the handshake (and stays up).
        let anonymous = try Self.curl(["-s", "--cacert", pki.ca, orthanc.url + "/system"])
        #expect(anonymous.status != 0)

        // Orthanc pushes to consort receive with its own certificate: UHSX.
        let studies = try Self.curl(["-s"] + orthanc.clientArguments + [orthanc.url + "/studies"])
        let ids = try #require(try JSONSerialization.jsonObject(with: Data(studies.stdout.utf8)) as? [String])
        let push = try Self.curl(["-s", "-w", "\n%{http_code}", "-X", "POST"] + orthanc.clientArguments + [orthanc.url + "/dicom-web/servers/consort/stow", "-d", "{\"Resources\": [\"\(ids[0])\"]}"])
        #expect(push.stdout.hasSuffix("200"), "\(push.stdout)")
        try Self.expectSameFiles(sentFolder, folder.path + "/inbox/" + uid)
        let (_, log) = receiver.stop()
        #expect(log.contains("from UHSX: stored"), "\(log.suffix(500))")
    }

    /// Every file of `a` has a byte-identical twin in `b` (names may differ; contents may not).
    static func expectSameFiles(_ a: String, _ b: String) throws {
        func contents(_ folder: String) throws -> Set<Data> {
            Set(try FileManager.default.contentsOfDirectory(atPath: folder).filter { $0.hasSuffix(".dcm") }.map {
                try Data(contentsOf: URL(fileURLWithPath: folder + "/" + $0))
            })
        }
        let left = try contents(a), right = try contents(b)
        #expect(left.count == 20)
        #expect(left == right)
    }
}

/// Ports for children to listen on come from below the kernel's ephemeral range (where no
/// outgoing connection can take them before the child binds), free, and never twice.
@Suite("Loopback ports")
struct LoopbackPortTests {
    @Test func portsForChildrenAreBelowTheEphemeralRangeFreeAndDistinct() throws {
        let range = try String(contentsOfFile: "/proc/sys/net/ipv4/ip_local_port_range", encoding: .utf8)
        let low = Int(range.split(whereSeparator: \.isWhitespace)[0])!
        let ports = (0..<200).map { _ in LoopbackPort.free() }
        #expect(Set(ports).count == 200)
        #expect(ports.allSatisfy { $0 >= 10_000 && $0 < low }, "\(ports.filter { $0 >= low })")
    }
}
