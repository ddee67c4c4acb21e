/// Byte order of binary values and element headers.
public enum ByteOrder: Sendable, Equatable {
    case littleEndian, bigEndian
}

/// How a data set is actually encoded on the wire: explicit or implicit VR, and byte order.
/// Deflate is a property of the stream, recorded separately in `DICOMFile.isDeflated`.
public struct Encoding: Sendable, Equatable, CustomStringConvertible {
    public var isExplicitVR: Bool
    public var byteOrder: ByteOrder

    public init(explicitVR: Bool, byteOrder: ByteOrder) {
        isExplicitVR = explicitVR
        self.byteOrder = byteOrder
    }

    public static let implicitVRLittleEndian = Encoding(explicitVR: false, byteOrder: .littleEndian)
    public static let explicitVRLittleEndian = Encoding(explicitVR: true, byteOrder: .littleEndian)
    public static let explicitVRBigEndian = Encoding(explicitVR: true, byteOrder: .bigEndian)
    public static let implicitVRBigEndian = Encoding(explicitVR: false, byteOrder: .bigEndian)

    public var description: String {
        (isExplicitVR ? "explicit-vr-" : "implicit-vr-") + (byteOrder == .littleEndian ? "le" : "be")
    }
}

/// Transfer syntax UIDs the reader and writer treat specially (PS3.5 §10 and Annex A).
/// Every other UID is taken to be an encapsulated (compressed) syntax, whose data set is
/// explicit VR little endian (PS3.5 §A.4).
public enum TransferSyntax {
    public static let implicitVRLittleEndian = "1.2.840.10008.1.2"
    public static let explicitVRLittleEndian = "1.2.840.10008.1.2.1"
    public static let deflatedExplicitVRLittleEndian = "1.2.840.10008.1.2.1.99"
    public static let explicitVRBigEndian = "1.2.840.10008.1.2.2"
    public static let jpegBaseline = "1.2.840.10008.1.2.4.50"
    public static let jpegLosslessSV1 = "1.2.840.10008.1.2.4.70"
    public static let jpeg2000Lossless = "1.2.840.10008.1.2.4.90"
    public static let rleLossless = "1.2.840.10008.1.2.5"

    /// The encoding a transfer syntax UID names, and whether the data set is deflated.
    public static func encoding(of uid: String) -> (encoding: Encoding, deflated: Bool) {
        switch uid {
        case implicitVRLittleEndian: return (.implicitVRLittleEndian, false)
        case explicitVRBigEndian: return (.explicitVRBigEndian, false)
        case deflatedExplicitVRLittleEndian: return (.explicitVRLittleEndian, true)
        // JPIP referenced deflate (1.2.840.10008.1.2.4.95) is also deflated (PS3.5 §A.7).
        case "1.2.840.10008.1.2.4.95": return (.explicitVRLittleEndian, true)
        default: return (.explicitVRLittleEndian, false)
        }
    }

    /// Whether Pixel Data is encapsulated in fragments under this syntax (PS3.5 §A.4): every
    /// syntax other than the three native ones and the deflated ones.
    public static func isEncapsulated(_ uid: String) -> Bool {
        switch uid {
        case implicitVRLittleEndian, explicitVRLittleEndian, explicitVRBigEndian,
            deflatedExplicitVRLittleEndian, "1.2.840.10008.1.2.4.95":
            return false
        default: return true
        }
    }
}
