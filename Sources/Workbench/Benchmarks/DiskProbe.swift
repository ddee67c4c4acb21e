internal import CSystem
import CommandSupport
import DICOM
import Foundation
import Platform

#if canImport(Glibc)
    import Glibc
#endif

/// How the disk under a benchmark answers right now: 4 KB writes each made durable
/// (`fdatasync`), and 4 KB reads that miss the page cache, about a second each.
///
/// Printed beside a benchmark's figures because they depend on it more than on the code. On the
/// virtual machine these were measured on, a read that misses the guest's page cache may still
/// hit the host's: reads of a file just written took 0.07 ms at the median while reads of a
/// registry written ten minutes earlier took 0.3 ms, with a p99 of 40 ms and a maximum of 600 ms.
/// So the reads are of a given file when there is one that matters (the registry whose lookups
/// are timed), read around the page cache (O_DIRECT) so that the probe neither uses nor evicts
/// the cache the benchmark relies on; otherwise of a scratch file just written, and labelled so.
struct DiskProbe {
    var readP50 = 0.0, readP99 = 0.0, syncP50 = 0.0, syncP99 = 0.0
    var reads = 0, syncs = 0
    /// What was read: "a file just written" or the file's path.
    var readOf = "a file just written"

    /// Measures in `folder` (a 32 MB scratch file, removed after): up to 3,000 reads of random
    /// 4 KB blocks around the page cache — of `existing` when given, else of the scratch file —
    /// then up to 300 durable writes, for at most `seconds` each; nil if it cannot.
    static func measure(in folder: String, reading existing: String? = nil, seconds: Double = 1) -> DiskProbe? {
        let path = folder + "/.disk-probe-\(getpid())"
        let fd = open(path, O_RDWR | O_CREAT | O_TRUNC | O_CLOEXEC, 0o600)
        guard fd >= 0 else { return nil }
        defer {
            close(fd)
            unlink(path)
        }
        let size = 32 << 20, page = 4096
        var block = [UInt8](repeating: 0, count: 1 << 20)
        var generator = SystemRandomNumberGenerator()
        for index in block.indices { block[index] = UInt8.random(in: 0...255, using: &generator) }
        for offset in stride(from: 0, to: size, by: block.count) {
            guard block.withUnsafeBytes({ pwrite(fd, $0.baseAddress, $0.count, off_t(offset)) }) == block.count else { return nil }
        }
        guard fsync(fd) == 0 else { return nil }
        // Both kinds of read go around the page cache the same way (O_DIRECT).
        guard let readTimes = Self.directReads(of: existing ?? path, seconds: seconds) else { return nil }
        var result = DiskProbe()
        if let existing { result.readOf = existing }
        let buffer = [UInt8](repeating: 0, count: page)
        var syncTimes: [Double] = []
        let pages = size / page
        let deadline = MonotonicClock.now + seconds
        while MonotonicClock.now < deadline && syncTimes.count < 300 {
            let offset = off_t(Int.random(in: 0..<pages, using: &generator) * page)
            let start = MonotonicClock.now
            guard buffer.withUnsafeBytes({ pwrite(fd, $0.baseAddress, page, offset) }) == page, fdatasync(fd) == 0 else { return nil }
            syncTimes.append(MonotonicClock.now - start)
        }
        func percentile(_ values: [Double], _ p: Double) -> Double { nearestRank(p, ofSorted: values.sorted()) * 1000 }
        (result.readP50, result.readP99, result.reads) = (percentile(readTimes, 0.5), percentile(readTimes, 0.99), readTimes.count)
        (result.syncP50, result.syncP99, result.syncs) = (percentile(syncTimes, 0.5), percentile(syncTimes, 0.99), syncTimes.count)
        return result
    }

    /// Random aligned 4 KB reads of `path` around the page cache (O_DIRECT: an aligned buffer);
    /// nil if it cannot be read so.
    static func directReads(of path: String, seconds: Double) -> [Double]? {
        let fd = open(path, O_RDONLY | O_CLOEXEC)
        guard fd >= 0 else { return nil }
        defer { close(fd) }
        guard consort_set_direct_io(fd, 1) == 0 else { return nil }
        var info = stat()
        let page = 4096
        guard fstat(fd, &info) == 0, Int(info.st_size) >= page else { return nil }
        let buffer = UnsafeMutableRawPointer.allocate(byteCount: page, alignment: page)
        defer { buffer.deallocate() }
        var generator = SystemRandomNumberGenerator()
        var times: [Double] = []
        let deadline = MonotonicClock.now + seconds
        while MonotonicClock.now < deadline && times.count < 3_000 {
            let offset = off_t(Int.random(in: 0..<(Int(info.st_size) / page), using: &generator) * page)
            let start = MonotonicClock.now
            guard pread(fd, buffer, page, offset) == page else { return nil }
            times.append(MonotonicClock.now - start)
        }
        return times
    }

