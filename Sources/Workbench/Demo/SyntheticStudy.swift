import CommandSupport
import DICOM
import Foundation
import Routing

/// Makes synthetic, realistic-looking studies with our own writer: for the demo, benchmarks and
/// tests. Nothing here identifies anyone: NHS numbers are from the 999 range reserved for testing,
/// UIDs come from a UUID-derived root.
struct SyntheticStudy {
    var patientName = "DEMO^ALEX"
    /// The NHS number written (OtherPatientIDsSequence, issuer NHS); a string so that a test can
    /// write an invalid one on purpose.
    var nhsNumber = NHSNumber.testNumber(seed: 1).digits
    var sex = "O"
    var birthDate = "19700101"
    var hospitalNumber = "RSCH0000001"
    var trust = "RSCH"
    var modality = "CT"
    var description = "CT HEAD WITHOUT CONTRAST"
    var bodyPart = "HEAD"
    var studyDate = "20261128"
    /// InstitutionalDepartmentName and RequestedProcedureDescription, when set (rules look at them).
    var department: String?
    var requestedProcedure: String?
    var institution = "Royal Surrey County Hospital"
    var instances = 20
    var rows = 64
    var columns = 64
    /// Distinguishes the UIDs of different studies made in one run.
    var seed: UInt64 = 1

    /// 2.25 + decimal of a 128-bit number (ITU-T X.667): globally unique without a registered root.
    static func uid(_ seed: UInt64, _ kind: UInt64, _ index: UInt64) -> String {
        var x = seed &* 0x9E37_79B9_7F4A_7C15 ^ kind &* 0xC2B2_AE3D_27D4_EB4F ^ index
        x ^= x >> 31
        x = x &* 0xBF58_476D_1CE4_E5B9
        return "2.25.\(1 + (seed % 9))\(kind)\(x % 1_000_000_000_000)\(index)"
    }

    /// Sets rows and columns from "ROWSxCOLUMNS" (an option's value, e.g. 512x512).
    mutating func setSize(_ text: String, command: String) throws {
        let parts = text.lowercased().split(separator: "x").compactMap { Int($0) }
        guard parts.count == 2, (1...4096).contains(parts[0]), (1...4096).contains(parts[1]) else {
            throw UsageError(message: "--size takes ROWSxCOLUMNS, each 1 to 4096, e.g. 512x512", command: command)
        }
        rows = parts[0]
        columns = parts[1]
    }

    /// Writes the instances into `folder` as IM00001.dcm, IM00002.dcm, ... (each written to a
    /// temporary name, fsynced, renamed); returns their paths in order.
    func write(into folder: String) throws -> [String] {
        try FileManager.default.createDirectory(atPath: folder, withIntermediateDirectories: true)
        return try (0..<instances).map { index in
            let path = folder + "/IM\(String(format: "%05d", index + 1)).dcm"
            try DICOMWriter.write(file(instance: index), toPath: path)
            return path
        }
    }

    var studyInstanceUID: String { Self.uid(seed, 1, 0) }

    /// The storage SOP class of the modality (CT, MR, DX, CR; CT for anything else).
    var sopClassUID: String {
        switch modality.uppercased() {
        case "MR": return "1.2.840.10008.5.1.4.1.1.4"
        case "DX": return "1.2.840.10008.5.1.4.1.1.1.1"
        case "CR": return "1.2.840.10008.5.1.4.1.1.1"
        default: return "1.2.840.10008.5.1.4.1.1.2"
        }
    }
    var seriesInstanceUID: String { Self.uid(seed, 2, 0) }

