import AnduinCore
#if canImport(Glibc)
import Glibc
#endif

// The disk ring over fuzzer-made segment and cursor files: recovery, the reader, an append and a
// restart (AnduinCore's FuzzRing turns the bytes into files whose block headers carry valid
// checksums). The files live in one directory per process, in memory when /dev/shm exists.
let ringDirectory: String = {
    let base = access("/dev/shm", W_OK) == 0 ? "/dev/shm" : "/tmp"
    return "\(base)/anduin-fuzz-ring-\(getpid())"
}()

@_cdecl("LLVMFuzzerTestOneInput")
public func fuzzOne(_ data: UnsafePointer<UInt8>, _ size: Int) -> CInt {
    FuzzRing.run(UnsafeRawBufferPointer(start: data, count: size), directory: ringDirectory)
    return 0
}

// SwiftPM links a debug executable with `main` pointing at `<target>_main`: hand over to libFuzzer's
// driver from there (a release build uses libFuzzer's own main).
@_silgen_name("LLVMFuzzerRunDriver")
func runFuzzerDriver(_ argc: UnsafeMutablePointer<CInt>,
                     _ argv: UnsafeMutablePointer<UnsafeMutablePointer<UnsafeMutablePointer<CChar>?>?>,
                     _ callback: @convention(c) (UnsafePointer<UInt8>, Int) -> CInt) -> CInt

@_cdecl("FuzzRing_main")
public func fuzzMain(_ argc: CInt, _ argv: UnsafeMutablePointer<UnsafeMutablePointer<CChar>?>?) -> CInt {
    var c = argc
    var v = argv
    return runFuzzerDriver(&c, &v) { data, size in fuzzOne(data, size) }
}
