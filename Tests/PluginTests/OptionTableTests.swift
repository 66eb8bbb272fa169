import AnduinCore
import XCTest
import in_tail
import Multiline

/// The option tables (issue 27): one row per option gives both the declared list and the parsing.
final class OptionTableTests: XCTestCase {
    struct Sample: Sendable {
        var count = 3
        var name: String?
        var words: [String] = []
        var inner = Inner()
    }
    struct Inner: Sendable {
        var wait = 1.0
    }

    static let inner = OptionTable(Inner()) { d in [
        .key(.duration("wait", default: d.wait, 0...10, "w"), \.wait),
    ]}
    static let table = OptionTable(Sample(), check: { r, c, _ in
        if c.count == 5 && c.name == nil { r.error("count", "5 needs a name") }
    }) { d in [
        .key(.int("count", default: d.count, 1...9, "c"), \.count),
        .key(.string("name", "n"), \.name),
        .key(.list("words", "w"), \.words) { _, w in w.map { $0.uppercased() } },
        .group("inner", "i", inner, \.inner),
    ]}

    func parse(_ yaml: String) -> (Sample?, [String]) {
        let d = Diagnostics()
        guard let v = ConfigValue.parse(yaml: yaml, file: "t", environment: [:], diagnostics: d) else { return (nil, ["yaml"]) }
        let r = ConfigReader(v, context: "t", diagnostics: d, options: Self.table.options)
        let c = Self.table.parse(r)
        r.finish()
        return (c, d.items.map(\.message))
    }

    func testRowsGiveTheOptionsAndTheParsing() throws {
        XCTAssertEqual(Self.table.options.map(\.key), ["count", "name", "words", "inner"])
        XCTAssertEqual(Self.table.options[0].defaultText, "3")
        XCTAssertEqual(Self.table.options[3].children?.map(\.key), ["wait"])

        let (absent, none) = parse("{}")
        XCTAssertEqual(none, [])
        XCTAssertEqual(absent?.count, 3)
        XCTAssertEqual(absent?.inner.wait, 1)

        let (c, errs) = parse("{count: 7, name: x, words: [a, b], inner: {wait: 2s}}")
        XCTAssertEqual(errs, [])
        let s = try XCTUnwrap(c)
        XCTAssertEqual(s.count, 7)
        XCTAssertEqual(s.name, "x")
        XCTAssertEqual(s.words, ["A", "B"])
        XCTAssertEqual(s.inner.wait, 2)
    }

    func testProblemsAreReportedAsBefore() {
        let (c, errs) = parse("{count: 10, inner: {wait: 11s, nope: 1}, cuont: 1}")
        XCTAssertNil(c)
        XCTAssertEqual(errs.sorted(), [
            "t: count: 10 is out of range (1...9)",
            "t: inner: unknown key \"nope\"; known keys: wait",
            "t: inner: wait: 11s is too long (at most 10s)",
            "t: unknown key \"cuont\" (did you mean \"count\"?); known keys: count, inner, name, words",
        ])
        XCTAssertEqual(parse("{count: 5}").1, ["t: count: 5 needs a name"])
    }

    /// A tail option is its field and its row: a field added without a row would never be set from a
    /// config, silently (a row without a field does not compile, its key path names the field).
    func testEveryTailConfigFieldHasARow() {
        let fields = Mirror(reflecting: TailConfig(paths: [])).children.compactMap(\.label)
        let keys = TailPlugin.spec.options.map(\.key)
        XCTAssertEqual(fields.count, keys.count, "TailConfig has \(fields.count) fields (\(fields)) but \(keys.count) rows (\(keys))")
    }

    /// Each tail option reaches its field: a value other than the default, read through the table.
    func testTailRowsFillTheirFields() throws {
        let d = Diagnostics()
        let yaml = "{paths: [/x/*.log], exclude: [a.log, sub/b.log], format: cri, start_at: end, max_line_bytes: 1KiB, watch: poll, poll_interval: 2s, glob_interval: 3s, rotate_wait: 4s, read_budget: 8KiB, partial_timeout: 6s, checkpoint_interval: 7s, checkpoint_ttl: 8s, max_open_files: 9, max_rotated_files: 10, multiline: {mode: go}}"
        let v = try XCTUnwrap(ConfigValue.parse(yaml: yaml, file: "/etc/t.yaml", environment: [:], diagnostics: d))
        let r = ConfigReader(v, context: "t", diagnostics: d, baseDirectory: "/etc", options: TailPlugin.spec.options)
        guard case .input(let parse) = TailPlugin.spec.configure else { return XCTFail("not an input") }
        let c = try XCTUnwrap(parse(r) as? TailConfig)
        r.finish()
        XCTAssertEqual(d.items.map(\.message), [])
        XCTAssertEqual(c.paths, ["/x/*.log"])
        XCTAssertEqual(c.exclude, ["a.log", "/etc/sub/b.log"])
        XCTAssertEqual(c.format, .cri)
        XCTAssertEqual(c.startAt, .end)
        XCTAssertEqual(c.maxLineBytes, 1024)
        XCTAssertEqual(c.watch, .poll)
        XCTAssertEqual([c.pollInterval, c.globInterval, c.rotateWait, c.partialTimeout, c.checkpointInterval, c.checkpointTTL],
                       [2, 3, 4, 6, 7, 8])
        XCTAssertEqual(c.readBudget, 8192)
        XCTAssertEqual(c.maxOpenFiles, 9)
        XCTAssertEqual(c.maxRotatedFiles, 10)
        XCTAssertEqual(c.multiline?.mode, .go)
    }
}
