import DIMSE
import Routing

/// An agent's configuration file, as parsed (`ConfigurationParser`) — a contract: operators and
/// tests outside the project write these words.
///
///     trust RSCH
///     state /var/lib/consort            # inventory, spool, staging; a local filesystem
///     watch /srv/pacs/export            # one or more; only ever read
///     watch /mnt/nfs/ct { poll 10 s }   # a polling watch where inotify does not work (NFS)
///     inbound /srv/pacs/import          # studies from other trusts land here, <Study>/<SOP>.dcm
///     listen 0.0.0.0:8443
///     certificate /etc/consort/rsch.pem
///     key /etc/consort/rsch.key
///     ca /etc/consort/ca.pem
///     rules /etc/consort/routing-rules
///     peer UHSX https://uhsx.consort.nhs.uk:8443 { connections 4  bandwidth 200 MB/s }
///     peer AI-CXR https://cxr-ai.example/dicomweb { batch 1 }
///
/// Also: `crl FILE`, `local NAME dicomweb URL` (a PACS on this site that imports by STOW-RS),
/// `local NAME dimse AET@HOST:PORT { connections N calling-aet AET timeout S tls }` (one that
/// imports by DIMSE C-STORE),
/// `coordinator URL`, `lists DIR`, `free-space 5 %`, `retry-min 10 s`, `retry-max 10 min`,
/// `metrics 127.0.0.1:9464` (Prometheus `/metrics` and `/healthz`, plain HTTP), `max-age 3 d`, `circuit-after 5`, `stable-after 2 min` (the default quiet time for study
/// stability when a rule gives none), `scan-rate 2000` (files a second for the catch-up scan),
/// `inbound-keep 30 d` (received copies older than this are removed from `inbound`; default:
/// kept), `identity keep` (studies from other trusts placed as sent; default `identity
/// reconcile`: in this trust's identity, from the coordinator), `unknown-patient nhs-number
/// [ISSUER]` (a patient this trust has no number for is placed under the NHS number; default
/// `unknown-patient hold`: held until the trust has one), `dimse 0.0.0.0:11112 { aet CONSORT_RSCH }`
/// (a DIMSE C-STORE and C-ECHO SCP; options `associations N`, `max-pdu BYTES`, `timeout S`,
/// `idle S`, `tls`) and `dimse-peer NAME AET@HOST:PORT` (who may associate with it: that calling AE
/// title, from that host's addresses).
public struct AgentConfiguration: Sendable {
    public struct Watch: Sendable, Equatable {
        public var path: String
        /// nil: inotify; otherwise the polling period, in seconds (a file is taken once its size
        /// and mtime have not changed for one period).
        public var pollSeconds: Double?
        public var location: SourceLocation
    }

    public struct Peer: Sendable, Equatable {
        public var name: String
        /// The DICOMweb base URL (…/studies is appended).
        public var url: String
        public var connections: Int = 2
        /// Bytes a second, nil for no cap.
        public var bandwidth: Int?
        /// Instances a request at most (nil: 50, or 4 for urgent jobs); ~16 MB a request at most.
        public var batch: Int?
        public var location: SourceLocation
    }

    /// A target on this site, e.g. the trust's own PACS: by DICOMweb (`local PACS dicomweb URL`)
    /// or by DIMSE C-STORE (`local PACS dimse AET@HOST:PORT { connections N calling-aet AET
    /// timeout S }`).
    public struct LocalTarget: Sendable, Equatable {
        public var name: String
        /// The DICOMweb base URL; for a DIMSE target, `dicom://AET@HOST:PORT` (for display).
        public var url: String
        public var location: SourceLocation
        /// The DIMSE node, when delivery is by C-STORE.
        public var dimse: DIMSENode?
        /// Associations (DIMSE) or connections at once.
        public var connections = 1
        /// The AE title the agent calls from (DIMSE; default CONSORT_ and the trust's code).
        public var callingAET: String?
        /// Seconds for each DIMSE step: connect, each send, each answer.
        public var timeout: Double = 60
        /// DICOM TLS to the PACS, with the trust's certificate; the PACS's must be issued by the
        /// consortium CA and name its host.
        public var tls = false

        public init(name: String, url: String, location: SourceLocation, dimse: DIMSENode? = nil) {
            self.name = name
            self.url = url
            self.location = location
            self.dimse = dimse
        }
    }

    /// `dimse ADDRESS:PORT { aet AET ... }`: the C-STORE SCP, its limits explicit.
    public struct DIMSEListener: Sendable, Equatable {
        public var host: String
        public var port: UInt16
        public var aeTitle: String
        /// Associations at once; one more is rejected (transient, local limit exceeded).
        public var associations = 8
        /// The largest P-DATA-TF PDU taken (announced at association).
        public var maximumPDU = 65_536
        /// A PDU begun, or the association request, must be whole within this (ARTIM).
        public var timeoutSeconds = 30.0
        /// An association with no message for this long is aborted.
        public var idleSeconds = 120.0
        /// `tls`: DICOM TLS with the trust's certificate; a caller must show a certificate
        /// from the consortium CA (as every TLS peer of the agent does).
        public var tls = false
        /// `move-wait`: how long a C-MOVE of a study held elsewhere waits for its fetch before
        /// the requester is told its instances failed (the fetch goes on in the spool).
        public var moveWaitSeconds = 120.0
        public var location: SourceLocation
    }

