/// Reads elements, sequences and items from a `ByteStream` into `DataSet`s: the structural layer
/// of the reader (PS3.5 §7). Values stay raw bytes; decoding is `DataSet+Values.swift`'s job.
///
/// Lengths are never trusted: each is compared with what remains of the file and of the
/// enclosing item before anything is read or allocated. Nesting depth is bounded. A malformed
/// file is a `DICOMError` carrying the offset and tag, never a trap.
///
/// Where the standard leaves room, the choices are pydicom's (so that both read a file alike):
/// an item whose first element has no VR letters in an explicit VR data set is read as implicit VR
/// (PS3.5 §6.2.2 allows this for sequences of undefined length; writers do it elsewhere too), a UN
/// of undefined length is a sequence, and a UN whose tag the dictionary knows takes its VR.
struct DataSetParser {
    let stream: ByteStream
    let options: ReadOptions
    private(set) var warnings: [ReadWarning] = []
    private var loadedBytes = 0
    /// Where the top-level pixel data starts, when the read stopped before it.
    private(set) var stoppedAtPixelData: Int?
    /// Each top-level element read from the stream, in stream order, with the offset of its
    /// header: kept only with `ReadOptions.recordsTopLevelOffsets` (the identity rewrite copies
    /// elements as raw byte ranges).
    private(set) var topLevelOffsets: [(tag: Tag, offset: Int)] = []

    enum Boundary {
        case endOfStream
        case end(Int)
        case itemDelimiter

        /// Whether a value ending at `offset` stays inside the boundary.
        @inline(__always) func allows(_ offset: Int) -> Bool {
            if case .end(let end) = self { return offset <= end }
            return true
        }
    }

    init(stream: ByteStream, options: ReadOptions) {
        self.stream = stream
        self.options = options
    }

    mutating func warn(_ message: String, offset: Int? = nil, tag: Tag? = nil) {
        if warnings.count < 100 { warnings.append(ReadWarning(message, offset: offset, tag: tag)) }
    }

    /// Whether the next element header has VR letters where explicit VR puts them; nil when fewer
    /// than six bytes remain or the next tag is a delimiter (nothing to tell from).
    func nextElementLooksExplicit(_ order: ByteOrder) throws(DICOMError) -> Bool? {
        guard try stream.request(8) else { return nil }
        let header = stream.header()
        if header.group(order) == 0xFFFE { return nil }
        return header.vr.looksLikeVR
    }

    // MARK: - Data sets

