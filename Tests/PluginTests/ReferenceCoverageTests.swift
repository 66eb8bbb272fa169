import AnduinCore
import Foundation
import XCTest
import out_es

/// Every row of `anduin config reference` is an option a config can use: for each declared option
/// (nested and shared ones included, every word of a choice), a config is generated that sets it and
/// must pass validation. A row the reference documents but the parser refuses (`host:`, which was
/// answered with `missing required key "hosts"`) fails here.
final class ReferenceCoverageTests: XCTestCase {
    let registry = PluginRegistry(OptionBoundsTests.specs)
    var dir = ""

    override func setUpWithError() throws {
        dir = NSTemporaryDirectory() + "anduin-refcov-\(getpid())-\(UInt32.random(in: 0...UInt32.max))"
        try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
        // Path options that name a file to read get one that exists.
        for name in ["file.txt", "token", "password"] {
            XCTAssertTrue(FileManager.default.createFile(atPath: dir + "/" + name, contents: Data("x0123456789abcdefghij\n".utf8)))
        }
    }

    override func tearDownWithError() throws {
        try? FileManager.default.removeItem(atPath: dir)
    }

    /// The keys a component of `type` needs besides the one under test, as YAML lines.
    func required(_ type: String, testing key: String) -> [String] {
        switch type {
        case "tail": return key == "paths" ? [] : ["paths: [\"./logs/*.log\"]"]
        case "throttle": return key == "rate" ? [] : ["rate: 10/s"]
        case "parse" where ["time_format", "time_zone", "max_future"].contains(key): return ["time_key: ts"]
        case "multiline" where key.hasSuffix("_pattern"): return ["mode: custom"]
        case "multiline": return key == "mode" ? [] : ["mode: java"]
        case "kubernetes" where key == "insecure_skip_verify": return ["api_url: \"https://127.0.0.1:6443\""]
        case "file": return key == "path" ? [] : ["path: ./out.ndjson"]
        case "http": return (key == "uri" ? [] : ["uri: \"http://127.0.0.1:9/x\""]) + credentials(key)
        case "elasticsearch": return key == "hosts" || key == "host" ? [] : ["hosts: [\"http://127.0.0.1:9\"]"] + credentials(key)
        default: return []
        }
    }

    /// A password goes with a user.
    private func credentials(_ key: String) -> [String] { key.hasPrefix("password") ? ["user: u"] : [] }

    /// The whole value of the top-level key for nested options that need a sibling, by `type.path`
    /// (or `path`).
    func groupValue(_ type: String, _ path: String) -> String? {
        let pair = "{cert_file: \"\(dir)/file.txt\", key_file: \"\(dir)/file.txt\"}"
        let table: [String: String] = [
            "tls.cert_file": pair,
            "tls.key_file": pair,
            "api.tap_token_file": "{tap: true, tap_token_file: \"\(dir)/token\"}",
        ]
        return table[type + "." + path] ?? table[path]
    }

    /// Keys a nested option needs beside it in its group, as YAML flow entries (`"a: b, "`).
    func groupSiblings(_ type: String, _ path: String) -> String {
        switch (type, path) {
        case ("tail", "multiline.mode"): return ""
        case ("tail", let p) where p.hasPrefix("multiline.") && p.hasSuffix("_pattern"): return "mode: custom, "
        case ("tail", let p) where p.hasPrefix("multiline."): return "mode: java, "
        default: return ""
        }
    }

    /// Values an option cannot take from its type alone, by `type.key` (or `key`).
    func special(_ type: String, _ path: String) -> [String]? {
        let table: [String: [String]] = [
            "tail.paths": ["[\"./logs/*.log\"]"],
            "tail.exclude": ["[\"./logs/skip-*.log\"]"],
            "tail.multiline": ["{mode: java}"],
            "parse.formats": ["[json]", "[logfmt]", "[json, logfmt]", "[nginx, apache_combined, klog, syslog_rfc5424, syslog_rfc3164]"],
            "parse.regex": ["\"^(?<level>\\\\w+) (?<msg>.*)$\"", "'^(?<a>\\d+)'"],
            "parse.types": ["{duration_ms: int, ratio: float, ok: bool, id: string}"],
            "parse.target": ["root", "parsed"],
            "parse.time_key": ["ts"],
            "parse.time_format": ["auto", "rfc3339", "epoch_s", "epoch_ms", "epoch_us", "epoch_ns", "nginx", "klog", "syslog", "\"%Y-%m-%d %H:%M:%S\""],
            "parse.time_zone": ["UTC", "\"+02:00\"", "Europe/Berlin"],
            "kubernetes.api": ["in_cluster", "off"],
            "kubernetes.api_url": ["\"https://127.0.0.1:6443\""],
            "kubernetes.kubeconfig": ["\"\(dir)/kubeconfig\""],
            "multiline.mode": ["java", "python", "go"],
            "multiline.start_pattern": ["\"^\\\\S\""],
            "multiline.continue_pattern": ["\"^\\\\s\""],
            "grep.include": ["{message: \"error\"}"],
            "grep.exclude": ["{message: \"GET /health\"}"],
            "modify.set": ["{env: prod}"],
            "modify.add": ["{env: prod}"],
            "modify.remove": ["[env]"],
            "modify.rename": ["{msg: message}"],
            "modify.copy": ["{message: msg}"],
            "throttle.key": ["kubernetes.pod_name"],
            "throttle.rate": ["10/s", "600/m", "3600/h"],
            "elasticsearch.hosts": ["[\"http://127.0.0.1:9\"]", "[\"http://127.0.0.1:9\", \"http://127.0.0.1:10\"]"],
            "elasticsearch.host": ["\"http://127.0.0.1:9\""],
            "elasticsearch.index": ["\"logs-{kubernetes.namespace_name}-%Y.%m.%d\""],
            "http.uri": ["\"http://127.0.0.1:9/x\""],
            "proxy": ["\"http://127.0.0.1:3128\""],
            "headers": ["{X-Tenant: a}"],
            "api.address": ["\"127.0.0.1:2020\""],
            "api.tap_address": ["\"127.0.0.1:2021\""],
        ]
        return table[type + "." + path] ?? table[path]
    }

