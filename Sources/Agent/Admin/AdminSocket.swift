internal import CSystem
import DICOM
import Foundation
import Platform

#if canImport(Glibc)
    import Glibc
#endif

/// The agent's admin socket: a Unix stream socket under the state folder through which the
/// operator commands reach the running agent (hold, release, retry, drop, and the live status).
///
/// Who may connect is decided by the kernel from the socket file's owner, group and mode: 0660,
/// so the agent's user and the members of its group (`consort` in the packaged service) may,
/// nobody else. The peer's uid (SO_PEERCRED) names who asked, in the log.
///
/// One request per connection: a JSON object of at most `maximumRequest` bytes, ended by a
/// newline or by the client closing its side; one JSON answer and a newline. A request that is
/// too large, not JSON, too slow (`timeout`) or unknown gets `{"ok": false, "error": ...}` and
/// changes nothing; a bounded number of connections are served at once.
public final class AdminServer: @unchecked Sendable {
    /// A request, parsed, with who sent it.
    public struct Request: @unchecked Sendable {
        public let fields: [String: Any]
        public let uid: UInt32
        public let pid: Int32
        /// The user name of `uid` (or the number when it has none).
        public let user: String
        public var action: String { fields["action"] as? String ?? "" }
    }

    public typealias Handler = @Sendable (Request) -> JSON

    public static let maximumRequest = 64 << 10
    public static let maximumConnections = 8
    public let path: String
    let timeout: Double
    let log: Logger
    let handler: Handler
    private var listener: Int32 = -1
    private let lock = NSLock()
    private var serving = 0
    private var stopped = false

    public init(path: String, timeout: Double = 5, log: Logger, handler: @escaping Handler) {
        self.path = path
        self.timeout = timeout
        self.log = log
        self.handler = handler
    }

    /// Binds the socket (replacing one an earlier run left: the state folder's lock says no other
    /// agent uses it) and starts answering.
    public func start() throws {
        let fd = socket(AF_UNIX, Int32(SOCK_STREAM.rawValue) | Int32(SOCK_CLOEXEC.rawValue), 0)
        guard fd >= 0 else { throw PlatformError("cannot create the admin socket", errno: errno) }
        // Bound under a temporary name, given its mode, then renamed into place: no moment where
        // the socket exists with the umask's mode at the name clients use.
        let temporary = path + ".\(getpid()).tmp"
        unlink(temporary)
        guard Self.withAddress(temporary, { bind(fd, $0, $1) }) == 0 else {
            let error = PlatformError("cannot bind the admin socket \(temporary)", errno: errno)
            close(fd)
            throw error
        }
        guard chmod(temporary, 0o660) == 0, listen(fd, 16) == 0, rename(temporary, path) == 0 else {
            let error = PlatformError("cannot set up the admin socket \(path)", errno: errno)
            close(fd)
            unlink(temporary)
            throw error
        }
        listener = fd
        let thread = Thread { [self] in acceptLoop() }
        thread.name = "consort-admin"
        thread.start()
    }

    public func stop() {
        lock.withLock { stopped = true }
        if listener >= 0 {
            shutdown(listener, Int32(SHUT_RDWR))
            unlink(path)
        }
    }

    private func acceptLoop() {
        while true {
            let client = accept(listener, nil, nil)
            if lock.withLock({ stopped }) {
                if client >= 0 { close(client) }
                close(listener)
                return
            }
            guard client >= 0 else {
                if errno == EINTR || errno == ECONNABORTED { continue }
                log.error("the admin socket stopped accepting", ["socket": path, "error": String(cString: strerror(errno))])
                Thread.sleep(forTimeInterval: 1)
                continue
            }
            _ = fcntl(client, F_SETFD, FD_CLOEXEC)
            let admitted: Bool = lock.withLock {
                guard serving < Self.maximumConnections else { return false }
                serving += 1
                return true
            }
            guard admitted else {
                Self.answer(client, .object([("ok", .bool(false)), ("error", .string("busy: \(Self.maximumConnections) admin requests in progress; try again"))]))
                close(client)
                continue
            }
            let thread = Thread { [self] in
                serve(client)
                close(client)
                lock.withLock { serving -= 1 }
            }
            thread.name = "consort-admin-request"
            thread.start()
        }
    }

