import AnduinCore
import Foundation
import XCTest

@testable import filter_parse

final class ParseFilterTests: XCTestCase {
    // MARK: helpers

    private func makeFilter(_ config: ParseConfig, stats: ComponentStats? = nil) throws -> ParseFilter {
        let stats = stats ?? ComponentStats(component: "parse", kind: .filter)
        let context = ComponentContext(name: "parse", kind: .filter, dataDirectory: "/tmp",
                                       logger: .init(label: "test"), stats: stats)
        let filter = try config.build(context)
        return try XCTUnwrap(filter as? ParseFilter)
    }

    private func batch(_ messages: [[UInt8]]) -> RecordBatch {
        var b = RecordBatch(source: SourceInfo(path: "/var/log/containers/a.log", sourceID: 7), inputName: "test")
        for (i, m) in messages.enumerated() {
            let range = m.withUnsafeBytes { b.append(bytes: $0) }
            b.records.append(Record(timestamp: 1_700_000_000_000_000_000, offset: Int64(i * 100),
                                    message: range, stream: .stdout))
        }
        return b
    }

    /// Encodes the batch as NDJSON and parses every line with Foundation (which rejects invalid JSON).
    private func encoded(_ b: RecordBatch, file: StaticString = #filePath, line: UInt = #line) throws -> [[String: Any]] {
        var out: [UInt8] = []
        RecordEncoder.appendNDJSON(b, to: &out)
        var docs: [[String: Any]] = []
        for l in out.split(separator: UInt8(ascii: "\n")) {
            let obj = try JSONSerialization.jsonObject(with: Data(l))
            docs.append(try XCTUnwrap(obj as? [String: Any], file: file, line: line))
            // Foundation keeps one of two duplicate keys silently; count keys in the text as well.
            try assertNoDuplicateKeys(Array(l), file: file, line: line)
        }
        XCTAssertEqual(docs.count, b.count, file: file, line: line)
        return docs
    }

    /// Checks the top-level object has no duplicate key, comparing the raw key texts.
    private func assertNoDuplicateKeys(_ doc: [UInt8], file: StaticString, line: UInt) throws {
        var keys: [[UInt8]] = []
        var depth = 0
        var i = 0
        var expectKey = false
        while i < doc.count {
            let c = doc[i]
            if c == UInt8(ascii: "\"") {
                var j = i + 1
                while j < doc.count && doc[j] != UInt8(ascii: "\"") { j += doc[j] == UInt8(ascii: "\\") ? 2 : 1 }
                if depth == 1 && expectKey { keys.append(Array(doc[(i + 1)..<j])) }
                expectKey = false
                i = j + 1
                continue
            }
            if c == UInt8(ascii: "{") || c == UInt8(ascii: "[") { depth += 1 }
            if c == UInt8(ascii: "}") || c == UInt8(ascii: "]") { depth -= 1 }
            expectKey = depth == 1 && (c == UInt8(ascii: "{") || c == UInt8(ascii: ","))
            i += 1
        }
        XCTAssertEqual(Set(keys).count, keys.count, "duplicate keys in \(String(decoding: doc, as: UTF8.self))",
                       file: file, line: line)
    }

    private func run(_ config: ParseConfig, _ messages: [String], stats: ComponentStats? = nil) throws -> [[String: Any]] {
        try runBytes(config, messages.map { Array($0.utf8) }, stats: stats)
    }

    private func runBytes(_ config: ParseConfig, _ messages: [[UInt8]], stats: ComponentStats? = nil) throws -> [[String: Any]] {
        let filter = try makeFilter(config, stats: stats)
        var b = batch(messages)
        filter.process(&b)
        return try encoded(b)
    }

    private func count(_ stats: ComponentStats, _ name: String) -> Int {
        stats.counters.first { $0.name == name }?.current ?? -1
    }

    private let json = ParseConfig(formats: [.json])
    private let logfmt = ParseConfig(formats: [.logfmt])

    // MARK: JSON

