import XCTest

@testable import AnduinCore

/// The config's YAML composer over libyaml's events: the same tree, marks and messages the reader had
/// with Yams (each expectation below is what the Yams-based reader printed for the same text).
final class YAMLLoaderTests: XCTestCase {
    func problems(_ yaml: String) -> [String] {
        let d = Diagnostics()
        _ = ConfigValue.parse(yaml: yaml, file: "a.yaml", environment: [:], diagnostics: d)
        return d.sorted.map(\.description)
    }

    func value(_ yaml: String) throws -> ConfigValue {
        let d = Diagnostics()
        let v = ConfigValue.parse(yaml: yaml, file: "a.yaml", environment: [:], diagnostics: d)
        XCTAssertTrue(d.isEmpty, "\(d.items)")
        return try XCTUnwrap(v)
    }

    func testScalarStylesAnchorsAndNulls() throws {
        let v = try value("a: \"123\"\nb: 123\nc: ~\nd: ''\ne: &x [1, {k: v}]\nf: *x\ng: |\n  text\n")
        guard case .mapping(let m, _) = v else { return XCTFail("\(v)") }
        XCTAssertEqual(m.map(\.key), ["a", "b", "c", "d", "e", "f", "g"])
        guard case .scalar("123", let am, plain: false) = m[0].value, case .scalar("123", _, plain: true) = m[1].value else {
            return XCTFail("\(m)")
        }
        XCTAssertEqual(am.description, "a.yaml:1:4")
        guard case .null = m[2].value, case .scalar("", _, plain: false) = m[3].value else { return XCTFail("\(m)") }
        // The alias is the anchored node, with the anchor's position.
        guard case .sequence(let seq, let fm) = m[5].value else { return XCTFail("\(m)") }
        XCTAssertEqual(seq.count, 2)
        XCTAssertEqual(fm.description, "a.yaml:5:4")  // where the anchor starts
        guard case .scalar("text\n", _, plain: false) = m[6].value else { return XCTFail("\(m)") }
        guard case .mapping(let empty, _) = try value("") else { return XCTFail() }
        XCTAssertTrue(empty.isEmpty)
    }

    func testComposerErrors() {
        XCTAssertEqual(problems("a: 1\n---\nb: 2\n"),
                       ["a.yaml:2:1: YAML syntax error: but found another document (expected a single document in the stream at line 1, column 1)"])
        XCTAssertEqual(problems("inputs: *nope\n"), ["a.yaml:1:9: YAML syntax error: found undefined alias"])
        // An anchor is defined once its node is complete.
        XCTAssertEqual(problems("a: &a [*a]\n"), ["a.yaml:1:8: YAML syntax error: found undefined alias"])
        XCTAssertEqual(problems("a: [1, 2\n").count, 1)
    }

    func testDuplicateKeysCompareByValueAndResolvedTag() {
        // A plain and a quoted `a` are one string key; a plain `1` (an int) and `"1"` are two keys,
        // which the reader then refuses with its own message.
        XCTAssertEqual(problems("a: 1\n'a': 2\n"), ["a.yaml:2:1: duplicate key \"a\" (first at line 1); each key may appear once in a mapping"])
        XCTAssertEqual(problems("1: x\n\"1\": y\n").filter { $0.contains("duplicate") }, ["a.yaml:2:1: duplicate key \"1\" (first at line 1)"])
        XCTAssertEqual(problems("b: 1\na: 1\nb: 2\na: 3\n"), ["a.yaml:4:1: duplicate key \"a\" (first at line 2); each key may appear once in a mapping"])
        XCTAssertEqual(problems("? [a]\n: 1\n? [a]\n: 2\n"),
                       ["a.yaml:1:3: duplicate key \"<uncovertable>\" (first at line 1); each key may appear once in a mapping"])
    }

    func testPlainScalarTags() {
        for (s, tag) in [("123", "int"), ("0x1F", "int"), ("1_000", "int"), ("1:30", "int"), ("1.5", "float"), (".inf", "float"),
                         ("1e5", "float"), ("yes", "bool"), ("Off", "bool"), ("~", "null"), ("", "null"), ("<<", "merge"),
                         ("2001-12-14", "timestamp"), ("2001-12-14 21:59:43.10 -5", "timestamp"), ("=", "value"),
                         ("abc", "str"), ("1.2.3", "str"), ("0b", "str"), ("2001-1-14", "str"), ("+", "str")] {
            XCTAssertEqual(YAMLTag.resolve(plain: s), "tag:yaml.org,2002:" + tag, s)
        }
    }
}
