#if canImport(Glibc)
    import Glibc
#endif

/// Buffered writing to stdout and stderr without Foundation's overhead: dump output can be
/// hundreds of MB, written in large blocks. Thread-safe (a mutex around the buffer).
public final class ConsoleOutput: @unchecked Sendable {
    private let lock = PthreadMutex()
    private let descriptor: Int32
    private var buffer: [UInt8] = []
    public private(set) var failed = false

    public static let standardOutput = ConsoleOutput(descriptor: 1)
    public static let standardError = ConsoleOutput(descriptor: 2)

    init(descriptor: Int32) {
        self.descriptor = descriptor
        buffer.reserveCapacity(1 << 16)
    }

    public func write(_ text: String) {
        lock.locked {
            buffer.append(contentsOf: text.utf8)
            if buffer.count >= 1 << 16 { flushLocked() }
        }
    }

    public func line(_ text: String) { write(text + "\n") }

    public func flush() { lock.locked { flushLocked() } }

    private func flushLocked() {
        buffer.withUnsafeBytes { raw in
            var done = 0
            while done < raw.count {
                let n = Glibc.write(descriptor, raw.baseAddress! + done, raw.count - done)
                if n < 0 {
                    if errno == EINTR { continue }
                    failed = true  // EPIPE (e.g. piped into head): stop quietly
                    break
                }
                done += n
            }
        }
        buffer.removeAll(keepingCapacity: true)
    }

    public var isTerminal: Bool { isatty(descriptor) == 1 }
}

public let standardOutput = ConsoleOutput.standardOutput
public let standardError = ConsoleOutput.standardError

extension String {
    /// Left-aligned in a column of `width` characters (at least one space after it).
    public func padding(to width: Int) -> String {
        count >= width ? self + " " : self + String(repeating: " ", count: width - count)
    }
}
