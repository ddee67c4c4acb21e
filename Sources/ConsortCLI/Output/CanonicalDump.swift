import DICOM
import Digest
import Foundation

/// The canonical JSON-lines form of a file's header (version 1), shared with the pydicom-based
/// reference dumper so the two readings can be compared element by element.
///
/// Record: {"file", "status": "ok", "part10", "transfer_syntax", "encoding", "meta", "dataset"}
/// or {"file", "status": "error", "reason"}. Elements: {"tag", "vr", "length", "value"} plus
/// "wire_vr" when the VR on the wire was UN. Values: SQ → list of items; empty → null; binary
/// VRs → {"length", "sha256"}; text split into values, trailing padding removed; IS/DS as numbers
/// where valid; one value → scalar, several → list. `Tests/ConsortCLITests/Conformance/README.md`
/// documents the form and the known, justified differences from pydicom.
public enum CanonicalDump {
    public static func record(file: DICOMFile, name: String) -> JSON {
        let encoding = file.isDeflated ? "deflated-explicit-vr-le" : file.encoding.description
        return .object([
            ("file", .string(name)),
            ("status", .string("ok")),
            ("part10", .bool(file.isPart10)),
            ("transfer_syntax", file.transferSyntaxUID.map { .string($0) } ?? .null),
            ("encoding", .string(encoding)),
            ("meta", file.isPart10 ? render(file.meta) : .array([])),
            ("dataset", render(file.dataSet)),
        ] + (file.warnings.isEmpty ? [] : [("warnings", .array(file.warnings.map { .string($0.description) }))]))
    }

    public static func errorRecord(name: String, error: any Error) -> JSON {
        .object([("file", .string(name)), ("status", .string("error")), ("reason", .string("\(error)"))])
    }

    static func render(_ dataSet: DataSet) -> JSON {
        .array(dataSet.elements.map { render($0, in: dataSet) })
    }

    static func render(_ element: DataElement, in dataSet: DataSet) -> JSON {
        var members: [(String, JSON)] = [
            ("tag", .string(element.tag.hexString)),
            ("vr", .string(element.vr.description)),
            ("length", .int(element.length.map { Int64($0) } ?? -1)),
        ]
        if let wire = element.wireVR, wire != element.vr { members.append(("wire_vr", .string(wire.description))) }
        members.append(("value", value(of: element, in: dataSet)))
        return .object(members)
    }

    static func value(of element: DataElement, in dataSet: DataSet) -> JSON {
        switch element.value {
        case .sequence(let items):
            return .array(items.map { render($0) })
        case .fragments(let fragments):
            // As pydicom holds it: the encapsulated items as they were on the wire, up to the
            // sequence delimiter.
            var bytes: [UInt8] = []
            for fragment in fragments {
                bytes += [0xFE, 0xFF, 0x00, 0xE0]
                let n = UInt32(fragment.count)
                bytes += [UInt8(n & 0xFF), UInt8(n >> 8 & 0xFF), UInt8(n >> 16 & 0xFF), UInt8(n >> 24)]
                bytes += fragment
            }
            return binary(bytes[...])
        case .notLoaded(_, let length):
            return .object([("length", .int(Int64(length))), ("sha256", .null)])
        case .bytes(let bytes):
            if bytes.isEmpty { return .null }
            let vr = element.vr
            if vr.isBulk { return binary(bytes) }
            let order = element.wireVR == .UN ? ByteOrder.littleEndian : dataSet.byteOrder
            switch vr {
            case .US, .SS, .UL, .SL, .SV:
                let size = vr.numberSize!
                if bytes.count % size != 0 { return binary(bytes) }
                return multiplicity(element.integers(byteOrder: order).map { .int($0) })
            case .UV:
                if bytes.count % 8 != 0 { return binary(bytes) }
                return multiplicity(element.unsignedIntegers(byteOrder: order).map {
                    .uint($0)
                })
            case .FL, .FD:
                if bytes.count % vr.numberSize! != 0 { return binary(bytes) }
                return multiplicity(element.floats(byteOrder: order).map { .double($0) })
            case .AT:
                return multiplicity(element.tags(byteOrder: order).map { .string($0.hexString) })
            case .IS:
                return multiplicity(element.strings(characterSet: dataSet.characterSet).map(integerString))
            case .DS:
                return multiplicity(element.strings(characterSet: dataSet.characterSet).map(decimalString))
            default:
                if vr.isText {
                    return multiplicity(element.strings(characterSet: dataSet.characterSet).map { .string($0) })
                }
                return binary(bytes)  // an unknown VR: its bytes
            }
        }
    }

    static func binary(_ bytes: ArraySlice<UInt8>) -> JSON {
        if bytes.isEmpty { return .null }
        return .object([("length", .int(Int64(bytes.count))), ("sha256", .string(SHA256Hasher.hex(bytes)))])
    }

    /// One value → the value; none → null; several → a list.
    static func multiplicity(_ values: [JSON]) -> JSON {
        switch values.count {
        case 0: return .null
        case 1: return values[0] == .string("") ? .null : values[0]
        default: return .array(values)
        }
    }

    /// IS: an integer where the text is one (a decimal with an integral value counts, as pydicom
    /// reads "1.0" or "1e2"); otherwise the text; empty → null.
    static func integerString(_ text: String) -> JSON {
        let s = text.trimmingCharacters(in: .whitespacesAndNewlines)
        if s.isEmpty { return .null }
        if let i = Int64(s.hasPrefix("+") ? String(s.dropFirst()) : s) { return .int(i) }
        if let d = parseDecimal(s), d.isFinite, d == d.rounded(), abs(d) < 9.2e18 { return .int(Int64(d)) }
        return .string(s)
    }

    /// DS: a number where the text is one; otherwise the text; empty → null.
    static func decimalString(_ text: String) -> JSON {
        let s = text.trimmingCharacters(in: .whitespacesAndNewlines)
        if s.isEmpty { return .null }
        if let d = parseDecimal(s) { return .double(d) }
        return .string(s)
    }

    /// Decimal text as Python's float() reads it (no hexadecimal forms).
    static func parseDecimal(_ s: String) -> Double? {
        if s.contains(where: { $0 == "x" || $0 == "X" || $0 == "p" || $0 == "P" }) { return nil }
        return Double(s)
    }
}
