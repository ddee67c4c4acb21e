/// A small JSON value and writer with the output rules of our machine formats: ASCII only
/// (non-ASCII escaped as \uXXXX, surrogate pairs beyond the BMP), keys in insertion order,
/// integers without a decimal point, doubles in shortest round-trip form, no NaN or infinity
/// (callers map those to strings first). Here rather than in the CLI because DICOM JSON answers
/// (STOW-RS) are written with it too: Foundation's JSONSerialization cost the receiver 2 ms an
/// answer.
public indirect enum JSON: Sendable, Equatable {
    case null
    case bool(Bool)
    case int(Int64)
    case uint(UInt64)
    case double(Double)
    case string(String)
    case array([JSON])
    case object([(String, JSON)])

    public static func == (a: JSON, b: JSON) -> Bool { a.serialized() == b.serialized() }

    public func serialized() -> String {
        var out = [UInt8]()
        out.reserveCapacity(256)
        write(to: &out)
        return String(decoding: out, as: UTF8.self)
    }

    /// The UTF-8 (in fact ASCII) text.
    public func bytes() -> [UInt8] {
        var out = [UInt8]()
        out.reserveCapacity(256)
        write(to: &out)
        return out
    }

    func write(to out: inout [UInt8]) {
        switch self {
        case .null: out.append(contentsOf: Array("null".utf8))
        case .bool(let b): out.append(contentsOf: Array((b ? "true" : "false").utf8))
        case .int(let i): out.append(contentsOf: Array(String(i).utf8))
        case .uint(let u): out.append(contentsOf: Array(String(u).utf8))
        case .double(let d):
            if d.isFinite {
                if d == d.rounded(), abs(d) < 1e16 {
                    // Integral doubles print as "3.0" (Python's repr), which JSON readers take as a float.
                    out.append(contentsOf: Array(String(Int64(d)).utf8))
                    out.append(contentsOf: Array(".0".utf8))
                } else {
                    out.append(contentsOf: Array(d.description.utf8))
                }
            } else {
                JSON.string(d.isNaN ? "NaN" : d > 0 ? "Infinity" : "-Infinity").write(to: &out)
            }
        case .string(let s): JSON.writeString(s, to: &out)
        case .array(let items):
            out.append(UInt8(ascii: "["))
            for (i, item) in items.enumerated() {
                if i > 0 { out.append(UInt8(ascii: ",")) }
                item.write(to: &out)
            }
            out.append(UInt8(ascii: "]"))
        case .object(let members):
            out.append(UInt8(ascii: "{"))
            for (i, (key, value)) in members.enumerated() {
                if i > 0 { out.append(UInt8(ascii: ",")) }
                JSON.writeString(key, to: &out)
                out.append(UInt8(ascii: ":"))
                value.write(to: &out)
            }
            out.append(UInt8(ascii: "}"))
        }
    }

    static func writeString(_ s: String, to out: inout [UInt8]) {
        let hex = Array("0123456789abcdef".utf8)
        func escape(_ unit: UInt16) {
            out.append(contentsOf: [UInt8(ascii: "\\"), UInt8(ascii: "u")])
            for shift in [12, 8, 4, 0] { out.append(hex[Int(unit >> UInt16(shift)) & 0xF]) }
        }
        out.append(UInt8(ascii: "\""))
        for scalar in s.unicodeScalars {
            switch scalar {
            case "\"": out.append(contentsOf: [UInt8(ascii: "\\"), UInt8(ascii: "\"")])
            case "\\": out.append(contentsOf: [UInt8(ascii: "\\"), UInt8(ascii: "\\")])
            case "\n": out.append(contentsOf: [UInt8(ascii: "\\"), UInt8(ascii: "n")])
            case "\r": out.append(contentsOf: [UInt8(ascii: "\\"), UInt8(ascii: "r")])
            case "\t": out.append(contentsOf: [UInt8(ascii: "\\"), UInt8(ascii: "t")])
            default:
                if scalar.value < 0x20 || (scalar.value >= 0x7F && scalar.value < 0x10000) {
                    escape(UInt16(scalar.value))
                } else if scalar.value >= 0x10000 {
                    let v = scalar.value - 0x10000
                    escape(UInt16(0xD800 + (v >> 10)))
                    escape(UInt16(0xDC00 + (v & 0x3FF)))
                } else {
                    out.append(UInt8(scalar.value))
                }
            }
        }
        out.append(UInt8(ascii: "\""))
    }
}
