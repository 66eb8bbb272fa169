import AnduinCore
#if canImport(FoundationEssentials)
import FoundationEssentials
#else
import Foundation
#endif
#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif
import in_tail

// `anduin test`: the tests file, read with the config reader (libyaml with positions), so every problem
// is FILE:LINE:COLUMN: message.
//
//     tests:
//       - name: an error line is lifted and gets pod metadata from its path
//         input:
//           component: containers          # an input (records as it would emit them) or a filter (fed to it)
//           format: cri                    # raw | docker | cri | auto (default: auto)
//           path: /var/log/containers/api-1_payments_server-0123.log   # the file the lines come from
//           lines:
//             - '2026-11-21T10:00:00Z stdout F {"level":"error","msg":"card declined"}'
//         expect:
//           component: parse               # records leaving this filter (or reaching this output)
//           records:                       # in order; their number must match
//             - equals: {level: error, kubernetes.namespace_name: payments}
//               matches: {message: "^card"}
//               absent: [message]

/// A field path with where it is written.
struct TestFieldPath {
    var path: FieldPath
    var mark: SourceMark
}

struct RecordExpectation {
    var mark: SourceMark
    /// A quoted scalar expects a string; a plain one a number, boolean or string as YAML reads it
    /// (`42` is a number, `"42"` a string: the difference is an Elasticsearch mapping conflict).
    var equals: [(TestFieldPath, ExpectedScalar)] = []
    var matches: [(TestFieldPath, Regex<AnyRegexOutput>, String)] = []
    var absent: [TestFieldPath] = []
}

/// An `equals` value with its JSON type.
enum ExpectedScalar: Equatable {
    case string(String)
    case number(String)
    case bool(Bool)

    init(yaml text: String, plain: Bool) {
        guard plain else { self = .string(text); return }
        switch text {
        case "true": self = .bool(true)
        case "false": self = .bool(false)
        default:
            // A YAML number (core schema): what JSON would read as one.
            let isNumber = text.wholeMatch(of: #/-?(0|[1-9][0-9]*)(\.[0-9]+)?([eE][-+]?[0-9]+)?/#) != nil
            self = isNumber ? .number(text) : .string(text)
        }
    }

    var typeName: String {
        switch self {
        case .string: return "a string"
        case .number: return "a number"
        case .bool: return "a boolean"
        }
    }
}

struct PipelineTestCase {
    var name: String
    var mark: SourceMark
    var inputComponent: String
    var inputMark: SourceMark
    var format: LogFormat
    var path: String
    var lines: [String]
    var expectComponent: String
    var expectMark: SourceMark
    var records: [RecordExpectation]
}

enum PipelineTestSpec {
    /// Reads the tests file; names of components are checked against `config`. Returns the tests or
    /// every problem found.
    static func load(path: String, config: AgentConfig) -> Result<[PipelineTestCase], TestFileErrors> {
        let text: String
        do {
            text = try String(contentsOfFile: path, encoding: .utf8)
        } catch {
            return .failure(TestFileErrors(items: [ConfigDiagnostic(SourceMark(file: path, line: 1, column: 1),
                                                                  "cannot read tests file: \(describeFileError(error))")]))
        }
        let diags = Diagnostics()
        guard let root = ConfigValue.parse(yaml: text, file: path, environment: ProcessInfo.processInfo.environment,
                                           diagnostics: diags) else {
            return .failure(TestFileErrors(items: diags.sorted))
        }
        let top = ConfigReader(root, context: "tests file", diagnostics: diags)
        var cases: [PipelineTestCase] = []
        switch top.value("tests") {
        case .sequence(let items, _)?:
            for item in items {
                if let c = testCase(item, config: config, diags: diags) { cases.append(c) }
            }
            if items.isEmpty { top.error("tests", "the list is empty") }
        case let v?:
            diags.error(v.mark, "tests: expected a list of tests, got \(v.kindName)")
        case nil:
            top.error(nil, "no tests: key (a list of tests, each with name, input and expect)")
        }
        top.finish()
        var seen: [String: SourceMark] = [:]
        for c in cases {
            if let first = seen[c.name] {
                diags.error(c.mark, "test name \"\(c.name)\" is used twice (first at line \(first.line))")
            }
            seen[c.name] = c.mark
        }
        return diags.isEmpty ? .success(cases) : .failure(TestFileErrors(items: diags.sorted))
    }

