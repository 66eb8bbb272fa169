import filter_parse

// Random texts, reference times, zones and formats through the time parsers (`TimeFuzzing.parse`):
// no trap, and a year-less time never lands after the reference plus max_future.
@_cdecl("LLVMFuzzerTestOneInput")
public func fuzzOne(_ data: UnsafePointer<UInt8>, _ size: Int) -> CInt {
    TimeFuzzing.parse(UnsafeRawBufferPointer(start: data, count: size))
    return 0
}

// SwiftPM links a debug executable with `main` pointing at `<target>_main`: hand over to libFuzzer's
// driver from there (a release build uses libFuzzer's own main).
@_silgen_name("LLVMFuzzerRunDriver")
func runFuzzerDriver(_ argc: UnsafeMutablePointer<CInt>,
                     _ argv: UnsafeMutablePointer<UnsafeMutablePointer<UnsafeMutablePointer<CChar>?>?>,
                     _ callback: @convention(c) (UnsafePointer<UInt8>, Int) -> CInt) -> CInt

@_cdecl("FuzzTime_main")
public func fuzzMain(_ argc: CInt, _ argv: UnsafeMutablePointer<UnsafeMutablePointer<CChar>?>?) -> CInt {
    var c = argc
    var v = argv
    return runFuzzerDriver(&c, &v) { data, size in fuzzOne(data, size) }
}
