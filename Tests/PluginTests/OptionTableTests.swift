import AnduinCore
import Foundation
import XCTest
import in_tail
import Multiline

/// The option tables (issue 27): a config struct's `@OptionField`s give both the declared list and the parsing.
final class OptionTableTests: XCTestCase {
    struct Inner: Sendable {
        @OptionField(.duration("wait", 0...10, "w")) var wait = 1.0
        init() {}
        init(wait: Double) { self.wait = wait }
    }
    static let inner = OptionTable(fields: Inner())

    /// `yaml` read by `table`, and the messages reported.
    static func parse<C>(_ yaml: String, _ table: OptionTable<C>) -> (C?, [String]) {
        let d = Diagnostics()
        guard let v = ConfigValue.parse(yaml: yaml, file: "t", environment: [:], diagnostics: d) else { return (nil, ["yaml"]) }
        let r = ConfigReader(v, context: "t", diagnostics: d, options: table.options)
        let c = table.parse(r)
        r.finish()
        return (c, d.items.map(\.message))
    }

    /// Every stored field of `TailConfig` is an `@OptionField`: a plain field would never be set from a
    /// config, silently.
    func testEveryTailConfigFieldIsAnOption() {
        let fields = Mirror(reflecting: TailConfig(paths: [])).children.compactMap(\.label)
        let keys = TailPlugin.spec.options.map(\.key)
        XCTAssertEqual(fields.count, keys.count, "TailConfig has \(fields.count) fields (\(fields)) but \(keys.count) options (\(keys))")
    }

