import Agent
import DICOM
import Routing
import Testing

/// Under which identity a study from another trust is placed (issue 25): every branch of the
/// pure rule, and the configuration words that set it. Never a guess: no number, no placing.
@Suite("Identity on delivery: the decision")
struct IdentityDecisionTests {
    static let nhs = NHSNumber("9990000018")!
    static let settings = IdentityDecision.Settings(trust: "ASPH", unknownPatient: .hold)
    static let fromRSCH = IdentityDecision.Study(
        patientID: "R123", issuer: "RSCH", nhs: .valid(nhs), otherIDs: [NHSIdentity.Identifier(id: "9990000018", issuer: "NHS")])

    static func decide(
        _ answer: IdentityDecision.RegistryAnswer, study: IdentityDecision.Study = fromRSCH,
        settings: IdentityDecision.Settings = settings, force: Bool = false
    ) -> IdentityDecision.Outcome {
        IdentityDecision.decide(study, nhs: nhs, sender: "RSCH", answer: answer, settings: settings, force: force)
    }

    @Test func oneLocalNumberIsWhatTheStudyIsPlacedUnderWithTheSendersAndTheNHSNumberKept() {
        let outcome = Self.decide(.identifiers([NHSIdentity.Identifier(id: "A555", issuer: "ASPH")]))
        #expect(outcome == .rewrite(IdentityRewrite(
            local: PatientIdentifier(id: "A555", issuer: "ASPH"), senderIssuer: "RSCH",
            additionalIdentifiers: [PatientIdentifier(id: "9990000018", issuer: "NHS")], accessionNumberIssuer: "RSCH")))
    }

    @Test func aLocalNumberWithoutAnIssuerIsTheTrustsAndASenderWithoutOneIsNamedByItsCertificate() {
        let study = IdentityDecision.Study(patientID: "R123", issuer: nil, nhs: .valid(Self.nhs))
        guard case .rewrite(let rewrite) = Self.decide(.identifiers([NHSIdentity.Identifier(id: "A555", issuer: nil)]), study: study) else {
            Issue.record("not rewritten")
            return
        }
        #expect(rewrite.local == PatientIdentifier(id: "A555", issuer: "ASPH") && rewrite.senderIssuer == "RSCH")
    }

    @Test func aCopyRelayedByAnotherTrustNamesTheNumberItCarriesByTheFilesOwnIssuer() {
        // UHSX serves RSCH's study, which it holds as U987 (UHSX): the number in the file is UHSX's.
        let relayed = IdentityDecision.Study(patientID: "U987", issuer: "UHSX", nhs: .valid(Self.nhs))
        guard case .rewrite(let rewrite) = Self.decide(.identifiers([NHSIdentity.Identifier(id: "A555", issuer: "ASPH")]), study: relayed) else {
            Issue.record("not rewritten")
            return
        }
        #expect(rewrite.senderIssuer == "UHSX" && rewrite.accessionNumberIssuer == "RSCH")
    }

    @Test func aPatientNeverSeenHereIsHeldUnlessTheTrustSaysNHSNumberOrAPersonReleasesIt() {
        guard case .hold(let hold) = Self.decide(.identifiers([])) else {
            Issue.record("not held")
            return
        }
        #expect(hold.kind == .unknownPatient && hold.waitsForRegistry)
        let byNumber = IdentityDecision.Settings(trust: "ASPH", unknownPatient: .nhsNumber(issuer: "2.16.840.1.113883.2.1.4.1"))
        #expect(Self.decide(.identifiers([]), settings: byNumber) == .rewrite(IdentityRewrite(
            local: PatientIdentifier(id: "9990000018", issuer: "2.16.840.1.113883.2.1.4.1"), senderIssuer: "RSCH", additionalIdentifiers: [],
            accessionNumberIssuer: "RSCH")))
        guard case .rewrite(let released) = Self.decide(.identifiers([]), force: true) else {
            Issue.record("a person's release not placed")
            return
        }
        #expect(released.local == PatientIdentifier(id: "9990000018", issuer: "NHS"))
    }

    @Test func conflictsTwoLocalNumbersAndDisagreeingIdentifiersAreHeldForAPersonEvenWhenReleased() {
        for force in [false, true] {
            let conflict = Self.decide(.conflict("local-id"), force: force)
            let two = Self.decide(.identifiers([NHSIdentity.Identifier(id: "A555", issuer: "ASPH"), NHSIdentity.Identifier(id: "A556", issuer: "ASPH")]), force: force)
            // It names this trust as its issuer, with a number the registry does not know here.
            let claims = IdentityDecision.Study(patientID: "A999", issuer: "ASPH", nhs: .valid(Self.nhs))
            let disagrees = Self.decide(.identifiers([NHSIdentity.Identifier(id: "A555", issuer: "ASPH")]), study: claims, force: force)
            for outcome in [conflict, two, disagrees] {
                guard case .hold(let hold) = outcome else {
                    Issue.record("not held: \(outcome)")
                    continue
                }
                #expect(hold.kind == .conflict && !hold.waitsForRegistry, "\(hold)")
            }
        }
    }

    @Test func aStudyAlreadyInThisTrustsIdentityIsPlacedAsSent() {
        let own = IdentityDecision.Study(patientID: "A555", issuer: "ASPH", nhs: .valid(Self.nhs))
        guard case .asSent = Self.decide(.identifiers([NHSIdentity.Identifier(id: "A555", issuer: "ASPH")]), study: own) else {
            Issue.record("rewritten again")
            return
        }
    }

    @Test func noAnswerFromTheCoordinatorIsAHoldThatWaitsNeverAGuess() {
        guard case .hold(let hold) = Self.decide(.unavailable("connection refused")) else {
            Issue.record("not held")
            return
        }
        #expect(hold.kind == .unavailable && hold.waitsForRegistry && hold.reason.contains("connection refused"))
    }

    @Test func badInputIsHeldWithItsReason() {
        let cases: [(IdentityDecision.Study, String)] = [
            (IdentityDecision.Study(patientID: nil, issuer: "RSCH", nhs: .valid(Self.nhs)), "no Patient ID"),
            (IdentityDecision.Study(patientID: "  ", issuer: "RSCH", nhs: .valid(Self.nhs)), "no Patient ID"),
            (IdentityDecision.Study(patientID: "R123", issuer: "RSCH", nhs: .invalid("9990000019")), "Modulus 11"),
            (IdentityDecision.Study(patientID: "R123", issuer: "RSCH", nhs: .absent), "no NHS number"),
        ]
        for (study, words) in cases {
            guard case .failure(let failure) = IdentityDecision.nhsNumber(of: study) else {
                Issue.record("\(study) not held")
                continue
            }
            #expect(failure.hold.kind == .badInput && failure.hold.reason.contains(words), "\(failure.hold.reason)")
        }
        #expect(IdentityDecision.nhsNumber(of: Self.fromRSCH) == .success(Self.nhs))
    }

    @Test func theConfigurationWordsAndTheirErrors() throws {
        let base = ConfigurationParserTests.example
        let plain = try #require(ConfigurationParser.parse(base, file: "agent.conf").configuration)
        #expect(plain.identity == .reconcile && plain.unknownPatient == .hold)
        let set = try #require(ConfigurationParser.parse(base + "\nidentity keep\nunknown-patient nhs-number 2.16.840.1.113883.2.1.4.1\n", file: "agent.conf").configuration)
        #expect(set.identity == .keep && set.unknownPatient == .nhsNumber(issuer: "2.16.840.1.113883.2.1.4.1"))
        #expect(try #require(ConfigurationParser.parse(base + "\nunknown-patient nhs-number\n", file: "agent.conf").configuration).unknownPatient == .nhsNumber(issuer: "NHS"))
        for (line, words) in [
            ("identity rewrite", "reconcile (studies from other trusts"), ("unknown-patient guess", "takes hold, or nhs-number"),
            ("unknown-patient hold NHS", "takes hold, or nhs-number"), ("unknown-patient", "takes hold, or nhs-number"),
        ] {
            let outcome = ConfigurationParser.parse(base + "\n" + line + "\n", file: "agent.conf")
            #expect(outcome.configuration == nil && outcome.errors.contains { $0.message.contains(words) }, "\(line): \(outcome.errors)")
        }
    }
}
