import AnduinCore
import filter_grep
import filter_kubernetes
import filter_modify
import filter_multiline
import filter_parse
import filter_throttle
import in_tail
import out_blackhole
import out_es
import out_file
import out_http
import out_stdout

// The config reader: any bytes as a config file, through YAML, every plugin's options and the graph
// checks. It must return a config or problems, never trap; every problem is one line.
let registry = PluginRegistry([
    TailPlugin.spec, ParsePlugin.spec, KubernetesPlugin.spec, MultilinePlugin.spec, GrepPlugin.spec,
    ModifyPlugin.spec, ThrottlePlugin.spec, FileOutputPlugin.spec, StdoutOutputPlugin.spec, BlackholePlugin.spec,
    HTTPOutputPlugin.spec, ElasticsearchPlugin.spec,
])

@_cdecl("LLVMFuzzerTestOneInput")
public func fuzzOne(_ data: UnsafePointer<UInt8>, _ size: Int) -> CInt {
    let text = String(decoding: UnsafeRawBufferPointer(start: data, count: size), as: UTF8.self)
    switch AgentConfig.parse(yaml: text, file: "/fuzz/anduin.yaml", registry: registry, environment: ["HOME": "/root"]) {
    case .success: break
    case .failure(let errors):
        for e in errors.items { _ = ConfigDiagnostic.logSafe(e.description) }
    }
    return 0
}

// SwiftPM links a debug executable with `main` pointing at `<target>_main`: hand over to libFuzzer's
// driver from there (a release build uses libFuzzer's own main).
@_silgen_name("LLVMFuzzerRunDriver")
func runFuzzerDriver(_ argc: UnsafeMutablePointer<CInt>,
                     _ argv: UnsafeMutablePointer<UnsafeMutablePointer<UnsafeMutablePointer<CChar>?>?>,
                     _ callback: @convention(c) (UnsafePointer<UInt8>, Int) -> CInt) -> CInt

@_cdecl("FuzzConfig_main")
public func fuzzMain(_ argc: CInt, _ argv: UnsafeMutablePointer<UnsafeMutablePointer<CChar>?>?) -> CInt {
    var c = argc
    var v = argv
    return runFuzzerDriver(&c, &v) { data, size in fuzzOne(data, size) }
}
