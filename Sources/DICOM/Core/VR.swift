/// A value representation: the two ASCII letters of PS3.5 §6.2, packed big-endian in a `UInt16`
/// ("PN" is 0x504E), so it can be read straight off the wire and compared as a number.
public struct VR: RawRepresentable, Hashable, Sendable, CustomStringConvertible {
    public let rawValue: UInt16
    @inlinable public init(rawValue: UInt16) { self.rawValue = rawValue }

    /// From two bytes as they appear in an explicit VR element header.
    @inlinable public init(_ first: UInt8, _ second: UInt8) {
        rawValue = UInt16(first) << 8 | UInt16(second)
    }
    /// From a two-letter code such as "PN"; nil for anything else.
    public init?(_ code: some StringProtocol) {
        let bytes = Array(code.utf8)
        guard bytes.count == 2 else { return nil }
        self.init(bytes[0], bytes[1])
    }

    public var description: String {
        String(decoding: [UInt8(rawValue >> 8), UInt8(rawValue & 0xFF)], as: UTF8.self)
    }

    /// Whether the two bytes are upper-case letters, which is how pydicom (and we) tell an
    /// explicit VR element header from an implicit one (see `Encoding` detection).
    @inlinable public var looksLikeVR: Bool {
        let a = UInt8(rawValue >> 8), b = UInt8(rawValue & 0xFF)
        return a > 0x40 && a < 0x5B && b > 0x40 && b < 0x5B
    }

    public static let AE = VR(0x41, 0x45), AS = VR(0x41, 0x53), AT = VR(0x41, 0x54)
    public static let CS = VR(0x43, 0x53), DA = VR(0x44, 0x41), DS = VR(0x44, 0x53)
    public static let DT = VR(0x44, 0x54), FD = VR(0x46, 0x44), FL = VR(0x46, 0x4C)
    public static let IS = VR(0x49, 0x53), LO = VR(0x4C, 0x4F), LT = VR(0x4C, 0x54)
    public static let OB = VR(0x4F, 0x42), OD = VR(0x4F, 0x44), OF = VR(0x4F, 0x46)
    public static let OL = VR(0x4F, 0x4C), OV = VR(0x4F, 0x56), OW = VR(0x4F, 0x57)
    public static let PN = VR(0x50, 0x4E), SH = VR(0x53, 0x48), SL = VR(0x53, 0x4C)
    public static let SQ = VR(0x53, 0x51), SS = VR(0x53, 0x53), ST = VR(0x53, 0x54)
    public static let SV = VR(0x53, 0x56), TM = VR(0x54, 0x4D), UC = VR(0x55, 0x43)
    public static let UI = VR(0x55, 0x49), UL = VR(0x55, 0x4C), UN = VR(0x55, 0x4E)
    public static let UR = VR(0x55, 0x52), US = VR(0x55, 0x53), UT = VR(0x55, 0x54)
    public static let UV = VR(0x55, 0x56)

    /// Every VR defined by PS3.5 §6.2 (2024 edition).
    public static let all: [VR] = [
        AE, AS, AT, CS, DA, DS, DT, FD, FL, IS, LO, LT, OB, OD, OF, OL, OV, OW, PN, SH, SL, SQ, SS,
        ST, SV, TM, UC, UI, UL, UN, UR, US, UT, UV,
    ]

    public var isKnown: Bool { VR.all.contains(self) }

    /// Explicit VR headers of these VRs have a 2-byte reserved field and a 4-byte length (PS3.5
    /// §7.1.2 and Table 7.1-1: OB OD OF OL OV OW SQ SV UC UN UR UT UV); all others, including a
    /// VR we do not know, have a 2-byte length (Table 7.1-2), as pydicom and DCMTK read them.
    @inlinable public var hasLongLength: Bool {
        // OB OD OF OL OV OW SQ SV UC UN UR UT UV, as numbers: this runs for every element read,
        // and a switch over the static constants compared them one by one.
        switch rawValue {
        case 0x4F42, 0x4F44, 0x4F46, 0x4F4C, 0x4F56, 0x4F57, 0x5351, 0x5356, 0x5543, 0x554E, 0x5552, 0x5554, 0x5556: return true
        default: return false
        }
    }

    /// Character string VRs whose bytes are text (PS3.5 §6.2). Of these, only SH, LO, UC, ST, LT,
    /// UT and PN are affected by the Specific Character Set (PS3.5 §6.1.2.3).
    public var isText: Bool {
        switch self {
        case .AE, .AS, .CS, .DA, .DS, .DT, .IS, .LO, .LT, .PN, .SH, .ST, .TM, .UC, .UI, .UR, .UT:
            return true
        default: return false
        }
    }
    /// Text VRs that take several values separated by backslashes; LT, ST, UT and UR do not.
    public var isMultiValuedText: Bool { isText && self != .LT && self != .ST && self != .UT && self != .UR }
    /// Text VRs decoded with the Specific Character Set; the others are always the default repertoire.
    public var usesSpecificCharacterSet: Bool {
        switch self {
        case .SH, .LO, .UC, .ST, .LT, .UT, .PN: return true
        default: return false
        }
    }
    /// Binary VRs whose value is a byte or word stream rather than numbers to decode one by one.
    public var isBulk: Bool {
        switch self {
        case .OB, .OD, .OF, .OL, .OV, .OW, .UN: return true
        default: return false
        }
    }
    /// Size of one binary number for numeric VRs (used to swap byte order and to count values).
    public var numberSize: Int? {
        switch self {
        case .US, .SS, .OW: return 2
        case .UL, .SL, .FL, .OF, .OL, .AT: return 4
        case .FD, .OD, .UV, .SV, .OV: return 8
        default: return nil
        }
    }
    /// The padding byte for values of odd length (PS3.5 §6.2): space for text, NUL for UI and binary.
    public var paddingByte: UInt8 { isText && self != .UI ? 0x20 : 0x00 }
}
