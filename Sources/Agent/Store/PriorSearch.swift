import Foundation

/// What a prefetch or gather looks for, as its rule said (the trusts it may fetch from, same
/// modality or body part, within how many days, at most how many), and the patient it is for
/// when known (a list's entry; a fetch carries its patient, checked against what arrives).
///
/// Kept with the job in the spool's `detail` column as JSON, written and read here only: its keys
/// are part of the spool's on-disk format (jobs queued by an earlier version still plan).
public struct PriorSearch: Sendable, Hashable, Codable {
    public var sources: [String] = []
    public var sameModality = false
    public var sameBodyPart = false
    public var withinDays: Int?
    public var atMost: Int?
    /// The patient's NHS number (ten digits, validated before it is kept).
    public var nhs: String?
    /// `consort pull`'s filters: studies with this modality, on or after this date
    /// (YYYYMMDD), or this one study.
    public var modality: String?
    public var since: String?
    public var study: String?

    public init(sources: [String] = [], sameModality: Bool = false, sameBodyPart: Bool = false, withinDays: Int? = nil, atMost: Int? = nil, nhs: String? = nil) {
        self.sources = sources
        self.sameModality = sameModality
        self.sameBodyPart = sameBodyPart
        self.withinDays = withinDays
        self.atMost = atMost
        self.nhs = nhs
    }

    /// Only the patient: what a fetch carries.
    public static func patient(_ nhs: String) -> PriorSearch { PriorSearch(nhs: nhs) }

    public init(from decoder: Decoder) throws {
        let values = try decoder.container(keyedBy: CodingKeys.self)
        sources = try values.decodeIfPresent([String].self, forKey: .sources) ?? []
        sameModality = try values.decodeIfPresent(Bool.self, forKey: .sameModality) ?? false
        sameBodyPart = try values.decodeIfPresent(Bool.self, forKey: .sameBodyPart) ?? false
        withinDays = try values.decodeIfPresent(Int.self, forKey: .withinDays)
        atMost = try values.decodeIfPresent(Int.self, forKey: .atMost)
        nhs = try values.decodeIfPresent(String.self, forKey: .nhs)
        modality = try values.decodeIfPresent(String.self, forKey: .modality)
        since = try values.decodeIfPresent(String.self, forKey: .since)
        study = try values.decodeIfPresent(String.self, forKey: .study)
    }

    /// The JSON kept in the spool.
    public var stored: String {
        let encoder = JSONEncoder()
        encoder.outputFormatting = .sortedKeys
        return (try? encoder.encode(self)).flatMap { String(data: $0, encoding: .utf8) } ?? "{}"
    }

    /// Nil for text that is not such JSON.
    public init?(stored: String) {
        guard let value = try? JSONDecoder().decode(PriorSearch.self, from: Data(stored.utf8)) else { return nil }
        self = value
    }
}