    mutating func readDataSet(
        encoding: Encoding, boundary: Boundary, depth: Int, characterSet inherited: SpecificCharacterSet,
        pixelRepresentation inheritedPixelRepresentation: Int?, topLevel: Bool, metaOnly: Bool = false
    ) throws(DICOMError) -> DataSet {
        let order = encoding.byteOrder
        var elements: [DataElement] = []
        elements.reserveCapacity(topLevel ? 256 : 8)
        var characterSet = inherited
        var ownPixelRepresentation: Int?
        var inOrder = true
        var lastTag: UInt32 = 0
        // Private creators seen so far in this data set, by tag: a private element's VR (implicit
        // VR, or a UN) comes from its creator's dictionary. A table, not a search of the elements,
        // so that a file of many private elements costs linear time.
        var creators: [UInt32: [UInt32: DataDictionary.PrivateVR]] = [:]
        var ambiguous: [(index: Int, kind: AmbiguousVR, implicit: Bool)] = []

        elementLoop: while true {
            if case .end(let end) = boundary {
                let here = stream.offset
                if here == end { break }
                if here > end {
                    throw DICOMError(
                        .lengthOutOfBounds, "An element runs \(here - end) bytes past the end of its item",
                        offset: here, tag: elements.last?.tag)
                }
            }
            guard try stream.request(8) else {
                let left = stream.remaining ?? stream.available
                if left == 0, case .endOfStream = boundary { break }
                if case .endOfStream = boundary, topLevel, options.verifyingStructure {
                    // A whole file's check: a few bytes that cannot be an element are a file cut
                    // inside an element header (after a complete Pixel Data they are read apart).
                    throw DICOMError(.truncated, "The file ends inside an element header (\(left) bytes left)", offset: stream.offset)
                }
                if case .endOfStream = boundary, metaOnly || topLevel {
                    // pydicom stops silently here; we say so.
                    warn("\(left) trailing bytes after the last element ignored", offset: stream.offset)
                    _ = try stream.skip(left)
                    break
                }
                throw DICOMError(
                    .truncated,
                    left == 0
                        ? "The file ends inside a sequence item" : "The file ends inside an element header",
                    offset: stream.offset)
            }
            let headerOffset = stream.offset
            let header = stream.header()
            let tag = header.tag(order)
            if metaOnly && tag.group != 0x0002 { break }
            if tag.group == 0xFFFE {
                stream.consume(8)
                if tag == .itemDelimitationItem {
                    if case .itemDelimiter = boundary { break elementLoop }
                    warn("Item delimiter outside an item ignored", offset: headerOffset, tag: tag)
                    continue
                }
                if tag == .sequenceDelimitationItem && topLevel {
                    warn("Sequence delimiter outside a sequence ignored", offset: headerOffset, tag: tag)
                    continue
                }
                throw DICOMError(.malformed, "Unexpected \(tag) among the elements of a data set", offset: headerOffset, tag: tag)
            }
            if topLevel && options.stopBeforePixelData && tag.isPixelData {
                stoppedAtPixelData = headerOffset
                break
            }

            // Element header (PS3.5 §7.1.1–7.1.3).
            var vr = VR.UN
            var wireVR: VR?
            var ambiguity: AmbiguousVR?
            let rawLength: UInt32
            var implicit = !encoding.isExplicitVR
            if encoding.isExplicitVR {
                let code = header.vr
                if code.looksLikeVR {
                    vr = code
                    if code.hasLongLength {
                        guard try stream.request(12) else {
                            throw DICOMError(.truncated, "The file ends inside an element header", offset: headerOffset, tag: tag)
                        }
                        rawLength = stream.uint32(at: 8, order)
                        stream.consume(12)
                    } else {
                        rawLength = UInt32(header.shortLength(order))
                        stream.consume(8)
                    }
                } else {
                    // No VR letters: this element was written implicit VR.
                    implicit = true
                    rawLength = header.length(order)
                    stream.consume(8)
                    warn("Element without a VR in an explicit VR data set, read as implicit VR", offset: headerOffset, tag: tag)
                }
            } else {
                rawLength = header.length(order)
                stream.consume(8)
            }
            let length: UInt32? = rawLength == 0xFFFF_FFFF ? nil : rawLength
            if implicit {
                (vr, ambiguity) = implicitVR(for: tag, creators: creators)
            } else if vr == .UN, let length {
                // A UN the dictionary knows takes the dictionary's VR (pydicom, DCMTK).
                if let (known, kind) = knownVR(forUN: tag, length: length, creators: creators) {
                    wireVR = .UN
                    vr = known
                    ambiguity = kind
                }
            }

            if let ambiguity { ambiguous.append((elements.count, ambiguity, implicit)) }
            if !elements.isEmpty && lastTag >= tag.rawValue { inOrder = false }
            lastTag = tag.rawValue
            if topLevel && options.recordsTopLevelOffsets { topLevelOffsets.append((tag, headerOffset)) }

            // The common case, kept short: a plain value already in the buffer and inside its item.
            if let length, vr != .SQ, Int(length) <= stream.available, options.bulkDataThreshold == nil,
                Int(length) <= options.maximumLoadedBytes - loadedBytes, boundary.allows(stream.offset + Int(length))
            {
                loadedBytes += Int(length)
                if length <= InlineBytes.capacity {
                    elements.append(DataElement(tag: tag, vr: vr, length: length, inline: stream.takeInline(Int(length)), wireVR: wireVR))
                } else {
                    elements.append(DataElement(tag: tag, vr: vr, length: length, value: .bytes(stream.take(Int(length))), wireVR: wireVR))
                }
                if tag == .specificCharacterSet || tag == .pixelRepresentation {
                    noteSpecial(elements[elements.count - 1], order: order, offset: headerOffset, &characterSet, &ownPixelRepresentation)
                } else if tag.isPrivateCreator, case .bytes(let bytes) = elements[elements.count - 1].value {
                    creators[tag.rawValue] = DataDictionary.privateVRIndex[Self.creatorName(bytes)] ?? [:]
                }
                continue
            }

            let value: DataElement.Value
            if let length {
                let count = Int(length)
                try checkBounds(count, boundary: boundary, tag: tag)
                if vr == .SQ {
                    // A sequence that came as UN is always implicit VR little endian (PS3.5 §6.2.2).
                    let itemEncoding =
                        wireVR == .UN ? Encoding.implicitVRLittleEndian
                        : implicit ? Encoding(explicitVR: false, byteOrder: order) : encoding
                    value = .sequence(
                        try readItems(
                            encoding: itemEncoding, end: stream.offset + count, depth: depth, tag: tag,
                            characterSet: characterSet,
                            pixelRepresentation: ownPixelRepresentation ?? inheritedPixelRepresentation))
                } else if let threshold = options.bulkDataThreshold, count > threshold,
                    vr.isBulk || tag.isPixelData
                {
                    let at = stream.offset
                    guard try stream.skip(count) else {
                        throw DICOMError(.truncated, "The file ends inside a value", offset: at, tag: tag)
                    }
                    value = .notLoaded(offset: at, length: count)
                } else {
                    value = .bytes(try load(count, tag: tag))
                }
            } else {
                // Undefined length (PS3.5 §7.1.3): a sequence, or encapsulated pixel data.
                if vr == .UN && !implicit {
                    wireVR = .UN
                    vr = .SQ
                } else if vr == .UN {
                    // Implicit VR, tag unknown: a sequence if an item follows (pydicom does the same).
                    if try stream.request(4), Tag(stream.uint16(at: 0, order), stream.uint16(at: 2, order)) == .item {
                        vr = .SQ
                    }
                }
                if vr == .SQ {
                    value = .sequence(
                        try readItems(
                            encoding: implicit || wireVR == .UN
                                ? Encoding(explicitVR: false, byteOrder: order) : encoding,
                            end: nil, depth: depth, tag: tag, characterSet: characterSet,
                            pixelRepresentation: ownPixelRepresentation ?? inheritedPixelRepresentation))
                } else if vr.isBulk || tag.isPixelData {
                    value = try readFragments(order: order, tag: tag, skip: options.bulkDataThreshold != nil)
                } else {
                    throw DICOMError(
                        .malformed, "Undefined length on a \(vr) element, which only sequences and encapsulated data may have",
                        offset: headerOffset, tag: tag)
                }
            }

            elements.append(DataElement(tag: tag, vr: vr, length: length, value: value, wireVR: wireVR))
            if tag == .specificCharacterSet || tag == .pixelRepresentation {
                noteSpecial(elements[elements.count - 1], order: order, offset: headerOffset, &characterSet, &ownPixelRepresentation)
            } else if tag.isPrivateCreator, case .bytes(let bytes) = value {
                creators[tag.rawValue] = DataDictionary.privateVRIndex[Self.creatorName(bytes)] ?? [:]
            } else if topLevel && options.verifyingStructure && tag.isPixelData {
                // The pixel data is whole (its length or its fragments ended where they should).
                // What follows is read as elements if it can be; bytes that are not (a writer's
                // padding, garbage after the data set) are a warning, as pydicom and DCMTK take them.
                let trailingStart = stream.offset
                do {
                    let rest = try readDataSet(
                        encoding: encoding, boundary: .endOfStream, depth: depth, characterSet: characterSet,
                        pixelRepresentation: ownPixelRepresentation ?? inheritedPixelRepresentation, topLevel: false)
                    if let first = rest.elements.first, first.tag.rawValue <= lastTag { inOrder = false }
                    elements += rest.elements
                } catch {
                    let left = (stream.remaining ?? 0) + (stream.offset - trailingStart)
                    warn("\(left) bytes after Pixel Data are not DICOM elements (\(error.message)); ignored", offset: trailingStart)
                    _ = try stream.skip(stream.remaining ?? 0)
                }
                break elementLoop
            }
        }

        // `consume`: the data set takes the only reference, so resolving VRs below changes the
        // array in place instead of copying it (and retaining every value) first.
        var dataSet = DataSet(elements: consume elements, byteOrder: order, characterSet: characterSet)
        if !ambiguous.isEmpty {
            resolve(
                ambiguous, in: &dataSet,
                pixelRepresentation: ownPixelRepresentation ?? inheritedPixelRepresentation)
        }
        if !inOrder { sortAndDeduplicate(&dataSet) }
        return dataSet
    }

