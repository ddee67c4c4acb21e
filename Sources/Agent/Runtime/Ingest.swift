import DICOM
import Deidentification
import DICOMweb
import Foundation
import Platform
import Routing

/// Turns files into inventory rows and jobs: each file checked whole, its header read, the rules
/// asked what to do, and the lot recorded in one transaction (`AgentStore.record`).
///
/// A file already taken with the same size and mtime is skipped (a restart mid-scan, an event
/// twice); a file whose SOP Instance UID the inventory knows — received from a peer, or the same
/// instance exported again — is recorded as seen and causes nothing: a study that came from a
/// peer is never a new local study, which is what ends loops. Non-DICOM and malformed files are
/// recorded with their problem and not tried again until they change. Nothing here throws past
/// the caller: a bad file is a row, not a stop.
final class Ingest: @unchecked Sendable {
    let store: AgentStore
    let rules: RuleBook
    let trust: String
    let log: Logger
    /// Counts for status: files taken, skipped unchanged, problems.
    private(set) var taken = 0, skipped = 0, problems = 0
    private(set) var lastTaken: String?
    private let lock = NSLock()
    /// When the agent's first catch-up began (`isHistory`), for every catch-up scan from the
    /// first on; nil for a database made by an earlier version, which had run (nothing is history).
    let historyBefore = LockedValue<Double?>(nil)
    /// How close before the line a history file's change time is counted as near it (logged: a
    /// file server whose clock runs behind this host's stamps new files as if older). Five
    /// minutes: well past NTP's usual error, inside a clock nobody keeps.
    static let nearBeginSeconds = 300.0

    /// What the inventory's times are stamped by (the daemon's clock).
    let clock: any Clock

    init(store: AgentStore, rules: RuleBook, trust: String, log: Logger, clock: any Clock = SystemClock()) {
        self.clock = clock
        self.store = store
        self.rules = rules
        self.trust = trust
        self.log = log
    }

    struct Candidate {
        let path: String
        let size: Int
        let mtime: Double
        /// When it last arrived or changed (`ScannedFile.changedSeconds`); its mtime when unknown.
        var changed: Double? = nil
    }

    /// Whether a file a catch-up scan finds, and the inventory does not hold, is history
    /// (indexed, announced, no rule fired): one that has not changed (`Candidate.changed`)
    /// since the agent's first catch-up began (`historyBefore`; nil: nothing is). One written,
    /// renamed or moved in since is new, whether the scan or the watcher reaches it first, and
    /// whether the agent was running or down when it came.
    static func isHistory(changed: Double, historyBefore: Double?) -> Bool {
        guard let historyBefore else { return false }
        return changed < historyBefore
    }

    /// Takes a batch of files from the archive (origin local).
    func take(_ files: [Candidate], now: Double? = nil) {
        let now = now ?? clock.now
        guard let examined = examine(files, now: now) else { return }
        record(examined, now: now)
    }

    /// A batch read and checked, not yet recorded: the files' headers, and the files that are not
    /// DICOM or are malformed, with their problem.
    struct Examined {
        fileprivate var headers: [(file: Candidate, sop: String, facts: AgentStore.StudyFacts, series: String?, jobs: [AgentStore.NewJob], history: Bool)] = []
        /// Files taken as history (`isHistory`).
        fileprivate(set) var history = 0
        /// Of those, changed within `nearBeginSeconds` before the line.
        fileprivate(set) var nearBegin = 0
        fileprivate var troubles: [(path: String, size: Int, mtime: Double, problem: String)] = []
        /// Files in the batch, taken or skipped.
        fileprivate(set) var files = 0

        /// Batches examined one after another, as one: recorded in one transaction.
        static func merged(_ batches: [Examined]) -> Examined {
            guard batches.count > 1 else { return batches.first ?? Examined() }
            var all = Examined()
            for batch in batches {
                all.headers += batch.headers
                all.troubles += batch.troubles
                all.files += batch.files
                all.history += batch.history
                all.nearBegin += batch.nearBegin
            }
            return all
        }
    }

