#!/usr/bin/env python3
"""Proves the suite guards what matters most: applies deliberate breakages, one at a time, to a
copy of the repository and shows that each makes at least one test fail.

    Tests/Mutations/mutate.py [--work DIR] [--only NAME ...] [--list]

Each breakage names a file, an exact piece of code and what replaces it (a breakage whose code is
no longer found is reported as STALE: the list must follow the code), and the tests to run
against it. The copy (default /tmp/consort-mutants) is built once, then incrementally for each
breakage; the repository itself is never touched. A run takes 10-20 minutes on 2 cores; it is
not part of every CI run. Exit 0 only when every breakage was caught (KILLED).
"""
from __future__ import annotations

import argparse
import os
import re
import shutil
import subprocess
import sys
import time

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))

# (name, file, code, replacement, test filter). The most dangerous parts: TLS settings on both
# sides, identity from the certificate, the staging/link durability steps, whole-file checks,
# conflicts, the reader's length checks, signal handling.
MUTATIONS = [
    ("client trusts any server", "Sources/Transport/HTTPClient.swift",
     "CURLOPT_SSL_VERIFYPEER, 1))", "CURLOPT_SSL_VERIFYPEER, 0))", "HTTPClientTests"),
    ("client ignores the server's name", "Sources/Transport/HTTPClient.swift",
     "CURLOPT_SSL_VERIFYHOST, 2))", "CURLOPT_SSL_VERIFYHOST, 0))", "HTTPClientTests"),
    ("client ignores its CRL", "Sources/Transport/HTTPClient.swift",
     "if let crl = tls.revocationList { set(consort_curl_setopt_string(handle, CURLOPT_CRLFILE, crl)) }",
     "_ = tls.revocationList", "HTTPClientTests"),
    ("client allows TLS 1.0", "Sources/Transport/HTTPClient.swift",
     "Int(CURL_SSLVERSION_TLSv1_2)", "Int(CURL_SSLVERSION_TLSv1)", "ClientTLSVersionTests"),
    ("server asks no client certificate", "Sources/Transport/TLSContext.swift",
     "let mode = SSL_VERIFY_PEER | (role == .server ? SSL_VERIFY_FAIL_IF_NO_PEER_CERT : 0)",
     "let mode = role == .server ? SSL_VERIFY_NONE : SSL_VERIFY_PEER", "HTTPServerTests|ReceiverTLSPolicyTests"),
    ("server accepts a client certificate from any CA", "Sources/Transport/TLSContext.swift",
     "SSL_CTX_set_verify(ctx, mode, nil)", "SSL_CTX_set_verify(ctx, mode) { _, _ in 1 }", "HTTPServerTests|ReceiverTLSPolicyTests"),
    ("server allows TLS 1.0", "Sources/Transport/TLSContext.swift",  # and its cipher list (ALSO)
     "consort_SSL_CTX_set_min_proto_version(ctx, TLS1_2_VERSION)", "consort_SSL_CTX_set_min_proto_version(ctx, TLS1_VERSION)",
     "ClientTLSVersionTests|ReceiverTLSPolicyTests"),
    # The floor alone: TLS 1.0 is still refused (no AEAD cipher exists below 1.2), but for want of
    # a cipher, not for its version; the policy test tells the two apart by the alert.
    ("server's protocol floor lowered to TLS 1.0, ciphers as they are", "Sources/Transport/TLSContext.swift",
     "consort_SSL_CTX_set_min_proto_version(ctx, TLS1_2_VERSION)", "consort_SSL_CTX_set_min_proto_version(ctx, TLS1_VERSION)",
     "ReceiverTLSPolicyTests"),
    ("server's TLS 1.2 ciphers include CBC", "Sources/Transport/TLSContext.swift",
     '"ECDHE+AESGCM:ECDHE+CHACHA20:!aNULL:!MD5:!RC4"', '"ECDHE:!aNULL:!MD5:!RC4"', "ReceiverTLSPolicyTests"),
    ("server's TLS 1.2 ciphers include RSA key exchange (not forward-secret)", "Sources/Transport/TLSContext.swift",
     '"ECDHE+AESGCM:ECDHE+CHACHA20:!aNULL:!MD5:!RC4"', '"ECDHE+AESGCM:ECDHE+CHACHA20:RSA+AESGCM:!aNULL:!MD5:!RC4"',
     "ReceiverTLSPolicyTests"),
    ("identity taken from the first DNS name, not the CN", "Sources/Transport/TLSContext.swift",
     "return PeerIdentity(commonName: cn, dnsNames: dns, expires: nil)",
     "return PeerIdentity(commonName: dns.first ?? cn, dnsNames: dns, expires: nil)", "HTTPServerTests|TransferTests"),
    ("no durability barrier before naming instances", "Sources/DICOMweb/STOW/StowIngest+Placing.swift",
     "let durable = fd >= 0 && consort_syncfs(fd) == 0", "let durable = fd >= 0", "IntegrityTests"),
    ("no fsync of a few instances before naming them", "Sources/DICOMweb/STOW/StowIngest+Placing.swift",
     "let synced = fd >= 0 && fsync(fd) == 0", "let synced = fd >= 0", "IntegrityTests"),
    ("study folder not fsynced after its new names", "Sources/DICOMweb/STOW/StowIngest.swift",
     "-> Int32 = DurableFile.fsyncFolder", "-> Int32 = { _, _ in 0 }", "IntegrityTests"),
    ("a new study folder's name in inbound not fsynced", "Sources/DICOMweb/STOW/StowIngest+Placing.swift",
     "if !unsure.isEmpty, let failure = syncFolder(inbound) {", "if false, let failure = syncFolder(inbound) {",
     "IntegrityTests"),
    # The receiver's folder fsyncs go through DurableFile.syncFolder, like every durable write's.
    ("a failed folder fsync is ignored and its instances acknowledged", "Sources/Durability/DurableFile.swift",
     "guard code == 0 else {", "guard code == 0 || true else {", "FolderFsyncFailureTests|DurableFileTests"),
    ("a durable write never fsyncs its folder", "Sources/Durability/DurableFile.swift",
     "try syncFolder(folder, using: syncingFolder)", "_ = syncingFolder", "DurableFileTests"),
    ("a failed durable write leaves its temporary file behind", "Sources/Durability/DurableFile.swift",
     "if !renamed { unlink(file.path) }", "_ = renamed", "DurableFileTests"),
    ("a durable write ignores the mode asked for (a CRL the agents cannot read)", "Sources/Durability/DurableFile.swift",
     "if let mode, fchmod(descriptor, mode) != 0 {", "if let mode, mode == 0, fchmod(descriptor, mode) != 0 {", "DurableFileTests"),
    ("a failed fsync of inbound is ignored for the study folders made", "Sources/DICOMweb/STOW/StowIngest+Placing.swift",
     "for folder in unsure where lost[folder] == nil && !registry.isDurable(folder: Self.name(ofFolder: folder)) {",
     "for folder in unsure where false {", "FolderFsyncFailureTests"),
    ("a name that could not be made durable is kept", "Sources/DICOMweb/STOW/StowIngest+Placing.swift",
     "registry.settle(Self.key(name.item), by: owner, removing: name.destination)", "registry.settle(Self.key(name.item), by: owner)",
     "FolderFsyncFailureTests"),
    ("a study folder whose name could not be made durable is kept", "Sources/DICOMweb/STOW/StowIngest+Placing.swift",
     "registry.removeIfNotDurable(folder: Self.name(ofFolder: folder), at: folder)", "_ = folder", "FolderFsyncFailureTests"),
    # Two requests of one receiver at once (the reviewer's race): B finds the name A has linked
    # and not yet made durable, and must not acknowledge it before A has settled it (A removes it
    # when its folder fsync fails).
    ("a name another request may still remove is acknowledged as already held", "Sources/DICOMweb/STOW/StowIngest+Placing.swift",
     "if claim == .elsewhere { return .claimedElsewhere }", "_ = claim", "StowConcurrentRequestsTests"),
    ("a study folder another request made is trusted without an fsync of inbound", "Sources/DICOMweb/STOW/StowIngest+Placing.swift",
     "let unsure = folders.filter { createdFolders.contains($0) || !registry.isDurable(folder: Self.name(ofFolder: $0)) }",
     "let unsure = folders.filter { createdFolders.contains($0) }", "StowConcurrentRequestsTests"),
    ("a failed fsync of inbound makes the study folders known durable", "Sources/DICOMweb/STOW/StowIngest+Placing.swift",
     "        } else if !unsure.isEmpty {\n            registry.markDurable",
     "        }\n        if !unsure.isEmpty {\n            registry.markDurable", "StowConcurrentRequestsTests"),
    ("PostgreSQL writers take no lock (two coordinators drop each other's trusts)", "Sources/Coordinator/RegistryConnection.swift",
     'try execute("SELECT pg_advisory_xact_lock(\\(Self.writersLock))")', "_ = Self.writersLock", "RegistryTests"),
    ("placing an instance overwrites what is held", "Sources/DICOMweb/STOW/StowIngest+Placing.swift",
     "if Glibc.link(item.staged, destination) == 0 {", "if Glibc.rename(item.staged, destination) == 0 {",
     "IntegrityTests|TransferTests"),
    ("a conflicting instance is taken as already held", "Sources/DICOMweb/STOW/StowIngest+Placing.swift",
     "if code == EEXIST, heldDigest == item.digest {", "if code == EEXIST {", "IntegrityTests"),
    ("the receiver checks headers only", "Sources/DICOMweb/STOW/StowIngest.swift",
     "file = part.size <= part.prefix.count ? try DICOMFile.verify(bytes: part.prefix) : try DICOMFile.verify(prefix: part.prefix[...], path: part.path)",
     "file = try DICOMFile.read(bytes: part.prefix)", "IntegrityTests|StowIngestTests"),
    ("the sender sends cut files", "Sources/Exchange/StowSender.swift",
     "let file = try DICOMFile.verify(path: path)", "let file = try DICOMFile.read(path: path)", "IntegrityTests"),
    ("the reader trusts lengths", "Sources/DICOM/Reading/DataSetParser.swift",
     "        if !stream.mayHave(count), let left = stream.remaining {",
     "        if false, !stream.mayHave(count), let left = stream.remaining {", "MalformedInputTests|StructureCheckTests"),
    ("an image without its pixel data passes the check", "Sources/DICOM/Reading/DICOMFile+Verify.swift",
     "            if let why {", "            if let why, false {", "StructureCheckTests"),
    ("signals handled as before issue 9 (ignored, then a Dispatch source)", "Sources/ConsortCLI/Commands/TransferCommands.swift",
     "        let signals = try SignalWatcher.arm()\n", "", "SignalTests"),
    # The trust boundary (issue 23).
    ("a peer passes for a member", "Sources/Routing/Model/PartyAccess.swift",
     "guard member.isTrust else { return .peer(caller) }", "_ = member", "TrustBoundaryTests"),
    ("a request that names no purpose is taken as direct care", "Sources/Routing/Model/PartyAccess.swift",
     'guard let purpose = purpose?.trimmingCharacters(in: .whitespaces), !purpose.isEmpty else { return .noPurpose }',
     'let purpose = purpose ?? "direct-care"', "TrustBoundaryTests"),
    ("SIGHUP leaves the receiver's TLS material in force", "Sources/Agent/Runtime/AgentDaemon+TrustBoundary.swift",
     "server?.replaceTLS(tls.serverContext)", "_ = tls.serverContext", "TrustBoundaryTests"),
    ("connections kept alive survive a TLS reload", "Sources/Transport/HTTPServer.swift",
     "            for fd in idle { Glibc.shutdown(fd, Int32(SHUT_RDWR)) }\n        }\n    }\n\n    /// The context",
     "        }\n    }\n\n    /// The context", "TrustBoundaryTests"),
    ("a connection busy across a TLS reload serves the next request too", "Sources/Transport/HTTPServer.swift",
     "let stale = tls != nil && tlsGeneration != generation", "let stale = false", "TrustBoundaryTests"),
    ("a trust that may only send to a site may search what it holds", "Sources/Routing/Model/PartyAccess.swift",
     "return toCaller ? nil : .noAgreement(purpose: purpose, from: site, to: caller)",
     "return toCaller || rules.permits(from: caller, to: site, purpose: purpose) ? nil : .noAgreement(purpose: purpose, from: site, to: caller)",
     "TrustBoundaryTests"),
    ("status exits 0 with a failed job", "Sources/ConsortCLI/Commands/StatusCommand.swift",
     "if failed > 0 { attention.append(", "if failed < 0 { attention.append(", "OperatorTests"),
    ("status says nothing of a CRL that runs out in days", "Sources/Transport/TLSMaterial.swift",
     "items.filter { $0.expires - now < Self.warningSeconds }", "items.filter { $0.expires < now }", "TrustBoundaryTests"),
    # The engine (issue 24).
    ("urgent bytes wait behind bulk's debt (one bucket for all)", "Sources/Spool/PacingBook.swift",
     "for level in JobPriority.allCases where level >= priority { enter(cost, at: now, in: level) }",
     "for level in JobPriority.allCases { enter(cost, at: now, in: level) }", "PacingBookTests"),
    ("bulk bytes sent never count against urgent work (the cap overrun)", "Sources/Spool/PacingBook.swift",
     "for level in JobPriority.allCases where level < charge.priority { enter(charge.cost, at: now, in: level) }",
     "_ = charge", "PacingBookTests"),
    ("bulk blocks booked first go between an urgent instance's blocks (bulk does not yield)", "Sources/Spool/PacingBook.swift",
     "until = max(until, ownEnd[level.rawValue] + yieldGap)", "_ = level", "PacingBookTests"),
    ("a setting out of range is quietly taken", "Sources/Agent/Configuration/ConfigurationParser.swift",
     "if let range = Self.durationRanges[key], !range.contains(seconds) {", "if let range = Self.durationRanges[key], false, !range.contains(seconds) {",
     "ConfigurationParserTests"),
    ("a certificate fault retried as fast as a peer that is down", "Sources/Spool/RetryPolicy.swift",
     "case .configuration: return RetryDecision(delay: maximumDelay, countsAgainstPeer: true, needsPerson: true)",
     "case .configuration: return RetryDecision(delay: delay(afterFailures: failures, using: &rng), countsAgainstPeer: true, needsPerson: true)",
     "RetryPolicyTests"),
    ("our own failing file opens the peer's circuit", "Sources/Spool/RetryPolicy.swift",
     "case .local: return RetryDecision(delay: delay(afterFailures: failures, using: &rng), countsAgainstPeer: false, needsPerson: false)",
     "case .local: return RetryDecision(delay: delay(afterFailures: failures, using: &rng), countsAgainstPeer: true, needsPerson: false)",
     "RetryPolicyTests"),
    # The queue manager's decisions (issue 24), caught by its fake-clock unit tests.
    ("a gather's lead time is not kept (it starts at once)", "Sources/Agent/Store/AgentStore.swift",
     "'queued', max(?9, coalesce(?11, ?9)), ?10)", "'queued', max(?9, coalesce(?11 * 0 + ?9, ?9)), ?10)", "QueueManagerTests"),
    ("backoff without its cap", "Sources/Spool/RetryPolicy.swift",
     "return min(grown, maximumDelay)", "return grown", "QueueManagerTests"),
    ("a job starts outside its window", "Sources/Spool/JobScheduler.swift",
     "&& (job.window?.contains(minuteOfDay: minuteOfDay) ?? true)", "", "QueueManagerTests"),
    ("jobs start while their peer's circuit is open", "Sources/Agent/Queue/QueueManager.swift",
     "let (allowed, probe) = peers.allowed(name, starting: wanted, now: now)", "let (allowed, probe) = (wanted, false)", "QueueManagerTests"),
    ("no connection kept for urgent work", "Sources/Agent/Queue/QueueManager.swift",
     "if slots.urgent {", "if false, slots.urgent {", "QueueManagerTests"),
    ("a worker's connection is given back to the peer line as reloaded, not the one it took", "Sources/Agent/Queue/Peers.swift",
     "            if reserved { peer.urgentBusy = false } else { peer.busy = max(0, peer.busy - 1) }",
     "            let peer = peers[peer.target.name] ?? peer\n            if reserved { peer.urgentBusy = false } else { peer.busy = max(0, peer.busy - 1) }",
     "QueueManagerTests"),
    ("a probe that never reached the peer leaves its circuit half-open for ever", "Sources/Agent/Queue/QueueManager.swift",
     "if let peer = worker.peer, worker.isProbe, !worker.contacted, !Self.countsAgainstPeer(step) { peers.abandoned(peer) }", "", "QueueManagerTests"),
    # DIMSE (issue 26).
    ("a PDU over the limit is read whole", "Sources/DIMSE/PDUReader.swift",
     "guard length <= limit else {", "guard length <= limit || true else {", "PDUTests"),
    ("an acceptor takes any called AE title", "Sources/DIMSE/Exchange.swift",
     "if request.calledAE != aeTitle { return reject(.calledAENotRecognised()) }", "", "AssociationTests"),
    # The identity rewrite (issue 25): the meta header's group length follows what is written, and
    # the elements it does not change are the source's bytes, not a re-encoding of them.
    ("identity rewrite: the meta group length is not recomputed", "Sources/DICOM/Writing/DICOMWriter.swift",
     "out.appendUInt32(UInt32(metaBytes.bytes.count))", "out.appendUInt32(UInt32(original[.fileMetaInformationGroupLength]?.bytes.map { Int($0.first ?? 0) | Int($0.dropFirst().first ?? 0) << 8 } ?? metaBytes.bytes.count))",
     "IdentityRewriteTests"),
    ("identity rewrite: other elements re-encoded instead of copied", "Sources/DICOM/Identity/IdentityRewriter.swift",
     "head.append((placed.tag, .copy(offset: placed.offset, count: end - placed.offset)))",
     "if let element = dataSet[placed.tag], let bytes = try? encoded(element) { head.append((placed.tag, .bytes(bytes))) } else { head.append((placed.tag, .copy(offset: placed.offset, count: end - placed.offset))) }",
     "IdentityRewriteTests"),
]
# Breakages that need more than one change in their file: the further changes, by name.
ALSO = {
    # TLS 1.0 needs its ciphers too: the AEAD-only list alone already refuses it (defence in depth).
    "server allows TLS 1.0": [('"ECDHE+AESGCM:ECDHE+CHACHA20:!aNULL:!MD5:!RC4"', '"DEFAULT:@SECLEVEL=0"')],
}
# The last one needs its second half: the wait for a stop as it was, SIG_IGN set before the
# Dispatch source is armed, after the ready line — the window in which 40 of 150 SIGTERMs were lost.
OLD_SIGNAL_WAIT = (
    "        let stopSignal = signals.waitForStop(onReload: { log(\"SIGHUP: nothing to reload (the receiver has no configuration); carrying on\") })\n",
    """        let stopSignal: Int32 = {
            let semaphore = DispatchSemaphore(value: 0)
            var sources: [DispatchSourceSignal] = []
            for sig in [SIGTERM, SIGINT] {
                signal(sig, SIG_IGN)
                let source = DispatchSource.makeSignalSource(signal: sig, queue: .global())
                source.setEventHandler { semaphore.signal() }
                source.resume()
                sources.append(source)
            }
            semaphore.wait()
            _ = sources
            return SIGTERM
        }()
""")


