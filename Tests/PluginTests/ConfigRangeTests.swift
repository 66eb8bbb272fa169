import AnduinCore
import XCTest
import filter_kubernetes
import filter_throttle
import in_tail
import out_file

/// Range checks, byte checks and YAML errors of the config reader (issue 13), and the option tables
/// (issue 14).
final class ConfigRangeTests: XCTestCase {
    let registry = PluginRegistry([TailPlugin.spec, FileOutputPlugin.spec, ThrottlePlugin.spec, KubernetesPlugin.spec])

    func errors(_ yaml: String) -> [String] {
        switch AgentConfig.parse(yaml: yaml, file: "a.yaml", registry: registry, environment: [:]) {
        case .success: return []
        case .failure(let e): return e.items.map(\.description)
        }
    }

    func config(_ extra: String, filter: String = "", output: String = "") -> String {
        """
        inputs:
          in: {type: tail, paths: [x]\(extra)}
        \(filter.isEmpty ? "" : "filters:\n  f: {type: \(filter), from: [in]}\n")outputs:
          o: {type: file, from: [\(filter.isEmpty ? "in" : "f")], path: x\(output)}
        """
    }

    func reader(_ yaml: String, _ options: [OptionSpec]? = nil) -> (ConfigReader, Diagnostics) {
        let d = Diagnostics()
        let v = ConfigValue.parse(yaml: yaml, file: "t.yaml", environment: [:], diagnostics: d) ?? .null(SourceMark(file: "t.yaml", line: 1, column: 1))
        return (ConfigReader(v, context: "t", diagnostics: d, options: options), d)
    }

    func testSizesAreRangeChecked() {
        XCTAssertEqual(try ByteSize.parse("1TiB").get(), 1 << 40)
        XCTAssertEqual(try ByteSize.parse("1.5GiB").get(), 3 << 29)
        for bad in ["99999999999TiB", "1e400", "9999999999999999999999", "inf", "NaN", "-1", "１MiB"] {
            XCTAssertThrowsError(try ByteSize.parse(bad).get(), bad)
        }
        let (r, d) = reader("a: 2GiB\nb: 10\nc: 99999999999TiB")
        XCTAssertEqual(r.size("a", default: 7, range: 0...(1 << 30)), 7)
        XCTAssertEqual(r.size("b", default: 7, range: 64...(1 << 30)), 7)
        XCTAssertEqual(r.size("c", default: 7), 7)
        XCTAssertEqual(d.items.map(\.description), [
            "t.yaml:1:4: t: a: 2GiB is too large (at most 1GiB)",
            "t.yaml:2:4: t: b: 10 is too small (at least 64B)",
            "t.yaml:3:4: t: c: size \"99999999999TiB\" is too large",
        ])
    }

    func testDurationsAreFiniteAndBounded() {
        XCTAssertEqual(DurationText.parse("7d"), 7 * 86_400)
        XCTAssertEqual(DurationText.parse("250ms"), 0.25)
        for bad in ["inf", "1e308", "nan", "-1s", "1h30m", ""] { XCTAssertNil(DurationText.parse(bad), bad) }
        XCTAssertNil(DurationText.parse(String(repeating: "9", count: 400)), "a number too large for a Double is not a duration")
        let (r, d) = reader("a: 8d\nb: 0s\nc: 99999999999h")
        XCTAssertEqual(r.duration("a", default: 1), 1)
        XCTAssertEqual(r.duration("b", default: 1, range: 0.001...60), 1)
        XCTAssertEqual(r.duration("c", default: 1), 1)
        XCTAssertEqual(d.items.map(\.message), [
            "t: a: 8d is too long (at most 7d)",
            "t: b: 0s is too short (at least 1ms)",
            "t: c: 99999999999h is too long (at most 7d)",
        ])
        XCTAssertEqual(DurationText.format(0.25), "250ms")
        XCTAssertEqual(DurationText.format(300), "5m")
    }

    func testCountsOverflowIntoAProblemNotATrap() {
        let (r, d) = reader("a: 99999999999999999999\nb: -5\nc: 1.5")
        XCTAssertEqual(r.int("a", default: 3, range: 1...10), 3)
        XCTAssertEqual(r.int("b", default: 3, range: 1...10), 3)
        XCTAssertEqual(r.int("c", default: 3), 3)
        XCTAssertEqual(d.items.map(\.message), [
            "t: a: 99999999999999999999 is out of range (1...10)",
            "t: b: -5 is out of range (1...10)",
            "t: c: expected a whole number, got \"1.5\"",
        ])
    }

    func testRatesAndPortsAreBounded() {
        XCTAssertTrue(errors(config("", filter: "throttle")).contains { $0.contains("missing required key \"rate\"") })
        let rate = "inputs:\n  in: {type: tail, paths: [x]}\nfilters:\n  f: {type: throttle, from: [in], rate: 1e400/s}\noutputs:\n  o: {type: file, from: [f], path: x}\n"
        XCTAssertTrue(errors(rate).joined().contains("invalid rate \"1e400/s\""), "\(errors(rate))")
    }

