internal import CCurl
internal import CShims
import Foundation

/// A failed exchange with a peer: curl's code and words, and the URL. What the caller does next
/// is `FailureClassifier`'s to say (Exchange), for every caller alike.
public struct HTTPClientError: Error, CustomStringConvertible {
    public var code: Int
    public var message: String
    public var url: String
    /// The body source or sink threw: this is its error, and curl stopped.
    public var callbackError: (any Error)?

    public init(code: Int, message: String, url: String, callbackError: (any Error)? = nil) {
        self.code = code
        self.message = message
        self.url = url
        self.callbackError = callbackError
    }

    public var description: String { "\(url): \(message) (curl \(code))" }
}

/// A response: the status and the header fields; the body went to the sink.
public struct ClientResponse: Sendable {
    public var status: Int
    public var headers: [(name: String, value: String)]

    public func value(_ name: String) -> String? {
        let lower = name.lowercased()
        return headers.first { $0.name.lowercased() == lower }?.value
    }
}

/// An HTTPS client on libcurl, with mutual TLS: one curl easy handle, reused for every request
/// so that connections to a peer are kept alive. Not for two threads at once (curl's rule for an
/// easy handle); each sender thread has its own client.
///
/// Security choices: HTTPS and HTTP only (no other protocol curl knows), redirects not followed,
/// the peer verified against the consortium CA only and by host name, TLS 1.2 at least.
/// Bodies stream in both directions through callbacks: nothing is held whole in memory.
public final class HTTPClient {
    public struct Options: Sendable {
        public var tls: TLSConfiguration?
        public var connectTimeout = 10
        /// Abort when slower than `lowSpeedBytes` per second for `lowSpeedSeconds` (a stalled peer).
        public var lowSpeedBytes = 1024
        public var lowSpeedSeconds = 30
        /// The whole exchange; 0 for none (long transfers are bounded by the low-speed rule).
        public var totalTimeout = 0
        public init(tls: TLSConfiguration? = nil) { self.tls = tls }
    }

    public let options: Options
    /// CURL* (an UnsafeMutableRawPointer); freed in deinit.
    private let handle: UnsafeMutableRawPointer
    private static let globalInit: Bool = curl_global_init(Int(CURL_GLOBAL_DEFAULT)) == CURLE_OK

    public init(_ options: Options = Options()) throws(HTTPClientError) {
        guard Self.globalInit, let handle = curl_easy_init() else {
            throw HTTPClientError(code: -1, message: "libcurl did not initialise", url: "")
        }
        self.options = options
        self.handle = handle
    }

    deinit { curl_easy_cleanup(handle) }

    /// Carries the Swift side of one transfer through curl's `void *` callback arguments.
    final class Transfer {
        let body: ((UnsafeMutableRawBufferPointer) throws -> Int)?
        let sink: (UnsafeRawBufferPointer) throws -> Void
        let head: ((ClientResponse) throws -> Void)?
        let handle: UnsafeMutableRawPointer
        var headerLines: [String] = []
        var headDelivered = false
        var error: (any Error)?
        init(
            handle: UnsafeMutableRawPointer, body: ((UnsafeMutableRawBufferPointer) throws -> Int)?,
            sink: @escaping (UnsafeRawBufferPointer) throws -> Void, head: ((ClientResponse) throws -> Void)?
        ) {
            self.handle = handle
            self.body = body
            self.sink = sink
            self.head = head
        }

        /// The response's status and fields, told once, before its first body byte.
        func deliverHead() throws {
            guard !headDelivered else { return }
            headDelivered = true
            var status = 0
            _ = consort_curl_getinfo_long(handle, CURLINFO_RESPONSE_CODE, &status)
            try head?(ClientResponse(status: status, headers: HTTPClient.fields(headerLines)))
        }
    }

