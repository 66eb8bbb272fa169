import AnduinCore
import XCTest
import in_tail
import out_file

@testable import filter_kubernetes
@testable import filter_modify
@testable import filter_parse
@testable import filter_throttle

/// The configs whose option rows became `@OptionField`s read what they read before: defaults,
/// options of another type than their field, fields set by a table's check.
final class OptionFieldConversionTests: XCTestCase {
    func testThrottleBurstDefaultsToTheRatePerSecond() throws {
        func config(_ yaml: String) throws -> ThrottleConfig {
            let (c, errs) = FilterTestBatch.parse(ThrottlePlugin.spec, yaml)
            XCTAssertEqual(errs, [])
            return try XCTUnwrap(c as? ThrottleConfig)
        }
        let d = try config("{rate: 600/m}")
        XCTAssertEqual(d.rate, 10)
        XCTAssertEqual(d.burst, 10)
        XCTAssertNil(d.key)
        XCTAssertEqual(d.maxKeys, 10_000)
        XCTAssertEqual(d.logInterval, 10)
        XCTAssertEqual(try config("{rate: 1/h}").burst, 1, "at least 1")
        let c = try config("{rate: 5/s, burst: 7, key: level, max_keys: 3, log_interval: 2s}")
        XCTAssertEqual(c.burst, 7)
        XCTAssertEqual(c.key?.keys.map { String(decoding: $0, as: UTF8.self) }, ["level"])
        XCTAssertEqual(c.maxKeys, 3)
        XCTAssertEqual(c.logInterval, 2)
    }

    func testModifyOperationsKeepTheirFileOrder() throws {
        let (c, errs) = FilterTestBatch.parse(ModifyPlugin.spec, "{remove: [a], set: {b: 1}, copy: {c: d}}")
        XCTAssertEqual(errs, [])
        let ops = try XCTUnwrap(c as? ModifyConfig).operations.map { op -> String in
            switch op {
            case .remove: "remove"
            case .set: "set"
            case .copy: "copy"
            case .add: "add"
            case .rename: "rename"
            }
        }
        XCTAssertEqual(ops, ["remove", "set", "copy"])
    }

    func testParseDefaults() throws {
        let (c, errs) = FilterTestBatch.parse(ParsePlugin.spec, "{}")
        XCTAssertEqual(errs, [])
        let p = try XCTUnwrap(c as? ParseConfig)
        XCTAssertEqual(p.formats, [.json])
        XCTAssertFalse(p.keepMessage)
        XCTAssertNil(p.time)
    }

    func testKubernetesOptionsOfOtherTypesAndTheAPIChosenByTheCheck() throws {
        let (d, none) = FilterTestBatch.parse(KubernetesPlugin.spec, "{}")
        XCTAssertEqual(none, [])
        let k = try XCTUnwrap(d as? KubernetesConfig)
        XCTAssertEqual(k.api, .auto)
        XCTAssertEqual(k.watchTimeout, 300)
        XCTAssertEqual(k.retry.initial, 0.5)
        XCTAssertEqual(k.retry.max, 30)
        XCTAssertEqual(k.namespaces, NamespaceRules())
        let (c, errs) = FilterTestBatch.parse(KubernetesPlugin.spec, "{kubeconfig: /k, watch_timeout: 1500ms, annotations: true}")
        XCTAssertEqual(errs, [])
        let kc = try XCTUnwrap(c as? KubernetesConfig)
        XCTAssertEqual(kc.api, .kubeconfig("/k"))
        XCTAssertEqual(kc.watchTimeout, 2)
        XCTAssertTrue(kc.render.annotations)
        XCTAssertFalse(kc.render.namespaceLabels)
    }

    func testAgentConfigKeepsItsFileAndComparesAPIOptions() throws {
        let registry = PluginRegistry([TailPlugin.spec, FileOutputPlugin.spec])
        func load(_ top: String) throws -> AgentConfig {
            let yaml = top + "\ninputs:\n  x: {type: tail, paths: [/a.log]}\noutputs:\n  o: {type: file, from: [x], path: /o}\n"
            switch AgentConfig.parse(yaml: yaml, file: "/etc/anduin/a.yaml", registry: registry, environment: [:]) {
            case .success(let c): return c
            case .failure(let e): throw e
            }
        }
        let d = try load("data_dir: /tmp/anduin-test")
        XCTAssertEqual(d.file, "/etc/anduin/a.yaml")
        XCTAssertNil(d.api)
        XCTAssertEqual(d.shutdownTimeout, 30)
        XCTAssertEqual(d.logLevel, .info)
        let a = try load("data_dir: /tmp/anduin-test\nlog_level: debug\napi: {address: \"127.0.0.1:0\"}")
        XCTAssertEqual(a.logLevel, .debug)
        XCTAssertEqual(a.api?.address, "127.0.0.1:0")
        XCTAssertEqual(a.api?.maxConnections, 64)
        XCTAssertEqual(a.api, try load("data_dir: /tmp/anduin-test\napi: {address: \"127.0.0.1:0\"}").api)
        XCTAssertNotEqual(a.api, try load("data_dir: /tmp/anduin-test\napi: {address: \"127.0.0.1:1\"}").api)
    }
}
