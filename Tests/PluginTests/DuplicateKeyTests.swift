import AnduinCore
import Foundation
import XCTest

@testable import filter_modify
@testable import filter_parse

/// Issue 24 (7): a document never carries a key twice, at any depth. Every document is encoded and
/// parsed back strictly (decoded keys, every object, as Python's `object_pairs_hook` check would).
final class DuplicateKeyTests: XCTestCase {
    // MARK: helpers

    /// The documents of `b`, each checked for duplicate keys in every object, as ordered members.
    private func documents(_ b: RecordBatch, file: StaticString = #filePath, line: UInt = #line) throws -> [JSONValue] {
        try b.records.indices.map { i in
            var out: [UInt8] = []
            RecordEncoder.append(b, i, to: &out)
            let doc = try JSONValue.parse(out)
            if let dup = Self.duplicate(in: doc) {
                XCTFail("duplicate key \"\(dup)\" in \(String(decoding: out, as: UTF8.self))", file: file, line: line)
            }
            return doc
        }
    }

    /// The first key found twice in one object of `v`, at any depth.
    static func duplicate(in v: JSONValue) -> String? {
        switch v {
        case .object(let members):
            var seen = Set<String>()
            for (k, value) in members {
                if !seen.insert(k).inserted { return k }
                if let d = duplicate(in: value) { return d }
            }
        case .array(let items):
            for item in items { if let d = duplicate(in: item) { return d } }
        default: break
        }
        return nil
    }

    private func parse(_ formats: [ParseFormat] = [.json], target: ParseTarget = .root) throws -> ParseFilter {
        let filter = try ParseConfig(formats: formats, target: target).build(FilterTestBatch.context("parse"))
        return try XCTUnwrap(filter as? ParseFilter)
    }

    private func modify(_ yaml: String) throws -> ModifyFilter {
        let (c, errs) = FilterTestBatch.parse(ModifyPlugin.spec, yaml)
        XCTAssertEqual(errs, [])
        return try XCTUnwrap(try XCTUnwrap(c).build(FilterTestBatch.context("modify")) as? ModifyFilter)
    }

    private func lifted(_ messages: [String], fields: String = "", shared: String = "",
                        formats: [ParseFormat] = [.json], target: ParseTarget = .root,
                        file: StaticString = #filePath, line: UInt = #line) throws -> [JSONValue] {
        var b = FilterTestBatch.make(messages.map { ($0, fields) }, shared: shared)
        try parse(formats, target: target).process(&b)
        return try documents(b, file: file, line: line)
    }

    private func keys(_ v: JSONValue) -> [String] { v.members?.map(\.key) ?? [] }

    // MARK: renames

