/// A DICOM node as operators write it, `AET@HOST:PORT` (HOST may be a bracketed IPv6 address):
/// the command line's `consort echo` and `consort store`, and the agent's configuration.
public struct DIMSENode: Sendable, Equatable, CustomStringConvertible {
    public var ae: String
    public var host: String
    public var port: UInt16

    public init(ae: String, host: String, port: UInt16) {
        self.ae = ae
        self.host = host
        self.port = port
    }

    /// Nil for text that is not one (an AE title of 1 to 16 characters without a backslash, a
    /// host, a port from 1 to 65535).
    public init?(_ text: String) {
        guard let at = text.lastIndex(of: "@") else { return nil }
        let ae = String(text[..<at])
        let address = text[text.index(after: at)...]
        guard let colon = address.lastIndex(of: ":"), let port = UInt16(address[address.index(after: colon)...]), port > 0 else { return nil }
        var host = String(address[..<colon])
        if host.hasPrefix("[") && host.hasSuffix("]") { host = String(host.dropFirst().dropLast()) }
        guard AETitle.isValid(ae), !host.isEmpty else { return nil }
        self.init(ae: ae, host: host, port: port)
    }

    public var description: String { "\(ae)@\(host.contains(":") ? "[\(host)]" : host):\(port)" }
}
