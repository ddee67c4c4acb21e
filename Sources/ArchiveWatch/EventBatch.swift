/// The events gathered for one `next` call: each file path at most once as a file and at most
/// once as gone, each root's rescan at most once (the first reason given wins), problems as
/// they come.
struct EventBatch {
    private(set) var events: [WatchEvent] = []
    private var files: Set<String> = []
    private var gone: Set<String> = []
    private var rescans: Set<String> = []

    var isEmpty: Bool { events.isEmpty }

    mutating func file(_ path: String) {
        if files.insert(path).inserted { events.append(.file(path: path)) }
    }

    mutating func gone(_ path: String) {
        if gone.insert(path).inserted { events.append(.gone(path: path)) }
    }

    mutating func rescan(root: String, reason: String) {
        if rescans.insert(root).inserted { events.append(.rescan(root: root, reason: reason)) }
    }

    mutating func problem(_ message: String) { events.append(.problem(message)) }

    /// The events so far; the batch starts over empty.
    mutating func take() -> [WatchEvent] {
        defer { self = EventBatch() }
        return events
    }
}