    /// Takes note of the elements that change how the rest of the data set is read.
    private mutating func noteSpecial(
        _ element: DataElement, order: ByteOrder, offset: Int, _ characterSet: inout SpecificCharacterSet,
        _ pixelRepresentation: inout Int?
    ) {
        guard case .bytes(let bytes) = element.value else { return }
        if element.tag == .specificCharacterSet {
            characterSet = SpecificCharacterSet(value: bytes)
            for problem in characterSet.problems { warn(problem, offset: offset, tag: element.tag) }
        } else if element.tag == .pixelRepresentation, bytes.count >= 2 {
            pixelRepresentation = Int(readUInt16(bytes, order))
        }
    }

    private mutating func checkBounds(_ count: Int, boundary: Boundary, tag: Tag) throws(DICOMError) {
        if !stream.mayHave(count), let left = stream.remaining {
            // Where the value starts and where the file ends: what a sysadmin needs to see that
            // the file was cut short (an export that died, a disk that filled).
            throw DICOMError(
                .lengthOutOfBounds,
                "\(DataDictionary.entry(for: tag)?.name ?? "Element") \(tag) declares \(count) bytes at offset \(stream.offset); the \(stream.isTransformed ? "inflated data set" : "file") ends at \(stream.offset + left)",
                offset: stream.offset, tag: tag)
        }
        if case .end(let end) = boundary, stream.offset + count > end {
            throw DICOMError(
                .lengthOutOfBounds,
                "Value length \(count) runs past the end of its item (\(end - stream.offset) bytes left)",
                offset: stream.offset, tag: tag)
        }
    }

