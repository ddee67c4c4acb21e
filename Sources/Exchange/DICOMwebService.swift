import DICOM
import DICOMweb
import Foundation
import Platform
import HTTP
import Transport

/// The DICOMweb server over a store folder (`STORE/<StudyUID>/<SOPUID>.dcm`): STOW-RS in,
/// WADO-RS (whole studies) and QIDO-RS out — the one receiver `consort receive` and the agent
/// share. Identity comes from the peer's certificate only (`request.peer`), never from a header.
///
/// The agent hooks in: `admit` may refuse a request before anything is read (503 when its disk
/// is nearly full, 403 for a peer the rules do not know); `stored` is called after the
/// instances are durable and in place and before the answer goes out, so the agent records them
/// in its inventory first (if it throws, the peer is answered 503 and retries: an instance is
/// never acknowledged without being recorded).
public struct DICOMwebService: Sendable {
    public struct Received: Sendable {
        public var response: StowResponse
        /// Who sent it: the certificate's CN, or the address on plain-HTTP loopback.
        public var peer: String
        public var requestID: String
        /// Why the sender sent it (`ConsortField.purpose`), for the audit log.
        public var purpose: String?
    }

    public let store: String
    public let baseURL: String
    public let log: @Sendable (String) -> Void
    public var admit: (@Sendable (ServerRequest) -> HTTPError?)?
    public var stored: (@Sendable (Received, StowIngest) throws -> Void)?
    /// Where this site already holds an instance outside the store (`StowIngest.heldElsewhere`).
    public var heldElsewhere: (@Sendable (String) -> String?)?
    /// How each instance a sender (its certificate's CN) sends is placed: as sent, in this
    /// trust's identity, held or refused (`StowIngest.placement`); nil for a sender whose
    /// instances are all placed as sent, which lets them be written around the page cache.
    public var placement: (@Sendable (_ sender: String) -> (@Sendable (DataSet) -> StowIngest.Placement)?)?
    /// The SOP Instance UIDs held of a study, for QIDO-RS at instance level (default: the files
    /// in the store; the agent answers from its inventory, which knows its archive too).
    public var instancesOf: (@Sendable (String) -> [String])?
    /// The files of a study WADO-RS serves (default: the store's folder of it; the agent
    /// answers from its inventory: its archive and what it received).
    public var filesOf: (@Sendable (String) -> [String]?)?
    /// Decides a WADO-RS retrieve (and audits it): nil to serve, an error to refuse.
    public var authorizeRetrieve: (@Sendable (ServerRequest, String, Int) -> HTTPError?)?

    public init(store: String, baseURL: String, log: @escaping @Sendable (String) -> Void) {
        self.store = store
        self.baseURL = baseURL
        self.log = log
    }

    /// What a request asks of the service, from its method and path alone: `handle` serves by
    /// it, and the agent's gate decides by it, so the two never read a path differently.
    public enum Operation: Equatable, Sendable {
        /// STOW-RS (POST …/studies or …/studies/{uid}).
        case store
        /// QIDO-RS: which studies are held (GET …/studies?…).
        case searchStudies
        /// QIDO-RS at instance level: which instances of a study are held.
        case listInstances(study: String)
        /// WADO-RS: a whole study.
        case retrieve(study: String)
        case notServed
    }

    public static func operation(method: String, path: String) -> Operation {
        if method == "GET" || method == "HEAD" {
            let segments = path.split(separator: "/").map(String.init)
            guard let index = segments.lastIndex(of: "studies") else { return .notServed }
            if index == segments.count - 1 { return .searchStudies }
            if index == segments.count - 3, segments[index + 2] == "instances" { return .listInstances(study: segments[index + 1]) }
            if index == segments.count - 2 { return .retrieve(study: segments[index + 1]) }
            return .notServed
        }
        if method == "POST", path.hasSuffix("/studies") || path.contains("/studies/") { return .store }
        return .notServed
    }