    /// `dimse-peer NAME AET@HOST:PORT`: a modality or PACS that may store to the SCP.
    public struct DIMSEPeer: Sendable, Equatable {
        public var name: String
        public var aeTitle: String
        public var host: String
        /// Its own SCP's port: where a C-MOVE to it sends.
        public var port: UInt16
        /// `{ query }`: it may ask the consortium (C-FIND, C-MOVE): a PACS or a reporting
        /// workstation, not a modality. Only with `identity reconcile` and a coordinator.
        public var mayQuery = false
        /// `{ tls }`: a C-MOVE to it goes over DICOM TLS with the trust's certificate.
        public var tls = false
        public var location: SourceLocation
    }

    public var file: String
    public var trust = ""
    public var state = ""
    public var watches: [Watch] = []
    public var inbound = ""
    public var listenHost = ""
    public var listenPort: UInt16 = 0
    public var certificate = ""
    public var key = ""
    public var ca = ""
    public var crl: String?
    public var rules = ""
    public var peers: [Peer] = []
    public var locals: [LocalTarget] = []
    public var dimse: DIMSEListener?
    public var dimsePeers: [DIMSEPeer] = []
    /// `coordinator URL`, one line each: several coordinators over one registry database, tried
    /// in turn (`CoordinatorClient`).
    public var coordinators: [String] = []
    /// The first coordinator (nil: none).
    public var coordinator: String? {
        get { coordinators.first }
        set { coordinators = newValue.map { [$0] } ?? [] }
    }
    /// `metrics 127.0.0.1:9464`: Prometheus metrics and /healthz over plain HTTP (nil: off).
    public var metricsHost: String?
    public var metricsPort: UInt16 = 0
    public var lists: String?
    /// Below this share of free space on `state` or `inbound`, incoming transfers get 503.
    public var freeSpacePercent = 5.0
    public var retryMinimumSeconds = 10.0
    public var retryMaximumSeconds = 600.0
    /// A job older than this is failed (never silently dropped).
    public var maximumAgeSeconds = 3.0 * 86_400
    /// Consecutive failures after which a peer's circuit opens (its jobs wait; one probe tests it).
    public var circuitAfter = 5
    public var stableAfterSeconds = 120.0
    public var scanFilesPerSecond = 2000.0
    /// `inbound-keep`: received copies recorded longer ago than this are removed from `inbound`
    /// by the agent, forgotten and withdrawn from the registry (nil: kept until someone else,
    /// e.g. a PACS consuming its import folder, removes them).
    public var inboundKeepSeconds: Double?
    /// `identity`: whether studies from other trusts are placed in this trust's identity.
    public var identity: IdentityMode = .reconcile
    /// `unknown-patient`: what becomes of a study for a patient this trust has no number for.
    public var unknownPatient: UnknownPatient = .hold

    public enum IdentityMode: String, Sendable, Equatable {
        /// Patient ID and its issuer become this trust's own number for the NHS number (issue 25).
        case reconcile
        /// As sent: for a trust whose PACS reconciles what it imports for itself.
        case keep
    }

    public enum UnknownPatient: Sendable, Equatable {
        /// Held aside, listed as waiting for identity, until the trust announces the patient or a
        /// person releases it.
        case hold
        /// Placed with the NHS number as Patient ID, with this issuer.
        case nhsNumber(issuer: String)
    }
    /// Where each setting was written, for later checks' error messages.
    public var locations: [String: SourceLocation] = [:]

    public init(file: String) { self.file = file }

    public func peer(_ name: String) -> Peer? { peers.first { $0.name == name } }
    public func local(_ name: String) -> LocalTarget? { locals.first { $0.name == name } }

    /// The agent's own folders inside `state`.
    public var databasePath: String { state + "/agent.sqlite" }
    public var stagingFolder: String { inbound + "/.staging" }
    public var adminSocketPath: String { state + "/admin.sock" }
    /// Where the DIMSE SCP puts what it receives, `<Study>/<SOP>.dcm`, watched like an archive
    /// folder (its `.incoming` holds instances still arriving).
    public var dimseIntakeFolder: String { state + "/dimse-intake" }
}

extension AgentConfiguration {
    /// Why the DIMSE SCP does not offer query/retrieve (nil: it does, to the dimse-peers marked
    /// `{ query }`). Answers are in this trust's identity and a move's fetch places the study in
    /// it: without `identity reconcile` and a coordinator the PACS would get another trust's
    /// patient numbers, so the SCP then only stores.
    public var queryRetrieveUnavailable: String? {
        guard dimse != nil else { return "there is no dimse line" }
        if !dimsePeers.contains(where: \.mayQuery) { return "no dimse-peer is marked { query }" }
        if coordinator == nil { return "there is no coordinator line (where a patient's studies are is its word)" }
        if identity != .reconcile { return "identity is keep: answers and moves must be in this trust's identity (identity reconcile)" }
        return nil
    }
}
