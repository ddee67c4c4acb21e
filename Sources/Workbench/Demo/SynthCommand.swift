import CommandSupport
import DICOM
import Foundation
import Routing

/// `consort synth`: writes a synthetic study with the attributes routing rules look at, for
/// testing a rule set by dropping it into a watched folder (and for the tests and benchmarks).
public enum SynthCommand {
    public static let help = """
        Usage: consort synth --out DIR [--instances N] [--size ROWSxCOLUMNS] [--seed N]
                             [--modality M] [--description TEXT] [--body-part B] [--trust CODE]
                             [--nhs NUMBER] [--patient-id ID] [--date YYYYMMDD] [--sex M|F|O]
                             [--birth-date YYYYMMDD]

        Writes a synthetic study (test-range NHS number, no real patient) into DIR/<StudyUID>/,
        each instance written under a temporary name, fsynced and renamed into place (so an
        agent watching DIR takes each file whole). The same --seed gives the same UIDs; a
        different seed gives another study. Defaults: 20 instances of 64x64, seed 1, CT, "CT
        HEAD WITHOUT CONTRAST", HEAD, RSCH, NHS number 999 000 0018 (in OtherPatientIDsSequence,
        issuer NHS), hospital number TRUST0000001, 20261128. --nhs writes any value, so that
        tests can write an invalid one (it says so). Prints the Study Instance UID.
        """

    public static func run(_ args: [String]) throws -> ExitCode {
        let arguments = try Arguments(
            args, command: "synth", flags: [], options: ["--out", "--instances", "--size", "--seed", "--modality", "--description", "--body-part", "--trust", "--nhs", "--patient-id", "--date", "--sex", "--birth-date"])
        guard let out = arguments.option("--out") else { throw UsageError(message: "give --out DIR", command: "synth") }
        var study = SyntheticStudy()
        study.instances = try arguments.integer("--instances", default: 20, range: 1...100_000)
        study.seed = UInt64(try arguments.integer("--seed", default: 1, range: 1...Int(Int32.max)))
        if let size = arguments.option("--size") { try study.setSize(size, command: "synth") }
        if let modality = arguments.option("--modality") { study.modality = modality }
        if let description = arguments.option("--description") { study.description = description }
        if let part = arguments.option("--body-part") { study.bodyPart = part }
        if let trust = arguments.option("--trust") {
            study.trust = trust
            study.hospitalNumber = trust + "0000001"
        }
        if let nhs = arguments.option("--nhs") {
            let digits = nhs.filter { $0 != " " }
            if NHSNumber(digits) == nil { standardError.line("consort synth: \"\(nhs)\" is not a valid NHS number; written anyway, as asked") }
            study.nhsNumber = digits
        }
        if let id = arguments.option("--patient-id") { study.hospitalNumber = id }
        for (option, keyPath) in [("--date", \SyntheticStudy.studyDate), ("--birth-date", \SyntheticStudy.birthDate)] {
            guard let value = arguments.option(option) else { continue }
            guard DICOMDate(value) != nil else { throw UsageError(message: "\(option) takes a date YYYYMMDD, not \"\(value)\"", command: "synth") }
            study[keyPath: keyPath] = value
        }
        if let sex = arguments.option("--sex") { study.sex = sex }
        let paths = try study.write(into: out + "/" + study.studyInstanceUID)
        standardOutput.line(study.studyInstanceUID)
        standardError.line("consort synth: \(paths.count) instances in \(out)/\(study.studyInstanceUID)")
        return .success
    }
}