    public func handle(_ request: ServerRequest, _ body: RequestBody) throws -> ServerResponse {
        let target = request.head.target.split(separator: "?", maxSplits: 1, omittingEmptySubsequences: false)
        let path = target.first.map(String.init) ?? ""
        let who = request.peer?.commonName ?? request.remoteAddress
        if let refusal = admit?(request) { throw refusal }
        let folder = StudyFolder(root: store)
        let operation = Self.operation(method: request.head.method, path: path)
        if request.head.method == "GET" || request.head.method == "HEAD" {
            switch operation {
            case .searchStudies:
                // QIDO-RS: GET .../studies?PatientID=...
                let query = try StudyQuery(queryString: target.count > 1 ? String(target[1]) : "")
                let studies = folder.studies(matching: query)
                log("request \(request.id) from \(who): QIDO-RS \(target.count > 1 ? String(target[1]) : "(all)") → \(studies.count) studies")
                return ServerResponse(status: 200, headers: [("Content-Type", "application/dicom+json")], body: StudySummary.json(studies))
            case .listInstances(let uid):
                // QIDO-RS at instance level (PS3.18 §10.6): which instances of a study are held.
                // A sender resuming a study asks this and sends only the rest.
                guard UID.isValid(uid) else { return .text(404, "No study \(uid) here") }
                let sops = instancesOf?(uid) ?? (folder.instances(of: uid) ?? []).map { (($0 as NSString).lastPathComponent as NSString).deletingPathExtension }
                log("request \(request.id) from \(who): QIDO-RS instances of \(uid) → \(sops.count)")
                let items: [JSON] = sops.sorted().map { sop in
                    .object([
                        ("0020000D", .object([("vr", .string("UI")), ("Value", .array([.string(uid)]))])),
                        ("00080018", .object([("vr", .string("UI")), ("Value", .array([.string(sop)]))])),
                    ])
                }
                return ServerResponse(status: 200, headers: [("Content-Type", "application/dicom+json")], body: JSON.array(items).bytes())
            case .store, .notServed:
                return .text(404, path.split(separator: "/").contains("studies") ? "Only whole studies are served: \(path)" : "Not found: \(path)")
            case .retrieve(let uid):
                // WADO-RS: GET .../studies/{uid}, the instances as multipart/related, from disk.
                if let accept = request.head.value("Accept"), !accept.contains("multipart/related"), !accept.contains("*/*"), !accept.contains("application/dicom") {
                    throw HTTPError(406, "This server answers multipart/related; type=\"application/dicom\"")
                }
                guard let files = filesOf.map({ $0(uid) }) ?? folder.instances(of: uid), !files.isEmpty else { return .text(404, "No study \(uid) here") }
                if let refusal = authorizeRetrieve?(request, uid, files.count) { throw refusal }
                let body: MultipartFileBody
                do {
                    body = try MultipartFileBody(paths: files)
                } catch {
                    // A file left between the listing and its measuring (a PACS consuming the
                    // folder): listed once more, and a study with nothing left is not here (404,
                    // not 500: a requester counts a 500 against this site).
                    guard let again = filesOf.map({ $0(uid) }) ?? folder.instances(of: uid), !again.isEmpty else { return .text(404, "No study \(uid) here") }
                    body = try MultipartFileBody(paths: again)
                }
                log("request \(request.id) from \(who): WADO-RS study \(uid): \(files.count) instances, \(body.contentLength) bytes")
                return ServerResponse(status: 200, headers: [("Content-Type", body.encoder.contentType())], length: body.contentLength) { buffer in
                    try body.read(into: buffer)
                }
            }
        }
        guard operation == .store else {
            return .text(404, "Not found: \(request.head.method) \(path)")
        }
        guard let type = request.head.value("Content-Type").flatMap(MediaType.init), type.type == "multipart/related",
            let boundary = type.parameters["boundary"]
        else {
            throw HTTPError(415, "STOW-RS takes multipart/related; type=\"application/dicom\" with a boundary")
        }
        if let partType = type.parameters["type"], partType.lowercased() != "application/dicom" {
            throw HTTPError(415, "Only application/dicom parts are accepted, not \(partType)")
        }
        // StowIngest throws HTTPError: the status it throws is the one answered.
        let ingest = try StowIngest(inbound: store, staging: store + "/.staging", boundary: boundary, baseURL: baseURL)
        ingest.heldElsewhere = heldElsewhere
        if let decide = placement?(who) { ingest.placement = decide }
        // The sending agent's word for the work (X-Consort-Priority): a bulk or normal transfer
        // leaves the CPU to urgent ones first on this connection's thread (for good: a sender
        // keeps its urgent connection apart), and a bulk transfer's data goes to the disk in the
        // idle I/O class. The records made after it (`stored`) are not idle: other work waits
        // for their locks (and the agent's inventory brings the thread back to full CPU
        // priority while it holds its lock: `ThreadPriority.atFullPriority`).
        let priority = request.head.value(ConsortField.priority)
        if priority == "bulk" || priority == "normal" { ThreadPriority.yieldCPU(bulk: priority == "bulk") }
        // Only the data: `finish` places the instances, and asks the inventory under its lock.
        func receive() throws { while let piece = try body.next() { try ingest.consume(piece) } }
        try priority == "bulk" ? ThreadPriority.idleIO(receive) : receive()
        let response = try ingest.finish()
        for line in ingest.log {
            // A conflict needs a person: it is an error, not routine.
            log((line.hasPrefix("refused CONFLICT") ? "error: " : "") + "request \(request.id) from \(who): \(line)")
        }
        for line in ingest.warnings { log("warning: request \(request.id) from \(who): accepted \(line)") }
        if let stored, !response.stored.isEmpty {
            do {
                try stored(Received(response: response, peer: who, requestID: request.id, purpose: request.head.value(ConsortField.purpose)), ingest)
            } catch {
                log("error: request \(request.id) from \(who): \(response.stored.count) instances stored but not recorded: \(error); answered 503, the peer will send them again")
                throw HTTPError(503, "The instances could not be recorded; send them again")
            }
        }
        log("request \(request.id) from \(who): \(response.stored.count) stored, \(response.failed.count) refused")
        return ServerResponse(status: response.httpStatus, headers: [("Content-Type", "application/dicom+json")], body: response.json())
    }
}
