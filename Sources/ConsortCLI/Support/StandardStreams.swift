#if canImport(Glibc)
    import Glibc
#endif

/// Buffered writing to stdout and stderr without Foundation's overhead: dump output can be
/// hundreds of MB, written in large blocks. Thread-safe (a mutex around the buffer).
final class ConsoleOutput: @unchecked Sendable {
    private let lock = PthreadMutex()
    private let descriptor: Int32
    private var buffer: [UInt8] = []
    private(set) var failed = false

    static let standardOutput = ConsoleOutput(descriptor: 1)
    static let standardError = ConsoleOutput(descriptor: 2)

    init(descriptor: Int32) {
        self.descriptor = descriptor
        buffer.reserveCapacity(1 << 16)
    }

    func write(_ text: String) {
        lock.locked {
            buffer.append(contentsOf: text.utf8)
            if buffer.count >= 1 << 16 { flushLocked() }
        }
    }

    func line(_ text: String) { write(text + "\n") }

    func flush() { lock.locked { flushLocked() } }

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

    var isTerminal: Bool { isatty(descriptor) == 1 }
}

let standardOutput = ConsoleOutput.standardOutput
let standardError = ConsoleOutput.standardError