    /// Values for an option of `kind`.
    func values(_ type: String, _ path: String, _ spec: OptionSpec) -> [String] {
        if let v = special(type, path) { return v }
        switch spec.kind {
        case .string: return ["\"x\""]
        case .secret: return ["\"s3cret\""]
        case .path:
            // A file to read where the key says so; otherwise a place to write.
            let k = spec.key
            if k.hasSuffix("_file") || k == "kubeconfig" { return ["\"\(dir)/\(k.contains("token") ? "token" : k.contains("password") ? "password" : "file.txt")\""] }
            return ["\"\(dir)/out-\(k)\""]
        case .bool: return ["true", "false"]
        case .int(let r), .size(let r):
            if Int(spec.defaultText) != nil || (try? ByteSize.parse(spec.defaultText).get()) != nil { return [spec.defaultText] }
            return ["\(r.lowerBound)"]
        case .duration(let r):
            if DurationText.parse(spec.defaultText) != nil { return [spec.defaultText] }
            return [DurationText.format(r.lowerBound)]
        case .choice(let words): return words
        case .list: return ["[\"x\"]"]
        case .pathList: return ["[\"./logs/*.log\"]"]
        case .text, .free: return []
        case .group: return ["{}"]
        }
    }

    /// (option path, the top-level key it sits under, that key's YAML value) for every row below `spec`.
    func settings(_ type: String, _ spec: OptionSpec) -> [(String, String, String)] {
        var leaves: [(String, String)] = []
        func walk(_ o: OptionSpec, _ path: String) {
            for v in values(type, path, o) { leaves.append((path, v)) }
            for c in o.children ?? [] { walk(c, path + "." + c.key) }
        }
        walk(spec, spec.key)
        return leaves.map { path, v in
            if path == spec.key { return (path, spec.key, v) }
            let relative = String(path.dropFirst(spec.key.count + 1))
            return (path, spec.key, groupValue(type, path) ?? "{" + groupSiblings(type, path) + nest(relative, v) + "}")
        }
    }

    private func nest(_ path: String, _ value: String) -> String {
        guard let dot = path.firstIndex(of: ".") else { return "\(path): \(value)" }
        return "\(path[..<dot]): {" + nest(String(path[path.index(after: dot)...]), value) + "}"
    }

    func config(kind: ComponentKind, type: String, lines: [String]) -> String {
        let body = lines.map { "    " + $0 }.joined(separator: "\n")
        switch kind {
        case .input:
            return "data_dir: \(dir)/data\ninputs:\n  in:\n    type: \(type)\n\(body)\noutputs:\n  o:\n    type: blackhole\n    from: [in]\n"
        case .filter:
            return "data_dir: \(dir)/data\ninputs:\n  in:\n    type: tail\n    paths: [\"./logs/*.log\"]\nfilters:\n  f:\n    type: \(type)\n    from: [in]\n\(body)\noutputs:\n  o:\n    type: blackhole\n    from: [f]\n"
        case .output:
            return "data_dir: \(dir)/data\ninputs:\n  in:\n    type: tail\n    paths: [\"./logs/*.log\"]\noutputs:\n  o:\n    type: \(type)\n    from: [in]\n\(body)\n"
        }
    }

    func problems(_ yaml: String) -> [String] {
        switch AgentConfig.parse(yaml: yaml, file: dir + "/anduin.yaml", registry: registry, environment: [:]) {
        case .success: return []
        case .failure(let e): return e.items.map(\.description)
        }
    }

    func testEveryReferenceRowIsUsedByAConfigThatValidates() {
        var rows = 0, untested: [String] = []
        for spec in OptionBoundsTests.specs {
            for option in spec.allOptions ?? [] {
                let all = settings(spec.type, option)
                if all.isEmpty { untested.append("\(spec.type).\(option.key)") }
                for (path, key, value) in all {
                    rows += 1
                    let yaml = config(kind: spec.kind, type: spec.type, lines: required(spec.type, testing: key) + ["\(key): \(value)"])
                    let p = problems(yaml)
                    XCTAssertEqual(p, [], "\(spec.type) \(path): \(value)\n\(yaml)")
                }
            }
        }
        // The top level: inputs, filters and outputs are in every config above.
        let base = config(kind: .output, type: "blackhole", lines: [])
        for option in AgentConfig.options where !["inputs", "filters", "outputs"].contains(option.key) {
            for (path, key, value) in settings("agent", option) {
                rows += 1
                let yaml = base.replacingOccurrences(of: "data_dir: \(dir)/data\n", with: key == "data_dir" ? "" : "data_dir: \(dir)/data\n") + "\(key): \(value)\n"
                XCTAssertEqual(problems(yaml), [], "top level \(path): \(value)\n\(yaml)")
            }
        }
        XCTAssertEqual(untested, [], "options without a generated value: add them to special()")
        XCTAssertGreaterThan(rows, 150)
    }
}
