import AnduinCore

// The JSON scanner: lifting an object (what the parse filter does to every JSON log line), then
// properties that must hold for anything it accepts: its output lifts again to the same bytes, no
// object in it has a key twice, and lookups and skips stay inside the buffer.
@_cdecl("LLVMFuzzerTestOneInput")
public func fuzzOne(_ data: UnsafePointer<UInt8>, _ size: Int) -> CInt {
    let src = UnsafeRawBufferPointer(start: data, count: size)
    var i = 0
    if JSONScan.skipValue(src, from: &i) { precondition(i <= size) }
    var out: [UInt8] = []
    guard let n = JSONScan.liftObject(src, into: &out, renameKey: { $0.first == UInt8(ascii: "_") }) else { return 0 }
    var wrapped: [UInt8] = [UInt8(ascii: "{")] + out + [UInt8(ascii: "}")]
    var again: [UInt8] = []
    let m = wrapped.withUnsafeBytes { JSONScan.liftObject($0, into: &again, renameKey: { _ in false }) }
    precondition(m == n && again == out, "lifted JSON does not lift to itself")
    if let v = try? JSONValue.parse(wrapped) { precondition(!repeatsAKey(v), "lifted JSON has a key twice") }
    for path in [["a"], ["a", "b"], ["message"], [""]] {
        if let r = out.withUnsafeBytes({ JSONScan.lookup($0, path: path.map { Array($0.utf8) }) }) {
            precondition(r.lowerBound >= 0 && r.upperBound <= out.count)
        }
    }
    wrapped.removeAll()
    return 0
}

/// Whether any object in `v` has a key twice (decoded keys, as Elasticsearch compares them).
func repeatsAKey(_ v: JSONValue) -> Bool {
    switch v {
    case .object(let members):
        var seen = Set<String>()
        for (k, value) in members where !seen.insert(k).inserted || repeatsAKey(value) { return true }
        return false
    case .array(let items): return items.contains(where: repeatsAKey)
    default: return false
    }
}

// SwiftPM links a debug executable with `main` pointing at `<target>_main`: hand over to libFuzzer's
// driver from there (a release build uses libFuzzer's own main).
@_silgen_name("LLVMFuzzerRunDriver")
func runFuzzerDriver(_ argc: UnsafeMutablePointer<CInt>,
                     _ argv: UnsafeMutablePointer<UnsafeMutablePointer<UnsafeMutablePointer<CChar>?>?>,
                     _ callback: @convention(c) (UnsafePointer<UInt8>, Int) -> CInt) -> CInt

@_cdecl("FuzzJSON_main")
public func fuzzMain(_ argc: CInt, _ argv: UnsafeMutablePointer<UnsafeMutablePointer<CChar>?>?) -> CInt {
    var c = argc
    var v = argv
    return runFuzzerDriver(&c, &v) { data, size in fuzzOne(data, size) }
}
