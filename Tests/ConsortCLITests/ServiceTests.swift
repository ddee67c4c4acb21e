import Foundation
import Platform
import TestSupport
import Testing

/// The agent as a systemd service (issue 13): the notify protocol, played from systemd's side of
/// the socket (this machine has no systemd as PID 1), and the unit files in Deploy/ checked by
/// systemd-analyze.
@Suite("systemd service", .serialized, .timeLimit(.minutes(5)))
struct ServiceTests {
    /// systemd's end of $NOTIFY_SOCKET: a Unix datagram socket in a scratch folder, collecting
    /// what the service sends.
    final class NotifyListener {
        let path: String
        private let fd: Int32
        private(set) var messages: [String] = []

        init(folder: String) throws {
            path = folder + "/notify.sock"
            fd = socket(AF_UNIX, Int32(SOCK_DGRAM.rawValue), 0)
            var address = sockaddr_un()
            address.sun_family = sa_family_t(AF_UNIX)
            let bytes = Array(path.utf8)
            try #require(bytes.count < MemoryLayout.size(ofValue: address.sun_path))
            withUnsafeMutableBytes(of: &address.sun_path) { $0.copyBytes(from: bytes) }
            let bound = withUnsafePointer(to: &address) { $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { bind(fd, $0, socklen_t(MemoryLayout<sockaddr_un>.size)) } }
            try #require(bound == 0, "cannot bind \(path): \(String(cString: strerror(errno)))")
        }

        deinit { close(fd) }

        /// Reads datagrams until `condition` holds on everything received, or `timeout` passes.
        @discardableResult
        func wait(within timeout: Double, _ what: String, _ condition: ([String]) -> Bool) -> Bool {
            let deadline = Date().addingTimeInterval(timeout)
            while !condition(messages) {
                let left = deadline.timeIntervalSinceNow
                if left <= 0 {
                    Issue.record("not within \(Int(timeout)) s: \(what); received:\n\(messages.joined(separator: "\n---\n"))")
                    return false
                }
                var poller = pollfd(fd: fd, events: Int16(POLLIN), revents: 0)
                guard poll(&poller, 1, Int32(left * 1000) + 1) > 0 else { continue }
                var buffer = [UInt8](repeating: 0, count: 4096)
                let n = buffer.withUnsafeMutableBytes { recv(fd, $0.baseAddress, $0.count, 0) }
                if n > 0 { messages.append(String(decoding: buffer[..<n], as: UTF8.self)) }
            }
            return true
        }

        func count(_ line: String) -> Int { messages.filter { $0.split(separator: "\n").contains(Substring(line)) }.count }
    }

    @Test func theAgentSpeaksSystemdsNotifyProtocol() throws {
        let consortium = try TestConsortium(members: ["RSCH", "UHSX"], rules: AgentTests.pushAll)
        let rsch = try consortium.site("RSCH")
        let systemd = try NotifyListener(folder: consortium.root.path)
        // A watchdog of 1 s: pings every half second.
        let agent = try RunningProgram([Run.consort, "agent", "--config", rsch.config], environment: ["NOTIFY_SOCKET": systemd.path, "WATCHDOG_USEC": "1000000"])
        defer { agent.kill() }
        systemd.wait(within: 60, "READY=1 with a status line") { $0.contains { $0.contains("READY=1") && $0.contains("STATUS=") } }
        // READY=1 only once listening: a connection right now is accepted (no retry).
        #expect(Self.accepts(port: rsch.port), "READY=1 before the agent listens: \(agent.log)")
        let first = systemd.messages.first ?? ""
        #expect(first.contains("READY=1"), "READY=1 comes first: \(systemd.messages)")
        #expect(first.contains("STATUS=0 queued, 0 active, 0 deferred; all peers reachable"), "\(first)")
        systemd.wait(within: 10, "watchdog pings every half second") { _ in systemd.count("WATCHDOG=1") >= 4 }
        agent.signal(SIGHUP)
        systemd.wait(within: 10, "RELOADING=1, then READY=1 again") { messages in
            guard let reloading = messages.lastIndex(where: { $0.contains("RELOADING=1") }) else { return false }
            return messages[(reloading + 1)...].contains { $0.contains("READY=1") }
        }
        agent.signal(SIGTERM)
        systemd.wait(within: 10, "STOPPING=1") { $0.contains { $0.contains("STOPPING=1") } }
        let (status, signalled) = try agent.waitForExit(within: 30)
        #expect(status == 0 && !signalled, "\(agent.log)")
    }