    private func serve(_ fd: Int32) {
        var limit = timeval(tv_sec: Int(timeout), tv_usec: 0)
        setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &limit, socklen_t(MemoryLayout<timeval>.size))
        setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &limit, socklen_t(MemoryLayout<timeval>.size))
        var credentials: (uid: UInt32, pid: Int32) = (UInt32.max, 0)
        _ = consort_peer_credentials(fd, &credentials.uid, &credentials.pid)
        let deadline = MonotonicClock.now + timeout
        var bytes: [UInt8] = []
        var buffer = [UInt8](repeating: 0, count: 4096)
        var failure: String?
        reading: while true {
            let n = buffer.withUnsafeMutableBytes { read(fd, $0.baseAddress, $0.count) }
            if n == 0 { break }
            if n < 0 {
                if errno == EINTR, MonotonicClock.now < deadline { continue }
                failure = errno == EAGAIN || errno == EWOULDBLOCK ? "no complete request within \(Int(timeout)) s" : "cannot read the request: \(String(cString: strerror(errno)))"
                break
            }
            for byte in buffer[..<n] {
                if byte == UInt8(ascii: "\n") { break reading }
                bytes.append(byte)
            }
            if bytes.count > Self.maximumRequest {
                failure = "request larger than \(Self.maximumRequest) bytes"
                break
            }
            if MonotonicClock.now >= deadline {
                failure = "no complete request within \(Int(timeout)) s"
                break
            }
        }
        let user = Self.userName(credentials.uid)
        if failure == nil {
            if let object = try? JSONSerialization.jsonObject(with: Data(bytes)) as? [String: Any] {
                let request = Request(fields: object, uid: credentials.uid, pid: credentials.pid, user: user)
                Self.answer(fd, handler(request))
                return
            }
            failure = bytes.isEmpty ? "empty request: send one JSON object and a newline" : "the request is not a JSON object"
        }
        log.warning("admin request refused", ["user": user, "pid": credentials.pid, "reason": failure ?? ""])
        Self.answer(fd, .object([("ok", .bool(false)), ("error", .string(failure ?? "bad request"))]))
        // Closing with unread bytes resets the connection and the client loses the answer: read
        // what it still sends, a bounded amount for a bounded time, after saying we are done.
        shutdown(fd, Int32(SHUT_WR))
        var drained = 0
        let drainUntil = MonotonicClock.now + 1
        while drained < 4 << 20, MonotonicClock.now < drainUntil {
            let n = buffer.withUnsafeMutableBytes { read(fd, $0.baseAddress, $0.count) }
            if n <= 0 { break }
            drained += n
        }
    }

    static func answer(_ fd: Int32, _ json: JSON) {
        var bytes = json.bytes()
        bytes.append(UInt8(ascii: "\n"))
        var offset = 0
        while offset < bytes.count {
            let n = bytes[offset...].withUnsafeBytes { write(fd, $0.baseAddress, $0.count) }
            if n < 0, errno == EINTR { continue }
            if n <= 0 { return }
            offset += n
        }
    }

    static func userName(_ uid: UInt32) -> String {
        var entry = passwd()
        var result: UnsafeMutablePointer<passwd>?
        var buffer = [CChar](repeating: 0, count: 1024)
        guard getpwuid_r(uid, &entry, &buffer, buffer.count, &result) == 0, result != nil, let name = entry.pw_name else { return "uid \(uid)" }
        return String(cString: name)
    }

    /// Calls `body` with `path` as a sockaddr_un. A socket address holds 107 bytes of path; a
    /// longer one (a state folder deep in a home or a scratch folder: the demo under a test's
    /// folder met it) is reached through its folder opened, as
    /// `/proc/self/fd/N/admin.sock`, which bind and connect resolve like any path. (Opened for
    /// reading: Glibc's Swift module has no O_PATH; whoever may use the socket may list its folder.)
    static func withAddress(_ path: String, _ body: (UnsafePointer<sockaddr>, socklen_t) -> Int32) -> Int32 {
        var address = sockaddr_un()
        address.sun_family = sa_family_t(AF_UNIX)
        var bytes = Array(path.utf8)
        let capacity = MemoryLayout.size(ofValue: address.sun_path)
        var folder: Int32 = -1
        defer { if folder >= 0 { close(folder) } }
        if bytes.count >= capacity {
            let name = (path as NSString).lastPathComponent, parent = (path as NSString).deletingLastPathComponent
            folder = open(parent.isEmpty ? "." : parent, O_RDONLY | O_DIRECTORY | O_CLOEXEC)
            guard folder >= 0 else { return -1 }
            bytes = Array("/proc/self/fd/\(folder)/\(name)".utf8)
        }
        guard bytes.count < capacity else {
            errno = ENAMETOOLONG
            return -1
        }
        withUnsafeMutableBytes(of: &address.sun_path) { raw in
            raw.copyBytes(from: bytes)
            raw[bytes.count] = 0
        }
        return withUnsafePointer(to: &address) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { body($0, socklen_t(MemoryLayout<sockaddr_un>.size)) }
        }
    }
}