    /// Each tail option reaches its field: a value other than the default, read through the table.
    func testTailOptionsFillTheirFields() throws {
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

    // MARK: tables of @OptionField fields

    /// Every kind of field: plain keys, an adjusted value, a custom reader, a group, an optional group,
    /// and a stored field that is not an option.
    struct Fields: Sendable {
        @OptionField(.int("count", 1...9, "c")) var count = 3
        @OptionField(.string("name", "n")) var name: String? = nil
        @OptionField(.list("words", "w"), adjust: { _, w in w.map { $0.uppercased() } }) var words: [String] = []
        @OptionField(.duration("wait", 0...10, "w")) var wait = 1.5
        @OptionField(group: "inner", "i", OptionTableTests.inner) var inner = Inner()
        @OptionField(group: "maybe", "m", OptionTableTests.inner) var maybe: Inner? = nil
        @OptionField(.list("tags", "t"), read: readTags) var tags = ["x"]
        var plain = 7

        @Sendable static func readTags(_ r: ConfigReader) -> [String] {
            let tags = r.stringList("tags", default: ["x"])
            if tags.contains("") { r.error("tags", "empty tag") }
            return tags
        }
    }

    static let fields = OptionTable(fields: Fields(), check: { r, c, _ in
        if c.count == 5 && c.name == nil { r.error("count", "5 needs a name") }
    })

    func parseFields(_ yaml: String) -> (Fields?, [String]) { Self.parse(yaml, Self.fields) }

    /// The options are the `@OptionField`s in declaration order, each with its initial value as its
    /// default.
    func testFieldsAreTheOptionsInDeclarationOrder() {
        let o = Self.fields.options
        XCTAssertEqual(o.map(\.key), ["count", "name", "words", "wait", "inner", "maybe", "tags"])
        XCTAssertEqual(o.map(\.defaultText), ["3", "", "[]", "1500ms", "", "", "[x]"])
        XCTAssertEqual(o.map(\.kind.typeName), ["integer 1–9", "string", "list of strings", "duration 0s–10s", "mapping", "mapping", "list of strings"])
        XCTAssertEqual(o.map(\.doc), ["c", "n", "w", "w", "i", "m", "t"])
        XCTAssertEqual(o[4].children?.map(\.key), ["wait"])
        XCTAssertEqual(o[5].children?.map(\.key), ["wait"])
    }

    func testFieldsParse() throws {
        let (absent, none) = parseFields("{}")
        XCTAssertEqual(none, [])
        let a = try XCTUnwrap(absent)
        XCTAssertEqual(a.count, 3)
        XCTAssertNil(a.name)
        XCTAssertEqual(a.words, [])
        XCTAssertEqual(a.wait, 1.5)
        XCTAssertEqual(a.inner.wait, 1)
        XCTAssertNil(a.maybe)
        XCTAssertEqual(a.tags, ["x"])
        XCTAssertEqual(a.plain, 7)

        let (c, errs) = parseFields("{count: 7, name: x, words: [a, b], wait: 2s, inner: {wait: 3s}, maybe: {wait: 4s}, tags: [y, z]}")
        XCTAssertEqual(errs, [])
        let s = try XCTUnwrap(c)
        XCTAssertEqual(s.count, 7)
        XCTAssertEqual(s.name, "x")
        XCTAssertEqual(s.words, ["A", "B"])
        XCTAssertEqual(s.wait, 2)
        XCTAssertEqual(s.inner.wait, 3)
        XCTAssertEqual(s.maybe?.wait, 4)
        XCTAssertEqual(s.tags, ["y", "z"])
        XCTAssertEqual(s.plain, 7)
    }

    func testFieldProblemsAreReportedAsBefore() {
        let (c, errs) = parseFields("{count: 10, inner: {wait: 11s, nope: 1}, maybe: {wiat: 1s}, tags: [a, ''], cuont: 1}")
        XCTAssertNil(c)
        XCTAssertEqual(errs.sorted(), [
            "t: count: 10 is out of range (1...9)",
            "t: inner: unknown key \"nope\"; known keys: wait",
            "t: inner: wait: 11s is too long (at most 10s)",
            "t: maybe: unknown key \"wiat\" (did you mean \"wait\"?); known keys: wait",
            "t: tags: empty tag",
            "t: unknown key \"cuont\" (did you mean \"count\"?); known keys: count, inner, maybe, name, tags, wait, words",
        ])
        XCTAssertEqual(parseFields("{count: 5}").1, ["t: count: 5 needs a name"])
    }

    /// An optional string whose initial value is not nil: that value when the key is absent.
    func testOptionalStringFieldKeepsItsDefault() throws {
        struct Host: Sendable {
            @OptionField(.string("host", "h")) var host: String? = "localhost"
        }
        let table = OptionTable(fields: Host())
        XCTAssertEqual(table.options.map(\.defaultText), ["localhost"])
        for (yaml, host) in [("{}", "localhost"), ("{host: db}", "db")] {
            let d = Diagnostics()
            let v = try XCTUnwrap(ConfigValue.parse(yaml: yaml, file: "t", environment: [:], diagnostics: d))
            XCTAssertEqual(table.parse(ConfigReader(v, context: "t", diagnostics: d, options: table.options))?.host, host)
        }
    }

    /// A config of fields is a value: setting a field of a copy leaves the original as it was, and
    /// parsing writes only into the config it returns (never into `defaults` or an earlier result).
    func testFieldsKeepValueSemantics() throws {
        var a = Fields()
        let b = a
        a.count = 5
        a.maybe = Inner(wait: 9)
        a.tags.append("y")
        XCTAssertEqual([b.count, a.count], [3, 5])
        XCTAssertNil(b.maybe)
        XCTAssertEqual(b.tags, ["x"])
        XCTAssertEqual(a.tags, ["x", "y"])

        let first = try XCTUnwrap(parseFields("{count: 7, maybe: {wait: 2s}}").0)
        var copy = first
        let second = try XCTUnwrap(parseFields("{count: 8}").0)
        copy.count = 9
        XCTAssertEqual([first.count, second.count, copy.count, Self.fields.defaults.count], [7, 8, 9, 3])
        XCTAssertEqual(first.maybe?.wait, 2)
        XCTAssertNil(second.maybe)
        XCTAssertNil(Self.fields.defaults.maybe)

        // `read(into:)` on a config that shares its boxes with a copy.
        let d = Diagnostics()
        let v = try XCTUnwrap(ConfigValue.parse(yaml: "{count: 6}", file: "t", environment: [:], diagnostics: d))
        var into = Fields()
        let kept = into
        Self.fields.read(ConfigReader(v, context: "t", diagnostics: d, options: Self.fields.options), into: &into)
        XCTAssertEqual([into.count, kept.count], [6, 3])

        var tail = TailConfig(paths: ["/a/*.log"])
        let before = tail
        tail.pollInterval = 0.01
        tail.paths = []
        XCTAssertEqual([before.pollInterval, tail.pollInterval], [0.25, 0.01])
        XCTAssertEqual(before.paths, ["/a/*.log"])
    }

    /// The tail's options (keys, kinds, defaults, docs) are what the README documents: the table
    /// rendered from `TailPlugin.spec` is the README's `tail` block as it was before the fields
    /// declared the options.
    func testTailReferenceIsTheReadmes() throws {
        let root = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent()
        let readme = try String(contentsOf: root.appendingPathComponent("README.md"), encoding: .utf8)
        let begin = try XCTUnwrap(readme.range(of: OptionReference.begin("tail") + "\n"))
        let end = try XCTUnwrap(readme.range(of: OptionReference.end, range: begin.upperBound..<readme.endIndex))
        XCTAssertEqual(OptionReference.table(TailPlugin.spec.options), String(readme[begin.upperBound..<end.lowerBound]))
        XCTAssertEqual(TailPlugin.spec.options.first?.required, true)
    }

    /// A group turned into a value of another type (`make`, given the value it replaces), and a
    /// `SharedOptionGroup` field.
    struct Converted: Sendable {
        @OptionField(group: "inner", "i", OptionTableTests.inner, make: { inner, g, replaced in
            if inner.wait == 0 { g.error("wait", "must not be 0 (was \(replaced))") }
            return "waits \(inner.wait) after \(replaced)"
        })
        var summary = "none"
        @OptionField(group: Shared.self) var shared = Shared()
    }
    struct Shared: SharedOptionGroup {
        @OptionField(.bool("on", "o")) var on = false
        static let table = OptionTable(fields: Shared())
        static let group = ConfigGroup("shared", "s", defaultText: "off", table.options)
    }

    func testGroupsMadeIntoOtherValuesAndSharedGroups() throws {
        let table = OptionTable(fields: Converted())
        XCTAssertEqual(table.options.map(\.key), ["inner", "shared"])
        XCTAssertEqual(table.options.map(\.defaultText), ["", "off"])
        XCTAssertEqual(table.options[1].children?.map(\.key), ["on"])
        let absent = try XCTUnwrap(Self.parse("{}", table).0)
        XCTAssertEqual(absent.summary, "none")
        XCTAssertFalse(absent.shared.on)
        let (c, errs) = Self.parse("{inner: {wait: 2s}, shared: {on: true}}", table)
        XCTAssertEqual(errs, [])
        XCTAssertEqual(c?.summary, "waits 2.0 after none")
        XCTAssertEqual(c?.shared.on, true)
        XCTAssertEqual(Self.parse("{inner: {wait: 0s}}", table).1, ["t: inner: wait: must not be 0 (was none)"])
        XCTAssertEqual(Self.parse("{inner: {wait: 11s}, shared: {of: 1}}", table).1.sorted(), [
            "t: inner: wait: 11s is too long (at most 10s)",
            "t: shared: unknown key \"of\" (did you mean \"on\"?); known keys: on",
        ])
    }
}
