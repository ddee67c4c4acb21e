import Routing

/// libFuzzer entry point for the rules language: any text must parse to a rule set or to
/// diagnostics, never crash or hang.
@_cdecl("LLVMFuzzerTestOneInput")
public func fuzzTestOneInput(_ data: UnsafePointer<UInt8>?, _ size: Int) -> CInt {
    let bytes = size == 0 ? [] : Array(UnsafeBufferPointer(start: data, count: size))
    let text = String(decoding: bytes, as: UTF8.self)
    let outcome = RuleSetLoader.load(sources: [(key: "fuzz.rules", value: text)])
    _ = outcome.report()
    if let set = outcome.ruleSet { _ = RuleEngine(set) }
    return 0
}