    /// systemd may be slow to read (or a test may not read at all): a full socket queue makes a
    /// send fail, never block the loop that sends (it would then never ping or stop again).
    @Test func aListenerThatDoesNotReadNeverBlocksTheSender() throws {
        let scratch = try ScratchFolder()
        let systemd = try NotifyListener(folder: scratch.path)
        let notifier = ServiceNotifier(environment: ["NOTIFY_SOCKET": systemd.path, "WATCHDOG_USEC": "2000000"])
        #expect(notifier.isActive && notifier.watchdogPeriod == 1)
        let sent = (0..<200).map { _ in notifier.send("WATCHDOG=1") }
        #expect(sent.first == true && sent.last == false, "the queue filled, and the sends after it failed at once")
        systemd.wait(within: 5, "the datagrams sent before the queue filled") { $0.count == sent.filter { $0 }.count }
        // Another process's watchdog, or no socket: nothing is sent.
        #expect(ServiceNotifier(environment: ["WATCHDOG_USEC": "2000000", "WATCHDOG_PID": "1"]).watchdogPeriod == nil)
        #expect(!ServiceNotifier(environment: [:]).send("READY=1"))
    }

    /// Whether a TCP connection to the port on loopback is accepted, at once.
    static func accepts(port: Int) -> Bool {
        let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
        defer { close(fd) }
        var address = sockaddr_in()
        address.sin_family = sa_family_t(AF_INET)
        address.sin_port = UInt16(port).bigEndian
        address.sin_addr.s_addr = inet_addr("127.0.0.1")
        return withUnsafePointer(to: &address) { $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { connect(fd, $0, socklen_t(MemoryLayout<sockaddr_in>.size)) } } == 0
    }

    /// A loop of the agent that stops (here the dispatcher, by a test-only fault) withholds the
    /// watchdog pings, so systemd restarts the agent; the log says why.
    @Test func aStuckLoopStopsTheWatchdogPings() throws {
        let consortium = try TestConsortium(members: ["RSCH", "UHSX"], rules: AgentTests.pushAll)
        let rsch = try consortium.site("RSCH")
        let systemd = try NotifyListener(folder: consortium.root.path)
        let agent = try RunningProgram(
            [Run.consort, "agent", "--config", rsch.config],
            environment: ["NOTIFY_SOCKET": systemd.path, "WATCHDOG_USEC": "1000000", "CONSORT_TEST_HANG_DISPATCH_AFTER": "2"])
        defer { agent.kill() }
        systemd.wait(within: 60, "the first pings") { _ in systemd.count("WATCHDOG=1") >= 2 }
        // (Reading all the while: systemd always does, and the agent must not depend on it.)
        systemd.wait(within: 30, "the agent says it stopped pinging") { _ in agent.standardError.contains("NOT pinging the systemd watchdog") }
        #expect(agent.standardError.contains("loops=dispatch"), "\(agent.standardError)")
        // From now on: silence on the watchdog while the status keeps coming (the main loop lives).
        let pings = systemd.count("WATCHDOG=1")
        systemd.wait(within: 15, "status lines still sent") { messages in messages.filter { $0.hasPrefix("STATUS=") }.count >= 3 }
        #expect(systemd.count("WATCHDOG=1") == pings, "no ping while the dispatcher is stuck")
    }

    /// The units pass `systemd-analyze verify` and are rated at exposure 2.0 or lower by
    /// `systemd-analyze security --offline=true`, after a staged `Deploy/install.sh --prefix`.
    @Test func theUnitsVerifyAndAreHardened() throws {
        try Skip.unless(Run.find("systemd-analyze") != nil, "systemd-analyze is not installed (Debian package systemd)")
        let script = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent().appendingPathComponent("Deploy/check-units.sh").path
        let outcome = try Run.program("/bin/bash", [script, Run.consort], timeout: 120)
        #expect(outcome.status == 0, "\(outcome.stdout)\(outcome.stderr)")
        for unit in ["consort-agent.service", "consort-coordinator.service", "consort-crl.service"] {
            #expect(outcome.stdout.contains("\(unit): verify ok, exposure"), "\(outcome.stdout)")
        }
        #expect(outcome.stdout.contains("consort-crl.timer: verify ok"), "\(outcome.stdout)")
        #expect(outcome.stdout.contains("consort-crl-reload.path: verify ok"), "\(outcome.stdout)")
        // The agent's sandbox lets it rank its threads (setpriority, ioprio_set, LimitNICE=+0).
        #expect(outcome.stdout.contains("consort-agent.service: system call filter allows"), "\(outcome.stdout)")
    }
}

