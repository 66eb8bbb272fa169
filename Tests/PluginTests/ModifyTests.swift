import AnduinCore
import Foundation
import XCTest

@testable import filter_modify

final class ModifyTests: XCTestCase {
    func filter(_ yaml: String) throws -> ModifyFilter {
        let (c, errs) = FilterTestBatch.parse(ModifyPlugin.spec, yaml)
        XCTAssertEqual(errs, [])
        let config = try XCTUnwrap(c)
        return try XCTUnwrap(try config.build(FilterTestBatch.context("modify")) as? ModifyFilter)
    }

    func run(_ yaml: String, _ b: RecordBatch, file: StaticString = #filePath, line: UInt = #line) throws -> [[String: Any]] {
        var b = b
        try filter(yaml).process(&b)
        return try FilterTestBatch.documents(b, file: file, line: line)
    }

    func testSetCreatesNestedObjectsAndTypesValues() throws {
        let docs = try run(#"set: {env: prod, http.status: 200, http.ok: true, code: "200", app.meta.tier: web, level: error}"#,
                           FilterTestBatch.make([("a", #""level":"info","http":{"method":"GET"}"#), ("b", "")]))
        let a = docs[0]
        XCTAssertEqual(a["env"] as? String, "prod")
        XCTAssertEqual(a["level"] as? String, "error")
        let http = try XCTUnwrap(a["http"] as? [String: Any])
        XCTAssertEqual(http["method"] as? String, "GET")
        XCTAssertEqual(http["status"] as? Int, 200)
        XCTAssertEqual(http["ok"] as? Bool, true)
        XCTAssertEqual(a["code"] as? String, "200", "quoted in YAML: a string")
        XCTAssertEqual(((a["app"] as? [String: Any])?["meta"] as? [String: Any])?["tier"] as? String, "web")
        XCTAssertEqual(docs[1]["env"] as? String, "prod")
        XCTAssertEqual(docs[1]["level"] as? String, "error")
    }

    func testAddOnlyWhenAbsent() throws {
        let docs = try run("add: {level: unknown, http.method: NONE}",
                           FilterTestBatch.make([("a", #""level":"warn","http":{"method":"GET"}"#), ("b", #""http":"flat""#)]))
        XCTAssertEqual(docs[0]["level"] as? String, "warn")
        XCTAssertEqual((docs[0]["http"] as? [String: Any])?["method"] as? String, "GET")
        XCTAssertEqual(docs[1]["level"] as? String, "unknown")
        XCTAssertEqual(docs[1]["http"] as? String, "flat", "add leaves a non-object in the way alone")
    }

    func testRemoveNestedAndSharedFields() throws {
        let shared = #""kubernetes":{"pod_name":"p","annotations":{"a":"1"},"labels":{"app":"x"}}"#
        var b = FilterTestBatch.make([("a", #""user":{"name":"n","password":"s"},"x":1"#), ("b", #""x":2"#)], shared: shared)
        try filter("remove: [user.password, kubernetes.annotations, x, nothing.here]").process(&b)
        let docs = try FilterTestBatch.documents(b)
        XCTAssertEqual(docs[0]["user"] as? [String: String], ["name": "n"])
        XCTAssertNil(docs[0]["x"])
        XCTAssertNil(docs[1]["x"])
        let k = try XCTUnwrap(docs[1]["kubernetes"] as? [String: Any])
        XCTAssertNil(k["annotations"])
        XCTAssertEqual(k["pod_name"] as? String, "p")
        // Edited once, in the shared fields: no record carries its own copy.
        XCTAssertFalse(String(decoding: b.bytes, as: UTF8.self).contains("pod_name"))
    }

    func testSetUnderSharedKeyEditsTheSharedFieldsOnce() throws {
        let shared = #""kubernetes":{"labels":{"app.kubernetes.io/name":"shop"}}"#
        var b = FilterTestBatch.make([("a", ""), ("b", #""level":"x""#)], shared: shared)
        try filter(#"set: {'kubernetes.labels["team"]': payments, 'kubernetes.labels["app.kubernetes.io/name"]': store}"#).process(&b)
        XCTAssertEqual(String(decoding: b.sharedFields, as: UTF8.self),
                       #""kubernetes":{"labels":{"app.kubernetes.io/name":"store","team":"payments"}}"#)
        for d in try FilterTestBatch.documents(b) {
            let labels = (d["kubernetes"] as? [String: Any])?["labels"] as? [String: String]
            XCTAssertEqual(labels, ["app.kubernetes.io/name": "store", "team": "payments"])
        }
    }

    func testRenameAndCopyBetweenRecordAndSharedFields() throws {
        let shared = #""kubernetes":{"pod_name":"api-1","namespace_name":"prod"}"#
        var b = FilterTestBatch.make([("a", #""msg":"hello","trace":{"id":"t1"}"#), ("b", #""msg":"bye""#)], shared: shared)
        try filter("""
            rename: {kubernetes.pod_name: pod, trace.id: trace_id, msg: kubernetes.note}
            copy: {kubernetes.namespace_name: ns, log.file.path: source_file}
            """).process(&b)
        let docs = try FilterTestBatch.documents(b)
        XCTAssertEqual(docs[0]["pod"] as? String, "api-1")
        XCTAssertEqual(docs[1]["pod"] as? String, "api-1")
        XCTAssertEqual(docs[0]["trace_id"] as? String, "t1")
        XCTAssertEqual(docs[0]["trace"] as? [String: String], [:])
        XCTAssertNil(docs[0]["msg"])
        XCTAssertEqual(docs[0]["ns"] as? String, "prod")
        XCTAssertEqual(docs[1]["source_file"] as? String, "/var/log/containers/app.log")
        // A record's own value under the shared key: each record got its own copy of `kubernetes`.
        let k0 = try XCTUnwrap(docs[0]["kubernetes"] as? [String: Any])
        let k1 = try XCTUnwrap(docs[1]["kubernetes"] as? [String: Any])
        XCTAssertEqual(k0["note"] as? String, "hello")
        XCTAssertEqual(k1["note"] as? String, "bye")
        XCTAssertEqual(k1["namespace_name"] as? String, "prod")
        XCTAssertNil(k1["pod_name"])
    }

    func testMessageOperations() throws {
        var docs = try run("rename: {message: original}\nset: {message: replaced}",
                           FilterTestBatch.make([("first \"quoted\"", "")]))
        XCTAssertEqual(docs[0]["original"] as? String, "first \"quoted\"")
        XCTAssertEqual(docs[0]["message"] as? String, "replaced")

        docs = try run("rename: {msg: message}", FilterTestBatch.make([("raw", #""msg":"from field""#)]))
        XCTAssertEqual(docs[0]["message"] as? String, "from field")
        XCTAssertNil(docs[0]["msg"])

        docs = try run("remove: [message]", FilterTestBatch.make([("gone", #""a":1"#)]))
        XCTAssertNil(docs[0]["message"])
        XCTAssertEqual(docs[0]["a"] as? Int, 1)

        // A record whose message was lifted: `message` is a field like any other.
        var b = FilterTestBatch.make([("{\"message\":\"m\"}", #""message":"m","x":1"#)])
        b.records[0].flags.insert(.messageLifted)
        try filter("set: {message: new}").process(&b)
        XCTAssertEqual(try FilterTestBatch.documents(b)[0]["message"] as? String, "new")
    }

    func testOperationsRunInTheOrderWritten() throws {
        let docs = try run("copy: {a: b}\nset: {a: changed}\nrename: {b: c}", FilterTestBatch.make([("m", #""a":"orig""#)]))
        XCTAssertEqual(docs[0]["a"] as? String, "changed")
        XCTAssertEqual(docs[0]["c"] as? String, "orig")
        XCTAssertNil(docs[0]["b"])
    }

    func testFieldEditPrimitives() {
        func edit(_ members: String, _ path: [String], _ op: String, _ value: String = "") -> String? {
            var out: [UInt8] = []
            let keys = path.map { Array($0.utf8) }
            let v = Array(value.utf8)
            let outcome = Array(members.utf8).withUnsafeBytes { m in
                v.withUnsafeBytes { vb -> FieldEdit.Outcome in
                    let o: FieldEdit.Op = op == "set" ? .set(vb) : op == "add" ? .add(vb) : .remove
                    return FieldEdit.apply(o, at: keys[...], in: m, to: &out)
                }
            }
            switch outcome {
            case .changed: return String(decoding: out, as: UTF8.self)
            case .unchanged: return members
            case .invalid: return nil
            }
        }
        XCTAssertEqual(edit(#""a":1,"b":{"c":2}"#, ["b", "c"], "set", "3"), #""a":1,"b":{"c":3}"#)
        XCTAssertEqual(edit(#""a":1"#, ["b", "c"], "set", "3"), #""a":1,"b":{"c":3}"#)
        XCTAssertEqual(edit("", ["x"], "set", #""y""#), #""x":"y""#)
        XCTAssertEqual(edit(#""a":1,"b":2"#, ["a"], "remove"), #""b":2"#)
        XCTAssertEqual(edit(#""a":{"b":1}"#, ["a", "b"], "remove"), #""a":{}"#)
        XCTAssertEqual(edit(#""a":1"#, ["a", "b"], "set", "2"), #""a":{"b":2}"#)
        XCTAssertEqual(edit(#""a":1"#, ["a", "b"], "add", "2"), #""a":1"#)
        XCTAssertEqual(edit(#""a\u0041":1"#, ["aA"], "remove"), "")
        XCTAssertEqual(edit(#""s":"x,}\"","t":[1,{"u":2}]"#, ["t"], "set", "0"), #""s":"x,}\"","t":0"#)
        XCTAssertNil(edit(#""a":1,"#, ["b"], "set", "1"))
    }

    func testConfigErrors() {
        func errs(_ y: String) -> String { FilterTestBatch.parse(ModifyPlugin.spec, y).1.joined(separator: "\n") }
        XCTAssertTrue(errs("{}").contains("at least one operation"))
        XCTAssertTrue(errs("set: {stream: x}").contains("written by the agent"))
        XCTAssertTrue(errs("rename: {log.offset: x}").contains("written by the agent"))
        XCTAssertEqual(errs("copy: {log.offset: off}"), "")
        XCTAssertTrue(errs("set: {'a..b': x}").contains("invalid field path"))
        XCTAssertTrue(errs("rename: {a: a}").contains("the same"))
        XCTAssertTrue(errs("set: [a]").contains("expected a mapping"))
    }
}