    private static func testCase(_ value: ConfigValue, config: AgentConfig, diags: Diagnostics) -> PipelineTestCase? {
        let before = diags.items.count
        // The name first, so every message about this test says which one it is.
        var name = ""
        if case .mapping(let entries, _) = value, let e = entries.first(where: { $0.key == "name" }),
           case .scalar(let s, _, _) = e.value { name = s }
        let context = name.isEmpty ? "test" : "test \"\(name)\""
        let t = ConfigReader(value, context: context, diagnostics: diags)
        guard case .mapping = value else { return nil }
        _ = t.requiredString("name")
        var c = PipelineTestCase(name: name, mark: value.mark, inputComponent: "", inputMark: value.mark, format: .auto,
                                 path: "/var/log/containers/test-pod_test-namespace_test-container-0000.log",
                                 lines: [], expectComponent: "", expectMark: value.mark, records: [])
        if let input = t.mapping("input") {
            c.inputMark = input.mark
            c.inputComponent = component(input, allowed: [.input, .filter], config: config) ?? ""
            c.format = input.choice("format", default: .auto)
            c.path = input.string("path", default: c.path)
            c.lines = input.stringList("lines")
            if !input.has("lines") { input.error(nil, "no lines: (the lines to feed, as in the file)") }
        } else {
            t.error(nil, "no input: (component, format, path, lines)")
        }
        if let expect = t.mapping("expect") {
            c.expectMark = expect.mark
            c.expectComponent = component(expect, allowed: [.input, .filter, .output], config: config) ?? ""
            switch expect.value("records") {
            case .sequence(let items, _)?:
                c.records = items.compactMap { expectation($0, context: "\(context): expect: records", diags: diags) }
            case let v?:
                diags.error(v.mark, "\(context): expect: records: expected a list (each with equals, matches, absent), got \(v.kindName)")
            case nil:
                if expect.has("records") {
                    c.records = []  // `records: []` written as `records:`: no record expected
                } else {
                    expect.error(nil, "no records: (a list; [] when nothing should come out)")
                }
            }
        } else {
            t.error(nil, "no expect: (component, records)")
        }
        t.finish()
        return diags.items.count == before ? c : nil
    }

    private static func component(_ r: ConfigReader, allowed: Set<ComponentKind>,
                                  config: AgentConfig) -> String? {
        guard let name = r.requiredString("component") else { return nil }
        guard let decl = config.components.first(where: { $0.name == name }) else {
            let candidates = config.components.filter { allowed.contains($0.kind) }.map(\.name)
            var msg = "no component \"\(name)\" in \(config.file)"
            if let guess = closest(name, in: candidates) { msg += " (did you mean \"\(guess)\"?)" }
            r.error("component", msg + "; one of: \(candidates.joined(separator: ", "))")
            return nil
        }
        guard allowed.contains(decl.kind) else {
            r.error("component", "\"\(name)\" is an \(decl.kind.rawValue); here name one of: "
                + allowed.sorted { $0.rawValue < $1.rawValue }.map(\.section).joined(separator: ", "))
            return nil
        }
        if decl.kind == .input, decl.type != "tail" {
            r.error("component", "input \"\(name)\" is a \(decl.type) input; only tail inputs can be fed lines")
        }
        return name
    }

    private static func expectation(_ value: ConfigValue, context: String, diags: Diagnostics) -> RecordExpectation? {
        let r = ConfigReader(value, context: context, diagnostics: diags)
        guard case .mapping = value else { return nil }
        var e = RecordExpectation(mark: value.mark)
        func fieldPath(_ text: String, _ mark: SourceMark) -> TestFieldPath? {
            switch FieldPath.parse(text) {
            case .success(let p): return TestFieldPath(path: p, mark: mark)
            case .failure(let problem):
                diags.error(mark, "\(context): \(problem.message)")
                return nil
            }
        }
        for (key, v) in entries(r.value("equals"), "equals", context, diags) {
            guard case .scalar(let s, _, let plain) = v.value else {
                diags.error(v.value.mark, "\(context): equals.\(key): expected a scalar (string, number, true/false), got \(v.value.kindName)")
                continue
            }
            if let p = fieldPath(key, v.keyMark) { e.equals.append((p, ExpectedScalar(yaml: s, plain: plain))) }
        }
        for (key, v) in entries(r.value("matches"), "matches", context, diags) {
            guard case .scalar(let s, _, _) = v.value else {
                diags.error(v.value.mark, "\(context): matches.\(key): expected a regular expression, got \(v.value.kindName)")
                continue
            }
            guard let p = fieldPath(key, v.keyMark) else { continue }
            do {
                e.matches.append((p, try Regex(s), s))
            } catch {
                diags.error(v.value.mark, "\(context): matches.\(key): invalid regular expression \"\(s)\": \(error)")
            }
        }
        if let v = r.value("absent") {
            let items: [ConfigValue]
            if case .sequence(let list, _) = v { items = list } else { items = [v] }
            for item in items {
                guard case .scalar(let s, let m, _) = item else {
                    diags.error(item.mark, "\(context): absent: expected field paths, got \(item.kindName)")
                    continue
                }
                if let p = fieldPath(s, m) { e.absent.append(p) }
            }
        }
        r.finish()
        return e
    }

    private static func entries(_ v: ConfigValue?, _ key: String, _ context: String,
                                _ diags: Diagnostics) -> [(String, (keyMark: SourceMark, value: ConfigValue))] {
        guard let v else { return [] }
        guard case .mapping(let items, _) = v else {
            diags.error(v.mark, "\(context): \(key): expected a mapping of field paths to values, got \(v.kindName)")
            return []
        }
        return items.map { ($0.key, ($0.keyMark, $0.value)) }
    }
}

/// Every problem of a tests file, in file order.
struct TestFileErrors: Error {
    var items: [ConfigDiagnostic]
}
