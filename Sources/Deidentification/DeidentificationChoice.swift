import Foundation

/// What a rule's `deidentified` push chooses beyond the Basic Profile (issue 29): the profile's
/// options (`deidentified with retain-full-dates, clean-descriptors`), and whether instances whose
/// pixels may carry burned-in text go all the same (`allow-burned-in`: the rule's author says
/// the destination is allowed them, or cleans them itself).
///
/// The same words in the rules, in the spool (a job carries its choice as `text`, so a job
/// queued under one rule set is sent as that rule set said) and in the audit line.
public struct DeidentificationChoice: Sendable, Hashable, CustomStringConvertible {
    public var options: Set<ConfidentialityProfile.Option>
    public var allowsBurnedIn: Bool

    public init(options: Set<ConfidentialityProfile.Option> = [], allowsBurnedIn: Bool = false) {
        self.options = options
        self.allowsBurnedIn = allowsBurnedIn
    }

    /// The word that says "send instances that may carry burned-in text".
    public static let allowBurnedInWord = "allow-burned-in"

    /// Each option's word in the rules: the standard's option name, shortened.
    public static func word(_ option: ConfidentialityProfile.Option) -> String {
        switch option {
        case .retainSafePrivate: return "retain-safe-private"
        case .retainUIDs: return "retain-uids"
        case .retainDeviceIdentity: return "retain-device-identity"
        case .retainInstitutionIdentity: return "retain-institution-identity"
        case .retainPatientCharacteristics: return "retain-patient-characteristics"
        case .retainLongitudinalFullDates: return "retain-full-dates"
        case .retainLongitudinalModifiedDates: return "retain-modified-dates"
        case .cleanDescriptors: return "clean-descriptors"
        case .cleanStructuredContent: return "clean-structured-content"
        case .cleanGraphics: return "clean-graphics"
        }
    }

    /// Every word a rule may write after `deidentified with`, in the standard's order.
    public static let words: [String] = ConfidentialityProfile.Option.allCases.map(word) + [allowBurnedInWord]

    /// Adds what one word says; false for a word that is not one of `words`.
    public mutating func add(word: String) -> Bool {
        if word == Self.allowBurnedInWord {
            allowsBurnedIn = true
            return true
        }
        guard let option = ConfidentialityProfile.Option.allCases.first(where: { Self.word($0) == word }) else { return false }
        options.insert(option)
        return true
    }

    /// Why the choice cannot be carried out, or nil: the two ways of keeping dates exclude each
    /// other (PS3.15 E.3.6: dates are kept, or moved, not both).
    public var conflict: String? {
        if options.contains(.retainLongitudinalFullDates) && options.contains(.retainLongitudinalModifiedDates) {
            return "retain-full-dates and retain-modified-dates exclude each other: dates are kept as they are, or moved"
        }
        return nil
    }

    /// The words, comma-separated in the standard's order ("" for the Basic Profile alone).
    public var text: String {
        (ConfidentialityProfile.Option.allCases.filter { options.contains($0) }.map(Self.word) + (allowsBurnedIn ? [Self.allowBurnedInWord] : []))
            .joined(separator: ", ")
    }

    public var description: String { text.isEmpty ? "the Basic Profile" : "the Basic Profile with \(text)" }

    /// The choice a job's `text` names; words no longer known are left out (a spool written by a
    /// newer agent), which only ever makes the profile stricter — except `allow-burned-in`, which
    /// is known to every agent that writes it.
    public init(text: String) {
        self.init()
        for word in text.split(separator: ",") { _ = add(word: word.trimmingCharacters(in: .whitespaces)) }
    }
}