    func testBytesBeforeYAML() {
        func check(_ s: [UInt8]) -> String? { ConfigText.check(s, file: "f").map(\.description) }
        XCTAssertEqual(check(Array("a: 1\nb: x\u{0}y\n".utf8)), "f:2:5: a NUL byte in the config file: is this a binary file?")
        XCTAssertEqual(check(Array("a: é\u{1B}\n".utf8)), "f:1:5: control character 0x1B in the config file: is this a binary file?")
        XCTAssertEqual(check([0x61, 0x3A, 0x20, 0xFF]), "f:1:4: byte 0xFF is not UTF-8 text: is this a binary file?")
        XCTAssertEqual(check(Array("a: \"é\"\r\n\tb\n".utf8)), nil, "tab and CR are text")
        XCTAssertEqual(check(Array(("a: " + String(repeating: "[", count: 101)).utf8)), "f:1:104: nested more than 100 levels deep")
        XCTAssertEqual(check(Array(("a: " + String(repeating: "[", count: 100)).utf8)), nil)
        XCTAssertEqual(check(Array((String(repeating: "- ", count: 101) + "x").utf8))?.hasSuffix("nested more than 100 levels deep"), true)
        XCTAssertEqual(check([UInt8](repeating: 0x20, count: ConfigText.maximumBytes + 1))?.contains("larger than 1MiB, the most a config may be"), true)
    }

    func testYAMLErrorsAreOneLineWithoutTheText() {
        let e = errors("inputs:\n  in: {type: tail, password: hunter2, paths: [x]}\ninputs: {}\n")
        XCTAssertEqual(e, ["a.yaml:3:1: duplicate key \"inputs\" (first at line 1); each key may appear once in a mapping"])
        let s = errors("a: \"unclosed\nb: c\n")
        XCTAssertEqual(s.count, 1)
        XCTAssertTrue(s[0].hasPrefix("a.yaml:3:1: YAML syntax error: found unexpected end of stream"), s[0])
        XCTAssertFalse(s[0].contains("\n"))
    }

    func testMessagesEscapeNonPrintables() {
        XCTAssertEqual(printable("a\nb\u{1B}[31m\u{202E}"), "a\\nb\\u{1b}[31m\\u{202e}")
        let d = ConfigDiagnostic(SourceMark(file: "f", line: 1, column: 2), "unknown key \"x\ny\"")
        XCTAssertEqual(d.description, "f:1:2: unknown key \"x\\ny\"")
    }

    /// With a table, a key is unknown when it is not declared, whatever the parser read before
    /// returning: `fsync` is declared, so a missing `path` is the only problem.
    func testUnknownKeysAreTheUndeclaredOnes() {
        let e = errors("inputs:\n  in: {type: tail, paths: [x]}\noutputs:\n  o: {type: file, from: [in], fsync: true, fsycn: true}\n")
        XCTAssertEqual(e.count, 2, "\(e)")
        XCTAssertTrue(e[0].contains("missing required key \"path\""), e[0])
        XCTAssertTrue(e[1].contains("unknown key \"fsycn\" (did you mean \"fsync\"?)"), e[1])
        let k = errors("inputs:\n  in: {type: tail, paths: [x]}\nfilters:\n  k: {type: kubernetes, from: [in], api: off, retry: {inital: 1s}}\noutputs:\n  o: {type: file, from: [k], path: x}\n")
        XCTAssertEqual(k, ["a.yaml:4:55: filter \"k\" (kubernetes): retry: unknown key \"inital\" (did you mean \"initial\"?); known keys: initial, max"])
    }

    func testAKeyOfAGroupWrittenOutsideItIsPlacedForTheUser() {
        let e = errors("inputs:\n  in: {type: tail, paths: [x]}\nfilters:\n  k: {type: kubernetes, from: [in], api: off, initial: 1s}\noutputs:\n  o: {type: file, from: [k], path: x}\n")
        XCTAssertEqual(e.count, 1)
        XCTAssertTrue(e[0].contains("unknown key \"initial\" (it goes under retry:)"), e[0])
    }

    func testDeclaredDefaultsAndReference() {
        let table = OptionReference.table([
            ConfigKey<Int>.size("max_bytes", default: 1 << 20, 64...(1 << 30), "a | b").spec,
            ConfigGroup("retry", "backoff", [ConfigKey<Double>.duration("max", default: 30, 0...(7 * 86_400), "longest").spec]).spec,
        ])
        XCTAssertEqual(table, """
            | Option | Type | Default | Meaning |
            | --- | --- | --- | --- |
            | `max_bytes` | size 64B–1GiB | `1MiB` | a \\| b |
            | `retry` | mapping |  | backoff |
            | `retry.max` | duration 0s–7d | `30s` | longest |

            """)
        let updated = OptionReference.update(readme: "x\n\(OptionReference.begin("t"))\nold\n\(OptionReference.end)\ny\n", tables: ["t": "new\n"])
        XCTAssertEqual(updated.text, "x\n\(OptionReference.begin("t"))\nnew\n\(OptionReference.end)\ny\n")
    }
}
