import DICOM
import Foundation
import Routing

/// The consortium's own declarations, so that test rules are checked against real agreements.
let consortium = try! String(contentsOfFile: repositoryRoot + "/routing-rules/consortium.rules", encoding: .utf8)

let repositoryRoot: String = {
    var url = URL(fileURLWithPath: #filePath)
    for _ in 0..<3 { url.deleteLastPathComponent() }
    return url.path
}()

/// Loads the consortium declarations plus `rules` (as file "test.rules").
func load(_ rules: String) -> RuleSetLoader.Outcome {
    RuleSetLoader.load(sources: [(key: "consortium.rules", value: consortium), (key: "test.rules", value: rules)])
}

func engine(_ rules: String) throws -> RuleEngine {
    let outcome = load(rules)
    guard let set = outcome.ruleSet else { throw RuleSetError(outcome: outcome) }
    return RuleEngine(set)
}

/// A header from keyword/value pairs (text VRs from the dictionary).
func header(_ values: [String: String], characterSet: String? = nil) -> DataSet {
    var ds = DataSet()
    if let characterSet { ds.set(DICOMWriter.textElement(.specificCharacterSet, .CS, characterSet)) }
    for (keyword, value) in values {
        let tag = Tag(keyword: keyword)!
        let vr = DataDictionary.entry(for: tag)!.vr
        if vr == .US {
            let n = UInt16(value)!
            ds.set(DataElement(tag: tag, vr: .US, length: 2, value: .bytes([UInt8(n & 0xFF), UInt8(n >> 8)])))
        } else {
            ds.set(DICOMWriter.textElement(tag, vr, value))
        }
    }
    if let charset = ds[.specificCharacterSet]?.bytes { ds.characterSet = SpecificCharacterSet(value: charset) }
    return ds
}

/// 2026-11-29 12:00 UTC, the tests' "now".
let testNow: Int64 = 1_795_953_600

func event(_ kind: RoutingEvent.Kind, _ values: [String: String], site: String = "ESHT", origin: Origin = .local) -> RoutingEvent {
    RoutingEvent(kind: kind, header: header(values), origin: origin, site: site, now: testNow)
}

/// An instance arriving.
func event(_ values: [String: String], site: String = "ESHT", origin: Origin = .local) -> RoutingEvent {
    event(.instanceArrived, values, site: site, origin: origin)
}