    private mutating func load(_ count: Int, tag: Tag) throws(DICOMError) -> ArraySlice<UInt8> {
        loadedBytes += count
        if loadedBytes > options.maximumLoadedBytes {
            throw DICOMError(
                .limitExceeded,
                "Header values exceed the limit of \(options.maximumLoadedBytes) bytes (ReadOptions.maximumLoadedBytes)",
                offset: stream.offset, tag: tag)
        }
        guard try stream.request(count) else {
            throw DICOMError(.truncated, "The file ends inside a value of \(count) bytes", offset: stream.offset, tag: tag)
        }
        return stream.take(count)
    }

    // MARK: - Sequences and items (PS3.5 §7.5)

    private mutating func readItems(
        encoding: Encoding, end: Int?, depth: Int, tag: Tag, characterSet: SpecificCharacterSet,
        pixelRepresentation: Int?
    ) throws(DICOMError) -> [DataSet] {
        if depth + 1 > options.maximumNestingDepth {
            throw DICOMError(
                .nestingTooDeep, "Sequences nested deeper than \(options.maximumNestingDepth) levels",
                offset: stream.offset, tag: tag)
        }
        let order = encoding.byteOrder
        var items: [DataSet] = []
        while true {
            if let end {
                let here = stream.offset
                if here == end { break }
                if here > end {
                    throw DICOMError(.lengthOutOfBounds, "An item runs \(here - end) bytes past the end of its sequence", offset: here, tag: tag)
                }
            }
            let itemOffset = stream.offset
            guard try stream.request(8) else {
                throw DICOMError(.truncated, "The file ends inside a sequence", offset: itemOffset, tag: tag)
            }
            let header = stream.header()
            let itemTag = header.tag(order)
            let rawLength = header.length(order)
            stream.consume(8)
            if itemTag == .sequenceDelimitationItem {
                if end != nil { warn("Sequence delimiter in a sequence of defined length", offset: itemOffset, tag: tag) }
                break
            }
            guard itemTag == .item else {
                throw DICOMError(.malformed, "Expected an item (FFFE,E000) in the sequence, found \(itemTag)", offset: itemOffset, tag: tag)
            }
            var itemEncoding = encoding
            if encoding.isExplicitVR, rawLength != 0, try nextElementLooksExplicit(order) == false {
                itemEncoding = Encoding(explicitVR: false, byteOrder: order)
            }
            let item: DataSet
            if rawLength == 0xFFFF_FFFF {
                item = try readDataSet(
                    encoding: itemEncoding, boundary: .itemDelimiter, depth: depth + 1, characterSet: characterSet,
                    pixelRepresentation: pixelRepresentation, topLevel: false)
            } else {
                let count = Int(rawLength)
                try checkBounds(count, boundary: end.map { .end($0) } ?? .endOfStream, tag: tag)
                item = try readDataSet(
                    encoding: itemEncoding, boundary: .end(stream.offset + count), depth: depth + 1,
                    characterSet: characterSet, pixelRepresentation: pixelRepresentation, topLevel: false)
            }
            items.append(item)
        }
        return items
    }

