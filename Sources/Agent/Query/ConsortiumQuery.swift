import Audit
import DICOM
import DIMSE
import Exchange
import Foundation
import Platform
import Routing
import Transport

/// The agent as a query/retrieve SCP for its own trust's PACS and workstations: a C-FIND for a
/// patient is answered with every study of theirs anywhere in the consortium, in this trust's
/// identity (issue 27).
///
/// Who the patient is comes from this trust's own records, never from a guess: a Patient ID
/// with the NHS as its issuer is an NHS number (validated); any other Patient ID is looked up
/// in the inventory — the NHS number of this trust's own studies filed under it (one number:
/// that patient; several: an identity conflict, refused loudly and held for a person; none:
/// nothing matches — a local number that happens to pass the Modulus 11 check is never taken
/// for an NHS number). An NHS number may also come in Other Patient IDs Sequence with the NHS
/// as issuer. A query without a patient key is refused: no consortium-wide trawls. Offered only
/// with `identity reconcile` and a coordinator, to the dimse-peers marked `{ query }`. Where the
/// studies are is the coordinator's word (`GET /v1/patients/{nhs}/studies`, purpose
/// direct-care), joined with what the inventory holds that is not announced yet. Every query
/// is audited at the agent: who asked, for which patient, how many studies were told.
final class ConsortiumQuery: DIMSEQueryService, @unchecked Sendable {
    let store: AgentStore
    let coordinator: CoordinatorClient?
    let identityBook: IdentityBook?
    let audit: AuditLog
    let trust: String
    /// This SCP's AE title: where the answers say to retrieve from.
    let aeTitle: String
    /// The dimse-peer names by calling AE title, for the audit log.
    let names: LockedValue<[String: String]>
    let log: Logger
    /// Carries out C-MOVE (nil: refused).
    var mover: ConsortiumMove?

    static let purpose = "direct-care"

    init(store: AgentStore, coordinator: CoordinatorClient?, identityBook: IdentityBook?, audit: AuditLog, trust: String, aeTitle: String, names: LockedValue<[String: String]>, log: Logger) {
        self.store = store
        self.coordinator = coordinator
        self.identityBook = identityBook
        self.audit = audit
        self.trust = trust
        self.aeTitle = aeTitle
        self.names = names
        self.log = log
    }

    /// An identifier in the request's transfer syntax, read as a data set.
    static func decode(_ identifier: [UInt8], _ request: QueryRequest) throws -> DataSet {
        let header = try DICOMWriter.fileHeader(transferSyntax: request.transferSyntax, sopClassUID: request.sopClass, sopInstanceUID: "1.2", sourceAETitle: nil)
        return try DICOMFile.read(bytes: header + identifier, options: .everything).dataSet
    }

    func find(_ request: QueryRequest, identifier: [UInt8], from peer: DIMSEServer.Peer) -> DIMSEFindAnswer {
        let who = names.value[peer.aeTitle] ?? peer.aeTitle
        let query: StudyQuery
        do {
            query = try StudyQuery(try Self.decode(identifier, request))
        } catch let refusal as StudyQuery.Refusal {
            return .refused(status: refusal.status, why: refusal.description)
        } catch {
            return .refused(status: QueryRetrieve.identifierDoesNotMatch, why: "the identifier cannot be read: \(error)")
        }
        do {
            let matches = try answers(query, who: who, peer: peer)
            let explicit = request.transferSyntax == TransferSyntax.explicitVRLittleEndian
            return .matches(try matches.map { try DICOMWriter.encodeDataSet($0, explicitVR: explicit) })
        } catch let refusal as StudyQuery.Refusal {
            log.warning("C-FIND refused", ["calling": peer.aeTitle, "why": refusal.description])
            return .refused(status: refusal.status, why: refusal.description)
        } catch {
            log.error("C-FIND failed", ["calling": peer.aeTitle, "error": error])
            return .refused(status: QueryRetrieve.unableToProcess, why: "\(error)")
        }
    }

    func move(_ request: QueryRequest, identifier: [UInt8], from peer: DIMSEServer.Peer, progress: (SubOperations) -> Bool) -> DIMSEMoveOutcome {
        guard let mover else { return DIMSEMoveOutcome(status: QueryRetrieve.unableToProcess, subOperations: SubOperations(), comment: "C-MOVE is not offered here") }
        return mover.move(request, identifier: identifier, from: peer, progress: progress)
    }