    func file(instance: Int) -> DICOMFile {
        var ds = DataSet()
        func text(_ keyword: String, _ vr: VR, _ value: String) {
            ds.set(DICOMWriter.textElement(DataDictionary.tag(forKeyword: keyword)!, vr, value))
        }
        func us(_ keyword: String, _ value: UInt16) {
            ds.set(DataElement(tag: DataDictionary.tag(forKeyword: keyword)!, vr: .US, length: 2, value: .bytes([UInt8(value & 0xFF), UInt8(value >> 8)])))
        }
        let sop = Self.uid(seed, 3, UInt64(instance))
        text("SpecificCharacterSet", .CS, "ISO_IR 192")
        text("ImageType", .CS, "ORIGINAL\\PRIMARY\\AXIAL")
        text("SOPClassUID", .UI, sopClassUID)
        text("SOPInstanceUID", .UI, sop)
        text("StudyDate", .DA, studyDate)
        text("StudyTime", .TM, "101500")
        text("AccessionNumber", .SH, "\(trust)\(seed)")
        text("Modality", .CS, modality)
        text("InstitutionName", .LO, institution)
        if let department { text("InstitutionalDepartmentName", .LO, department) }
        if let requestedProcedure {
            var item = DataSet()
            item.set(DICOMWriter.textElement(DataDictionary.tag(forKeyword: "RequestedProcedureDescription")!, .LO, requestedProcedure))
            ds.set(DataElement(tag: DataDictionary.tag(forKeyword: "RequestAttributesSequence")!, vr: .SQ, length: nil, value: .sequence([item])))
            text("RequestedProcedureDescription", .LO, requestedProcedure)
        }
        text("StudyDescription", .LO, description)
        text("PatientName", .PN, patientName)
        text("PatientID", .LO, hospitalNumber)
        text("IssuerOfPatientID", .LO, trust)
        text("PatientBirthDate", .DA, birthDate)
        text("PatientSex", .CS, sex)
        var nhs = DataSet()
        nhs.set(DICOMWriter.textElement(.patientID, .LO, nhsNumber))
        nhs.set(DICOMWriter.textElement(DataDictionary.tag(forKeyword: "IssuerOfPatientID")!, .LO, "NHS"))
        ds.set(DataElement(tag: DataDictionary.tag(forKeyword: "OtherPatientIDsSequence")!, vr: .SQ, length: nil, value: .sequence([nhs])))
        text("BodyPartExamined", .CS, bodyPart)
        text("SliceThickness", .DS, "1.25")
        text("StudyInstanceUID", .UI, studyInstanceUID)
        text("SeriesInstanceUID", .UI, seriesInstanceUID)
        text("StudyID", .SH, "1")
        text("SeriesNumber", .IS, "1")
        text("InstanceNumber", .IS, "\(instance + 1)")
        text("ImagePositionPatient", .DS, "-125\\-125\\\(Double(instance) * 1.25)")
        us("SamplesPerPixel", 1)
        text("PhotometricInterpretation", .CS, "MONOCHROME2")
        us("Rows", UInt16(rows))
        us("Columns", UInt16(columns))
        us("BitsAllocated", 16)
        us("BitsStored", 12)
        us("HighBit", 11)
        us("PixelRepresentation", 0)
        // A soft phantom: a disc whose brightness changes along the series.
        var pixels = [UInt8]()
        pixels.reserveCapacity(rows * columns * 2)
        for r in 0..<rows {
            for c in 0..<columns {
                let dx = Double(c - columns / 2), dy = Double(r - rows / 2)
                let inside = dx * dx + dy * dy < Double(rows * rows) / 6
                let value = UInt16(inside ? 1000 + (instance * 17 + r + c) % 200 : (r * 7 + c * 3) % 40)
                pixels.append(UInt8(value & 0xFF))
                pixels.append(UInt8(value >> 8))
            }
        }
        ds.set(DataElement(tag: .pixelData, vr: .OW, length: UInt32(pixels.count), value: .bytes(pixels[...])))
        var meta = DataSet()
        meta.set(DICOMWriter.textElement(.mediaStorageSOPClassUID, .UI, sopClassUID))
        meta.set(DICOMWriter.textElement(.mediaStorageSOPInstanceUID, .UI, sop))
        return DICOMFile(meta: meta, dataSet: ds, transferSyntaxUID: TransferSyntax.explicitVRLittleEndian, encoding: .explicitVRLittleEndian)
    }
}