    /// The first half of `take`: skips what the inventory holds unchanged, checks each other file
    /// whole, reads the facts the inventory keeps from its header and asks the rules what the
    /// instance's arrival would cause. It reads files and touches no row, so that a catch-up scan
    /// can examine one batch while the batch before is being recorded (`record`), the two halves
    /// on the two cores. nil when the inventory cannot be asked (logged; the files are taken
    /// again by the next event or scan).
    /// `historyBefore`: the first catch-up's start (`isHistory`), for catch-up scans; nil for
    /// live events.
    func examine(_ files: [Candidate], now: Double? = nil, historyBefore: Double? = nil) -> Examined? {
        let now = now ?? clock.now
        var examined = Examined()
        examined.files = files.count
        // What the inventory already knows, asked for the whole batch at once.
        let unchanged: Set<String>
        do { unchanged = try store.unchanged(files.map { ($0.path, $0.size, $0.mtime) }) } catch {
            log.error("cannot ask the inventory about files; they will be taken again", ["files": files.count, "error": error])
            return nil
        }
        for file in files {
            if unchanged.contains(file.path) {
                lock.withLock { skipped += 1 }
                continue
            }
            let header: DICOMFile
            do {
                header = try DICOMFile.verify(path: file.path)
            } catch where error.code == .notDICOM {
                examined.troubles.append((file.path, file.size, file.mtime, "not DICOM"))
                continue
            } catch where error.code == .io {
                // Not the file's fault (too many open files, NFS gone stale, permissions): not
                // recorded, so the next event or scan takes it again.
                log.warning("cannot read a file now; it will be taken again", ["file": file.path, "error": error.description])
                continue
            } catch {
                log.warning("malformed DICOM file recorded, not taken", ["file": file.path, "error": error.description])
                examined.troubles.append((file.path, file.size, file.mtime, "malformed: \(error)"))
                continue
            }
            let data = header.dataSet
            guard let sop = data.string(.sopInstanceUID), UID.isValid(sop), let study = data.string(.studyInstanceUID), UID.isValid(study) else {
                examined.troubles.append((file.path, file.size, file.mtime, "malformed: no valid SOP Instance UID or Study Instance UID"))
                continue
            }
            // Planned here, on the reading side: the rules are pure, and `record` drops the plan
            // of an instance the inventory turns out to know.
            let history = Self.isHistory(changed: file.changed ?? file.mtime, historyBefore: historyBefore)
            let jobs = history ? [] : plan(.instanceArrived, header: data, origin: .local, now: now)
            if history {
                examined.history += 1
                if let historyBefore, historyBefore - (file.changed ?? file.mtime) <= Self.nearBeginSeconds { examined.nearBegin += 1 }
            }
            examined.headers.append((file, sop, Self.facts(of: data, study: study), data.string(Tag(0x0020, 0x000E)), jobs, history))
        }
        return examined
    }

    /// The second half of `take`: keeps the planned jobs of each instance new to the inventory
    /// and records the files, instances and jobs in one transaction. False when nothing could be
    /// recorded (logged; the files are taken again by the next event or scan).
    @discardableResult
    func record(_ examined: Examined, now: Double? = nil) -> Bool {
        let now = now ?? clock.now
        let (headers, troubles) = (examined.headers, examined.troubles)
        var batch: [AgentStore.Taken] = []
        var seenInBatch = Set<String>()
        let known: [String: String]
        do { known = try store.origins(of: headers.map(\.sop)) } catch {
            log.error("cannot ask the inventory about instances; they will be taken again", ["files": headers.count, "error": error])
            return false
        }
        for (file, sop, facts, series, jobs, history) in headers {
            var item = AgentStore.Taken(sop: sop, study: facts, series: series, path: file.path, size: file.size, mtime: file.mtime, origin: "local", jobs: [])
            item.history = history
            if known[sop] == nil && !seenInBatch.contains(sop) {
                item.jobs = jobs
                seenInBatch.insert(sop)
            }
            batch.append(item)
        }
        guard !batch.isEmpty || !troubles.isEmpty else { return true }
        do {
            try store.record(taken: batch, problems: troubles, now: now)
            lock.withLock {
                taken += batch.count
                problems += troubles.count
                lastTaken = batch.last?.path ?? lastTaken
            }
            // One line per study and batch, not per instance (a catch-up of a million files).
            var queued: [String: (count: Int, jobs: String, first: String)] = [:]
            for item in batch where !item.jobs.isEmpty {
                let jobs = item.jobs.map { "\($0.rule)→\($0.destination)" }.joined(separator: ",")
                queued[item.study.uid, default: (0, jobs, item.path)].count += 1
            }
            for (study, entry) in queued.sorted(by: { $0.key < $1.key }) {
                log.info("instances queued", ["study": study, "instances": entry.count, "first": entry.first, "jobs": entry.jobs])
            }
            return true
        } catch {
            // Nothing of the batch was recorded: the files will be taken again (next event or scan).
            log.error("cannot record taken files; they will be taken again", ["files": examined.files, "error": error])
            return false
        }
    }