    func testJSONScanedToRoot() throws {
        let stats = ComponentStats(component: "parse", kind: .filter)
        let docs = try run(json, [#"{"level":"info","n":5,"ok":true,"nested":{"a":[1,2,null]}}"#], stats: stats)
        let d = docs[0]
        XCTAssertNil(d["message"])
        XCTAssertEqual(d["level"] as? String, "info")
        XCTAssertEqual(d["n"] as? Int, 5)
        XCTAssertEqual(d["ok"] as? Bool, true)
        let a = try XCTUnwrap((d["nested"] as? [String: Any])?["a"] as? [Any])
        XCTAssertEqual(a.count, 3)
        XCTAssertEqual(a.first as? Int, 1)
        XCTAssertTrue(a.last is NSNull)
        XCTAssertEqual(d["stream"] as? String, "stdout")
        XCTAssertEqual(count(stats, "parsed_json"), 1)
        XCTAssertEqual(count(stats, "not_parsed"), 0)
    }

    func testJSONWithLeadingWhitespace() throws {
        let docs = try run(json, ["  \t{\"a\":\"b\"}  "])
        XCTAssertEqual(docs[0]["a"] as? String, "b")
        XCTAssertNil(docs[0]["message"])
    }

    func testNestedTarget() throws {
        let docs = try run(ParseConfig(formats: [.json, .logfmt], target: .field("app")),
                           [#"{"stream":"x","v":1}"#, "level=warn msg=\"a b\""])
        let a = try XCTUnwrap(docs[0]["app"] as? [String: Any])
        // Nested keys cannot clash with the agent's fields: no rename.
        XCTAssertEqual(a["stream"] as? String, "x")
        XCTAssertEqual(a["v"] as? Int, 1)
        XCTAssertEqual(docs[0]["stream"] as? String, "stdout")
        XCTAssertNil(docs[0]["message"])
        let b = try XCTUnwrap(docs[1]["app"] as? [String: Any])
        XCTAssertEqual(b["level"] as? String, "warn")
        XCTAssertEqual(b["msg"] as? String, "a b")
    }

    func testKeepMessage() throws {
        let m = #"{"message":"inner","a":1}"#
        let docs = try run(ParseConfig(formats: [.json], keepMessage: true), [m])
        XCTAssertEqual(docs[0]["message"] as? String, m)
        XCTAssertEqual(docs[0]["_message"] as? String, "inner")
        XCTAssertEqual(docs[0]["a"] as? Int, 1)
    }

    func testMessageKeyNotRenamedWhenLifted() throws {
        let docs = try run(json, [#"{"message":"inner"}"#])
        XCTAssertEqual(docs[0]["message"] as? String, "inner")
        XCTAssertNil(docs[0]["_message"])
    }

    func testReservedKeysRenamedAtRoot() throws {
        let docs = try run(ParseConfig(formats: [.json, .logfmt]), [
            #"{"@timestamp":"t","stream":"s","log":{"x":1},"event":"e","kubernetes":"k","streams":2}"#,
            "stream=s log=l kubernetes event @timestamp=t",
        ])
        for d in docs {
            XCTAssertEqual(d["_@timestamp"] as? String, "t")
            XCTAssertEqual(d["_stream"] as? String, "s")
            XCTAssertNotNil(d["_log"])
            XCTAssertNotNil(d["_event"])
            XCTAssertNotNil(d["_kubernetes"])
            XCTAssertEqual(d["stream"] as? String, "stdout")
            XCTAssertNotNil(d["log"] as? [String: Any])
            XCTAssertNotNil(d["event"] as? [String: Any])
        }
        XCTAssertEqual(docs[0]["streams"] as? Int, 2)
    }

    func testNonJSONKept() throws {
        let stats = ComponentStats(component: "parse", kind: .filter)
        let docs = try run(json, ["plain text line", "", "   "], stats: stats)
        XCTAssertEqual(docs.map { $0["message"] as? String }, ["plain text line", "", "   "])
        XCTAssertEqual(count(stats, "not_parsed"), 3)
        XCTAssertEqual(count(stats, "parsed_json"), 0)
    }

    func testInvalidJSONKept() throws {
        let bad = [#"{"a":1"#, #"{"a":1} trailing"#, #"{"a":}"#, #"{a:1}"#, "{", #"{"a":1}{"b":2}"#, "{}", "[1,2]",
                   #"{"a":"\x"}"#]
        let docs = try run(json, bad)
        XCTAssertEqual(docs.map { $0["message"] as? String }, bad)
        XCTAssertTrue(docs.allSatisfy { $0["a"] == nil })
    }

    func testExistingFieldsKept() throws {
        let filter = try makeFilter(json)
        var b = RecordBatch(source: SourceInfo(path: "/x.log", sourceID: 1), inputName: "t")
        // Record 0: fields at the end of the arena (extended in place); record 1: not at the end (copied).
        let m0 = Array(#"{"a":1}"#.utf8).withUnsafeBytes { b.append(bytes: $0) }
        let f0 = Array(#""pre":"zero""#.utf8).withUnsafeBytes { b.append(bytes: $0) }
        let m1 = Array(#"{"b":2}"#.utf8).withUnsafeBytes { b.append(bytes: $0) }
        let f1 = Array(#""pre":"one""#.utf8).withUnsafeBytes { b.append(bytes: $0) }
        b.records.append(Record(timestamp: 0, offset: 10, message: m1, fields: f1, stream: .none))
        b.records.append(Record(timestamp: 0, offset: 0, message: m0, fields: f0, stream: .stderr))
        filter.process(&b)
        let docs = try encoded(b)
        XCTAssertEqual(docs[0]["pre"] as? String, "one")
        XCTAssertEqual(docs[0]["b"] as? Int, 2)
        XCTAssertEqual(docs[1]["pre"] as? String, "zero")
        XCTAssertEqual(docs[1]["a"] as? Int, 1)
        // The new arena holds only what is still used: the lifted messages are gone.
        XCTAssertEqual(String(decoding: b.bytes, as: UTF8.self), #""pre":"one","b":2"pre":"zero","a":1"#)
    }

    /// Records before the first lift move to the new arena with their bytes; a record whose ranges
    /// lie outside the arena (a bug upstream) loses them instead of crashing the agent.
    func testMixedBatchAndBadRangesAfterCompaction() throws {
        let stats = ComponentStats(component: "parse", kind: .filter)
        let filter = try makeFilter(json, stats: stats)
        var b = batch(["plain one", #"{"a":1}"#, "plain two", #"{"b":"x"}"#].map { Array($0.utf8) })
        b.records.insert(Record(timestamp: 0, offset: 1, message: 5..<10_000, stream: .stdout), at: 1)
        let plainFields = Array(#""k":"v""#.utf8).withUnsafeBytes { b.append(bytes: $0) }
        b.records[0].fields = plainFields
        filter.process(&b)
        let docs = try encoded(b)
        XCTAssertEqual(docs.map { $0["message"] as? String }, ["plain one", "", nil, "plain two", nil])
        XCTAssertEqual(docs[0]["k"] as? String, "v")
        XCTAssertEqual(docs[2]["a"] as? Int, 1)
        XCTAssertEqual(docs[4]["b"] as? String, "x")
        XCTAssertEqual(count(stats, "parsed_json"), 2)
        XCTAssertEqual(count(stats, "not_parsed"), 3)
        XCTAssertEqual(String(decoding: b.bytes, as: UTF8.self), #"plain one"k":"v""a":1plain two"b":"x""#)
    }

    func testAlreadyLiftedRecordSkipped() throws {
        let filter = try makeFilter(json)
        var b = batch([#"{"a":1}"#.utf8].map(Array.init))
        filter.process(&b)
        let fields = b.records[0].fields
        filter.process(&b)   // a second parse filter in the chain
        XCTAssertEqual(b.records[0].fields, fields)
        _ = try encoded(b)
    }

    // MARK: logfmt

    func testLogfmtBasic() throws {
        let stats = ComponentStats(component: "parse", kind: .filter)
        let docs = try run(logfmt, [#"level=info msg="a b \"quoted\" c" dur=1.2ms debug empty= q="" eq="x=y" u=a=b"#],
                           stats: stats)
        let d = docs[0]
        XCTAssertNil(d["message"])
        XCTAssertEqual(d["level"] as? String, "info")
        XCTAssertEqual(d["msg"] as? String, #"a b "quoted" c"#)
        XCTAssertEqual(d["dur"] as? String, "1.2ms")
        XCTAssertEqual(d["debug"] as? Bool, true)
        XCTAssertEqual(d["empty"] as? String, "")
        XCTAssertEqual(d["q"] as? String, "")
        XCTAssertEqual(d["eq"] as? String, "x=y")
        XCTAssertEqual(d["u"] as? String, "a=b")
        XCTAssertEqual(count(stats, "parsed_logfmt"), 1)
    }

    func testLogfmtWhitespaceAndTabs() throws {
        let docs = try run(logfmt, ["  a=1\tb=2   c  "])
        XCTAssertEqual(docs[0]["a"] as? String, "1")
        XCTAssertEqual(docs[0]["b"] as? String, "2")
        XCTAssertEqual(docs[0]["c"] as? Bool, true)
    }

    func testLogfmtEscapes() throws {
        let docs = try run(logfmt, [#"a="l1\nl2\ttab" b="back\\slash" c="\u00e9\ud83d\ude00" d="\ud800x" e="\x\q" f="\u12" g="a\/b""#])
        let d = docs[0]
        XCTAssertEqual(d["a"] as? String, "l1\nl2\ttab")
        XCTAssertEqual(d["b"] as? String, #"back\slash"#)
        XCTAssertEqual(d["c"] as? String, "é😀")
        XCTAssertEqual(d["d"] as? String, "\u{FFFD}x")
        XCTAssertEqual(d["e"] as? String, #"\x\q"#)
        XCTAssertEqual(d["f"] as? String, #"\u12"#)
        XCTAssertEqual(d["g"] as? String, "a/b")
    }

    func testLogfmtRejected() throws {
        let stats = ComponentStats(component: "parse", kind: .filter)
        let bad = [
            "user logged in id=5",        // first token is not key=
            "debug a=1",                  // bare key first
            #"a="unterminated b=2"#,      // unterminated quote
            #"a="ends with backslash\"#,  // the closing quote is escaped
            #"a="x"y b=1"#,               // junk after a closing quote
            "=5 a=1",                     // empty key
            "a=1 =2",
            #"a"b=1"#,                    // quote in a key
            "a=1 b\u{1}c=2",              // control character in a key
            "",
            "   ",
        ]
        let docs = try run(logfmt, bad, stats: stats)
        XCTAssertEqual(docs.map { $0["message"] as? String }, bad)
        XCTAssertEqual(count(stats, "not_parsed"), bad.count)
        XCTAssertEqual(count(stats, "parsed_logfmt"), 0)
    }

    func testLogfmtInvalidUTF8() throws {
        // Invalid bytes in a value become U+FFFD; in a key they make the line not logfmt.
        let docs = try runBytes(logfmt, [
            Array("a=".utf8) + [0xFF, 0xC3] + Array(" b=\"x".utf8) + [0xE2, 0x82] + Array("\" ok=1".utf8),
            [0xFF] + Array("=1 b=2".utf8),
            Array("a=1 k".utf8) + [0xC0, 0x80] + Array("=2".utf8),
        ])
        XCTAssertEqual(docs[0]["a"] as? String, "\u{FFFD}\u{FFFD}")
        XCTAssertEqual(docs[0]["b"] as? String, "x\u{FFFD}\u{FFFD}")
        XCTAssertEqual(docs[0]["ok"] as? String, "1")
        XCTAssertNotNil(docs[1]["message"])
        XCTAssertNil(docs[1]["b"])
        XCTAssertNotNil(docs[2]["message"])
        XCTAssertNil(docs[2]["a"])
    }

    func testLogfmtUnicodeKey() throws {
        let docs = try run(logfmt, ["clé=v a\\b=1"])
        XCTAssertEqual(docs[0]["clé"] as? String, "v")
        XCTAssertEqual(docs[0]["a\\b"] as? String, "1")
    }

    func testLogfmtDuplicateKeysLastWins() throws {
        // Few keys (pairwise check) and many keys (hash table); renamed `stream` does not take the
        // name of `_stream`: it becomes `__stream`.
        var many = (0..<40).map { "k\($0)=\($0)" }.joined(separator: " ")
        many += " k3=again k39=last stream=s1 _stream=s2"
        let docs = try run(logfmt, ["a=1 b=2 a=3 b", "stream=s1 _stream=s2 x=1", many])
        XCTAssertEqual(docs[0]["a"] as? String, "3")
        XCTAssertEqual(docs[0]["b"] as? Bool, true)
        XCTAssertEqual(docs[1]["_stream"] as? String, "s2")
        XCTAssertEqual(docs[1]["__stream"] as? String, "s1")
        XCTAssertEqual(docs[2]["k3"] as? String, "again")
        XCTAssertEqual(docs[2]["k39"] as? String, "last")
        XCTAssertEqual(docs[2]["k0"] as? String, "0")
        XCTAssertEqual(docs[2]["_stream"] as? String, "s2")
        XCTAssertEqual(docs[2]["__stream"] as? String, "s1")
        XCTAssertEqual(docs[2].count, 40 + 2 + 4)   // k0...k39, _stream, __stream, and @timestamp, stream, log, event
    }

    // MARK: formats

    func testFormatsOrderAndSelection() throws {
        let messages = [#"{"a":"j"}"#, "a=l", "plain"]
        let stats1 = ComponentStats(component: "p1", kind: .filter)
        let both = try run(ParseConfig(formats: [.logfmt, .json]), messages, stats: stats1)
        XCTAssertEqual(both[0]["a"] as? String, "j")
        XCTAssertEqual(both[1]["a"] as? String, "l")
        XCTAssertEqual(both[2]["message"] as? String, "plain")
        XCTAssertEqual([count(stats1, "parsed_json"), count(stats1, "parsed_logfmt"), count(stats1, "not_parsed")], [1, 1, 1])

        let stats2 = ComponentStats(component: "p2", kind: .filter)
        let jsonOnly = try run(json, messages, stats: stats2)
        XCTAssertEqual(jsonOnly[1]["message"] as? String, "a=l")
        XCTAssertEqual([count(stats2, "parsed_json"), count(stats2, "parsed_logfmt"), count(stats2, "not_parsed")], [1, 0, 2])

        let stats3 = ComponentStats(component: "p3", kind: .filter)
        let logfmtOnly = try run(logfmt, messages, stats: stats3)
        XCTAssertEqual(logfmtOnly[0]["message"] as? String, #"{"a":"j"}"#)
        XCTAssertEqual([count(stats3, "parsed_json"), count(stats3, "parsed_logfmt"), count(stats3, "not_parsed")], [0, 1, 2])
    }

    /// Random and mutated inputs: never a crash, always valid JSON without duplicate keys.
    func testGarbageNeverBreaksOutput() throws {
        var rng = SplitMix(seed: 42)
        let alphabet = Array(#"ab=" \{}[]:,\\u0 1"#.utf8) + [0x09, 0x0A, 0x00, 0xFF, 0xC3, 0xA9, 0xED, 0xA0]
        let seeds = [#"a="b c" d=1"#, #"{"a":[1,{"b":"c\u00e9"}],"stream":1}"#, "stream=1 _stream=2"]
        var messages: [[UInt8]] = []
        for _ in 0..<3000 {
            var m: [UInt8]
            if rng.next() % 2 == 0 {
                m = (0..<Int(rng.next() % 40)).map { _ in alphabet[Int(rng.next() % UInt64(alphabet.count))] }
            } else {
                m = Array(seeds[Int(rng.next() % UInt64(seeds.count))].utf8)
                for _ in 0..<Int(rng.next() % 3) where !m.isEmpty {
                    m[Int(rng.next() % UInt64(m.count))] = alphabet[Int(rng.next() % UInt64(alphabet.count))]
                }
            }
            messages.append(m)
        }
        for config in [ParseConfig(formats: [.json, .logfmt]), ParseConfig(formats: [.logfmt], target: .field("x"), keepMessage: true)] {
            let stats = ComponentStats(component: "fuzz", kind: .filter)
            _ = try runBytes(config, messages, stats: stats)
            // The mix must exercise both outcomes to mean anything.
            XCTAssertGreaterThan(count(stats, "parsed_logfmt"), 100)
            XCTAssertGreaterThan(count(stats, "not_parsed"), 100)
        }
    }

    // MARK: config

    private func configure(_ yaml: String) throws -> (ParseConfig?, [String]) {
        let diags = Diagnostics()
        let value = try XCTUnwrap(ConfigValue.parse(yaml: yaml, file: "test.yaml", environment: [:], diagnostics: diags))
        let reader = ConfigReader(value, context: "filter \"parse\" (parse)", diagnostics: diags)
        guard case .filter(let parse) = ParsePlugin.spec.configure else {
            XCTFail("not a filter")
            return (nil, [])
        }
        let config = parse(reader) as? ParseConfig
        return (config, diags.items.map(\.message))
    }

    func testConfigDefaultsAndValues() throws {
        XCTAssertEqual(ParsePlugin.spec.type, "parse")
        XCTAssertEqual(ParsePlugin.spec.kind, .filter)

        let (d, e1) = try configure("type: parse\nfrom: [a]\n")
        XCTAssertEqual(e1, [])
        XCTAssertEqual(d?.formats, [.json])
        XCTAssertEqual(d?.target, .root)
        XCTAssertEqual(d?.keepMessage, false)

        let (c, e2) = try configure("formats: [logfmt, json]\ntarget: app\nkeep_message: true\n")
        XCTAssertEqual(e2, [])
        XCTAssertEqual(c?.formats, [.logfmt, .json])
        XCTAssertEqual(c?.target, .field("app"))
        XCTAssertEqual(c?.keepMessage, true)

        // `message` is free as a target when the message itself is not kept.
        let (m, e3) = try configure("target: message\n")
        XCTAssertEqual(e3, [])
        XCTAssertEqual(m?.target, .field("message"))
    }

    func testConfigErrors() throws {
        let cases: [(String, String)] = [
            ("formats: [json, xml]", #"formats: unknown format "xml"; expected one of json, logfmt, regex, nginx"#),
            ("formats: []", "formats: list at least one format (json, logfmt, regex, nginx"),
            ("formats: [json, json]", #"formats: "json" is listed twice"#),
            ("formats: json", "formats: expected a list of strings"),
            ("target: kubernetes", #"target: "kubernetes" is a field the agent writes itself"#),
            ("target: '@timestamp'", #"target: "@timestamp" is a field the agent writes itself"#),
            ("target: message\nkeep_message: true", #"target: "message" is a field the agent writes itself"#),
            ("target: ''", "target: must be root or a field name"),
            ("keep_message: maybe", "keep_message: expected true or false"),
        ]
        for (yaml, expected) in cases {
            let (config, errors) = try configure(yaml)
            XCTAssertNil(config, yaml)
            XCTAssertEqual(errors.count, 1, "\(yaml): \(errors)")
            XCTAssertTrue(errors.first?.contains(expected) ?? false, "\(yaml): \(errors)")
            XCTAssertTrue(errors.first?.hasPrefix("filter \"parse\" (parse): ") ?? false, "\(yaml): \(errors)")
        }
    }
}

/// Small deterministic generator, so a failing fuzz case reproduces.
/// A small deterministic generator shared by the plugin tests (SplitMix64).
struct SplitMix {
    var state: UInt64
    init(seed: UInt64) { state = seed }
    mutating func next() -> UInt64 {
        state &+= 0x9E37_79B9_7F4A_7C15
        var z = state
        z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
        z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
        return z ^ (z >> 31)
    }
}
