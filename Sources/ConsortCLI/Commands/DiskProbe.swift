import DICOM
import Foundation
import Platform

#if canImport(Glibc)
    import Glibc
#endif

/// How the disk under a benchmark's work folder answers right now: 4 KB random reads that miss
/// the page cache, and 4 KB writes each made durable (`fdatasync`), for about a second each.
///
/// Printed beside a benchmark's figures because they depend on it more than on the code: the
/// virtual disk of the machine these were measured on is rate-limited by its host. Fresh, it
/// reads 4 KB in 0.07 ms at the median and 0.18 ms at p99; after a few minutes of heavy I/O the
/// same reads took 0.3–2 ms at the median and 40–200 ms at p99, for minutes. A urgent-latency
/// tail or a 10-million lookup tail measured in the second state says nothing about the code;
/// the probe says which state a run was in.
struct DiskProbe {
    var readP50 = 0.0, readP99 = 0.0, syncP50 = 0.0, syncP99 = 0.0
    var reads = 0, syncs = 0

    /// Measures in `folder` (a 32 MB scratch file, removed after): up to 3,000 reads, then up to
    /// 300 durable writes, for at most `seconds` each; nil if it cannot write there.
    static func measure(in folder: String, seconds: Double = 1) -> DiskProbe? {
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
        // Out of the page cache, and no readahead: each read below is one 4 KB read of the disk.
        _ = posix_fadvise(fd, 0, 0, Int32(POSIX_FADV_DONTNEED))
        _ = posix_fadvise(fd, 0, 0, Int32(POSIX_FADV_RANDOM))
        var buffer = [UInt8](repeating: 0, count: page)
        var readTimes: [Double] = [], syncTimes: [Double] = []
        let pages = size / page
        var deadline = MonotonicClock.now + seconds
        while MonotonicClock.now < deadline && readTimes.count < 3_000 {
            let offset = off_t(Int.random(in: 0..<pages, using: &generator) * page)
            let start = MonotonicClock.now
            guard buffer.withUnsafeMutableBytes({ pread(fd, $0.baseAddress, page, offset) }) == page else { return nil }
            readTimes.append(MonotonicClock.now - start)
        }
        deadline = MonotonicClock.now + seconds
        while MonotonicClock.now < deadline && syncTimes.count < 300 {
            let offset = off_t(Int.random(in: 0..<pages, using: &generator) * page)
            let start = MonotonicClock.now
            guard buffer.withUnsafeBytes({ pwrite(fd, $0.baseAddress, page, offset) }) == page, fdatasync(fd) == 0 else { return nil }
            syncTimes.append(MonotonicClock.now - start)
        }
        func percentile(_ values: [Double], _ p: Double) -> Double {
            let sorted = values.sorted()
            return sorted.isEmpty ? .nan : sorted[min(sorted.count - 1, Int(Double(sorted.count) * p))] * 1000
        }
        return DiskProbe(
            readP50: percentile(readTimes, 0.5), readP99: percentile(readTimes, 0.99), syncP50: percentile(syncTimes, 0.5), syncP99: percentile(syncTimes, 0.99),
            reads: readTimes.count, syncs: syncTimes.count)
    }

    /// One line for a person.
    var line: String {
        String(format: "4 KB uncached reads p50 %.2f / p99 %.2f ms (%d reads); 4 KB writes + fdatasync p50 %.2f / p99 %.2f ms (%d writes)",
            readP50, readP99, reads, syncP50, syncP99, syncs)
    }

    var json: JSON {
        func ms(_ value: Double) -> JSON { .double((value * 1000).rounded() / 1000) }
        let fields: [(String, JSON)] = [
            ("read_p50_ms", ms(readP50)), ("read_p99_ms", ms(readP99)), ("reads", .int(Int64(reads))),
            ("sync_p50_ms", ms(syncP50)), ("sync_p99_ms", ms(syncP99)), ("syncs", .int(Int64(syncs))),
        ]
        return .object(fields)
    }
}

extension BenchCommand {
    static func disk(_ args: [String]) throws -> ExitCode {
        let arguments = try Arguments(args, command: "bench disk", flags: ["--json"], options: ["--work"])
        let folder = arguments.option("--work") ?? NSTemporaryDirectory()
        guard let probe = DiskProbe.measure(in: folder) else {
            standardError.line("consort bench disk: cannot write and read a scratch file in \(folder): \(String(cString: strerror(errno)))")
            return .someFailed
        }
        standardOutput.line(arguments.flag("--json") ? probe.json.serialized() : "disk under \(folder): \(probe.line)")
        return .success
    }
}