    /// The jobs the rules plan for an event: pushes to peers and deliveries to local targets.
    /// (Prefetch and gather come with the coordinator.)
    func plan(_ kind: RoutingEvent.Kind, header: DataSet, origin: Origin, now: Double, studyOrigin: Origin? = nil) -> [AgentStore.NewJob] {
        let actions = rules.engine.evaluate(RoutingEvent(kind: kind, header: header, origin: origin, site: trust, now: Int64(now), studyOrigin: studyOrigin))
        return Self.jobs(for: actions, now: now, log: log)
    }

    /// `nhs`: the patient of a list entry (a gather's), kept with its query.
    static func jobs(for actions: [PlannedAction], now: Double, log: Logger, nhs: String? = nil) -> [AgentStore.NewJob] {
        var jobs: [AgentStore.NewJob] = []
        for action in actions {
            let scheduling = action.scheduling
            let deadline = scheduling.deadlineSeconds.map { now + Double($0) }
            switch action.kind {
            case .push, .deliver:
                for destination in action.destinations {
                    jobs.append(
                        AgentStore.NewJob(
                            kind: action.kind == .push ? .push : .deliver, destination: destination, rule: action.rule, purpose: action.purpose,
                            priority: scheduling.priority, window: scheduling.window, deadline: deadline,
                            expectResult: action.kind == .push ? scheduling.expectResultSeconds.map(Double.init) : nil,
                            deidentify: action.kind == .push && scheduling.deidentified,
                            deidentifyOptions: action.kind == .push && scheduling.deidentified ? scheduling.deidentification.text : ""))
                }
            case .prefetchPriors, .gather:
                // Planned by the queue manager's plan executor once the coordinator says where the
                // patient's studies are: the query and the trusts it may fetch from go with the job.
                let query = action.query
                let search = PriorSearch(
                    sources: action.sources, sameModality: query?.sameModality ?? false, sameBodyPart: query?.sameBodyPart ?? false,
                    withinDays: query?.withinDays, atMost: query?.atMost, nhs: nhs)
                jobs.append(
                    AgentStore.NewJob(
                        kind: action.kind == .gather ? .gather : .prefetch, destination: action.destinations.first ?? "", rule: action.rule, purpose: action.purpose,
                        priority: scheduling.priority, window: scheduling.window, deadline: deadline, search: search, notBefore: action.notBefore.map(Double.init)))
            }
        }
        return jobs
    }

    static func facts(of data: DataSet, study: String) -> AgentStore.StudyFacts {
        var facts = AgentStore.StudyFacts(uid: study)
        facts.patientID = data.string(.patientID)
        facts.patientIssuer = data.string(Tag(0x0010, 0x0021))
        facts.date = data.string(Tag(0x0008, 0x0020))
        facts.modality = data.string(.modality)
        facts.description = data.string(Tag(0x0008, 0x1030))
        facts.accession = data.string(Tag(0x0008, 0x0050))
        facts.bodyPart = data.string(Tag(0x0018, 0x0015))
        facts.sex = data.string(Tag(0x0010, 0x0040))
        facts.birthDate = data.string(Tag(0x0010, 0x0030))
        // OtherPatientIDsSequence: where some trusts keep the NHS number.
        if case .sequence(let items)? = data[Tag(0x0010, 0x1002)]?.value {
            facts.otherIDs = items.compactMap { item in item.string(.patientID).map { ($0, item.string(Tag(0x0010, 0x0021))) } }
        }
        // OtherPatientIDs (0010,1000): where other trusts keep it, without an issuer. Every value
        // in its place (an empty first value stays first: the first value is the one read).
        let values = data.strings(Tag(0x0010, 0x1000)).map { $0.trimmingCharacters(in: .whitespaces) }
        facts.otherPatientIDValues = values.contains { !$0.isEmpty } ? values : []
        return facts
    }

    var counts: (taken: Int, skipped: Int, problems: Int, last: String?) { lock.withLock { (taken, skipped, problems, lastTaken) } }
}