    /// Encapsulated data (PS3.5 §A.4): items of defined length up to a sequence delimiter.
    private mutating func readFragments(order: ByteOrder, tag: Tag, skip: Bool) throws(DICOMError) -> DataElement.Value {
        var fragments: [ArraySlice<UInt8>] = []
        let start = stream.offset
        while true {
            let itemOffset = stream.offset
            guard try stream.request(8) else {
                throw DICOMError(.truncated, "The file ends inside encapsulated data", offset: itemOffset, tag: tag)
            }
            let header = stream.header()
            let itemTag = header.tag(order)
            let rawLength = header.length(order)
            stream.consume(8)
            if itemTag == .sequenceDelimitationItem { break }
            guard itemTag == .item, rawLength != 0xFFFF_FFFF else {
                throw DICOMError(
                    .malformed, itemTag == .item ? "Fragment of undefined length in encapsulated data"
                        : "Expected a fragment item (FFFE,E000) in encapsulated data, found \(itemTag)",
                    offset: itemOffset, tag: tag)
            }
            let count = Int(rawLength)
            try checkBounds(count, boundary: .endOfStream, tag: tag)
            if skip {
                guard try stream.skip(count) else {
                    throw DICOMError(.truncated, "The file ends inside a fragment", offset: stream.offset, tag: tag)
                }
            } else {
                fragments.append(try load(count, tag: tag))
            }
        }
        return skip ? .notLoaded(offset: start, length: stream.offset - start) : .fragments(fragments)
    }

    // MARK: - VRs from the dictionary

    /// The VR of an implicit VR element: the dictionary's; for private elements the creator's
    /// published dictionary, LO for creators, else UN; UL for unknown group lengths.
    private func implicitVR(for tag: Tag, creators: [UInt32: [UInt32: DataDictionary.PrivateVR]]) -> (VR, AmbiguousVR?) {
        if let known = DataDictionary.vr(for: tag) { return known }
        if tag.isPrivate {
            if tag.isPrivateCreator { return (.LO, nil) }
            if let entry = privateVR(for: tag, creators: creators) { return (entry.vr, entry.ambiguity) }
            return (.UN, nil)
        }
        if tag.isGroupLength { return (.UL, nil) }
        return (.UN, nil)
    }

