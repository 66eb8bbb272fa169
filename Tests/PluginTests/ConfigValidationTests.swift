import AnduinCore
import Foundation
import Logging
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

    /// An input or filter nothing reads would be read, dropped and checkpointed: its lines would be
    /// lost for good, even after a later config wires it up.
    func testInputOrFilterThatNothingReadsIsRefusedAtItsName() {
        let yaml = """
            inputs:
              in: {type: tail, paths: ["/x/*.log"]}
              spare: {type: tail, paths: ["/y/*.log"]}
            filters:
              p: {type: parse, from: [in]}
              unused: {type: parse, from: [in]}
            outputs:
              o: {type: stdout, from: [p]}
            """
        let e = errors(yaml)
        XCTAssertEqual(e, [
            "/etc/anduin/a.yaml:3:3: input \"spare\": nothing reads its records (no filter or output names it in from:); add \"spare\" to the from: of output \"o\" or of a filter, or remove the input",
            "/etc/anduin/a.yaml:6:3: filter \"unused\": nothing reads its records (no filter or output names it in from:); add \"unused\" to the from: of output \"o\" or of another filter, or remove the filter",
        ])
        // With several outputs the hint names none of them.
        let two = yaml + "\n  o2: {type: stdout, from: [p]}"
        XCTAssertTrue(errors(two).contains { $0.hasPrefix("/etc/anduin/a.yaml:3:3: input \"spare\": nothing reads its records") && $0.contains("to the from: of an output or of a filter") }, "\(errors(two))")
        // Wired up, it loads.
        let wired = yaml.replacingOccurrences(of: "from: [p]}", with: "from: [p, spare, unused]}")
        XCTAssertNoThrow(try load(wired).get())
    }

    /// An output with an error of its own still counts as reading what its from: names: the input
    /// is not reported as unread on top of the output's real problem.
    func testOutputWithErrorsStillConsumesItsInputs() {
        let yaml = """
            inputs:
              in: {type: tail, paths: ["/x/*.log"]}
            outputs:
              o: {type: file, from: [in]}
            """
        XCTAssertEqual(errors(yaml).count, 1, "only the missing path: \(errors(yaml))")
        XCTAssertTrue(errors(yaml)[0].contains("missing required key \"path\""), "\(errors(yaml))")
    }

    /// Defence in depth: a pipeline given such a config some other way refuses to start rather than
    /// read the input and checkpoint records no output received.
    func testPipelineRefusesAnInputNoOutputReceives() throws {
        let dir = NSTemporaryDirectory() + "anduin-unread-\(UUID().uuidString)"
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let yaml = """
            data_dir: \(dir)
            inputs:
              a: {type: tail, paths: ["\(dir)/a/*.log"]}
              b: {type: tail, paths: ["\(dir)/b/*.log"]}
            outputs:
              oa: {type: blackhole, from: [a]}
              ob: {type: blackhole, from: [b]}
            """
        var cfg = try load(yaml).get()
        cfg.components.removeAll { $0.name == "ob" }
        XCTAssertThrowsError(try Pipeline(config: cfg, logger: Logger(label: "test"))) { error in
            XCTAssertTrue("\(error)".contains("input \"b\": no output receives its records"), "\(error)")
        }
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
        // A component with errors of its own is still in the graph check: o's `from: [nothere]` is
        // reported now, not only once its missing path is fixed.
        XCTAssertEqual(e.count, 6, "\(e)")
        XCTAssertTrue(e.contains { $0.hasPrefix("/etc/anduin/a.yaml:4:26: output \"o\": from: names \"nothere\", which is not an input or filter") }, "\(e)")
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
