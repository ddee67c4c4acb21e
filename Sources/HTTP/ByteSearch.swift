/// Small helpers the HTTP and DICOMweb parsers share (package access: not part of the API).

#if canImport(Glibc)
    import Glibc
#endif

/// First index of `needle` in `haystack` at or after `start`. The multipart decoder searches
/// every byte of every received instance for the boundary, so this sets the receiver's speed:
/// memchr (vectorised by glibc) finds each candidate first byte, memcmp checks the rest.
package func firstIndex(of needle: [UInt8], in haystack: [UInt8], from start: Int = 0) -> Int? {
    haystack.withUnsafeBytes { firstIndex(of: needle, in: $0, from: start) }
}

/// The same over any contiguous bytes; the index is an offset from `haystack`'s start.
package func firstIndex(of needle: [UInt8], in haystack: UnsafeRawBufferPointer, from start: Int = 0) -> Int? {
    guard let first = needle.first, start >= 0, haystack.count - start >= needle.count else { return nil }
    return needle.withUnsafeBytes { pin -> Int? in
        let base = haystack.baseAddress!
        let lastStart = haystack.count - pin.count
        var at = start
        while at <= lastStart {
            guard let hit = memchr(base + at, Int32(first), lastStart - at + 1) else { return nil }
            let index = base.distance(to: UnsafeRawPointer(hit))
            if memcmp(base + index, pin.baseAddress!, pin.count) == 0 { return index }
            at = index + 1
        }
        return nil
    }
}

extension StringProtocol {
    /// Trims the given characters from both ends (without Foundation).
    package func trimmingCharacters(in set: String) -> String {
        var s = Substring(self)
        while let c = s.first, set.contains(c) { s = s.dropFirst() }
        while let c = s.last, set.contains(c) { s = s.dropLast() }
        return String(s)
    }
}