    // MARK: - The patient

    /// Who the query is about: the NHS number, this trust's studies of the patient, and the
    /// identity the answers carry.
    struct Resolved {
        var nhs: NHSNumber?
        var held: [AgentStore.HeldStudy]
        var patient: StudyQuery.Patient
    }

    static func refusal(_ status: UInt16, _ words: String) -> StudyQuery.Refusal { StudyQuery.Refusal(status: status, description: words) }

    func resolve(_ query: StudyQuery) throws -> Resolved? {
        if let id = query.patientID {
            guard !StudyQuery.isWildcard(id), !id.contains("\\") else {
                throw Self.refusal(QueryRetrieve.unableToProcess, "Patient ID must be one patient's number, without wildcards: no consortium-wide searches")
            }
            if let issuer = query.issuer, NHSIdentity.issuers.contains(issuer) {
                guard let nhs = NHSNumber(id) else { throw Self.refusal(QueryRetrieve.unableToProcess, "\(id) is not a valid NHS number") }
                return try byNHS(nhs)
            }
            let held = try store.studies(ofPatient: id, issuer: query.issuer)
            let numbers = Set(held.compactMap { study -> String? in
                if case .valid(let number) = Announcer.nhs(study.announcement.facts) { return number.digits }
                return nil
            })
            if numbers.count > 1 {
                log.error("IDENTITY CONFLICT: one patient number here names several NHS numbers; the query is refused, a person must look", ["patient": id, "nhs": numbers.sorted().joined(separator: ",")])
                throw Self.refusal(QueryRetrieve.unableToProcess, "patient \(id) has more than one NHS number here: an identity conflict for a person, not answered")
            }
            if let digits = numbers.first, let nhs = NHSNumber(digits) {
                return Resolved(nhs: nhs, held: held, patient: patient(id: id, issuer: query.issuer ?? held.first?.announcement.facts.patientIssuer, from: held))
            }
            // Known here without an NHS number, or not known: what is here, and nothing else.
            return held.isEmpty ? nil : Resolved(nhs: nil, held: held, patient: patient(id: id, issuer: query.issuer, from: held))
        }
        if let other = query.otherNHS {
            guard let nhs = NHSNumber(other) else { throw Self.refusal(QueryRetrieve.unableToProcess, "\(other) is not a valid NHS number") }
            return try byNHS(nhs)
        }
        throw Self.refusal(QueryRetrieve.unableToProcess, "a patient key is required (Patient ID, or an NHS number): no consortium-wide searches")
    }

    /// A patient given by NHS number: this trust's own number for them (the registry's word,
    /// as identity on delivery uses it), and its studies of them.
    func byNHS(_ nhs: NHSNumber) throws -> Resolved {
        var own: NHSIdentity.Identifier?
        if let identityBook {
            switch identityBook.answer(for: nhs) {
            case .identifiers(let list): own = list.first
            case .conflict(let why): throw Self.refusal(QueryRetrieve.unableToProcess, "an identity conflict about this patient is held for a person: \(why)")
            case .unavailable: break
            }
        }
        let held = try own.map { try store.studies(ofPatient: $0.id, issuer: $0.issuer) } ?? []
        let id = own?.id ?? nhs.digits
        return Resolved(nhs: nhs, held: held, patient: patient(id: id, issuer: own == nil ? "NHS" : own?.issuer, from: held))
    }

    /// The patient as this trust's own files have them (name, birth date, sex from a header).
    func patient(id: String, issuer: String?, from held: [AgentStore.HeldStudy]) -> StudyQuery.Patient {
        var patient = StudyQuery.Patient(id: id, issuer: issuer)
        if let study = held.first(where: { $0.announcement.origin == "local" }) ?? held.first,
            let header = try? DICOMFile.read(path: study.samplePath).dataSet
        {
            patient.name = header.string(.patientName)
            patient.birthDate = header.string(DataDictionary.tag(forKeyword: "PatientBirthDate")!)
            patient.sex = header.string(DataDictionary.tag(forKeyword: "PatientSex")!)
        }
        return patient
    }

    // MARK: - The answers