/// The operator commands' side of the admin socket.
public enum AdminClient {
    public enum Failure: Error, CustomStringConvertible {
        /// Nothing listens: the agent is not running (or never ran with this state folder).
        case notRunning(String)
        /// The socket's mode and group do not let this user in.
        case permissionDenied(String)
        case failed(String)

        public var description: String {
            switch self {
            case .notRunning(let path): return "the agent is not running (nothing answers on \(path))"
            case .permissionDenied(let path):
                return "permission denied on \(path): the admin socket is for the agent's user and the members of its group (consort); ask to be added to that group"
            case .failed(let message): return message
            }
        }
    }

    /// Sends one request and returns the answer's object (`ok` false answers included).
    public static func ask(_ path: String, _ request: JSON, timeout: Double = 10) throws(Failure) -> [String: Any] {
        let fd = socket(AF_UNIX, Int32(SOCK_STREAM.rawValue) | Int32(SOCK_CLOEXEC.rawValue), 0)
        guard fd >= 0 else { throw .failed("cannot create a socket: \(String(cString: strerror(errno)))") }
        defer { close(fd) }
        var limit = timeval(tv_sec: Int(timeout), tv_usec: 0)
        setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &limit, socklen_t(MemoryLayout<timeval>.size))
        setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &limit, socklen_t(MemoryLayout<timeval>.size))
        if AdminServer.withAddress(path, { connect(fd, $0, $1) }) != 0 {
            switch errno {
            case ENOENT, ECONNREFUSED: throw .notRunning(path)
            case EACCES, EPERM: throw .permissionDenied(path)
            default: throw .failed("cannot reach the agent on \(path): \(String(cString: strerror(errno)))")
            }
        }
        AdminServer.answer(fd, request)
        var bytes: [UInt8] = []
        var buffer = [UInt8](repeating: 0, count: 16 << 10)
        while true {
            let n = buffer.withUnsafeMutableBytes { read(fd, $0.baseAddress, $0.count) }
            if n < 0, errno == EINTR { continue }
            if n < 0 { throw .failed("no answer from the agent within \(Int(timeout)) s on \(path)") }
            if n == 0 { break }
            bytes.append(contentsOf: buffer[..<n])
            if bytes.count > 64 << 20 { throw .failed("the agent's answer is too large") }
        }
        guard let object = try? JSONSerialization.jsonObject(with: Data(bytes)) as? [String: Any] else {
            throw .failed("the agent's answer on \(path) is not JSON")
        }
        return object
    }
}
