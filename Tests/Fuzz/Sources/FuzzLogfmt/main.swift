import filter_parse

// logfmt lines lifted to JSON members by the parse filter; what it writes must be JSON the scanner
// reads back member for member (checked inside `LogfmtFuzzing.lift`).
@_cdecl("LLVMFuzzerTestOneInput")
public func fuzzOne(_ data: UnsafePointer<UInt8>, _ size: Int) -> CInt {
    LogfmtFuzzing.lift(UnsafeRawBufferPointer(start: data, count: size))
    return 0
}

// SwiftPM links a debug executable with `main` pointing at `<target>_main`: hand over to libFuzzer's
// driver from there (a release build uses libFuzzer's own main).
@_silgen_name("LLVMFuzzerRunDriver")
func runFuzzerDriver(_ argc: UnsafeMutablePointer<CInt>,
                     _ argv: UnsafeMutablePointer<UnsafeMutablePointer<UnsafeMutablePointer<CChar>?>?>,
                     _ callback: @convention(c) (UnsafePointer<UInt8>, Int) -> CInt) -> CInt

@_cdecl("FuzzLogfmt_main")
public func fuzzMain(_ argc: CInt, _ argv: UnsafeMutablePointer<UnsafeMutablePointer<CChar>?>?) -> CInt {
    var c = argc
    var v = argv
    return runFuzzerDriver(&c, &v) { data, size in fuzzOne(data, size) }
}