    func answers(_ query: StudyQuery, who: String, peer: DIMSEServer.Peer) throws -> [DataSet] {
        if query.level == .series { return try seriesAnswers(query, who: who, peer: peer) }
        guard let resolved = try resolve(query) else {
            try audit.record(AuditEntry(who: who, action: "query", patient: query.patientID, why: Self.purpose, detail: "C-FIND from \(peer.aeTitle)@\(peer.address): patient not known here, nothing answered"), durable: false)
            return []
        }
        var studies: [String: StudyQuery.Study] = [:]
        var order: [String] = []
        func add(_ study: StudyQuery.Study) {
            if studies[study.uid] == nil { order.append(study.uid) }
            studies[study.uid] = study
        }
        if let nhs = resolved.nhs, let coordinator {
            let answer: [String: Any]
            do {
                answer = try coordinator.call("GET", "/v1/patients/\(nhs.digits)/studies", purpose: Self.purpose)
            } catch let failure as CoordinatorClient.Failure where failure.status == 409 {
                log.error("IDENTITY CONFLICT at the coordinator: the query is refused", ["nhs": nhs.digits, "calling": peer.aeTitle])
                throw Self.refusal(QueryRetrieve.unableToProcess, "an identity conflict about this patient is held for a person at the coordinator")
            } catch {
                throw Self.refusal(QueryRetrieve.outOfResources, "the coordinator cannot say where the patient's studies are now: \(error)")
            }
            for item in answer["studies"] as? [[String: Any]] ?? [] {
                guard let uid = item["study"] as? String else { continue }
                let holders = (item["locations"] as? [[String: Any]] ?? []).compactMap { $0["trust"] as? String }
                add(StudyQuery.Study(
                    uid: uid, date: item["date"] as? String, modalities: item["modalities"] as? [String] ?? [], description: item["description"] as? String,
                    accession: item["accession"] as? String, instances: (item["instances"] as? NSNumber)?.intValue ?? 0, heldHere: holders.contains(trust)))
            }
        }
        // What is here, announced or not yet: the inventory's word for these.
        for held in resolved.held {
            let facts = held.announcement.facts
            var study = studies[facts.uid] ?? StudyQuery.Study(
                uid: facts.uid, date: facts.date, modalities: facts.modality.map { [$0] } ?? [], description: facts.description,
                accession: facts.accession, instances: held.announcement.instances, heldHere: true)
            study.heldHere = true
            study.instances = max(study.instances, held.announcement.instances)
            add(study)
        }
        let matching = order.compactMap { studies[$0] }.filter(query.matches)
        let answers = matching.map { query.answer($0, patient: resolved.patient, retrieveAE: aeTitle) }
        try audit.record(AuditEntry(
            who: who, action: "query", nhs: resolved.nhs?.digits, patient: resolved.patient.id, why: Self.purpose,
            detail: "C-FIND from \(peer.aeTitle)@\(peer.address): \(answers.count) of \(studies.count) studies answered (\(matching.filter { !$0.heldHere }.count) held elsewhere)"), durable: false)
        return answers
    }

    /// SERIES level within one study held here (its series read from the inventory and one
    /// header each).
    func seriesAnswers(_ query: StudyQuery, who: String, peer: DIMSEServer.Peer) throws -> [DataSet] {
        let uid = query.keys.string(.studyInstanceUID) ?? ""
        guard let held = try store.heldStudy(uid) else { return [] }
        let facts = held.announcement.facts
        let patient = patient(id: facts.patientID ?? "", issuer: facts.patientIssuer, from: [held])
        var answers: [DataSet] = []
        for series in try store.series(ofStudy: uid) {
            let header = (try? DICOMFile.read(path: series.path).dataSet) ?? DataSet()
            let found = StudyQuery.Series(
                uid: series.uid.isEmpty ? (header.string(.seriesInstanceUID) ?? "") : series.uid, modality: header.string(.modality),
                number: header.string(DataDictionary.tag(forKeyword: "SeriesNumber")!), description: header.string(DataDictionary.tag(forKeyword: "SeriesDescription")!),
                instances: series.instances)
            if query.matches(found) { answers.append(query.answer(found, study: uid, patient: patient, retrieveAE: aeTitle)) }
        }
        try audit.record(AuditEntry(who: who, action: "query", patient: facts.patientID, study: uid, why: Self.purpose, detail: "C-FIND (series) from \(peer.aeTitle)@\(peer.address): \(answers.count) series"), durable: false)
        return answers
    }
}
