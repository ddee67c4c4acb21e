import DICOM

/// libFuzzer entry point: any byte string must give a reading or a `DICOMError`, never a crash,
/// a hang or an allocation larger than the input — read as headers, as everything, and checked
/// whole (`DICOMFile.verify`). Also decodes every value, so the value layer is fuzzed too.
@_cdecl("LLVMFuzzerTestOneInput")
public func fuzzTestOneInput(_ data: UnsafePointer<UInt8>?, _ size: Int) -> CInt {
    let bytes = size == 0 ? [] : Array(UnsafeBufferPointer(start: data, count: size))
    for options in [ReadOptions.headers, ReadOptions.everything] {
        guard let file = try? DICOMFile.read(bytes: bytes, options: options) else { continue }
        touch(file.meta)
        touch(file.dataSet)
        _ = try? DICOMWriter.encode(file)
    }
    // The whole-file structural check the receiver, the sender and the agent make.
    if let file = try? DICOMFile.verify(bytes: bytes) { touch(file.dataSet) }
    return 0
}

private func touch(_ dataSet: DataSet) {
    for element in dataSet.elements {
        _ = element.strings(characterSet: dataSet.characterSet)
        _ = element.integers(byteOrder: dataSet.byteOrder)
        _ = element.floats(byteOrder: dataSet.byteOrder)
        _ = element.tags(byteOrder: dataSet.byteOrder)
        for item in element.items ?? [] { touch(item) }
    }
}
