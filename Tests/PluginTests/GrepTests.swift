import AnduinCore
import Foundation
import XCTest

@testable import filter_grep

/// Builds batches with fields and shared fields for the grep/modify/throttle tests.
enum FilterTestBatch {
    static let source = SourceInfo(path: "/var/log/containers/app.log", sourceID: 9)

    /// `records`: (message, fields members or "", stream).
    static func make(_ records: [(String, String)], shared: String = "", stream: LogStream = .stdout,
                     source: SourceInfo = FilterTestBatch.source) -> RecordBatch {
        var b = RecordBatch(source: source, inputName: "in")
        b.sharedFields = Array(shared.utf8)
        for (i, (message, fields)) in records.enumerated() {
            let m = Array(message.utf8).withUnsafeBytes { b.append(bytes: $0) }
            let f = fields.isEmpty ? 0..<0 : Array(fields.utf8).withUnsafeBytes { b.append(bytes: $0) }
            b.records.append(Record(timestamp: 1_700_000_000_000_000_000, offset: Int64(i * 10), message: m, fields: f, stream: stream))
        }
        return b
    }

    static func context(_ name: String, stats: ComponentStats? = nil) -> ComponentContext {
        ComponentContext(name: name, kind: .filter, dataDirectory: "/tmp", logger: .init(label: "test"),
                         stats: stats ?? ComponentStats(component: name, kind: .filter))
    }

    /// Every record encoded and parsed back (Foundation rejects invalid JSON); also fails on a
    /// duplicate top-level key, which Foundation would silently collapse.
    static func documents(_ b: RecordBatch, file: StaticString = #filePath, line: UInt = #line) throws -> [[String: Any]] {
        var docs: [[String: Any]] = []
        for i in b.records.indices {
            var out: [UInt8] = []
            RecordEncoder.append(b, i, to: &out)
            let obj = try JSONSerialization.jsonObject(with: Data(out))
            docs.append(try XCTUnwrap(obj as? [String: Any], file: file, line: line))
            let keys = topLevelKeys(out)
            XCTAssertEqual(Set(keys).count, keys.count, "duplicate keys in \(String(decoding: out, as: UTF8.self))", file: file, line: line)
        }
        return docs
    }

    static func topLevelKeys(_ doc: [UInt8]) -> [String] {
        var keys: [String] = []
        var depth = 0
        var i = 0
        var expectKey = false
        while i < doc.count {
            let c = doc[i]
            if c == UInt8(ascii: "\"") {
                var j = i + 1
                while j < doc.count && doc[j] != UInt8(ascii: "\"") { j += doc[j] == UInt8(ascii: "\\") ? 2 : 1 }
                if depth == 1 && expectKey { keys.append(String(decoding: doc[(i + 1)..<j], as: UTF8.self)) }
                expectKey = false
                i = j + 1
                continue
            }
            if c == UInt8(ascii: "{") || c == UInt8(ascii: "[") { depth += 1 }
            if c == UInt8(ascii: "}") || c == UInt8(ascii: "]") { depth -= 1 }
            expectKey = depth == 1 && (c == UInt8(ascii: "{") || c == UInt8(ascii: ","))
            i += 1
        }
        return keys
    }

    static func messages(_ b: RecordBatch) -> [String] {
        b.records.map { String(decoding: b.bytes[$0.message], as: UTF8.self) }
    }

    static func path(_ s: String) -> FieldPath {
        switch FieldPath.parse(s) {
        case .success(let p): return p
        case .failure(let e): fatalError(e.message)
        }
    }

    /// Runs a plugin's config parser on YAML; returns the config and the diagnostics.
    static func parse(_ spec: PluginSpec, _ yaml: String) -> ((any FilterConfig)?, [String]) {
        let diags = Diagnostics()
        guard let v = ConfigValue.parse(yaml: yaml, file: "t.yaml", environment: [:], diagnostics: diags),
              case .filter(let parse) = spec.configure else { return (nil, ["bad yaml"]) }
        let reader = ConfigReader(v, context: "filter \"f\" (\(spec.type))", diagnostics: diags)
        let c = parse(reader)
        reader.finish()
        return (c, diags.items.map(\.message))
    }
}

