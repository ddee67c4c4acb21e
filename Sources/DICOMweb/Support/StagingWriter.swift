internal import CSystem

#if canImport(Glibc)
    import Glibc
#endif

/// Writes staged files from a stream of pieces in large aligned blocks, around the page cache
/// (O_DIRECT) where the filesystem allows it. One writer serves one file after another.
///
/// Why: a receiver writes hundreds of MB that nobody reads again at once. Through the page cache
/// every 4 KiB page costs the kernel an allocation, a copy and, later, a writeback; on the
/// benchmark machine that was the largest share of the receiver's CPU (`dd` of 315 MB buffered:
/// 0.8 s of kernel time; the same in direct 1 MiB blocks: 0.03 s). Durability is unchanged: the
/// caller's fsync or syncfs still commits the metadata and flushes the device before anything is
/// acknowledged.
///
/// A filesystem that refuses O_DIRECT (tmpfs on older kernels, some network filesystems), or a
/// write it will not take aligned, gets ordinary buffered writes from then on.
final class StagingWriter {
    /// Covers 512-byte and 4 KiB logical blocks alike.
    static let defaultAlignment = 4096
    /// Of the buffer, of each direct write's length and of the file offsets it writes at.
    let alignment: Int

    struct Failure: Error {
        let code: Int32
        var reason: String { String(cString: strerror(code)) }
    }

    private let buffer: UnsafeMutableRawBufferPointer
    private var filled = 0
    private var descriptor: Int32 = -1
    private(set) var isDirect = false
    /// Bytes of the current file appended so far.
    private(set) var length = 0

    /// `alignment` other than the default is for tests: a misaligned direct write is how a
    /// filesystem's refusal (EINVAL) is provoked to test the fall-back.
    init(blockBytes: Int = 1 << 20, alignment: Int = StagingWriter.defaultAlignment) {
        precondition(blockBytes > 0 && blockBytes % alignment == 0, "the block must be a multiple of the alignment")
        self.alignment = alignment
        buffer = .allocate(byteCount: blockBytes, alignment: Self.defaultAlignment)
    }

    deinit { buffer.deallocate() }

    /// Whether direct writes are worth trying in `folder`: on the local disk filesystems where
    /// they were measured to help (ext4, XFS, btrfs). Elsewhere — NFS and other network stores,
    /// where a direct write is a synchronous round trip, or tmpfs — ordinary buffered writes.
    static func directIOSuits(_ folder: String) -> Bool {
        switch consort_filesystem_type(folder) {
        case 0xEF53, 0x5846_5342, 0x9123_683E: return true  // ext2/3/4, XFS, btrfs
        default: return false
        }
    }

    /// Starts the next file: an open, empty, writable descriptor the caller owns and closes.
    func begin(_ descriptor: Int32, direct: Bool = true) {
        self.descriptor = descriptor
        filled = 0
        length = 0
        isDirect = direct && consort_set_direct_io(descriptor, 1) == 0
    }

    func append(_ bytes: UnsafeRawBufferPointer) throws(Failure) {
        var rest = bytes
        while !rest.isEmpty {
            let n = min(rest.count, buffer.count - filled)
            (buffer.baseAddress! + filled).copyMemory(from: rest.baseAddress!, byteCount: n)
            filled += n
            length += n
            rest = UnsafeRawBufferPointer(rebasing: rest[n...])
            if filled == buffer.count {
                try write(filled)
                filled = 0
            }
        }
    }

    /// Writes what is left; the file then holds exactly the bytes appended. The whole blocks go
    /// direct; the last partial block (under 4 KiB) is written through the page cache, which
    /// measured cheaper than padding it and truncating the file back (an ext4 truncate per file).
    func finish() throws(Failure) {
        defer { filled = 0 }
        guard filled > 0 else { return }
        let aligned = isDirect ? filled / alignment * alignment : 0
        if aligned > 0 { try write(aligned, from: 0) }
        if aligned < filled {
            if isDirect {
                isDirect = false
                _ = consort_set_direct_io(descriptor, 0)
            }
            try write(filled - aligned, from: aligned)
        }
    }

    private func write(_ count: Int, from start: Int = 0) throws(Failure) {
        var done = 0
        while done < count {
            let n = Glibc.write(descriptor, buffer.baseAddress! + start + done, count - done)
            if n < 0 {
                if errno == EINTR { continue }
                if errno == EINVAL && isDirect {
                    // Refused aligned (or at all) on this filesystem: buffered from here on.
                    isDirect = false
                    _ = consort_set_direct_io(descriptor, 0)
                    continue
                }
                throw Failure(code: errno)
            }
            done += n
            if isDirect && n % alignment != 0 {
                // A short write left the offset unaligned; the next direct write would fail.
                isDirect = false
                _ = consort_set_direct_io(descriptor, 0)
            }
        }
    }
}
