import Testing

@testable import DICOM

@Suite("Values and types")
struct ValueTests {
    /// The reader's private VR table (parsed once, looked up by number) says what the private
    /// dictionary's entries say, for every entry of every creator.
    @Test func thePrivateVRTableAgreesWithThePrivateDictionary() {
        var checked = 0
        for (creator, table) in DataDictionary.privateIndex {
            let vrs = DataDictionary.privateVRIndex[creator] ?? [:]
            for (key, line) in table {
                let entry = DataDictionary.parsePrivateLine(line, creator: creator)
                #expect(vrs[key]?.vr == entry?.vr && vrs[key]?.ambiguity == entry?.ambiguity, "\(creator) \(line)")
                checked += 1
            }
        }
        #expect(checked > 5000)
        // And lookups by tag, through the three key forms, as privateEntry does them.
        let siemens = DataDictionary.privateVRIndex["SIEMENS CSA HEADER"] ?? [:]
        #expect(DataDictionary.privateVR(for: Tag(0x0029, 0x1008), in: siemens)?.vr == DataDictionary.privateEntry(for: Tag(0x0029, 0x1008), creator: "SIEMENS CSA HEADER")?.vr)
        #expect(DataDictionary.privateVR(for: Tag(0x0029, 0x1108), in: siemens)?.vr == .CS)
    }

    @Test func tagsPrintAndParse() {
        #expect(Tag(0x0010, 0x0020).description == "(0010,0020)")
        #expect(Tag(0x7FE0, 0x0010).hexString == "7FE00010")
        #expect(Tag(hexString: "(0010,0020)") == .patientID)
        #expect(Tag(hexString: "7fe00010") == .pixelData)
        #expect(Tag(hexString: "0010") == nil)
        #expect(Tag(0x0029, 0x1010).privateCreatorTag == Tag(0x0029, 0x0010))
        #expect(Tag(0x0029, 0x0010).isPrivateCreator)
        #expect(!Tag(0x0008, 0x0010).isPrivate)
    }

    @Test("two-byte lengths are exactly PS3.5 Table 7.1-2's list", arguments: VR.all)
    func lengthFieldSizes(_ vr: VR) {
        let short: Set<String> = ["AE", "AS", "AT", "CS", "DA", "DS", "DT", "FL", "FD", "IS", "LO", "LT", "PN", "SH", "SL", "SS", "ST", "TM", "UI", "UL", "US"]
        #expect(vr.hasLongLength == !short.contains(vr.description))
    }

    @Test func numbersDecodeInTheDataSetsByteOrder() {
        let element = DataElement(tag: Tag(0x0028, 0x0010), vr: .US, length: 4, value: .bytes([0x01, 0x02, 0x03, 0x04]))
        #expect(element.integers(byteOrder: .littleEndian) == [0x0201, 0x0403])
        #expect(element.integers(byteOrder: .bigEndian) == [0x0102, 0x0304])
        let float = DataElement(tag: Tag(0x0018, 0x0050), vr: .FD, length: 8, value: .bytes([0, 0, 0, 0, 0, 0, 0xF0, 0x3F]))
        #expect(float.floats(byteOrder: .littleEndian) == [1.0])
        let at = DataElement(tag: Tag(0x0028, 0x0009), vr: .AT, length: 4, value: .bytes([0x54, 0x00, 0x10, 0x00]))
        #expect(at.tags(byteOrder: .littleEndian) == [Tag(0x0054, 0x0010)])
        // A value whose length is not a whole number of values decodes what is whole.
        let odd = DataElement(tag: Tag(0x0028, 0x0010), vr: .US, length: 3, value: .bytes([1, 0, 9]))
        #expect(odd.integers(byteOrder: .littleEndian) == [1])
    }

    @Test func textValuesSplitAndTrimAsThePaddingRulesSay() {
        let cs = DataElement(tag: Tag(0x0008, 0x0008), vr: .CS, length: 18, value: .bytes(Array("ORIGINAL\\PRIMARY ".utf8)[...]))
        #expect(cs.strings() == ["ORIGINAL", "PRIMARY"])
        let lt = DataElement(tag: Tag(0x0020, 0x4000), vr: .LT, length: 6, value: .bytes(Array(" a\\b  ".utf8)[...]))
        #expect(lt.strings() == [" a\\b"])  // LT is one value; leading spaces are significant
        let ae = DataElement(tag: Tag(0x0008, 0x0054), vr: .AE, length: 8, value: .bytes(Array("  PACS  ".utf8)[...]))
        #expect(ae.strings() == ["PACS"])
        let ui = DataElement(tag: Tag(0x0008, 0x0018), vr: .UI, length: 4, value: .bytes([0x31, 0x2E, 0x32, 0x00]))
        #expect(ui.strings() == ["1.2"])
    }