final class GrepFieldPathTests: XCTestCase {
    func testPathSyntax() {
        func keys(_ s: String) -> [String]? {
            guard case .success(let p) = FieldPath.parse(s) else { return nil }
            return p.keys.map { String(decoding: $0, as: UTF8.self) }
        }
        XCTAssertEqual(keys("level"), ["level"])
        XCTAssertEqual(keys("kubernetes.labels.app"), ["kubernetes", "labels", "app"])
        XCTAssertEqual(keys(#"kubernetes.labels["app.kubernetes.io/name"]"#), ["kubernetes", "labels", "app.kubernetes.io/name"])
        XCTAssertEqual(keys(#"kubernetes.labels['app.kubernetes.io/name'].x"#), ["kubernetes", "labels", "app.kubernetes.io/name", "x"])
        XCTAssertEqual(keys(#"kubernetes.labels.app\.kubernetes\.io/name"#), ["kubernetes", "labels", "app.kubernetes.io/name"])
        XCTAssertEqual(keys(#"["a\"b"]"#), ["a\"b"])
        for bad in ["", "a..b", ".a", "a.", #"a["x"#, "a[x]", #"a["x"]b"#, #"a[""]"#, "a\\"] {
            guard case .failure(let p) = FieldPath.parse(bad) else { return XCTFail("accepted \(bad)") }
            XCTAssertTrue(p.message.contains("invalid field path"), p.message)
        }
        XCTAssertEqual(FilterTestBatch.path("message").kind, .message)
        XCTAssertEqual(FilterTestBatch.path("log.file.path").kind, .filePath)
        XCTAssertFalse(FilterTestBatch.path("log.offset").isWritable)
        XCTAssertFalse(FilterTestBatch.path("stream").isWritable)
        XCTAssertTrue(FilterTestBatch.path("kubernetes.labels.x").isWritable)
    }

    func testReadingValues() {
        let b = FilterTestBatch.make(
            [("hello", #""level":"warn","n":42,"ok":true,"esc":"a\"b\u00e9","obj":{"k":[1,2]}"#), ("lifted", "")],
            shared: #""kubernetes":{"pod_name":"api-1","labels":{"app.kubernetes.io/name":"shop"}}"#)
        func v(_ p: String, _ i: Int = 0) -> String? {
            FilterTestBatch.path(p).value(b, i).map { String(decoding: $0, as: UTF8.self) }
        }
        XCTAssertEqual(v("message"), "hello")
        XCTAssertEqual(v("level"), "warn")
        XCTAssertEqual(v("n"), "42")
        XCTAssertEqual(v("ok"), "true")
        XCTAssertEqual(v("esc"), "a\"bé")
        XCTAssertEqual(v("obj"), #"{"k":[1,2]}"#)
        XCTAssertEqual(v("obj.k"), "[1,2]")
        XCTAssertEqual(v("kubernetes.pod_name"), "api-1")
        XCTAssertEqual(v("kubernetes.pod_name", 1), "api-1", "shared fields apply to every record")
        XCTAssertEqual(v(#"kubernetes.labels["app.kubernetes.io/name"]"#), "shop")
        XCTAssertEqual(v("stream"), "stdout")
        XCTAssertEqual(v("log.file.path"), "/var/log/containers/app.log")
        XCTAssertEqual(v("log.offset", 1), "10")
        XCTAssertNil(v("missing"))
        XCTAssertNil(v("level.deeper"))
        var json: [UInt8] = []
        XCTAssertTrue(FilterTestBatch.path("message").appendJSON(b, 0, to: &json))
        XCTAssertEqual(String(decoding: json, as: UTF8.self), #""hello""#)
    }

    func testLiteralPatternsSkipTheRegexEngine() throws {
        XCTAssertTrue(try ValuePattern("GET /health").isLiteral)
        XCTAssertTrue(try ValuePattern("^ERROR").isLiteral)
        XCTAssertTrue(try ValuePattern("debug|trace").isLiteral)
        XCTAssertTrue(try ValuePattern(#"^a\.b$"#).isLiteral)
        XCTAssertFalse(try ValuePattern(#"^\d+"#).isLiteral)
        XCTAssertFalse(try ValuePattern("a|").isLiteral)
        let cases: [(String, String, Bool)] = [
            ("^ERROR", "ERROR x", true), ("^ERROR", "x ERROR", false), ("ERROR$", "x ERROR", true),
            ("^debug$|^trace$", "trace", true), ("^debug$|^trace$", "tracer", false), ("health", "GET /health 200", true),
            (#"a\.b"#, "a.b", true), (#"a\.b"#, "axb", false), ("^$", "", true), ("^$", "x", false),
            (#"^\d{3}$"#, "404", true), (#"^\d{3}$"#, "4040", false), ("(?i)error", "ERROR", true),
        ]
        for (p, v, want) in cases {
            XCTAssertEqual(try ValuePattern(p).matches(Array(v.utf8)), want, "\(p) on \(v)")
        }
    }
}

final class GrepTests: XCTestCase {
    func filter(_ yaml: String, stats: ComponentStats? = nil) throws -> GrepFilter {
        let (c, errs) = FilterTestBatch.parse(GrepPlugin.spec, yaml)
        XCTAssertEqual(errs, [])
        let config = try XCTUnwrap(c)
        return try XCTUnwrap(try config.build(FilterTestBatch.context("grep", stats: stats)) as? GrepFilter)
    }

    func testIncludeAllMustMatchOnNestedFields() throws {
        let f = try filter(#"include: {level: "^(error|warn)$", "http.status": "^5"}"#)
        var b = FilterTestBatch.make([
            ("a", #""level":"error","http":{"status":503}"#),
            ("b", #""level":"error","http":{"status":200}"#),
            ("c", #""level":"info","http":{"status":500}"#),
            ("d", #""level":"warn""#),
            ("e", #""level":"warn","http":{"status":"502"}"#),
        ])
        f.process(&b)
        XCTAssertEqual(FilterTestBatch.messages(b), ["a", "e"])
    }

    func testExcludeAnyMatchDropsAndMissingFieldsPass() throws {
        let stats = ComponentStats(component: "grep", kind: .filter)
        let f = try filter(#"exclude: {message: "GET /health", "kubernetes.labels[\"app.kubernetes.io/name\"]": "^debug-tools$"}"#, stats: stats)
        var b = FilterTestBatch.make([("GET /health 200", ""), ("GET /orders 200", ""), ("no fields", "")],
                                     shared: #""kubernetes":{"labels":{"app.kubernetes.io/name":"shop"}}"#)
        f.process(&b)
        XCTAssertEqual(FilterTestBatch.messages(b), ["GET /orders 200", "no fields"])
        var d = FilterTestBatch.make([("x", ""), ("y", "")], shared: #""kubernetes":{"labels":{"app.kubernetes.io/name":"debug-tools"}}"#)
        f.process(&d)
        XCTAssertTrue(d.isEmpty)
        XCTAssertEqual(stats.counters.first { $0.name == "records_dropped" }?.current, 3)
        _ = try FilterTestBatch.documents(b)
    }

    func testIncludeOnMissingFieldDrops() throws {
        let f = try filter("include: {kubernetes.namespace_name: prod}")
        var b = FilterTestBatch.make([("a", ""), ("b", #""kubernetes":{"namespace_name":"prod-eu"}"#)])
        f.process(&b)
        XCTAssertEqual(FilterTestBatch.messages(b), ["b"])
    }

    func testConfigErrors() {
        XCTAssertTrue(FilterTestBatch.parse(GrepPlugin.spec, "{}").1.joined().contains("include"))
        XCTAssertTrue(FilterTestBatch.parse(GrepPlugin.spec, "include: {level: '(['}").1.joined().contains("invalid regular expression"))
        XCTAssertTrue(FilterTestBatch.parse(GrepPlugin.spec, "include: {'a..b': x}").1.joined().contains("invalid field path"))
        XCTAssertTrue(FilterTestBatch.parse(GrepPlugin.spec, "include: {a: x}\nexlude: {b: y}").1.joined().contains("did you mean \"exclude\""))
    }
}
