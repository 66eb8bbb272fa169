import AnduinCore
import XCTest
import filter_grep
import filter_kubernetes
import filter_modify
import filter_multiline
import filter_parse
import filter_throttle
import in_tail
import out_blackhole
import out_es
import out_file
import out_http
import out_stdout

/// Every numeric option of every table: its bounds are accepted, one step past them is refused with
/// a message on the value, and the bounds the reference prints read back as the same numbers.
final class OptionBoundsTests: XCTestCase {
    static let specs: [PluginSpec] = [TailPlugin.spec, ParsePlugin.spec, KubernetesPlugin.spec, MultilinePlugin.spec, GrepPlugin.spec,
                                      ModifyPlugin.spec, ThrottlePlugin.spec, FileOutputPlugin.spec, StdoutOutputPlugin.spec,
                                      BlackholePlugin.spec, HTTPOutputPlugin.spec, ElasticsearchPlugin.spec]

    /// (where, option) for every option, nested ones included.
    func allOptions() -> [(String, OptionSpec)] {
        var out: [(String, OptionSpec)] = []
        func walk(_ prefix: String, _ options: [OptionSpec]) {
            for o in options {
                out.append((prefix + o.key, o))
                if let c = o.children { walk(prefix + o.key + ".", c) }
            }
        }
        for s in Self.specs { walk(s.type + ": ", s.allOptions ?? []) }
        walk("top: ", AgentConfig.options)
        return out
    }

    func check(_ text: String, _ spec: OptionSpec) -> [String] {
        let d = Diagnostics()
        let yaml = "\(spec.key): \(text)"
        guard let v = ConfigValue.parse(yaml: yaml, file: "t", environment: [:], diagnostics: d) else { return ["yaml"] }
        let r = ConfigReader(v, context: "t", diagnostics: d, options: [spec])
        switch spec.kind {
        case .int(let range): _ = r.int(spec.key, default: range.lowerBound, range: range)
        case .size(let range): _ = r.size(spec.key, default: range.lowerBound, range: range)
        case .duration(let range): _ = r.duration(spec.key, default: range.lowerBound, range: range)
        default: break
        }
        r.finish()
        return d.items.map(\.description)
    }

    func testEveryNumericOptionIsBounded() {
        var numeric = 0
        for (name, spec) in allOptions() {
            switch spec.kind {
            case .int(let r), .size(let r):
                numeric += 1
                XCTAssertEqual(check("\(r.lowerBound)", spec), [], name)
                XCTAssertEqual(check("\(r.upperBound)", spec), [], name)
                if r.lowerBound > 0 { XCTAssertEqual(check("\(r.lowerBound - 1)", spec).first?.hasPrefix("t:1:\(spec.key.count + 3): t: \(spec.key): "), true, name) }
                XCTAssertEqual(check("\(r.upperBound + 1)", spec).first?.hasPrefix("t:1:\(spec.key.count + 3): t: \(spec.key): "), true, name)
                XCTAssertEqual(check("99999999999999999999999", spec).count, 1, name)
                if case .size = spec.kind {
                    XCTAssertEqual(try? ByteSize.parse(ByteSize.format(r.upperBound)).get(), r.upperBound, "\(name): the printed bound")
                    XCTAssertEqual(check("99999999999TiB", spec).count, 1, name)
                }
            case .duration(let r):
                numeric += 1
                XCTAssertLessThanOrEqual(r.upperBound, 30 * 86_400, "\(name): a duration is bounded")
                XCTAssertEqual(check("\(r.lowerBound)", spec), [], name)
                XCTAssertEqual(check("\(r.upperBound)", spec), [], name)
                XCTAssertEqual(DurationText.parse(DurationText.format(r.upperBound)), r.upperBound, "\(name): the printed bound")
                XCTAssertEqual(DurationText.parse(DurationText.format(r.lowerBound)), r.lowerBound, "\(name): the printed bound")
                if r.lowerBound > 0 { XCTAssertEqual(check("\(r.lowerBound / 2)", spec).count, 1, name) }
                XCTAssertEqual(check("\(r.upperBound + 1)", spec).count, 1, name)
                for bad in ["1e308", "inf", "99999999999h", "-1s"] { XCTAssertEqual(check(bad, spec).count, 1, "\(name): \(bad)") }
            default:
                break
            }
        }
        XCTAssertGreaterThan(numeric, 40)
    }

    /// No plugin is read in the older style any more: each declares its table.
    func testEveryPluginDeclaresItsOptions() {
        for s in Self.specs { XCTAssertNotNil(s.options, s.type) }
    }

    /// Every default lies within its range.
    func testDefaultsAreInRange() {
        for (name, spec) in allOptions() {
            switch spec.kind {
            case .int(let r):
                if let n = Int(spec.defaultText) { XCTAssertTrue(r.contains(n), name) }
            case .size(let r):
                if let n = try? ByteSize.parse(spec.defaultText).get() { XCTAssertTrue(r.contains(n), name) }
            case .duration(let r):
                if let n = DurationText.parse(spec.defaultText) { XCTAssertTrue(r.contains(n), name) }
            default:
                break
            }
        }
    }
}
