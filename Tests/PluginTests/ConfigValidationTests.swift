import AnduinCore
import XCTest
import filter_parse
import in_tail
import out_blackhole
import out_file
import out_stdout

final class ConfigValidationTests: XCTestCase {
    let registry = PluginRegistry([TailPlugin.spec, ParsePlugin.spec, FileOutputPlugin.spec,
                                   StdoutOutputPlugin.spec, BlackholePlugin.spec])

    func load(_ yaml: String, env: [String: String] = [:]) -> Result<AgentConfig, ConfigErrors> {
        AgentConfig.parse(yaml: yaml, file: "/etc/anduin/a.yaml", registry: registry, environment: env)
    }

    func errors(_ yaml: String, env: [String: String] = [:], file: StaticString = #filePath, line: UInt = #line) -> [String] {
        switch load(yaml, env: env) {
        case .success: XCTFail("expected errors", file: file, line: line); return []
        case .failure(let e): return e.items.map(\.description)
        }
    }

    let good = """
        data_dir: /tmp/anduin-test
        inputs:
          containers:
            type: tail
            paths: ["/var/log/containers/*.log"]
        filters:
          parse:
            type: parse
            from: [containers]
        outputs:
          local:
            type: file
            from: [parse]
            path: out.ndjson
        """

    func testGoodConfigLoadsWithTypedOptions() throws {
        let cfg = try load(good).get()
        XCTAssertEqual(cfg.components.map(\.name), ["containers", "parse", "local"])
        XCTAssertEqual(cfg.components[2].from, ["parse"])
        guard case .output(let o) = cfg.components[2].config, let file = o as? FileOutputConfig else {
            return XCTFail("not a file output")
        }
        XCTAssertEqual(file.path, "/etc/anduin/out.ndjson", "relative paths resolve against the config's folder")
        guard case .input(let i) = cfg.components[0].config, let tail = i as? TailConfig else { return XCTFail() }
        XCTAssertEqual(tail.maxLineBytes, 1 << 20)
        XCTAssertEqual(tail.format, .auto)
    }

    func testUnknownKeyHasLineAndColumnAndSuggestion() {
        let e = errors(good.replacingOccurrences(of: "    paths:", with: "    pathz: [\"x\"]\n    paths:"))
        XCTAssertEqual(e.count, 1, "\(e)")
        XCTAssertTrue(e[0].hasPrefix("/etc/anduin/a.yaml:5:5: input \"containers\" (tail): unknown key \"pathz\" (did you mean \"paths\"?)"), e[0])
    }

