import Agent
import Foundation
import Routing
import Testing

/// The agent's configuration file: the contract words, options, and errors placed at
/// file:line:column with hints.
@Suite("Agent configuration")
struct ConfigurationParserTests {
    static let example = """
        trust RSCH
        state /var/lib/consort            # inventory, spool, staging; a local filesystem
        watch /srv/pacs/export            # one or more; only ever read
        watch /mnt/nfs/ct { poll 10 s }   # a polling watch where inotify does not work (NFS)
        inbound /srv/pacs/import          # studies from other trusts land here, <Study>/<SOP>.dcm
        listen 0.0.0.0:8443
        certificate /etc/consort/rsch.pem
        key /etc/consort/rsch.key
        ca /etc/consort/ca.pem
        rules /etc/consort/routing-rules
        peer UHSX https://uhsx.consort.nhs.uk:8443 { connections 4  bandwidth 200 MB/s }
        peer AI-CXR https://cxr-ai.example/dicomweb
        local PACS dicomweb http://127.0.0.1:8042/dicom-web
        free-space 7 %
        retry-min 5 s
        retry-max 15 min
        max-age 2 d
        """

    @Test func theIssuesExampleParsesWordForWord() throws {
        let outcome = ConfigurationParser.parse(Self.example, file: "agent.conf")
        let c = try #require(outcome.configuration, "\(outcome.report())")
        #expect(c.trust == "RSCH")
        #expect(c.state == "/var/lib/consort")
        #expect(c.watches.map(\.path) == ["/srv/pacs/export", "/mnt/nfs/ct"])
        #expect(c.watches.map(\.pollSeconds) == [nil, 10])
        #expect(c.inbound == "/srv/pacs/import")
        #expect(c.listenHost == "0.0.0.0" && c.listenPort == 8443)
        #expect(c.certificate == "/etc/consort/rsch.pem" && c.key == "/etc/consort/rsch.key" && c.ca == "/etc/consort/ca.pem")
        #expect(c.rules == "/etc/consort/routing-rules")
        #expect(c.peers.map(\.name) == ["UHSX", "AI-CXR"])
        #expect(c.peer("UHSX")?.connections == 4)
        #expect(c.peer("UHSX")?.bandwidth == 200_000_000)
        #expect(c.peer("AI-CXR")?.url == "https://cxr-ai.example/dicomweb")
        #expect(c.local("PACS")?.url == "http://127.0.0.1:8042/dicom-web")
        #expect(c.freeSpacePercent == 7 && c.retryMinimumSeconds == 5 && c.retryMaximumSeconds == 900 && c.maximumAgeSeconds == 172_800)
    }