    /// `{"log":"x","_log":"y"}` gave `_log` twice. The written `_log` keeps its name; the renamed
    /// one takes the fewest underscores free, whatever the order of the keys.
    func testReservedRenameNeverTakesAnotherKeysName() throws {
        for msg in [#"{"log":"x","_log":"y"}"#, #"{"_log":"y","log":"x"}"#] {
            let d = try XCTUnwrap(lifted([msg]).first)
            XCTAssertEqual(d["_log"], .string("y"), msg)
            XCTAssertEqual(d["__log"], .string("x"), msg)
        }
        let d = try XCTUnwrap(lifted([#"{"__stream":3,"stream":1,"_stream":2,"@timestamp":"t","_@timestamp":"u"}"#]).first)
        XCTAssertEqual(d["_stream"], .number("2"))
        XCTAssertEqual(d["__stream"], .number("3"))
        XCTAssertEqual(d["___stream"], .number("1"))
        XCTAssertEqual(d["_@timestamp"], .string("u"))
        XCTAssertEqual(d["__@timestamp"], .string("t"))
        // A reserved key given twice: the last value, renamed once.
        let twice = try XCTUnwrap(lifted([#"{"log":1,"_log":2,"log":3}"#]).first)
        XCTAssertEqual(twice["_log"], .number("2"))
        XCTAssertEqual(twice["__log"], .number("3"))
        XCTAssertEqual(keys(twice).filter { $0.hasSuffix("_log") }.count, 2)
    }

    func testLogfmtRenameNeverTakesAnotherKeysName() throws {
        let d = try XCTUnwrap(lifted(["stream=s1 _stream=s2 x=1"], formats: [.logfmt]).first)
        XCTAssertEqual(d["_stream"], .string("s2"))
        XCTAssertEqual(d["__stream"], .string("s1"))
        XCTAssertEqual(d["stream"], .string("stdout"))
    }

    func testRenameAvoidsTheRecordsOwnAndSharedFields() throws {
        let d = try XCTUnwrap(lifted([#"{"log":"x","a":1}"#], fields: #""_log":"own""#, shared: #""__log":"shared""#).first)
        XCTAssertEqual(d["_log"], .string("own"))
        XCTAssertEqual(d["__log"], .string("shared"))
        XCTAssertEqual(d["___log"], .string("x"))
    }

    // MARK: input duplicates

    func testInputDuplicatesCollapseLastWinsAtEveryDepth() throws {
        let d = try XCTUnwrap(lifted([
            #"{"level":"info","msg":"a","level":"warn","o":{"x":1,"y":{"z":1,"z":[{"q":1,"q":2}]},"x":2},"\u006dsg":"b"}"#,
        ]).first)
        XCTAssertEqual(d["level"], .string("warn"))
        XCTAssertEqual(d["msg"], .string("b"))
        XCTAssertEqual(d["o"]?["x"], .number("2"))
        XCTAssertEqual(d["o"]?["y"]?["z"]?.array?.first?["q"], .number("2"))
        // The last one's place: a reader of the document sees the keys in the order they were last written.
        XCTAssertEqual(keys(d).filter { !["@timestamp", "stream", "log", "event"].contains($0) }, ["level", "o", "msg"])
    }

    /// zap writes a field twice when a logger's context and the call both set it.
    func testZapStyleDuplicates() throws {
        let docs = try lifted([
            #"{"level":"info","ts":1.5,"caller":"a.go:1","msg":"m","request_id":"r1","request_id":"r2","error":"e","error":"f"}"#,
        ])
        XCTAssertEqual(docs[0]["request_id"], .string("r2"))
        XCTAssertEqual(docs[0]["error"], .string("f"))
    }

    /// More keys than the quick filter tells apart: the exact check with a hash table.
    func testManyKeysWithDuplicates() throws {
        var members = (0..<300).map { #""k\#($0)":\#($0)"# }
        members += ["\"k7\":\"again\"", "\"k299\":\"last\"", "\"log\":1", "\"_log\":2"]
        let nested = "{" + members.joined(separator: ",") + "}"
        let d = try XCTUnwrap(lifted(["{" + members.joined(separator: ",") + ",\"n\":" + nested + "}"]).first)
        XCTAssertEqual(d["k7"], .string("again"))
        XCTAssertEqual(d["k299"], .string("last"))
        XCTAssertEqual(d["k0"], .number("0"))
        XCTAssertEqual(d["__log"], .number("1"))
        XCTAssertEqual(d["n"]?["k7"], .string("again"))
        XCTAssertEqual(d["n"]?.members?.count, 302)
        XCTAssertEqual(d.members?.count, 302 + 1 + 4)
    }

    // MARK: last writer

    /// `modify set env` then a lifted `env`: the lift is the last writer, once. `modify` puts the
    /// constant in the batch's shared fields when no record has `env`: the other records keep it.
    func testLiftAfterModifySetWins() throws {
        var b = FilterTestBatch.make([(#"{"env":"from-log","a":1}"#, ""), ("plain text", ""), (#"{"b":2}"#, "")])
        try modify("set: {env: prod}").process(&b)
        try parse().process(&b)
        let docs = try documents(b)
        XCTAssertEqual(docs.map { $0["env"] }, [.string("from-log"), .string("prod"), .string("prod")])
        // The record's own fields, not shared.
        var own = FilterTestBatch.make([(#"{"env":"from-log"}"#, #""env":"own","x":1"#)])
        try parse().process(&own)
        let d = try documents(own)
        XCTAssertEqual(d[0]["env"], .string("from-log"))
        XCTAssertEqual(d[0]["x"], .number("1"))
    }

    func testModifyAfterLiftWins() throws {
        var b = FilterTestBatch.make([(#"{"env":"from-log"}"#, "")])
        try parse().process(&b)
        try modify("set: {env: prod}").process(&b)
        XCTAssertEqual(try documents(b)[0]["env"], .string("prod"))
    }

    func testNestedTargetReplacesAFieldOfTheSameName() throws {
        let docs = try lifted([#"{"a":1,"a":2}"#], fields: #""parsed":"old","k":1"#, target: .field("parsed"))
        XCTAssertEqual(docs[0]["parsed"]?["a"], .number("2"))
        XCTAssertEqual(docs[0]["k"], .number("1"))
        // A name that JSON escapes.
        let quoted = try lifted([#"{"a":1}"#], fields: #""p\"q":"old""#, target: .field(#"p"q"#))
        XCTAssertEqual(quoted[0][#"p"q"#]?["a"], .number("1"))
        var b = FilterTestBatch.make([(#"{"a":1}"#, ""), ("plain", "")], shared: #""parsed":"shared""#)
        try parse(target: .field("parsed")).process(&b)
        let shared = try documents(b)
        XCTAssertEqual(shared[0]["parsed"]?["a"], .number("1"))
        XCTAssertEqual(shared[1]["parsed"], .string("shared"))
    }

    // MARK: random

    /// Random objects (keys from a small set, so they repeat; reserved and underscored names; nested
    /// objects), with random own and shared fields: never a duplicate, every last value kept.
    func testRandomObjectsNeverGiveDuplicates() throws {
        var rng = SplitMix(seed: 24)
        let names = ["a", "b", "log", "_log", "__log", "stream", "_stream", "event", "@timestamp", "x\\u0061", "xa", "env"]
        func value(_ depth: Int) -> String {
            switch rng.next() % (depth > 2 ? 3 : 5) {
            case 0: return "\(rng.next() % 100)"
            case 1: return "\"v\(rng.next() % 100)\""
            case 2: return "null"
            case 3: return object(depth + 1)
            default: return "[" + value(depth + 1) + "," + object(depth + 1) + "]"
            }
        }
        func object(_ depth: Int) -> String {
            let n = Int(rng.next() % 8)
            return "{" + (0..<n).map { _ in "\"\(names[Int(rng.next() % UInt64(names.count))])\":" + value(depth) }.joined(separator: ",") + "}"
        }
        let parser = try parse([.json, .logfmt])
        for round in 0..<400 {
            var msgs: [(String, String)] = []
            for _ in 0..<5 {
                let own = rng.next() % 3 == 0 ? #""_log":1,"c":"own""# : (rng.next() % 2 == 0 ? #""a":"own""# : "")
                let msg = rng.next() % 4 == 0
                    ? (0..<Int(1 + rng.next() % 6)).map { _ in ["stream", "_stream", "a", "log", "b"][Int(rng.next() % 5)] + "=v\(rng.next() % 9)" }.joined(separator: " ")
                    : object(1)
                msgs.append((msg, own))
            }
            var b = FilterTestBatch.make(msgs, shared: round % 2 == 0 ? #""env":"shared","__log":2"# : "")
            parser.process(&b)
            let docs = try documents(b)
            for (i, d) in docs.enumerated() {
                // A lifted top-level key that is not renamed keeps its last value.
                guard let src = try? JSONValue.parse(Array(msgs[i].0.utf8)), let m = src.members, !m.isEmpty else { continue }
                var last: [String: JSONValue] = [:]
                for (k, v) in m { last[k] = v }
                for (k, v) in last where !["log", "stream", "event", "@timestamp", "kubernetes"].contains(k) {
                    XCTAssertEqual(Self.normalized(d[k]), Self.normalized(v), "\(k) in \(msgs[i].0)")
                }
            }
        }
    }

    /// `v` with duplicate keys collapsed, last value at the last place (what the lift writes).
    static func normalized(_ v: JSONValue?) -> JSONValue? {
        guard let v else { return nil }
        switch v {
        case .object(let members):
            var out: [(key: String, value: JSONValue)] = []
            for (k, value) in members {
                out.removeAll { $0.key == k }
                out.append((k, normalized(value) ?? .null))
            }
            return .object(out)
        case .array(let items): return .array(items.map { normalized($0) ?? .null })
        default: return v
        }
    }
}