    func testWrongType() {
        let e = errors(good.replacingOccurrences(of: #"paths: ["/var/log/containers/*.log"]"#, with: "paths: {a: 1}"))
        XCTAssertTrue(e.contains { $0.hasPrefix("/etc/anduin/a.yaml:5:12: ") && $0.contains("paths: expected a list of strings") }, "\(e)")
    }

    func testUnknownPluginTypeSuggestsClosest() {
        let e = errors(good.replacingOccurrences(of: "type: tail", with: "type: tial"))
        XCTAssertEqual(e.count, 1, "\(e)")
        XCTAssertTrue(e[0].hasPrefix("/etc/anduin/a.yaml:4:11: input \"containers\": unknown input type \"tial\" (did you mean \"tail\"?)"), e[0])
    }

    func testFilterTypeUnderOutputsIsExplained() {
        let e = errors(good.replacingOccurrences(of: "type: file", with: "type: parse"))
        XCTAssertTrue(e.contains { $0.contains("unknown output type \"parse\"") && $0.contains("put it under filters:") }, "\(e)")
    }

    /// The problem is the reference, so the position is the reference's (line 9, column 12), not the filter's name.
    func testFromNamingMissingComponent() {
        let e = errors(good.replacingOccurrences(of: "from: [containers]", with: "from: [contaners]"))
        XCTAssertTrue(e.contains { $0.hasPrefix("/etc/anduin/a.yaml:9:12: filter \"parse\": from: names \"contaners\", which is not an input or filter (did you mean \"containers\"?)") }, "\(e)")
    }

    func testCycle() {
        let cyc = """
            inputs:
              in: {type: tail, paths: ["/x/*.log"]}
            filters:
              a: {type: parse, from: [in, b]}
              b: {type: parse, from: [a]}
            outputs:
              o: {type: stdout, from: [b]}
            """
        let e = errors(cyc)
        XCTAssertEqual(e.count, 1, "\(e)")
        XCTAssertTrue(e[0].contains("forms a cycle: a -> b -> a") || e[0].contains("forms a cycle: b -> a -> b"), e[0])
        XCTAssertTrue(e[0].hasPrefix("/etc/anduin/a.yaml:4:3:") || e[0].hasPrefix("/etc/anduin/a.yaml:5:3:"), e[0])
    }

    func testOutputWithoutInputs() {
        let e = errors(good.replacingOccurrences(of: "    from: [parse]\n", with: ""))
        XCTAssertTrue(e.contains { $0.hasPrefix("/etc/anduin/a.yaml:11:3: output \"local\" has no inputs") }, "\(e)")
    }

    func testDecimalSizeIsRefusedWithBinarySuggestion() {
        let e = errors(good.replacingOccurrences(of: "    paths:", with: "    max_line_bytes: 1GB\n    paths:"))
        XCTAssertEqual(e.count, 1, "\(e)")
        XCTAssertTrue(e[0].hasPrefix("/etc/anduin/a.yaml:5:21: input \"containers\" (tail): max_line_bytes: invalid size \"1GB\": unknown unit \"GB\"; did you mean 1GiB?"), e[0])
    }

    func testSizesAndDurations() {
        XCTAssertEqual(try ByteSize.parse("64KiB").get(), 65536)
        XCTAssertEqual(try ByteSize.parse("1MiB").get(), 1 << 20)
        XCTAssertEqual(try ByteSize.parse("1.5GiB").get(), 3 << 29)
        XCTAssertEqual(try ByteSize.parse("123").get(), 123)
        XCTAssertNil(try? ByteSize.parse("1MB").get())
        XCTAssertNil(try? ByteSize.parse("lots").get())
        XCTAssertEqual(DurationText.parse("250ms"), 0.25)
        XCTAssertEqual(DurationText.parse("5m"), 300)
        XCTAssertEqual(DurationText.parse("2"), 2)
        XCTAssertNil(DurationText.parse("5 days"))
    }

    func testEnvironmentSubstitution() throws {
        let yaml = good.replacingOccurrences(of: "path: out.ndjson", with: "path: ${OUT:-/tmp}/${NAME}.ndjson")
        let cfg = try load(yaml, env: ["NAME": "records"]).get()
        guard case .output(let o) = cfg.components[2].config, let file = o as? FileOutputConfig else { return XCTFail() }
        XCTAssertEqual(file.path, "/tmp/records.ndjson")
        let cfg2 = try load(yaml, env: ["NAME": "r", "OUT": "/data"]).get()
        guard case .output(let o2) = cfg2.components[2].config, let file2 = o2 as? FileOutputConfig else { return XCTFail() }
        XCTAssertEqual(file2.path, "/data/r.ndjson")
        let e = errors(yaml)
        XCTAssertTrue(e.contains { $0.hasPrefix("/etc/anduin/a.yaml:14:11:") && $0.contains("environment variable NAME is not set") }, "\(e)")
    }

    func testEveryProblemIsReportedInFileOrder() {
        let yaml = """
            inputs:
              in: {type: tail, paths: [], format: json}
            outputs:
              o: {type: file, from: [nothere]}
              o2: {type: stdout, from: [in], color: true}
            bogus: 1
            """
        let e = errors(yaml)
        // Not reported: o's `from: [nothere]`. A component that fails to parse is left out of the graph
        // check, so its references are checked only once its own errors are fixed.
        XCTAssertEqual(e.count, 5, "\(e)")
        XCTAssertTrue(e.contains { $0.contains("needs at least one glob") }, "\(e)")
        XCTAssertTrue(e.contains { $0.contains("format: unknown value \"json\"") }, "\(e)")
        XCTAssertTrue(e.contains { $0.contains("missing required key \"path\"") }, "\(e)")
        XCTAssertTrue(e.contains { $0.contains("unknown key \"color\"") }, "\(e)")
        XCTAssertTrue(e.contains { $0.hasPrefix("/etc/anduin/a.yaml:6:1: config: unknown key \"bogus\"") }, "\(e)")
        let lines = e.compactMap { Int($0.split(separator: ":")[1]) }
        XCTAssertEqual(lines, lines.sorted())
    }

    func testDuplicateNamesAndYAMLSyntaxErrors() {
        let dup = good + "\n  containers:\n    type: stdout\n    from: [parse]\n"
        XCTAssertTrue(errors(dup).contains { $0.contains("component name \"containers\" is used twice") })
        let bad = "inputs:\n  in: {type: tail\n"
        let e = errors(bad)
        XCTAssertEqual(e.count, 1)
        XCTAssertTrue(e[0].hasPrefix("/etc/anduin/a.yaml:") && e[0].contains("YAML syntax error"), e[0])
    }
}