    /// One request. `body` fills buffers with the request body (0 at its end); `bodyLength` sends
    /// Content-Length (else the body goes chunked). `head` hears the response's status and fields
    /// before its body (to choose where the body goes); the body goes to `sink` as it arrives.
    public func send(
        method: String, url: String, headers: [(String, String)] = [],
        body: ((UnsafeMutableRawBufferPointer) throws -> Int)? = nil, bodyLength: Int? = nil,
        head: ((ClientResponse) throws -> Void)? = nil,
        sink: @escaping (UnsafeRawBufferPointer) throws -> Void = { _ in }
    ) throws(HTTPClientError) -> ClientResponse {
        curl_easy_reset(handle)  // keeps the connection cache, forgets the last request's options
        let transfer = Transfer(handle: handle, body: body, sink: sink, head: head)
        let context = Unmanaged.passRetained(transfer)
        defer { context.release() }
        var errorBuffer = [CChar](repeating: 0, count: Int(CURL_ERROR_SIZE) + 1)
        var list: UnsafeMutablePointer<curl_slist>?
        defer { curl_slist_free_all(list) }

        let code: CURLcode = errorBuffer.withUnsafeMutableBufferPointer { errors in
            var setup = CURLE_OK
            func set(_ result: CURLcode) { if setup == CURLE_OK { setup = result } }
            set(consort_curl_setopt_string(handle, CURLOPT_URL, url))
            set(consort_curl_setopt_pointer(handle, CURLOPT_ERRORBUFFER, errors.baseAddress))  // curl keeps this pointer until reset
            set(consort_curl_setopt_long(handle, CURLOPT_NOSIGNAL, 1))  // threads: no signals for timeouts
            set(consort_curl_setopt_string(handle, CURLOPT_PROTOCOLS_STR, "https,http"))
            set(consort_curl_setopt_long(handle, CURLOPT_FOLLOWLOCATION, 0))
            set(consort_curl_setopt_long(handle, CURLOPT_CONNECTTIMEOUT, options.connectTimeout))
            set(consort_curl_setopt_long(handle, CURLOPT_LOW_SPEED_LIMIT, options.lowSpeedBytes))
            set(consort_curl_setopt_long(handle, CURLOPT_LOW_SPEED_TIME, options.lowSpeedSeconds))
            set(consort_curl_setopt_long(handle, CURLOPT_TIMEOUT, options.totalTimeout))
            set(consort_curl_setopt_long(handle, CURLOPT_TCP_NODELAY, 1))
            if let tls = options.tls {
                set(consort_curl_setopt_string(handle, CURLOPT_SSLCERT, tls.certificateChain))
                set(consort_curl_setopt_string(handle, CURLOPT_SSLKEY, tls.privateKey))
                set(consort_curl_setopt_string(handle, CURLOPT_CAINFO, tls.trustedCA))  // the consortium CA only
                set(consort_curl_setopt_pointer(handle, CURLOPT_CAPATH, nil))  // no system CA folder
                set(consort_curl_setopt_long(handle, CURLOPT_SSL_VERIFYPEER, 1))
                set(consort_curl_setopt_long(handle, CURLOPT_SSL_VERIFYHOST, 2))
                set(consort_curl_setopt_long(handle, CURLOPT_SSLVERSION, Int(CURL_SSLVERSION_TLSv1_2)))
                if let crl = tls.revocationList { set(consort_curl_setopt_string(handle, CURLOPT_CRLFILE, crl)) }
            }
            set(consort_curl_setopt_string(handle, CURLOPT_CUSTOMREQUEST, method))
            if method == "HEAD" { set(consort_curl_setopt_long(handle, CURLOPT_NOBODY, 1)) }
            var fields = headers
            if body != nil {
                set(consort_curl_setopt_long(handle, CURLOPT_UPLOAD, 1))
                set(consort_curl_setopt_read_function(handle, readCallback))
                set(consort_curl_setopt_pointer(handle, CURLOPT_READDATA, context.toOpaque()))
                if let bodyLength {
                    set(consort_curl_setopt_offset(handle, CURLOPT_INFILESIZE_LARGE, curl_off_t(bodyLength)))
                } else {
                    fields.append(("Transfer-Encoding", "chunked"))
                }
                // We stream from disk and never need curl's wait for 100 Continue (Orthanc does
                // not send one; curl would pause a second): send the body at once.
                fields.append(("Expect", ""))
            }
            for (name, value) in fields {
                list = curl_slist_append(list, value.isEmpty ? "\(name):" : "\(name): \(value)")
            }
            if let list { set(consort_curl_setopt_pointer(handle, CURLOPT_HTTPHEADER, UnsafeMutableRawPointer(list))) }
            set(consort_curl_setopt_write_function(handle, writeCallback))
            set(consort_curl_setopt_pointer(handle, CURLOPT_WRITEDATA, context.toOpaque()))
            set(consort_curl_setopt_header_function(handle, headerCallback))
            set(consort_curl_setopt_pointer(handle, CURLOPT_HEADERDATA, context.toOpaque()))
            if setup != CURLE_OK { return setup }
            return curl_easy_perform(handle)
        }
        if code != CURLE_OK {
            let detail = String(decoding: errorBuffer.prefix { $0 != 0 }.map { UInt8(bitPattern: $0) }, as: UTF8.self)
            let general = String(cString: curl_easy_strerror(code))
            var message = detail.isEmpty ? general : detail
            if let error = transfer.error { message = "\(error)" }
            throw HTTPClientError(code: Int(code.rawValue), message: message, url: url, callbackError: transfer.error)
        }
        var status = 0
        _ = consort_curl_getinfo_long(handle, CURLINFO_RESPONSE_CODE, &status)
        if !transfer.headDelivered {
            do {
                try transfer.deliverHead()
            } catch {
                throw HTTPClientError(code: Int(CURLE_WRITE_ERROR.rawValue), message: "\(error)", url: url, callbackError: error)
            }
        }
        return ClientResponse(status: status, headers: Self.fields(transfer.headerLines))
    }