    /// `strings` and `DataSet.string` read one printable-ASCII value without decoding or
    /// splitting; whatever that shortcut answers must be what the full path (decoded with the
    /// character set, split, trimmed, joined) gives, for every text VR and character set, and it
    /// must leave everything else to that path.
    @Test func theASCIIShortcutAnswersExactlyWhatTheFullDecodingDoes() {
        let vrs: [VR] = [.AE, .AS, .CS, .DA, .DS, .DT, .IS, .LO, .LT, .PN, .SH, .ST, .TM, .UC, .UI, .UR, .UT]
        let sets = [SpecificCharacterSet.defaultRepertoire, SpecificCharacterSet(terms: ["ISO_IR 100"]), SpecificCharacterSet(terms: ["ISO_IR 192"]),
            SpecificCharacterSet(terms: ["ISO_IR 13"]), SpecificCharacterSet(terms: ["", "ISO 2022 IR 87"]), SpecificCharacterSet(terms: ["GB18030"]),
            SpecificCharacterSet(terms: ["ISO_IR 144"])]
        var values: [[UInt8]] = ["1.2.840.10008.5.1.4.1.1.2\0", "  PACS  ", "CT", "Doe^John", "Doe^John==", " 12.5 ", "20261201", "", "  ", "\0\0",
            "A\\B", "ORIGINAL\\PRIMARY ", "Yamada^Tarou=山田^太郎", "Müller", "tab\there", "~^_`{|}"].map { Array($0.utf8) }
        // And bytes no text would hold: control characters, Latin-1, ESC sequences, random.
        values += [[0x41, 0x1B, 0x24, 0x42, 0x42], [0xC4, 0x20], [0x41, 0x0D, 0x0A, 0x42], [0x7F], [0x41, 0x00, 0x42]]
        var generator = SystemRandomNumberGenerator()
        for _ in 0..<300 { values.append((0..<Int.random(in: 0...12, using: &generator)).map { _ in UInt8.random(in: 0...0x80, using: &generator) }) }
        var shortcuts = 0
        for vr in vrs {
            for bytes in values {
                let element = DataElement(tag: Tag(0x0011, 0x0001), vr: vr, length: UInt32(bytes.count), value: .bytes(bytes[...]))
                if element.singlePrintableASCIIValue(bytes[...]) != nil { shortcuts += 1 }
                for set in sets {
                    // What the public functions promise, from the full decoding: an empty value
                    // is no value ([] and nil), anything else its values (joined with "\\").
                    let full = bytes.isEmpty ? [] : element.decodedStrings(bytes[...], characterSet: set)
                    #expect(element.strings(characterSet: set) == full, "\(vr) \(bytes) in \(set.terms)")
                    let data = DataSet(elements: [element], characterSet: set)
                    #expect(data.string(Tag(0x0011, 0x0001)) == (full.isEmpty ? nil : full.joined(separator: "\\")), "\(vr) \(bytes) in \(set.terms)")
                }
            }
        }
        #expect(shortcuts > 200)
        // What it must leave to the full path.
        for (vr, text) in [(VR.CS, "A\\B"), (.PN, "Doe^John=Doe"), (.LO, "Müller"), (.LT, "a\rb")] {
            let bytes = Array(text.utf8)
            #expect(DataElement(tag: Tag(0x0011, 0x0001), vr: vr, length: UInt32(bytes.count), value: .bytes(bytes[...])).singlePrintableASCIIValue(bytes[...]) == nil, "\(text)")
        }
        // And DataSet.string takes it: a UI with its NUL pad reads trimmed.
        let data = DataSet(elements: [DataElement(tag: Tag(0x0008, 0x0018), vr: .UI, length: 4, value: .bytes([0x31, 0x2E, 0x32, 0x00]))])
        #expect(data.string(Tag(0x0008, 0x0018)) == "1.2")
    }

    @Test func datesAndNamesParse() {
        #expect(DICOMDate("20240131")?.description == "20240131")
        #expect(DICOMDate("2024.01.31") == DICOMDate(year: 2024, month: 1, day: 31))
        #expect(DICOMDate("20241331") == nil)
        #expect(DICOMDate("2024") == nil)
        let name = PersonName("Yamada^Tarou=山田^太郎=やまだ^たろう")
        #expect(name.familyName == "Yamada")
        #expect(name.givenName == "Tarou")
        #expect(name.ideographic == ["山田", "太郎"])
        #expect(name.phonetic?.first == "やまだ")
    }

    @Test func dataSetsStayInTagOrder() {
        var ds = DataSet()
        ds.set(DICOMWriter.textElement(.patientID, .LO, "B"))
        ds.set(DICOMWriter.textElement(.modality, .CS, "CT"))
        ds.set(DICOMWriter.textElement(.patientID, .LO, "A"))
        #expect(ds.elements.map(\.tag) == [.modality, .patientID])
        #expect(ds.string(.patientID) == "A")
        #expect(ds.remove(.modality) != nil)
        #expect(ds.count == 1)
    }
}

@Suite("Times and date-times")
struct TimeValueTests {
    @Test func timesKeepTheirPrecision() throws {
        let t = try #require(DICOMTime("101500.1234"))
        #expect((t.hour, t.minute, t.second, t.microsecond) == (10, 15, 0, 123_400))
        #expect(t.description == "101500.123400")
        #expect(DICOMTime("10")?.minute == nil)
        #expect(DICOMTime("10:15:30")?.second == 30)
        for bad in ["25", "1061", "10.5", "abcdef", "101500.1234567", ""] { #expect(DICOMTime(bad) == nil, "\(bad)") }
    }

    @Test func dateTimesCarryTheirOffset() throws {
        let dt = try #require(DICOMDateTime("20240131101500.5+0100"))
        #expect(dt.year == 2024 && dt.month == 1 && dt.day == 31)
        #expect(dt.time?.microsecond == 500_000)
        #expect(dt.utcOffsetMinutes == 60)
        #expect(DICOMDateTime("2024")?.month == nil)
        #expect(DICOMDateTime("20241301") == nil)
        #expect(DICOMDateTime("2024-01-30") == nil)
        #expect(DICOMDateTime("2024-0130")?.utcOffsetMinutes == -90)
    }

    @Test func tagsComeFromKeywords() {
        #expect(Tag(keyword: "PatientID") == .patientID)
        #expect(Tag(keyword: "NotAKeyword") == nil)
    }
}
