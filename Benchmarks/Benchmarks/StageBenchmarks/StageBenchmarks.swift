// Each benchmark measures one stage on realistic lines (the corpus shape of the end-to-end harness:
// Docker json-file lines of ~190 bytes whose `log` is a JSON object). Metrics marked `*` in the
// output are per line/record (scalingFactor .kilo: 1,000 lines per measured iteration).
import AnduinCore
import Benchmark
import filter_grep
import filter_modify
import filter_multiline
import filter_parse
import filter_throttle
import Foundation
import in_tail
import out_es

let lineCount = 1000

/// A benchmark whose setup fails measures nothing: stop with the reason.
func must<T>(_ what: String, _ body: () throws -> T) -> T {
    do { return try body() } catch { fatalError("benchmark setup failed: \(what): \(error)") }
}
let source = SourceInfo(path: "/var/log/containers/web-7d9f_default_nginx-0123456789ab.log", sourceID: 0x1234_5678_9abc_def0)

func message(_ i: Int) -> String {
    #"{"level":"info","msg":"hello \#(i) lorem ipsum dolor sit amet consectetur adipiscing","user":"u\#(i % 1000)"}"#
}

func stamp(_ i: Int) -> String { String(format: "2026-11-21T10:00:%02d.%09dZ", i % 60, i * 1000 + 123) }

