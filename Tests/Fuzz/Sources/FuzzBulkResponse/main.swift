import out_es

// Elasticsearch bulk responses (what a server, or anything pretending to be one, answers). The
// first byte picks how many records the request had.
@_cdecl("LLVMFuzzerTestOneInput")
public func fuzzOne(_ data: UnsafePointer<UInt8>, _ size: Int) -> CInt {
    guard size > 0 else { return 0 }
    let body = Array(UnsafeRawBufferPointer(start: data + 1, count: size - 1))
    BulkResponseFuzzing.read(body, count: Int(data[0] % 8))
    return 0
}

// SwiftPM links a debug executable with `main` pointing at `<target>_main`: hand over to libFuzzer's
// driver from there (a release build uses libFuzzer's own main).
@_silgen_name("LLVMFuzzerRunDriver")
func runFuzzerDriver(_ argc: UnsafeMutablePointer<CInt>,
                     _ argv: UnsafeMutablePointer<UnsafeMutablePointer<UnsafeMutablePointer<CChar>?>?>,
                     _ callback: @convention(c) (UnsafePointer<UInt8>, Int) -> CInt) -> CInt

@_cdecl("FuzzBulkResponse_main")
public func fuzzMain(_ argc: CInt, _ argv: UnsafeMutablePointer<UnsafeMutablePointer<CChar>?>?) -> CInt {
    var c = argc
    var v = argv
    return runFuzzerDriver(&c, &v) { data, size in fuzzOne(data, size) }
}