extension ServiceTests {
    /// A coordinator that must first move an earlier registry to the current layout (minutes
    /// at millions of studies) asks systemd for time as it goes — EXTEND_TIMEOUT_USEC, with a
    /// STATUS line saying what it does — and says READY=1 only when done: otherwise
    /// TimeoutStartSec would kill it half-way, and each restart begin the move again.
    @Test func theCoordinatorAsksSystemdForTimeWhileItMovesAnEarlierRegistry() throws {
        let python = try Run.require("python3", package: "python3")
        let consortium = try TestConsortium(members: ["RSCH", "UHSX"], rules: AgentTests.pushAll)
        let coordinator = try CoordinatorSite(consortium)
        // The earlier layout, as its coordinator made it.
        let made = try Run.program(python, ["-c", """
            import sqlite3, sys
            db = sqlite3.connect(sys.argv[1])
            db.executescript('''
                CREATE TABLE studies (uid TEXT PRIMARY KEY, nhs TEXT, announced_by TEXT NOT NULL, study_date TEXT, modalities TEXT, body_part TEXT,
                    description TEXT, accession TEXT, instances INTEGER NOT NULL, bytes INTEGER NOT NULL, updated REAL NOT NULL);
                CREATE INDEX studies_by_patient ON studies(nhs, study_date);
                CREATE TABLE locations (study TEXT NOT NULL, trust TEXT NOT NULL, complete INTEGER NOT NULL, instances INTEGER NOT NULL,
                    since REAL NOT NULL, PRIMARY KEY (study, trust)) WITHOUT ROWID;
            ''')
            db.executemany('INSERT INTO studies VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)',
                [('2.25.%d' % i, '9990000018', 'RSCH', '20250101', 'CT', None, None, None, 3, 300, 1.0) for i in range(12000)])
            db.executemany('INSERT INTO locations VALUES (?, ?, ?, ?, ?)', [('2.25.%d' % i, 'RSCH', 1, 3, 1.0) for i in range(12000)])
            db.commit()
            """, coordinator.registry])
        try #require(made.status == 0, "\(made.stderr)")
        let systemd = try NotifyListener(folder: consortium.root.path)
        let program = try RunningProgram([Run.consort, "coordinator", "--config", coordinator.config], environment: ["NOTIFY_SOCKET": systemd.path])
        defer { program.kill() }
        systemd.wait(within: 120, "READY=1") { $0.contains { $0.contains("READY=1") } }
        let ready = systemd.messages.firstIndex { $0.contains("READY=1") } ?? 0
        #expect(systemd.messages[..<ready].contains {
            $0.contains("EXTEND_TIMEOUT_USEC=60000000") && $0.contains("STATUS=moving the registry to its layout by patient: 0 of 12000 studies")
        }, "\(systemd.messages)")
        // Moved: every study in the new table, the earlier tables gone.
        let counted = try Run.program(python, ["-c", """
            import sqlite3, sys
            db = sqlite3.connect(sys.argv[1])
            print(db.execute('SELECT count(*) FROM patient_studies').fetchone()[0], db.execute("SELECT count(*) FROM sqlite_master WHERE name IN ('studies', 'locations')").fetchone()[0])
            """, coordinator.registry])
        #expect(counted.stdout.trimmingCharacters(in: .whitespacesAndNewlines) == "12000 0", "\(counted.stdout)\(counted.stderr)")
        #expect(program.standardError.contains("moving each study's holdings into its row"), "\(program.standardError)")
        program.signal(SIGTERM)
        let (status, signalled) = try program.waitForExit(within: 30)
        #expect(status == 0 && !signalled, "\(program.standardError)")
    }
}
