/// One data element as read: its tag, VR, the value length on the wire, and its value.
///
/// Values are kept as the raw bytes of the (inflated) stream, in the byte order of the data set
/// that holds them, and decoded only when asked (see `DataSet+Values.swift`): reading a header
/// costs no string or number conversions for elements nobody looks at.
public struct DataElement: Sendable {
    public var tag: Tag
    /// The VR the value is decoded with. In explicit VR data sets that is the VR on the wire, except
    /// that a UN whose tag the dictionary knows takes the dictionary's VR (as pydicom and DCMTK do);
    /// in implicit VR data sets it is the dictionary's, ambiguities resolved by PS3.5 rules.
    public var vr: VR
    /// The VR found on the wire, when it differs from `vr` (a UN the dictionary resolved).
    public var wireVR: VR?
    /// The value length field; nil for undefined length (0xFFFFFFFF).
    public var length: UInt32?
    /// How the value is held. Most values of a header are short (89% of a CT header's elements
    /// are 24 bytes or less): those the reader keeps inline, copied out of the read buffer, so
    /// that reading and dropping a header costs no atomic retain and release per element (each
    /// slice of the shared buffer cost both, a third of parsing). `value` hands out the public
    /// form either way.
    var storage: Storage

    /// The value. An inline value comes out as a slice of a new small array.
    public var value: Value {
        get {
            switch storage {
            case .value(let value): return value
            case .inline(let inline): return .bytes(inline.slice)
            }
        }
        set { storage = .value(newValue) }
    }

    enum Storage: Sendable {
        case inline(InlineBytes)
        case value(Value)
    }

    public enum Value: Sendable {
        /// The value bytes exactly as in the stream (byte order of the data set, padding included).
        case bytes(ArraySlice<UInt8>)
        /// A sequence's items, each a data set.
        case sequence([DataSet])
        /// Encapsulated pixel data (PS3.5 §A.4): the items in order; the first is the Basic Offset Table.
        case fragments([ArraySlice<UInt8>])
        /// A bulk value that was skipped, not read: where it lies in the stream and how long it is.
        case notLoaded(offset: Int, length: Int)
    }

    public init(tag: Tag, vr: VR, length: UInt32?, value: Value, wireVR: VR? = nil) {
        self.tag = tag
        self.vr = vr
        self.length = length
        storage = .value(value)
        self.wireVR = wireVR
    }

    /// The reader's: a short value copied inline.
    init(tag: Tag, vr: VR, length: UInt32?, inline: InlineBytes, wireVR: VR?) {
        self.tag = tag
        self.vr = vr
        self.length = length
        storage = .inline(inline)
        self.wireVR = wireVR
    }

    /// The raw value bytes, for `.bytes` values.
    public var bytes: ArraySlice<UInt8>? {
        if case .bytes(let b) = value { return b }
        return nil
    }

    /// The items, for sequences.
    public var items: [DataSet]? {
        if case .value(.sequence(let items)) = storage { return items }
        return nil
    }
    public var isUndefinedLength: Bool { length == nil }
}

/// An ordered collection of data elements: a whole data set, the File Meta Information, or one
/// item of a sequence.
///
/// Elements are kept in ascending tag order (the reader sorts a data set found out of order and
/// warns). Lookup is a binary search.
public struct DataSet: Sendable {
    public var elements: [DataElement]
    /// Byte order of the raw values held by this data set's elements.
    public var byteOrder: ByteOrder
    /// The Specific Character Set in force here: this data set's own (0008,0005), or its parent's.
    public var characterSet: SpecificCharacterSet

    public init(
        elements: [DataElement] = [], byteOrder: ByteOrder = .littleEndian,
        characterSet: SpecificCharacterSet = .defaultRepertoire
    ) {
        self.elements = elements
        self.byteOrder = byteOrder
        self.characterSet = characterSet
    }

    public var isEmpty: Bool { elements.isEmpty }
    public var count: Int { elements.count }

    /// Index of `tag`, by binary search over the sorted elements.
    public func index(of tag: Tag) -> Int? {
        var low = 0, high = elements.count
        let key = tag.rawValue
        while low < high {
            let mid = (low + high) >> 1
            let here = elements[mid].tag.rawValue
            if here == key { return mid }
            if here < key { low = mid + 1 } else { high = mid }
        }
        return nil
    }

    public subscript(tag: Tag) -> DataElement? {
        get { index(of: tag).map { elements[$0] } }
    }

    /// The element with this keyword ("PatientID"), if the dictionary knows the keyword and the
    /// data set holds it.
    public subscript(keyword: String) -> DataElement? {
        guard let tag = DataDictionary.tag(forKeyword: keyword) else { return nil }
        return self[tag]
    }

    public func contains(_ tag: Tag) -> Bool { index(of: tag) != nil }

    /// Inserts or replaces an element, keeping tag order.
    public mutating func set(_ element: DataElement) {
        var low = 0, high = elements.count
        while low < high {
            let mid = (low + high) >> 1
            if elements[mid].tag < element.tag { low = mid + 1 } else { high = mid }
        }
        if low < elements.count, elements[low].tag == element.tag {
            elements[low] = element
        } else {
            elements.insert(element, at: low)
        }
    }

    @discardableResult
    public mutating func remove(_ tag: Tag) -> DataElement? {
        guard let i = index(of: tag) else { return nil }
        return elements.remove(at: i)
    }
}

/// Up to 24 bytes of a value held in place, without a heap reference.
struct InlineBytes: Sendable {
    static let capacity = 24
    private var words: (UInt64, UInt64, UInt64) = (0, 0, 0)
    let count: UInt8

    /// Copies `count` (at most `capacity`) bytes from `source`.
    @inline(__always)
    init(copying source: UnsafeRawPointer, count: Int) {
        self.count = UInt8(count)
        withUnsafeMutableBytes(of: &words) { $0.baseAddress!.copyMemory(from: source, byteCount: count) }
    }

    var slice: ArraySlice<UInt8> {
        withUnsafeBytes(of: words) { Array($0.prefix(Int(count))) }[...]
    }
}
