import Testing

@testable import DICOM

@Suite("Specific Character Set")
struct CharacterSetTests {
    /// (0008,0005) value, encoded person name, expected text. Byte strings are those of PS3.5
    /// Annex H–K examples and pydicom's charset test files.
    static let personNames: [(String, [UInt8], String)] = [
        ("", Array("Smith^John".utf8), "Smith^John"),
        ("ISO_IR 100", [0x42, 0x75, 0x63, 0x5E, 0x4A, 0xE9, 0x72, 0xF4, 0x6D, 0x65], "Buc^Jérôme"),
        ("ISO_IR 192", Array("Wang^XiaoDong=王^小東".utf8), "Wang^XiaoDong=王^小東"),
        ("ISO_IR 144", [0xBB, 0xEE, 0xDA, 0x63, 0x65, 0xDC, 0xD1, 0x79, 0x70, 0xD3], "Люкceмбypг"),
        ("ISO_IR 126", [0xC4, 0xE9, 0xEF, 0xED, 0xF5, 0xF3, 0xE9, 0xEF, 0xF2], "Διονυσιος"),
        // PS3.5 Annex H: Yamada^Tarou=山田^太郎=やまだ^たろう in ISO 2022 IR 87.
        (
            "\\ISO 2022 IR 87",
            Array("Yamada^Tarou=".utf8) + [0x1B, 0x24, 0x42, 0x3B, 0x33, 0x45, 0x44, 0x1B, 0x28, 0x42, 0x5E, 0x1B, 0x24, 0x42, 0x42, 0x40, 0x4F, 0x3A, 0x1B, 0x28, 0x42, 0x3D, 0x1B, 0x24, 0x42, 0x24, 0x64, 0x24, 0x5E, 0x24, 0x40, 0x1B, 0x28, 0x42, 0x5E, 0x1B, 0x24, 0x42, 0x24, 0x3F, 0x24, 0x6D, 0x24, 0x26, 0x1B, 0x28, 0x42],
            "Yamada^Tarou=山田^太郎=やまだ^たろう"
        ),
        // PS3.5 Annex I: Hong^Gildong=洪^吉洞=홍^길동 in ISO 2022 IR 149.
        (
            "\\ISO 2022 IR 149",
            Array("Hong^Gildong=".utf8) + [0x1B, 0x24, 0x29, 0x43, 0xFB, 0xF3, 0x5E, 0x1B, 0x24, 0x29, 0x43, 0xD1, 0xCE, 0xD4, 0xD7, 0x3D, 0x1B, 0x24, 0x29, 0x43, 0xC8, 0xAB, 0x5E, 0x1B, 0x24, 0x29, 0x43, 0xB1, 0xE6, 0xB5, 0xBF],
            "Hong^Gildong=洪^吉洞=홍^길동"
        ),
        // ISO 2022 IR 13: half-width katakana in G1.
        ("ISO 2022 IR 13\\ISO 2022 IR 87", [0xD4, 0xCF, 0xC0, 0xDE, 0x5E, 0xC0, 0xDB, 0xB3], "ﾔﾏﾀﾞ^ﾀﾛｳ"),
        ("GB18030", Array("Wang^XiaoDong=".utf8) + [0xCD, 0xF5, 0x5E, 0xD0, 0xA1, 0xB6, 0xAB], "Wang^XiaoDong=王^小东"),
    ]

    @Test("person names decode", arguments: 0..<9)
    func personNamesDecode(_ index: Int) throws {
        let (charset, encoded, expected) = Self.personNames[index]
        let e = DICOMBytes.explicitLE
        var data = [UInt8]()
        if !charset.isEmpty { data += e.text(0x0008, 0x0005, "CS", charset) }
        data += e.element(0x0010, 0x0010, "PN", encoded.count % 2 == 1 ? encoded + [0x20] : encoded)
        let file = try DICOMFile.read(DICOMBytes.part10(transferSyntax: TransferSyntax.explicitVRLittleEndian, dataSet: data))
        #expect(file.dataSet.string(.patientName) == expected)
        #expect(file.warnings.isEmpty)
    }

    @Test func itemsInheritTheCharacterSetAndMayChangeIt() throws {
        let e = DICOMBytes.explicitLE
        let latin = e.element(0x0010, 0x0010, "PN", [0x4A, 0xE9])
        let utf8Item = e.text(0x0008, 0x0005, "CS", "ISO_IR 192") + e.element(0x0010, 0x0010, "PN", Array("Jé".utf8))
        let data = e.text(0x0008, 0x0005, "CS", "ISO_IR 100") + e.sequence(0x0008, 0x1120, items: [latin, utf8Item])
        let file = try DICOMFile.read(DICOMBytes.part10(transferSyntax: TransferSyntax.explicitVRLittleEndian, dataSet: data))
        let items = try #require(file.dataSet.sequence(Tag(0x0008, 0x1120)))
        #expect(items[0].string(.patientName) == "Jé")
        #expect(items[1].string(.patientName) == "Jé")
    }

    @Test func anUnknownCharacterSetWarnsAndKeepsTheBytes() throws {
        let e = DICOMBytes.explicitLE
        let data = e.text(0x0008, 0x0005, "CS", "KLINGON") + e.element(0x0010, 0x0010, "PN", [0x41, 0xE9])
        let file = try DICOMFile.read(DICOMBytes.part10(transferSyntax: TransferSyntax.explicitVRLittleEndian, dataSet: data))
        #expect(file.warnings.contains { $0.message.contains("Unknown Specific Character Set \"KLINGON\"") })
        #expect(file.dataSet[.patientName]?.bytes.map(Array.init) == [0x41, 0xE9])
        #expect(file.dataSet.string(.patientName) == "Aé")  // the default repertoire, as pydicom reads it
    }

    @Test func misspelledTermsAreCorrectedWithAWarning() {
        let set = SpecificCharacterSet(terms: ["ISO IR 100"])
        #expect(set.problems.count == 1)
        #expect(set.decode([0xE9]) == "é")
    }

    @Test func invalidUTF8NeverCrashes() {
        let set = SpecificCharacterSet(terms: ["ISO_IR 192"])
        #expect(set.decode([0x41, 0xFF, 0xFE, 0x42]).hasPrefix("A"))
        let japanese = SpecificCharacterSet(terms: ["", "ISO 2022 IR 87"])
        #expect(!japanese.decode([0x1B, 0x24, 0x42, 0xFF]).isEmpty)
    }

    @Test func textDelimitersEndACodeExtension() {
        // After CR LF the first character set is back in force (PS3.5 §6.1.2.5.3).
        let set = SpecificCharacterSet(terms: ["ISO 2022 IR 6", "ISO 2022 IR 100"])
        let bytes: [UInt8] = [0x1B, 0x2D, 0x41, 0xE9, 0x0D, 0x0A, 0x41]
        #expect(set.decode(bytes) == "é\r\nA")
    }
}
