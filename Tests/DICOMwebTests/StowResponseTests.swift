import Foundation
import Testing

@testable import DICOMweb

@Suite("STOW-RS responses")
struct StowResponseTests {
    static let mixed = StowResponse(
        retrieveURL: "https://uhsx.consort/dicomweb/studies/1.2.3",
        stored: [StowResponse.Stored(sopClassUID: "1.2.840.10008.5.1.4.1.1.2", sopInstanceUID: "1.2.3.1", retrieveURL: "https://uhsx/x/1")],
        failed: [StowResponse.Failed(sopClassUID: "1.2.840.10008.5.1.4.1.1.2", sopInstanceUID: "1.2.3.2", reason: 0xA700)])

    @Test func responsesRoundTripThroughDICOMJSON() throws {
        let json = Self.mixed.json()
        let text = String(decoding: json, as: UTF8.self)
        #expect(text.contains("\"00081199\""))
        // Written as PS3.18 Annex F shows it: "vr" first, tags in ascending order.
        #expect(text.contains("\"00081197\":{\"vr\":\"US\",\"Value\":[42752]}"))
        #expect(text.hasPrefix("{\"00081190\":"))
        #expect(text.range(of: "\"00081198\"")!.lowerBound < text.range(of: "\"00081199\"")!.lowerBound)
        #expect(try StowResponse.parse(json) == Self.mixed)
        #expect(Self.mixed.httpStatus == 202)
        #expect(StowResponse(stored: Self.mixed.stored).httpStatus == 200)
        #expect(StowResponse(failed: Self.mixed.failed).httpStatus == 409)
    }

    @Test func anInstanceAlreadyHeldIsMarkedInOurPrivateBlockAndOnlyOurs() throws {
        let answer = StowResponse(stored: [
            StowResponse.Stored(sopClassUID: "1.2.840.10008.5.1.4.1.1.2", sopInstanceUID: "1.2.3.1", alreadyHeld: true),
            StowResponse.Stored(sopClassUID: "1.2.840.10008.5.1.4.1.1.2", sopInstanceUID: "1.2.3.2"),
        ])
        let text = String(decoding: answer.json(), as: UTF8.self)
        #expect(text.contains("\"00090010\":{\"vr\":\"LO\",\"Value\":[\"CONSORT\"]},\"00091001\":{\"vr\":\"CS\",\"Value\":[\"ALREADY HELD\"]}"))
        #expect(try StowResponse.parse(answer.json()) == answer)
        // Still a plain success: the standard's status and sequences are unchanged.
        #expect(answer.httpStatus == 200)
        // Someone else's private block at the same place says nothing about duplicates.
        let foreign = """
            {"00081199":{"vr":"SQ","Value":[{"00081150":{"vr":"UI","Value":["1.2.840.10008.5.1.4.1.1.2"]},
             "00081155":{"vr":"UI","Value":["1.2.3.1"]},"00090010":{"vr":"LO","Value":["ACME"]},
             "00091001":{"vr":"CS","Value":["ALREADY HELD"]}}]}}
            """
        #expect(try StowResponse.parse(Array(foreign.utf8)).stored.map(\.alreadyHeld) == [false])
    }

    @Test func aRefusalCarriesItsReasonInWordsInOurPrivateBlockAndOnlyOurs() throws {
        let why = "CONFLICT: 1.2.3.1 is already held with different content (held sha256 aa, received sha256 bb)"
        let answer = StowResponse(failed: [StowResponse.Failed(sopClassUID: "1.2.840.10008.5.1.4.1.1.2", sopInstanceUID: "1.2.3.1", reason: 0xC000, reasonText: why)])
        let text = String(decoding: answer.json(), as: UTF8.self)
        #expect(text.contains("\"00090010\":{\"vr\":\"LO\",\"Value\":[\"CONSORT\"]},\"00091002\":{\"vr\":\"LT\",\"Value\":[\"\(why)\"]}"), "\(text)")
        #expect(try StowResponse.parse(answer.json()) == answer)
        #expect(answer.httpStatus == 409)
        let foreign = """
            {"00081198":{"vr":"SQ","Value":[{"00081150":{"vr":"UI","Value":["1.2.840.10008.5.1.4.1.1.2"]},
             "00081155":{"vr":"UI","Value":["1.2.3.1"]},"00081197":{"vr":"US","Value":[49152]},
             "00090010":{"vr":"LO","Value":["ACME"]},"00091002":{"vr":"LT","Value":["something else"]}}]}}
            """
        #expect(try StowResponse.parse(Array(foreign.utf8)).failed.map(\.reasonText) == [nil])
    }

    @Test func orthancsAnswerParses() throws {
        // As Orthanc 1.10's DICOMweb plugin answers (a 200 with both sequences possible).
        let body = """
            {"00081190":{"Value":["http://localhost:8042/dicom-web/studies/1.2.3"],"vr":"UR"},
             "00081198":{"Value":[],"vr":"SQ"},
             "00081199":{"Value":[{"00081150":{"Value":["1.2.840.10008.5.1.4.1.1.2"],"vr":"UI"},
             "00081155":{"Value":["1.2.3.1"],"vr":"UI"},
             "00081190":{"Value":["http://localhost:8042/dicom-web/studies/1.2.3/series/4/instances/1.2.3.1"],"vr":"UR"}}],"vr":"SQ"}}
            """
        let response = try StowResponse.parse(Array(body.utf8))
        #expect(response.stored.map(\.sopInstanceUID) == ["1.2.3.1"])
        #expect(response.failed.isEmpty)
        #expect(try StowResponse.parse(Array("  \n".utf8)) == StowResponse())
        #expect(throws: StowResponseError.self) { try StowResponse.parse(Array("<html>502 Bad Gateway</html>".utf8)) }
    }
}