    /// The VR to use for an element that came as UN, when a dictionary knows better.
    private func knownVR(forUN tag: Tag, length: UInt32, creators: [UInt32: [UInt32: DataDictionary.PrivateVR]]) -> (VR, AmbiguousVR?)? {
        if tag.isPrivate {
            if tag.isPrivateCreator { return (.LO, nil) }
            guard let entry = privateVR(for: tag, creators: creators), entry.vr != .UN else { return nil }
            return (entry.vr, entry.ambiguity)
        }
        // pydicom keeps UN for values of 64 KiB and more, which no short VR could hold.
        guard length < 0xFFFF, let known = DataDictionary.vr(for: tag), known.0 != .UN else { return nil }
        return known
    }

    private func privateVR(for tag: Tag, creators: [UInt32: [UInt32: DataDictionary.PrivateVR]]) -> DataDictionary.PrivateVR? {
        guard let creatorTag = tag.privateCreatorTag, let table = creators[creatorTag.rawValue] else { return nil }
        return DataDictionary.privateVR(for: tag, in: table)
    }

    /// A private creator's value as the dictionary keys it: trailing spaces and NULs removed.
    static func creatorName(_ bytes: ArraySlice<UInt8>) -> String {
        var end = bytes.endIndex
        while end > bytes.startIndex, bytes[end - 1] == 0x20 || bytes[end - 1] == 0 { end -= 1 }
        return String(decoding: bytes[bytes.startIndex..<end], as: UTF8.self)
    }

    /// Settles "US or SS", "OB or OW" and "US or OW" by the rules of PS3.5 Annex A and PS3.3
    /// C.7.6.3 / C.11.1, as pydicom's `correct_ambiguous_vr` does.
    private func resolve(
        _ ambiguous: [(index: Int, kind: AmbiguousVR, implicit: Bool)], in dataSet: inout DataSet,
        pixelRepresentation: Int?
    ) {
        for (index, kind, implicit) in ambiguous {
            let element = dataSet.elements[index]
            let resolved: VR
            switch kind {
            case .usOrSS, .usOrSSOrOW:
                resolved = (pixelRepresentation ?? 0) == 0 ? .US : .SS
            case .obOrOW:
                if element.tag == .pixelData {
                    if element.length == nil {
                        resolved = .OB
                    } else if implicit {
                        resolved = .OW
                    } else {
                        resolved = (dataSet.uint(.bitsAllocated) ?? 16) > 8 ? .OW : .OB
                    }
                } else if element.tag.group & 0xFF00 == 0x6000 && element.tag.element == 0x3000 {
                    resolved = .OW
                } else if implicit {
                    resolved = .OW
                } else {
                    resolved = (dataSet.uint(.waveformBitsAllocated) ?? 16) > 8 ? .OW : .OB
                }
            case .usOrOW:
                resolved = dataSet.uint(.lutDescriptor) == 1 ? .US : .OW
            }
            dataSet.elements[index].vr = resolved
        }
    }

    private mutating func sortAndDeduplicate(_ dataSet: inout DataSet) {
        warn("Elements out of ascending tag order; sorted")
        // Stable sort, then keep the last of any duplicated tag (as a reader that overwrites would).
        let sorted = dataSet.elements.enumerated().sorted {
            $0.element.tag == $1.element.tag ? $0.offset < $1.offset : $0.element.tag < $1.element.tag
        }
        var result: [DataElement] = []
        result.reserveCapacity(sorted.count)
        for (_, element) in sorted {
            if let last = result.last, last.tag == element.tag {
                warn("Element \(element.tag) appears twice; the last one is kept", tag: element.tag)
                result[result.count - 1] = element
            } else {
                result.append(element)
            }
        }
        dataSet.elements = result
    }
}

@inline(__always) func readUInt16(_ bytes: ArraySlice<UInt8>, _ order: ByteOrder, at index: Int = 0) -> UInt16 {
    let i = bytes.startIndex + index
    return order == .littleEndian
        ? UInt16(bytes[i]) | UInt16(bytes[i + 1]) << 8 : UInt16(bytes[i]) << 8 | UInt16(bytes[i + 1])
}
