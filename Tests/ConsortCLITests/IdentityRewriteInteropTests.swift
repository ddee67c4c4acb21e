import DICOM
import Foundation
import Testing

/// The identity rewrite (issue 25) as other readers see it: pydicom finds the identity asked for,
/// every other element and the pixel data equal to the source's; DCMTK reads the file; dciodvfy
/// finds no error the source did not have. The source is a real CT header (pydicom's CT_small)
/// made a 40-frame 512×512 file of 20 MiB, in explicit and implicit VR.
@Suite("Identity rewrite in other readers", .timeLimit(.minutes(10)))
struct IdentityRewriteInteropTests {
    static let makeSource = """
        import sys
        import pydicom
        from pydicom.data import get_testdata_file
        from pydicom.uid import ExplicitVRLittleEndian, ImplicitVRLittleEndian
        ds = pydicom.dcmread(get_testdata_file("CT_small.dcm"))
        ds.AccessionNumber = "ACC42"
        ds.NumberOfFrames = 40
        ds.Rows = ds.Columns = 512
        ds.PixelData = bytes((i * 7) & 0xFF for i in range(256)) * (40 * 512 * 512 * 2 // 256)
        syntax = ExplicitVRLittleEndian if sys.argv[2] == "explicit" else ImplicitVRLittleEndian
        ds.file_meta.TransferSyntaxUID = syntax
        ds.save_as(sys.argv[1], enforce_file_format=True, implicit_vr=syntax == ImplicitVRLittleEndian, little_endian=True)
        """

    static let compare = """
        import sys
        import pydicom
        before, after = pydicom.dcmread(sys.argv[1]), pydicom.dcmread(sys.argv[2])
        problems = []
        def expect(what, got, wanted):
            if got != wanted: problems.append(f"{what}: {got!r}, expected {wanted!r}")
        expect("PatientID", after.PatientID, "A555")
        expect("IssuerOfPatientID", after.IssuerOfPatientID, "ASPH")
        # CT_small has two items already (Patient ID and Type of Patient ID): kept, ours after them.
        kept = len(before.get("OtherPatientIDsSequence", []))
        expect("existing Other Patient IDs", list(after.OtherPatientIDsSequence)[:kept], list(before.get("OtherPatientIDsSequence", [])))
        expect("added Other Patient IDs",
               [(i.PatientID, i.IssuerOfPatientID, i.TypeOfPatientID) for i in list(after.OtherPatientIDsSequence)[kept:]],
               [(before.PatientID, "RSCH", "TEXT"), ("9434765919", "NHS", "TEXT")])
        expect("Issuer of Accession Number", after.IssuerOfAccessionNumberSequence[0].LocalNamespaceEntityID, "RSCH")
        expect("transfer syntax", after.file_meta.TransferSyntaxUID, before.file_meta.TransferSyntaxUID)
        expect("pixel data identical", after.PixelData == before.PixelData, True)
        changed = {0x00100020, 0x00100021, 0x00101002, 0x00080051}
        for element in before:
            if element.tag in changed: continue
            if element.tag not in after: problems.append(f"{element.tag} lost"); continue
            expect(f"{element.tag}", after[element.tag].value, element.value)
        for element in after:
            if element.tag not in before and element.tag not in changed: problems.append(f"{element.tag} added")
        print("\\n".join(problems))
        sys.exit(1 if problems else 0)
        """

    @Test(arguments: ["explicit", "implicit"])
    func pydicomDcmdumpAndDciodvfyAgree(_ encoding: String) throws {
        let python = try Run.require("python3", package: "python3")
        let dcmdump = try Run.require("dcmdump", package: "dcmtk")
        let dciodvfy = try Run.require("dciodvfy", package: "dicom3tools")
        let folder = try ScratchFolder()
        let source = folder.path + "/source.dcm", target = folder.path + "/rewritten.dcm"
        let made = try Run.program(python, ["-c", Self.makeSource, source, encoding])
        #expect(made.status == 0, "\(made.stderr)")

        try IdentityRewriter.rewrite(
            source, to: target,
            IdentityRewrite(
                local: PatientIdentifier(id: "A555", issuer: "ASPH"), senderIssuer: "RSCH",
                additionalIdentifiers: [PatientIdentifier(id: "9434765919", issuer: "NHS")], accessionNumberIssuer: "RSCH"))

        let compared = try Run.program(python, ["-c", Self.compare, source, target])
        #expect(compared.status == 0, "\(compared.stdout)\(compared.stderr)")

        let dumped = try Run.program(dcmdump, ["+E", target])
        #expect(dumped.status == 0 && !dumped.stderr.contains("E: "), "\(dumped.stderr)")

        let new = try errors(dciodvfy, target).subtracting(try errors(dciodvfy, source))
        #expect(new.isEmpty, "\(new.sorted())")
    }

    private func errors(_ dciodvfy: String, _ path: String) throws -> Set<String> {
        let outcome = try Run.program(dciodvfy, [path])
        let text = outcome.stdout + outcome.stderr
        return Set(text.split(separator: "\n").filter { $0.contains("Error") }.map(String.init))
    }
}