# Swift Testing's line for a failed test: a function name or a display name in quotes.
FAILED = re.compile(r'^✘ Test (?P<name>"[^"]*"|[^\s"]+\([^)]*\))(?: with \d+ test cases?)? failed after ')


def run(command: list[str], cwd: str, timeout: int) -> tuple[int, str]:
    try:
        done = subprocess.run(command, cwd=cwd, capture_output=True, text=True, timeout=timeout)
        return done.returncode, done.stdout + done.stderr
    except subprocess.TimeoutExpired as expired:
        return 124, (expired.stdout or b"").decode(errors="replace") if isinstance(expired.stdout, bytes) else str(expired.stdout or "")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--work", default="/tmp/consort-mutants")
    parser.add_argument("--only", nargs="*", help="run only the breakages whose name contains one of these")
    parser.add_argument("--list", action="store_true", help="list the breakages and exit")
    args = parser.parse_args()
    chosen = [m for m in MUTATIONS if not args.only or any(word in m[0] for word in args.only)]
    if args.list:
        for name, path, *_ , tests in chosen:
            print(f"{name:55} {path}  [{tests}]")
        return 0

    copy = os.path.join(args.work, "repo")
    os.makedirs(copy, exist_ok=True)
    files = subprocess.run(["git", "ls-files", "-co", "--exclude-standard"], cwd=ROOT, capture_output=True, text=True, check=True).stdout.split("\n")
    for name in filter(None, files):
        source, target = os.path.join(ROOT, name), os.path.join(copy, name)
        if os.path.isfile(source):
            os.makedirs(os.path.dirname(target), exist_ok=True)
            shutil.copy2(source, target)
    # Files an earlier copy had that the repository no longer has (a file moved or deleted since)
    # go, or the copy would build code that is gone; the build folder stays, for its increments.
    kept = {name for name in files if name}
    for folder in ("Sources", "Tests"):
        for parent, _, names in os.walk(os.path.join(copy, folder)):
            for name in names:
                relative = os.path.relpath(os.path.join(parent, name), copy)
                if relative not in kept:
                    os.remove(os.path.join(copy, relative))
    print(f"mutate: a copy of {ROOT} in {copy}; building it once", flush=True)
    status, output = run(["swift", "build", "--build-tests"], copy, 3600)
    if status != 0:
        print(output[-3000:])
        print("mutate: the unbroken copy does not build")
        return 2
    # The unbroken code must pass every test used below, or a "kill" means nothing.
    filters = "|".join(sorted({m[4] for m in chosen}))
    status, output = run(["swift", "test", "--skip-build", "--disable-xctest", "--filter", filters], copy, 1800)
    if status != 0:
        print(output[-3000:])
        print("mutate: the unbroken copy fails the tests used; fix that first")
        return 2

    results = []
    for name, path, code, replacement, tests in chosen:
        target = os.path.join(copy, path)
        original = open(target, encoding="utf-8").read()
        if original.count(code) != 1:
            results.append((name, "STALE", f"the code to break was found {original.count(code)} times in {path}"))
            print(f"STALE     {name}", flush=True)
            continue
        broken = original.replace(code, replacement)
        if name.startswith("signals handled as before"):
            broken = broken.replace(*OLD_SIGNAL_WAIT)
        for further, instead in ALSO.get(name, []):
            if broken.count(further) != 1:
                results.append((name, "STALE", f"a further change was found {broken.count(further)} times in {path}"))
                break
            broken = broken.replace(further, instead)
        else:
            further = None
        if results and results[-1][0] == name:
            print(f"STALE     {name}", flush=True)
            continue
        started = time.monotonic()
        try:
            open(target, "w", encoding="utf-8").write(broken)
            status, output = run(["swift", "build", "--build-tests"], copy, 3600)
            if status != 0:
                verdict, detail = "NOBUILD", output.strip().splitlines()[-1:] or [""]
            else:
                status, output = run(["swift", "test", "--skip-build", "--disable-xctest", "--filter", tests], copy, 1800)
                failing = sorted({match["name"] for match in map(FAILED.match, output.splitlines()) if match})
                verdict = "KILLED" if status != 0 else "SURVIVED"
                detail = failing[:4]
        finally:
            open(target, "w", encoding="utf-8").write(original)
        results.append((name, verdict, ", ".join(detail)))
        print(f"{verdict:9} {name}  ({time.monotonic() - started:.0f} s) {', '.join(detail)}", flush=True)

    killed = sum(1 for r in results if r[1] == "KILLED")
    print(f"mutate: {killed} of {len(results)} breakages caught by the tests")
    for name, verdict, detail in results:
        if verdict != "KILLED":
            print(f"  not caught: {name}: {verdict} {detail}")
    return 0 if killed == len(results) else 1


if __name__ == "__main__":
    sys.exit(main())