func dockerLines() -> [[UInt8]] {
    (0..<lineCount).map { i in
        let escaped = message(i).replacingOccurrences(of: "\"", with: "\\\"")
        return Array(#"{"log":"\#(escaped)\n","stream":"stdout","time":"\#(stamp(i))"}"#.utf8)
    }
}

func criLines(partial: Bool) -> [[UInt8]] {
    (0..<lineCount).map { i in
        let tag = partial && i % 3 != 2 ? "P" : "F"
        return Array("\(stamp(i)) stdout \(tag) \(message(i))".utf8)
    }
}

/// A batch of decoded records whose messages are JSON (or logfmt) text.
func decodedBatch(logfmt: Bool = false) -> RecordBatch {
    var batch = RecordBatch(source: source, inputName: "bench")
    for i in 0..<lineCount {
        let text = logfmt ? #"level=info msg="hello \#(i) lorem ipsum dolor" user=u\#(i % 1000) dur=1.2ms"# : message(i)
        let range = Array(text.utf8).withUnsafeBytes { batch.append(bytes: $0) }
        batch.records.append(Record(timestamp: 1_795_000_000_000_000_000 + Int64(i), offset: Int64(i * 190),
                                    message: range, stream: .stdout))
    }
    return batch
}

func decode(_ lines: [[UInt8]], format: LogFormat, _ benchmark: Benchmark) {
    var decoder = LineDecoder(format: format, maxRecordBytes: 1 << 20)
    var batch = RecordBatch(source: source, inputName: "bench", recordCapacity: lineCount, byteCapacity: 256 << 10)
    var offset: Int64 = 0
    benchmark.startMeasurement()
    for i in benchmark.scaledIterations {
        let line = lines[i % lineCount]
        line.withUnsafeBytes { decoder.decode(line: $0, offset: offset, truncated: false, readTime: 0, into: &batch) }
        offset += Int64(line.count + 1)
    }
    benchmark.stopMeasurement()
    blackHole(batch)
}

func parseFilter(_ formats: [ParseFormat]) -> any Filter {
    let ctx = ComponentContext(name: "parse", kind: .filter, dataDirectory: "/tmp", logger: .init(label: "bench"),
                               stats: ComponentStats(component: "parse", kind: .filter))
    return must("parse filter") { try ParseConfig(formats: formats).build(ctx) }
}

/// A filter built from YAML options through its plugin's own config parser (the path users take).
func filter(_ spec: PluginSpec, _ yaml: String) -> any Filter {
    let diags = Diagnostics()
    guard let value = ConfigValue.parse(yaml: yaml, file: "bench.yaml", environment: [:], diagnostics: diags),
          case .filter(let configure) = spec.configure,
          let config = configure(ConfigReader(value, context: "bench", diagnostics: diags)), diags.isEmpty else {
        fatalError("benchmark setup failed: \(spec.type): \(diags.items)")
    }
    let ctx = ComponentContext(name: spec.type, kind: .filter, dataDirectory: "/tmp", logger: .init(label: "bench"),
                               stats: ComponentStats(component: spec.type, kind: .filter))
    return must(spec.type) { try config.build(ctx) }
}

/// Messages of a Java exception, repeated: every line but the first continues the record.
func javaBatch() -> RecordBatch {
    let trace = [
        "Exception in thread \"main\" java.lang.IllegalStateException: payment gateway unavailable",
        "\tat com.example.pay.Gateway.charge(Gateway.java:42)",
        "\tat com.example.pay.Service.pay(Service.java:17)",
        "Caused by: java.net.ConnectException: Connection refused",
        "\tat java.base/sun.nio.ch.Net.connect0(Native Method)",
        "\t... 12 more",
    ]
    var batch = RecordBatch(source: source, inputName: "bench")
    for i in 0..<lineCount {
        let range = Array(trace[i % trace.count].utf8).withUnsafeBytes { batch.append(bytes: $0) }
        batch.records.append(Record(timestamp: Int64(i), offset: Int64(i * 80), message: range, stream: .stderr))
    }
    return batch
}

func encoded(_ batch: RecordBatch) -> EncodedBatch {
    var e = EncodedBatch()
    e.append(batch)
    return e
}

func ringOptions(compress: Bool) -> DiskRingOptions {
    DiskRingOptions(maxBytes: 1 << 30, segmentBytes: 64 << 20, whenFull: .block, fsync: .never, compress: compress)
}

let benchmarks: @Sendable () -> Void = {
    let perLine = Benchmark.Configuration(metrics: [.wallClock, .cpuTotal, .mallocCountTotal, .throughput],
                                          scalingFactor: .kilo, maxDuration: .seconds(2))
    let docker = dockerLines()
    let cri = criLines(partial: false)
    let criPartial = criLines(partial: true)

    Benchmark("decode docker line", configuration: perLine) { decode(docker, format: .docker, $0) }
    Benchmark("decode CRI line", configuration: perLine) { decode(cri, format: .cri, $0) }
    Benchmark("merge CRI partials (P,P,F)", configuration: perLine) { decode(criPartial, format: .cri, $0) }

    let jsonTemplate = decodedBatch()
    let logfmtTemplate = decodedBatch(logfmt: true)
    let jsonFilter = parseFilter([.json])
    let logfmtFilter = parseFilter([.logfmt])
    Benchmark("lift JSON message", configuration: perLine) { benchmark in
        var batch = jsonTemplate  // copied outside the measurement
        batch.bytes.reserveCapacity(batch.bytes.count * 3)
        benchmark.startMeasurement()
        jsonFilter.process(&batch)
        benchmark.stopMeasurement()
        blackHole(batch)
    }
    Benchmark("lift logfmt message", configuration: perLine) { benchmark in
        var batch = logfmtTemplate
        batch.bytes.reserveCapacity(batch.bytes.count * 3)
        benchmark.startMeasurement()
        logfmtFilter.process(&batch)
        benchmark.stopMeasurement()
        blackHole(batch)
    }

    var lifted = jsonTemplate
    jsonFilter.process(&lifted)
    let liftedBatch = lifted
    Benchmark("serialise record (NDJSON)", configuration: perLine) { benchmark in
        var out = [UInt8]()
        out.reserveCapacity(512 << 10)
        benchmark.startMeasurement()
        RecordEncoder.appendNDJSON(liftedBatch, to: &out)
        benchmark.stopMeasurement()
        blackHole(out)
    }

    var ndjson = [UInt8]()
    RecordEncoder.appendNDJSON(liftedBatch, to: &ndjson)
    let body = ndjson
    for level: Int32 in [1, 6] {
        Benchmark("gzip level \(level) (\(body.count / lineCount) B/record)", configuration: perLine) { benchmark in
            var gz = must("gzip") { try GzipEncoder(level: level) }
            var out = [UInt8]()
            out.reserveCapacity(body.count)
            benchmark.startMeasurement()
            must("gzip") { try gz.compress(body, into: &out) }
            benchmark.stopMeasurement()
            blackHole(out)
        }
    }

    let encodedBatch = encoded(liftedBatch)
    let es = must("es config") { try ElasticsearchPlugin.testConfig() }
    Benchmark("Elasticsearch bulk body + gzip 1", configuration: perLine) { benchmark in
        var gz = must("gzip") { try GzipEncoder(level: 1) }
        var raw = [UInt8](), out = [UInt8]()
        raw.reserveCapacity(1 << 20)
        out.reserveCapacity(1 << 20)
        benchmark.startMeasurement()
        es.appendBulkBody(encodedBatch, into: &raw)
        must("gzip") { try gz.compress(raw, into: &out) }
        benchmark.stopMeasurement()
        blackHole(out)
    }

    // Filters (issue 8): cost per record on 1,000-record batches.
    let plain = decodedBatch()
    let java = javaBatch()
    let filterCases: [(String, any Filter, RecordBatch)] = [
        ("multiline java, plain lines", filter(MultilinePlugin.spec, "mode: java\nflush_timeout: 1h"), plain),
        ("multiline java, a Java trace", filter(MultilinePlugin.spec, "mode: java\nflush_timeout: 1h"), java),
        ("multiline custom regex start", filter(MultilinePlugin.spec,
            #"{mode: custom, start_pattern: '^\{"level":"(info|warn)', flush_timeout: 1h}"#), plain),
        ("grep literal on message", filter(GrepPlugin.spec, "include: {message: 'lorem'}"), plain),
        ("grep regex on lifted field", filter(GrepPlugin.spec, #"include: {user: 'u\d+9$'}"#), liftedBatch),
        ("modify set + rename", filter(ModifyPlugin.spec, "set: {env: prod}\nrename: {level: severity}"), liftedBatch),
        ("throttle per user", filter(ThrottlePlugin.spec, "key: user\nrate: 1000000/s"), liftedBatch),
    ]
    for (name, f, template) in filterCases {
        Benchmark("filter: \(name)", configuration: perLine) { benchmark in
            var batch = template
            benchmark.startMeasurement()
            if let stateful = f as? any StatefulFilter {
                var n = 0
                stateful.process(batch, ack: AckToken.none()) { b, _ in n += b.count }
                blackHole(n)
            } else {
                f.process(&batch)
            }
            benchmark.stopMeasurement()
            blackHole(batch)
        }
    }

    for compress in [true, false] {
        Benchmark("ring append + read\(compress ? " (LZ4)" : " (no LZ4)")", configuration: perLine) { benchmark in
            let dir = NSTemporaryDirectory() + "anduin-bench-ring-\(UUID().uuidString)"
            defer { try? FileManager.default.removeItem(atPath: dir) }
            let ring = must("ring") {
                try DiskRing(directory: dir, options: ringOptions(compress: compress),
                             stats: ComponentStats(component: "ring", kind: .output), log: { _ in })
            }
            benchmark.startMeasurement()
            _ = ring.append(encodedBatch)
            var n = 0
            while n < encodedBatch.count, let r = ring.read(maxRecords: 100_000, maxBytes: 64 << 20, timeout: 0) {
                n += r.batch.count
                ring.commit(r.end)
            }
            benchmark.stopMeasurement()
            ring.shutdown()
        }
    }
}