    /// The header fields of the last response (curl hands over every response's, 100 included).
    static func fields(_ lines: [String]) -> [(name: String, value: String)] {
        var current: [(String, String)] = []
        for line in lines {
            if line.hasPrefix("HTTP/") {
                current = []
                continue
            }
            guard let colon = line.firstIndex(of: ":") else { continue }
            current.append((String(line[..<colon]), line[line.index(after: colon)...].trimmingCharacters(in: .whitespaces)))
        }
        return current
    }
}

// C callbacks: non-capturing closures (C function pointers); the Swift state comes through the
// context pointer. A Swift error is stored and curl told to stop; errors never cross into C.

private let readCallback: curl_read_callback = { buffer, size, count, context in
    let transfer = Unmanaged<HTTPClient.Transfer>.fromOpaque(context!).takeUnretainedValue()
    guard let body = transfer.body, let buffer else { return 0 }
    do {
        return try body(UnsafeMutableRawBufferPointer(start: buffer, count: size * count))
    } catch {
        transfer.error = error
        return Int(CURL_READFUNC_ABORT)
    }
}

private let writeCallback: curl_write_callback = { data, size, count, context in
    let transfer = Unmanaged<HTTPClient.Transfer>.fromOpaque(context!).takeUnretainedValue()
    let length = size * count
    do {
        try transfer.deliverHead()
        try transfer.sink(UnsafeRawBufferPointer(start: data, count: length))
        return length
    } catch {
        transfer.error = error
        return 0  // anything but `length` stops the transfer
    }
}

private let headerCallback: curl_write_callback = { data, size, count, context in
    let transfer = Unmanaged<HTTPClient.Transfer>.fromOpaque(context!).takeUnretainedValue()
    let length = size * count
    if let data {
        let line = String(decoding: UnsafeRawBufferPointer(start: data, count: length), as: UTF8.self)
        transfer.headerLines.append(line.trimmingCharacters(in: .whitespacesAndNewlines))
    }
    return length
}