    @Test("errors are placed and explained", arguments: [
        ("wacth /srv", "1:1", "unknown setting \"wacth\"", "did you mean \"watch\"?"),
        ("state relative/path", "1:7", "needs an absolute path", nil),
        ("listen 8443", "1:8", "ADDRESS:PORT", nil),
        ("peer UHSX ftp://x", "1:11", "https:// URL", nil),
        ("peer UHSX https://x { connections 99 }", "1:23", "connections takes a number from 1 to 16", nil),
        ("peer UHSX https://x { speed 3 }", "1:23", "unknown option \"speed\"", "the options are connections N, bandwidth RATE and batch N"),
        ("watch /srv { poll 10 }", "1:19", "a duration", nil),
        ("free-space 5", "1:12", "a percentage", nil),
        // Out of range: an error at the value saying the range, never a quiet change.
        ("max-age 5 s", "1:9", "\"max-age\" is 5 s; it must be from 1 min to 365 days", nil),
        ("retry-min 0.5 s", "1:11", "\"retry-min\" is 0.5 s; it must be from 1 s to 6 h", nil),
        ("retry-max 2 d", "1:11", "\"retry-max\" is 2 days; it must be from 1 s to 1 day", nil),
        ("stable-after 0 s", "1:14", "\"stable-after\" is 0 s; it must be from 1 s to 1 day", nil),
        ("inbound-keep 30 s", "1:14", "\"inbound-keep\" is 30 s; it must be from 1 min to 3650 days", nil),
        ("trust RSCH\ntrust UHSX", "2:1", "set twice (first at line 1)", nil),
        ("peer UHSX https://x { connections 2", "1:21", "is not closed on the same line", nil),
        ("state \"/var/lib/with space\" extra", "1:29", "takes one value", nil),
        ("dimse 0.0.0.0:11112", "1:7", "needs the AE title it answers to", nil),
        ("dimse 0.0.0.0:11112 { aet A\\B }", "1:27", "is not an AE title", nil),
        ("dimse 0.0.0.0:11112 { aet X  associations 0 }", "1:43", "associations takes a whole number from 1 to 256", nil),
        ("dimse 0.0.0.0:11112 { aet X  colour red }", "1:30", "unknown option \"colour\" of \"dimse\"",
            "the options are aet AET, associations N, max-pdu BYTES, timeout S, idle S, move-wait S and tls, e.g. { aet CONSORT_RSCH }"),
        ("dimse-peer CT1 10.0.0.5:104", "1:16", "AET@HOST:PORT", nil),
        ("dimse-peer CT1 CT1@a:104\ndimse-peer CT1 CT2@b:104", "2:12", "dimse-peer CT1 is defined twice", nil),
        ("coordinator https://a:8444\ncoordinator https://a:8444/", "2:13", "coordinator https://a:8444 is named twice", nil),
        ("dimse-peer CT1 CT@a:104\ndimse-peer PACS CT@b:104", "2:17", "AE title CT is dimse-peer CT1's already", nil),
        ("dimse-peer CT1 CT1@a:104 { querry }", "1:28", "unknown option \"querry\" of a dimse-peer",
            "the options are query (it may ask the consortium: C-FIND, C-MOVE) and tls (C-MOVE sends to it over DICOM TLS)"),
    ] as [(String, String, String, String?)])
    func errorsArePlaced(_ text: String, _ place: String, _ message: String, _ hint: String?) {
        let outcome = ConfigurationParser.parse(text, file: "agent.conf")
        #expect(outcome.configuration == nil)
        let first = outcome.errors.first
        #expect(first.map { "\($0.location.line):\($0.location.column)" } == place, "\(outcome.report())")
        #expect(first?.message.contains(message) == true, "\(outcome.report())")
        if let hint { #expect(first?.hint == hint, "\(outcome.report())") }
    }

    @Test func theDIMSEListenerAndItsPeersAreContractWords() throws {
        let text = Self.example + """

            dimse 0.0.0.0:11112 { aet CONSORT_RSCH }
            dimse-peer CT1 CT_SCANNER_1@10.1.2.3:104
            dimse-peer PACS RSCH_PACS@pacs.rsch.nhs.uk:11112
            """
        let c = try #require(ConfigurationParser.parse(text, file: "agent.conf").configuration)
        let dimse = try #require(c.dimse)
        #expect(dimse.host == "0.0.0.0" && dimse.port == 11112 && dimse.aeTitle == "CONSORT_RSCH")
        #expect(dimse.associations == 8 && dimse.maximumPDU == 65_536 && dimse.timeoutSeconds == 30 && dimse.idleSeconds == 120)
        #expect(c.dimsePeers.map { "\($0.name) \($0.aeTitle)@\($0.host):\($0.port)" } == ["CT1 CT_SCANNER_1@10.1.2.3:104", "PACS RSCH_PACS@pacs.rsch.nhs.uk:11112"])
        let limits = try #require(ConfigurationParser.parse(Self.example + "\ndimse 127.0.0.1:104 { aet X associations 2 max-pdu 16384 timeout 5 s tls idle 1 min }", file: "agent.conf").configuration?.dimse)
        #expect(limits.associations == 2 && limits.maximumPDU == 16_384 && limits.timeoutSeconds == 5 && limits.idleSeconds == 60 && limits.tls)
        #expect(!dimse.tls)
        // Query/retrieve only for the peers marked { query }, and only with identity reconcile
        // and a coordinator; a C-MOVE waits two minutes for a fetch unless told otherwise.
        #expect(dimse.moveWaitSeconds == 120 && c.dimsePeers.allSatisfy { !$0.mayQuery && !$0.tls })
        #expect(c.queryRetrieveUnavailable == "no dimse-peer is marked { query }")
        let asking = try #require(ConfigurationParser.parse(Self.example + """

            coordinator https://coordinator.consort.nhs.uk:8444
            dimse 127.0.0.1:104 { aet X move-wait 30 s }
            dimse-peer PACS RSCH_PACS@10.1.2.4:11112 { query tls }
            """, file: "agent.conf").configuration)
        #expect(asking.dimse?.moveWaitSeconds == 30 && asking.dimsePeers[0].mayQuery && asking.dimsePeers[0].tls)
        #expect(asking.queryRetrieveUnavailable == nil)
        var keeping = asking
        keeping.identity = .keep
        #expect(keeping.queryRetrieveUnavailable?.contains("identity reconcile") == true)
        #expect(try #require(ConfigurationParser.parse(Self.example, file: "agent.conf").configuration).dimse == nil)
    }

    @Test func severalCoordinatorsAreTakenInTheirOrder() throws {
        let c = try #require(ConfigurationParser.parse(Self.example + "\ncoordinator https://a.consort.nhs.uk:8444\ncoordinator https://b.consort.nhs.uk:8444\n", file: "agent.conf").configuration)
        #expect(c.coordinators == ["https://a.consort.nhs.uk:8444", "https://b.consort.nhs.uk:8444"] && c.coordinator == "https://a.consort.nhs.uk:8444")
    }

    @Test func inboundKeepIsADurationAndReceivedCopiesAreKeptWithoutIt() throws {
        #expect(try #require(ConfigurationParser.parse(Self.example, file: "agent.conf").configuration).inboundKeepSeconds == nil)
        let c = try #require(ConfigurationParser.parse(Self.example + "\ninbound-keep 30 d\n", file: "agent.conf").configuration)
        #expect(c.inboundKeepSeconds == 2_592_000.0)
    }

    /// The folders the inventory's paths begin with are read as the watchers report paths, so a
    /// file leaving `inbound` is matched to what the agent wrote there.
    @Test func foldersAreReadLexicallyNormal() throws {
        let text = Self.example
            .replacingOccurrences(of: "inbound /srv/pacs/import", with: "inbound /srv//pacs/./import/")
            .replacingOccurrences(of: "watch /srv/pacs/export ", with: "watch /srv/pacs/x/../export/ ")
        let c = try #require(ConfigurationParser.parse(text, file: "agent.conf").configuration)
        #expect(c.inbound == "/srv/pacs/import")
        #expect(c.watches.first?.path == "/srv/pacs/export")
    }

    /// A PACS that takes only DIMSE: `local NAME dimse AET@HOST:PORT` with its options; every
    /// mistake named at its place.
    @Test func aLocalPACSThatSpeaksDIMSEIsANodeWithItsOptions() throws {
        let base = Self.example.replacingOccurrences(of: "local PACS dicomweb http://127.0.0.1:8042/dicom-web", with: "")
        let c = try #require(ConfigurationParser.parse(base + "\nlocal PACS dimse PACS_MAIN@10.1.2.3:104 { connections 4 calling-aet CONSORT_RSCH timeout 20 }\n", file: "agent.conf").configuration)
        let local = try #require(c.local("PACS"))
        #expect(local.dimse?.ae == "PACS_MAIN" && local.dimse?.host == "10.1.2.3" && local.dimse?.port == 104)
        #expect(local.connections == 4 && local.callingAET == "CONSORT_RSCH" && local.timeout == 20 && local.url == "dicom://PACS_MAIN@10.1.2.3:104")
        let plain = try #require(ConfigurationParser.parse(base + "\nlocal PACS dimse PACS@[::1]:11112\n", file: "agent.conf").configuration?.local("PACS"))
        #expect(plain.dimse?.host == "::1" && plain.connections == 1 && plain.callingAET == nil && !plain.tls)
        let overTLS = try #require(ConfigurationParser.parse(base + "\nlocal PACS dimse PACS@pacs.rsch:2762 { tls connections 2 }\n", file: "agent.conf").configuration?.local("PACS"))
        #expect(overTLS.tls && overTLS.connections == 2)
        for (line, words) in [
            ("local PACS dimse PACS@10.1.2.3", "AET@HOST:PORT"),
            ("local PACS dimse AN_AE_TITLE_TOO_LONG@10.1.2.3:104", "AET@HOST:PORT"),
            ("local PACS dimse PACS@10.1.2.3:104 { connections 40 }", "from 1 to 16"),
            ("local PACS dimse PACS@10.1.2.3:104 { calling-aet A\\B }", "calling-aet takes an AE title"),
            ("local PACS dimse PACS@10.1.2.3:104 { tls on }", "unknown option \"on\""),
            ("local PACS dicomweb http://x { connections 2 }", "takes no options"),
            ("local PACS dimsee PACS@10.1.2.3:104", "dicomweb or dimse"),
        ] {
            let outcome = ConfigurationParser.parse(base + "\n" + line + "\n", file: "agent.conf")
            #expect(outcome.errors.contains { $0.message.contains(words) }, "\(line): \(outcome.errors.map(\.message))")
        }
    }

    @Test func everyRequiredWordMissingIsNamed() {
        let outcome = ConfigurationParser.parse("# nothing here\n", file: "empty.conf")
        let missing = outcome.errors.map(\.message)
        for word in ["trust", "state", "watch", "inbound", "listen", "certificate", "key", "ca", "rules"] {
            #expect(missing.contains("\"\(word)\" is required and missing"), "\(missing)")
        }
    }

    @Test func quotedValuesKeepTheirSpacesAndHashes() throws {
        let text = Self.example.replacingOccurrences(of: "watch /srv/pacs/export ", with: "watch \"/srv/pacs/PACS export #2\" ")
        let c = try #require(ConfigurationParser.parse(text, file: "agent.conf").configuration)
        #expect(c.watches.first?.path == "/srv/pacs/PACS export #2")
    }

    /// The commented examples in Deploy/ for the five trusts are valid configurations.
    @Test func theDeployExamplesForTheFiveTrustsParse() throws {
        var root = URL(fileURLWithPath: #filePath)
        for _ in 0..<3 { root.deleteLastPathComponent() }
        for code in ["rsch", "asph", "esht", "qvh", "uhsx"] {
            let outcome = ConfigurationParser.parse(file: root.path + "/Deploy/agent-\(code).conf")
            let c = try #require(outcome.configuration, "\(code): \(outcome.report())")
            #expect(c.trust == code.uppercased())
            #expect(c.peers.filter { $0.name != "AI-CXR" }.count == 4, "\(code)")
        }
    }
}
