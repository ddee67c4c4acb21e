// swift-tools-version:6.0
// Consort: DICOM imaging shared across the trusts of a consortium.
// No package dependencies by design: Foundation, Dispatch, Glibc, and system libraries
// reached through system-library targets (see README "Dependencies").
import PackageDescription

let package = Package(
    name: "Consort",
    products: [
        .executable(name: "consort", targets: ["consort"]),
        .library(name: "DICOM", targets: ["DICOM"]),
    ],
    targets: [
        // zlib, for the deflated transfer syntax (1.2.840.10008.1.2.1.99).
        .systemLibrary(
            name: "CZlib",
            pkgConfig: "zlib",
            providers: [.apt(["zlib1g-dev"])]
        ),
        // OpenSSL 3: TLS (Transport), the consortium's CA (PKI) and SHA-256 (Digest).
        .systemLibrary(
            name: "COpenSSL",
            pkgConfig: "openssl",
            providers: [.apt(["libssl-dev"])]
        ),
        // libcurl, the HTTPS client (URLSession on Linux cannot present client certificates).
        .systemLibrary(
            name: "CCurl",
            pkgConfig: "libcurl",
            providers: [.apt(["libcurl4-openssl-dev"])]
        ),
        // SHA-256 (OpenSSL's EVP digest, the one place it is called for hashing): of received
        // instances as they are written, manifests, the audit chain, canonical dumps.
        .target(
            name: "Digest",
            dependencies: ["COpenSSL"]
        ),
        // The OpenSSL macros Swift cannot import, as functions (Sources/CShims/include/cshims.h).
        .target(
            name: "CShims",
            dependencies: ["COpenSSL", "CCurl"]
        ),
        // GNU libc calls Swift's Glibc module leaves out, as C functions: syncfs, O_DIRECT,
        // the filesystem type, arming signals, a Unix socket peer's credentials, thread priorities.
        .target(name: "CSystem"),
        // SQLite 3: the agent's inventory and spool, in one database (WAL mode), and the
        // coordinator's registry when it is not on PostgreSQL.
        .systemLibrary(
            name: "CSQLite",
            pkgConfig: "sqlite3",
            providers: [.apt(["libsqlite3-dev"])]
        ),
        // One thin wrapper over SQLite: connections, prepared statements, transactions, typed
        // errors. No SQL here: the modules that own tables write their own.
        .target(
            name: "SQLite",
            dependencies: ["CSQLite"]
        ),
        // Writing a file durably: to a temporary name in its folder, fsynced, renamed over the
        // target, the folder fsynced; every failure thrown with errno's reason and the path. On
        // Glibc alone, below DICOM (a Foundation-free library product) and Platform (Foundation,
        // the daemon's machinery), so that every writer of files uses this one.
        .target(name: "Durability"),
        // What a daemon needs of the operating system, in Swift over Glibc (Foundation where a
        // file needs it): the signal watcher (armed before anything serves), systemd's notify
        // protocol and the service loop around it, a monotonic clock, the logger, thread
        // priorities, the calendar day, the version.
        .target(
            name: "Platform",
            dependencies: ["CSystem"]
        ),
        // Reading and writing DICOM Part 10 files and bare data sets. Pure Swift, except for
        // inflating deflated data sets through zlib (one file: Source/InflatingByteSource.swift).
        .target(
            name: "DICOM",
            dependencies: ["CZlib", "Durability"],
            exclude: ["Dictionary/generate_dictionary.py"]
        ),
        // De-identification (PS3.15 Annex E): the profile, generated from the standard's table,
        // and a keyed, consistent mapping of UIDs and dates.
        .target(
            name: "Deidentification",
            dependencies: ["DICOM", "Digest"],
            exclude: ["generate_profile.py"]
        ),
        // Routing rules: the language, its checker, the engine and the explainer, and NHS
        // identity (numbers, where each trust's headers carry them). Pure Swift on Foundation
        // (regular expressions); no I/O but reading rule files.
        .target(
            name: "Routing",
            dependencies: ["DICOM", "Spool", "Deidentification"]
        ),
        // The lexer of the configuration files (the agent's and the coordinator's): lines, tokens,
        // quoting, addresses, absolute paths, "did you mean" — reported as the rules are (Routing's
        // Diagnostic), so that the coordinator reads its file without depending on the agent.
        .target(
            name: "ConfigurationText",
            dependencies: ["Routing"]
        ),
        // HTTP/1.1 message parsing (RFC 9112) as pure state machines: the server's parser, with
        // every limit explicit. Sockets and TLS live in the transport module.
        .target(name: "HTTP"),
        // DIMSE (PS3.7, PS3.8): the upper layer's PDUs, the command sets, and associations as pure
        // state machines, without sockets (the transport layer moves their bytes with deadlines).
        .target(name: "DIMSE"),
        // DICOMweb (PS3.18) over files: multipart/related bodies streamed to and from files, STOW-RS
        // ingest (staged, checked, made durable, quarantined on conflict), WADO-RS and QIDO-RS over
        // a study folder. No sockets: the transport carries the requests.
        .target(
            name: "DICOMweb",
            dependencies: ["DICOM", "HTTP", "Digest", "CSystem", "Durability"]
        ),
        // Network sockets and TLS: the HTTPS server (a thread per connection, mutual TLS, every
        // limit explicit) and the HTTPS client on libcurl (client certificates, pooled handles).
        .target(
            name: "Transport",
            dependencies: ["HTTP", "DIMSE", "Platform", "COpenSSL", "CCurl", "CShims"]
        ),
        // The spool's policies as pure state machines (retries and backoff, circuit breakers,
        // priorities, time windows, deadlines): no I/O, no clock, no Foundation.
        .target(name: "Spool"),
        // Watching archive folders for new files: inotify on every folder (new ones added as they
        // appear), a polling mode for NFS, a rate-limited catch-up scan.
        .target(
            name: "ArchiveWatch",
            dependencies: ["Platform"]
        ),
        // The DICOMweb exchange both the commands (`send`, `receive`, `fetch`) and the daemons use:
        // the STOW-RS sender (per-instance outcomes), the DICOMweb service over a store, WADO-RS
        // retrieval, study manifests and the coordinator's client.
        .target(
            name: "Exchange",
            dependencies: ["DICOM", "DICOMweb", "DIMSE", "Digest", "HTTP", "Transport", "Platform", "Spool"]
        ),
        // The agent daemon: its configuration, ingest and routing of what the archive watcher
        // sees, the inventory and spool (SQLite), delivery and prefetch, the receiver, the admin
        // socket and metrics. The CLI only starts it (and reads its store for `queue`/`status`).
        .target(
            name: "Agent",
            dependencies: ["DICOM", "Routing", "ConfigurationText", "DICOMweb", "Transport", "Platform", "SQLite", "Spool", "ArchiveWatch", "Exchange", "CSystem", "Audit", "DIMSE", "Durability", "Deidentification"]
        ),
        // libpq (PostgreSQL's client library): the coordinator's registry on PostgreSQL.
        .systemLibrary(
            name: "CLibPQ",
            pkgConfig: "libpq",
            providers: [.apt(["libpq-dev"])]
        ),
        // The consortium's certificate authority (consort pki): keys, certificates and CRLs made
        // with OpenSSL's library.
        .target(
            name: "PKI",
            dependencies: ["COpenSSL", "Durability"]
        ),
        // The append-only, hash-chained audit log the agents and the coordinator keep.
        .target(
            name: "Audit",
            dependencies: ["DICOM", "Digest"]
        ),
        // The coordinator: the registry of who holds which patient's studies (SQLite or
        // PostgreSQL), its HTTPS API, NHS number resolution and identity conflicts.
        .target(
            name: "Coordinator",
            dependencies: ["ConfigurationText", "Audit", "DICOM", "DICOMweb", "Exchange", "HTTP", "Platform", "Routing", "SQLite", "Transport", "CLibPQ"]
        ),
        // What every `consort` subcommand needs, whichever module implements it: strict argument
        // reading, exit codes and usage errors, buffered stdout and stderr, walking file arguments.
        .target(
            name: "CommandSupport",
            dependencies: ["Platform"]
        ),
        // Benchmarks (`consort bench`), the demos (`consort demo`, `consort synth`) and what they
        // alone use: synthetic studies, child processes, loopback ports, the disk probe. Kept out
        // of the daemons' modules; the CLI holds only their entries in its command table.
        .target(
            name: "Workbench",
            dependencies: ["CommandSupport", "DICOM", "DICOMweb", "Deidentification", "Exchange", "PKI", "Platform", "Routing", "Transport", "CSystem"]
        ),
        // The `consort` command line: the subcommands (starting the daemons, operating them,
        // transfers, rules, PKI, audit) and their output formats.
        .target(
            name: "ConsortCLI",
            dependencies: ["CommandSupport", "DICOM", "Digest", "Routing", "ConfigurationText", "DICOMweb", "Transport", "Platform", "Exchange", "Agent", "Audit", "Coordinator", "PKI", "Workbench", "Spool", "DIMSE"]
        ),
        .executableTarget(
            name: "consort",
            dependencies: ["ConsortCLI"]
        ),
        // libFuzzer entry point for the DICOM reader; build with
        // `swift build --product fuzz-dicom --sanitize=fuzzer --sanitize=address`.
        .executableTarget(
            name: "fuzz-dicom",
            dependencies: ["DICOM"]
        ),
        .testTarget(
            name: "DICOMTests",
            dependencies: ["DICOM", "CZlib"]
        ),
        .executableTarget(
            name: "fuzz-rules",
            dependencies: ["Routing"]
        ),
        // libFuzzer entry point for the DIMSE PDU and command parsers (Tests/Fuzz/run-fuzzer.sh
        // --target dimse).
        .executableTarget(
            name: "fuzz-dimse",
            dependencies: ["DIMSE"]
        ),
        // Helpers the test targets share (running programs); not part of the product.
        .target(
            name: "TestSupport",
            path: "Tests/TestSupport"
        ),
        .testTarget(
            name: "TransportTests",
            dependencies: ["Transport", "HTTP", "DIMSE", "TestSupport"]
        ),
        .testTarget(
            name: "SpoolTests",
            dependencies: ["Spool"]
        ),
        .testTarget(
            name: "ExchangeTests",
            dependencies: ["Exchange", "DICOMweb", "Spool", "Transport"]
        ),
        .testTarget(
            name: "ArchiveWatchTests",
            dependencies: ["ArchiveWatch", "TestSupport"]
        ),
        .testTarget(
            name: "RegistryTests",
            dependencies: ["Coordinator", "Platform", "Routing", "SQLite", "TestSupport"]
        ),
        .testTarget(
            name: "DurabilityTests",
            dependencies: ["Durability", "TestSupport"]
        ),
        .testTarget(
            name: "AuditTests",
            dependencies: ["Audit"]
        ),
        .testTarget(
            name: "AgentTests",
            dependencies: ["Agent", "Exchange", "SQLite", "Routing", "DICOM", "Platform", "Spool", "TestSupport"]
        ),
        .testTarget(
            name: "DIMSETests",
            dependencies: ["DIMSE", "Transport", "TestSupport"]
        ),
        .testTarget(
            name: "HTTPTests",
            dependencies: ["HTTP"]
        ),
        .testTarget(
            name: "DICOMwebTests",
            dependencies: ["DICOMweb", "DICOM", "Digest", "TestSupport"]
        ),
        .testTarget(
            name: "DeidentificationTests",
            dependencies: ["Deidentification", "DICOM", "TestSupport"],
            exclude: ["check_deidentified.py"]
        ),
        .testTarget(
            name: "RoutingTests",
            dependencies: ["Routing", "DICOM", "Deidentification"]
        ),
        .testTarget(
            name: "ConsortCLITests",
            dependencies: ["ConsortCLI", "Workbench", "DICOM", "DIMSE", "Transport", "Platform", "TestSupport"],
            exclude: ["Conformance", "Interop"]
        ),
    ]
)
