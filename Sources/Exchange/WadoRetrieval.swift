import DICOM
import DICOMweb
import Foundation
import HTTP
import Transport

/// One study retrieved by WADO-RS into a store (`OUT/<StudyUID>/<SOPUID>.dcm`), streamed: each
/// part is staged in a folder of its own under `OUT/.staging` as it arrives, checked whole
/// (readable DICOM, of the study asked for) and moved into place atomically, exactly as the
/// receiver places what it is sent. The one retriever `consort fetch` and the agent's fetch
/// jobs share. Memory stays at one part's buffer whatever the study's size.
public final class WadoRetrieval {
    public let out: String, study: String, base: String
    let staging: PrivateStaging
    public private(set) var ingest: StowIngest?
    public private(set) var errorBody: [UInt8] = []
    public private(set) var received = 0
    /// Where the site already holds an instance outside `out` (kept once, never twice).
    public var heldElsewhere: (@Sendable (String) -> String?)?
    /// Called with the bytes received so far, as they come.
    public var progress: ((Int) -> Void)?
    /// A last check of each instance before it is placed (`StowIngest.admitInstance`).
    public var admitInstance: (@Sendable (DataSet) -> String?)?
    /// How each instance is placed: as sent, in this trust's identity, or held (`StowIngest.placement`).
    public var placement: (@Sendable (DataSet) -> StowIngest.Placement)?
    /// Request fields beside Accept (an agent says why it fetches: X-Consort-Purpose).
    public var headers: [(String, String)] = []

    public init(out: String, study: String, base: String) throws {
        self.out = out
        self.study = study
        self.base = base.hasSuffix("/") ? String(base.dropLast()) : base
        // Folders of earlier retrievals that were killed are swept; ours is private to us.
        PrivateStaging.clearAbandoned(in: out + "/.staging")
        staging = try PrivateStaging(in: out + "/.staging")
    }

    deinit { staging.remove() }

    /// What came of a retrieval: the answer's status and, when 200, what was stored.
    public struct Outcome {
        public var status: Int
        public var response: StowResponse?
        public var ingest: StowIngest?
        /// The start of an error answer's body, for the message.
        public var errorText: String
    }

    /// Sends the request and streams the answer into place. Throws when the transfer breaks
    /// (nothing partial is kept: staged parts are removed, placed ones are whole).
    public func run(with client: HTTPClient) throws -> Outcome {
        let response = try client.send(
            method: "GET", url: "\(base)/studies/\(study)", headers: [("Accept", "multipart/related; type=\"application/dicom\"")] + headers,
            head: begin, sink: consume)
        guard response.status == 200, let ingest else {
            return Outcome(status: response.status, response: nil, ingest: nil, errorText: String(decoding: errorBody.prefix(300), as: UTF8.self))
        }
        return Outcome(status: 200, response: try ingest.finish(), ingest: ingest, errorText: "")
    }

    func begin(_ head: ClientResponse) throws {
        guard head.status == 200 else { return }
        guard let type = head.value("Content-Type").flatMap(MediaType.init), type.type == "multipart/related",
            let boundary = type.parameters["boundary"]
        else { throw HTTPError(502, "The answer is not multipart/related with a boundary") }
        let ingest = try StowIngest(inbound: out, staging: staging.folder, boundary: boundary, baseURL: base)
        ingest.expectedStudy = study
        ingest.heldElsewhere = heldElsewhere
        ingest.admitInstance = admitInstance
        ingest.placement = placement
        self.ingest = ingest
    }

    func consume(_ bytes: UnsafeRawBufferPointer) throws {
        if let ingest {
            try ingest.consume(bytes)
            received += bytes.count
            progress?(received)
        } else if errorBody.count < 4096 {
            errorBody += bytes
        }
    }
}
