/// The trusts holding a study, as its registry row keeps them (`patient_studies.held`): a
/// line a trust, `since TAB complete TAB instances TAB trust`, in the order of `since` then
/// trust — the order lookups answer in. The trust's name comes last, so nothing in it (a name
/// from the rules may be quoted) can be taken for a separator; no name holds a line break.
/// Empty when nobody holds the study any more (the study stays known, and lookups leave it out).
enum RegistryHoldings {
    /// Read byte by byte (every lookup reads each of its studies' holdings; splitting the
    /// text by Characters cost a fortieth of a lookup).
    static func decode(_ text: String?) -> [Location] {
        guard let text, !text.isEmpty else { return [] }
        let tab = UInt8(ascii: "\t")
        return text.utf8.split(separator: UInt8(ascii: "\n")).compactMap { line in
            guard let first = line.firstIndex(of: tab) else { return nil }
            let afterFirst = line[line.index(after: first)...]
            guard let second = afterFirst.firstIndex(of: tab) else { return nil }
            let afterSecond = line[line.index(after: second)...]
            guard let third = afterSecond.firstIndex(of: tab),
                  let since = Double(String(decoding: line[..<first], as: UTF8.self)),
                  let instances = Int(String(decoding: afterSecond[..<third], as: UTF8.self)) else { return nil }
            let complete = afterFirst[..<second].elementsEqual([UInt8(ascii: "1")])
            return Location(trust: String(decoding: line[line.index(after: third)...], as: UTF8.self), complete: complete, instances: instances, since: since)
        }
    }

    static func encode(_ locations: [Location]) -> String {
        ordered(locations).map { "\($0.since)\t\($0.complete ? 1 : 0)\t\($0.instances)\t\($0.trust)" }.joined(separator: "\n")
    }

    static func ordered(_ locations: [Location]) -> [Location] {
        locations.sorted { ($0.since, $0.trust) < ($1.since, $1.trust) }
    }

    /// `trust` now holds the study: an existing holding takes the new completeness and count
    /// and keeps its `since`; a new one is held since `now`. Whether it was new.
    @discardableResult
    static func hold(_ locations: inout [Location], trust: String, complete: Bool, instances: Int, now: Double) -> Bool {
        if let index = locations.firstIndex(where: { $0.trust == trust }) {
            locations[index].complete = complete
            locations[index].instances = instances
            return false
        }
        locations.append(Location(trust: trust, complete: complete, instances: instances, since: now))
        return true
    }
}