    /// One line for a person.
    var line: String {
        String(format: "4 KB reads of %@ around the page cache p50 %.2f / p99 %.2f ms (%d reads); 4 KB writes + fdatasync p50 %.2f / p99 %.2f ms (%d writes)",
            readOf, readP50, readP99, reads, syncP50, syncP99, syncs)
    }

    var json: JSON {
        func ms(_ value: Double) -> JSON { .double((value * 1000).rounded() / 1000) }
        let fields: [(String, JSON)] = [
            ("read_of", .string(readOf)), ("read_p50_ms", ms(readP50)), ("read_p99_ms", ms(readP99)), ("reads", .int(Int64(reads))),
            ("sync_p50_ms", ms(syncP50)), ("sync_p99_ms", ms(syncP99)), ("syncs", .int(Int64(syncs))),
        ]
        return .object(fields)
    }
}

/// The disk watched while a benchmark runs: one 4 KB write made durable (`fdatasync`) every
/// `interval`, on a thread of its own, each timed where it started. A benchmark's tail can then
/// be set beside the disk's at the same moments: an urgent instance that took 300 ms while a
/// 4 KB durable write beside it took 280 ms waited for the disk, not for the code.
///
/// The writes overwrite blocks of a preallocated 1 MB file, so they change no metadata and
/// cost one device flush each: at the default 10 a second, a small load beside the hundreds of
/// durable writes a second the agents make.
final class DiskWatch: @unchecked Sendable {
    struct Sample {
        /// Monotonic seconds.
        let start: Double
        let seconds: Double
    }

    private let lock = NSLock()
    private var samples: [Sample] = []
    private var stopping = false
    private let finished = DispatchSemaphore(value: 0)
    private let path: String
    private let fd: Int32

    /// Nil if the scratch file cannot be made in `folder`.
    init?(in folder: String, interval: Double = 0.1) {
        path = folder + "/.disk-watch-\(getpid())"
        fd = open(path, O_RDWR | O_CREAT | O_TRUNC | O_CLOEXEC, 0o600)
        guard fd >= 0 else { return nil }
        let block = [UInt8](repeating: 0x5A, count: 1 << 20)
        guard block.withUnsafeBytes({ pwrite(fd, $0.baseAddress, $0.count, 0) }) == block.count, fsync(fd) == 0 else {
            close(fd)
            unlink(path)
            return nil
        }
        let thread = Thread { [self] in
            let page = [UInt8](repeating: 0xA5, count: 4096)
            var index = 0
            while !lock.withLock({ stopping }) {
                let start = MonotonicClock.now
                let ok = page.withUnsafeBytes({ pwrite(fd, $0.baseAddress, $0.count, off_t(index % 256 * 4096)) }) == 4096 && fdatasync(fd) == 0
                let seconds = MonotonicClock.now - start
                index += 1
                if ok { lock.withLock { samples.append(Sample(start: start, seconds: seconds)) } }
                let rest = interval - seconds
                if rest > 0 { usleep(useconds_t(rest * 1_000_000)) }
            }
            finished.signal()
        }
        thread.start()
    }

    /// Stops the thread, removes the file and returns every sample, in order. Again after that
    /// (a `defer` for the paths that throw): the same samples, nothing else done.
    func stop() -> [Sample] {
        let first: Bool = lock.withLock {
            defer { stopping = true }
            return !stopping
        }
        if first {
            finished.wait()
            close(fd)
            unlink(path)
        }
        return lock.withLock { samples }
    }

    /// The slowest durable write that overlapped `[from, to]`, in seconds; 0 if none did.
    static func slowest(in samples: [Sample], from: Double, to: Double) -> Double {
        samples.filter { $0.start <= to && $0.start + $0.seconds >= from }.map(\.seconds).max() ?? 0
    }
}

extension BenchCommand {
    static func disk(_ args: [String]) throws -> ExitCode {
        let arguments = try Arguments(args, command: "bench disk", flags: ["--json"], options: ["--work", "--file"])
        let folder = arguments.option("--work") ?? NSTemporaryDirectory()
        guard let probe = DiskProbe.measure(in: folder, reading: arguments.option("--file")) else {
            let what = arguments.option("--file").map { "read \($0) around the page cache, or write a scratch file in \(folder)" } ?? "write and read a scratch file in \(folder)"
            standardError.line("consort bench disk: cannot \(what): \(String(cString: strerror(errno)))")
            return .someFailed
        }
        standardOutput.line(arguments.flag("--json") ? probe.json.serialized() : "disk under \(folder): \(probe.line)")
        return .success
    }
}
