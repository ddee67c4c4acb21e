internal import COpenSSL

/// HMAC-SHA256 (RFC 2104) in one call, by OpenSSL's EVP_Q_mac: the keyed hash a de-identifying
/// trust maps UIDs with.
public enum HMACSHA256 {
    /// The 32-byte MAC of `message` under `key`.
    public static func mac(key: [UInt8], message: [UInt8]) -> [UInt8] {
        var out = [UInt8](repeating: 0, count: 32)
        var length = 0
        let made = key.withUnsafeBytes { k in
            message.withUnsafeBytes { m in
                EVP_Q_mac(nil, "HMAC", nil, "SHA256", nil, k.baseAddress, k.count, m.baseAddress, m.count, &out, out.count, &length)
            }
        }
        // Only fails when memory is gone or OpenSSL lacks SHA-256: no sensible way on from there.
        guard made != nil, length == 32 else { fatalError("OpenSSL cannot compute an HMAC-SHA256") }
        return out
    }
}
