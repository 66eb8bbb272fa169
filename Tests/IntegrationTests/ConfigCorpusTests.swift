import Foundation
import XCTest
#if canImport(Glibc)
import Glibc
#endif

/// The real `anduin` binary against a generated corpus of broken configs (issue 13): it never dies by a
/// signal, every problem is one `FILE:LINE:COLUMN: message` line, and a secret written in the file
/// never appears in what it prints. And the README's option tables are the ones the code declares.
final class ConfigCorpusTests: AgentTestCase {
    /// Runs the binary to completion: (exited normally, status, stdout, stderr).
    private func runCLI(_ args: [String], timeout: Double = 60) throws -> (Bool, Int32, String, String) {
        let p = Process()
        p.executableURL = URL(fileURLWithPath: AnduinBinary.path!)
        p.arguments = args
        let outPath = sandbox.path("cli.stdout"), errPath = sandbox.path("cli.stderr")
        XCTAssertTrue(FileManager.default.createFile(atPath: outPath, contents: nil))
        XCTAssertTrue(FileManager.default.createFile(atPath: errPath, contents: nil))
        let out = FileHandle(forWritingAtPath: outPath)!, err = FileHandle(forWritingAtPath: errPath)!
        p.standardOutput = out
        p.standardError = err
        p.standardInput = FileHandle.nullDevice
        try p.run()
        let exited = poll(timeout: timeout, interval: 0.02) { !p.isRunning }
        if !exited { kill(p.processIdentifier, SIGKILL) }
        XCTAssertTrue(exited, "anduin \(args.joined(separator: " ")) did not exit within \(Int(timeout)) s")
        p.waitUntilExit()
        try? out.close()
        try? err.close()
        let read = { (path: String) in String(decoding: FileManager.default.contents(atPath: path) ?? Data(), as: UTF8.self) }
        return (p.terminationReason == .exit, p.terminationStatus, read(outPath), read(errPath))
    }

    static let secret = "hunter2-Zq9xV7"

    /// A valid config using every converted plugin, with a secret the output must never show.
    static let base = """
        data_dir: ./data
        log_level: info
        shutdown_timeout: 30s
        inputs:
          containers:
            type: tail
            paths: ["./logs/*.log"]
            max_line_bytes: 1MiB
            poll_interval: 250ms
            read_budget: 1MiB
        filters:
          parse:
            type: parse
            from: [containers]
            formats: [json, logfmt]
          traces:
            type: multiline
            from: [parse]
            mode: java
            flush_timeout: 1s
            max_bytes: 1MiB
          limit:
            type: throttle
            from: [traces]
            rate: 1000/s
            max_keys: 10000
            log_interval: 10s
          keep:
            type: grep
            from: [limit]
            exclude: {message: "GET /health"}
          tidy:
            type: modify
            from: [keep]
            set: {env: prod}
        outputs:
          es:
            type: elasticsearch
            from: [tidy]
            hosts: ["http://127.0.0.1:9"]
            user: elastic
            password: \(secret)
            buffer: {type: disk, max_bytes: 1GiB, segment_bytes: 64MiB}
            batch: {max_records: 5000, max_bytes: 5MiB, timeout: 1s}
            retry: {initial: 100ms, max: 30s}
            concurrency: 2
          local:
            type: file
            from: [tidy]
            path: ./out.ndjson

        """

    /// Broken configs, as (name, bytes).
    static func corpus() -> [(String, [UInt8])] {
        var out: [(String, [UInt8])] = []
        func add(_ name: String, _ text: String) { out.append((name, Array(text.utf8))) }
        func replacing(_ a: String, _ b: String) -> String {
            precondition(base.contains(a), a)
            return base.replacingOccurrences(of: a, with: b)
        }
        let sizeValues = ["0", "1", "63", "64", "65", "1TiB", "1.5GiB", "99999999999TiB", "1e400", "-1", "9223372036854775807",
                          "9223372036854775808", "18446744073709551616B", "NaN", "inf", "0x10", "１MiB", "1 MiB", "1GB", "''"]
        for (key, original) in [("max_line_bytes: 1MiB", "max_line_bytes"), ("read_budget: 1MiB", "read_budget"),
                                ("max_bytes: 1MiB", "max_bytes"), ("max_bytes: 1GiB", "max_bytes"),
                                ("segment_bytes: 64MiB", "segment_bytes"), ("max_bytes: 5MiB", "max_bytes")] {
            for v in sizeValues { add("size-\(key)-\(v)", replacing(key, "\(original): \(v)")) }
        }
        let durationValues = ["0", "0s", "1ms", "0.0000001s", "99999999999h", "1e308", "inf", "-1s", "nan", "100000d", "7d",
                              "8d", "1.7976931348623157e308", "1h30m", "[1]"]
        for (key, original) in [("poll_interval: 250ms", "poll_interval"), ("flush_timeout: 1s", "flush_timeout"),
                                ("timeout: 1s", "timeout"), ("max: 30s", "max"), ("log_interval: 10s", "log_interval"),
                                ("shutdown_timeout: 30s", "shutdown_timeout")] {
            for v in durationValues { add("duration-\(original)-\(v)", replacing(key, "\(original): \(v)")) }
        }
        for (key, original) in [("concurrency: 2", "concurrency"), ("max_keys: 10000", "max_keys"),
                                ("max_records: 5000", "max_records")] {
            for v in ["0", "-1", "99999999999999999999", "9223372036854775807", "1.5", "true", "[]", "{}", "1_000", "0b11"] {
                add("count-\(original)-\(v)", replacing(key, "\(original): \(v)"))
            }
        }
        for v in ["0/s", "1e400/s", "-1/s", "1/x", "nan/s", "inf/s", "999999999999/s", "/s", "1//s", "1e9/s"] {
            add("rate-\(v)", replacing("rate: 1000/s", "rate: \"\(v)\""))
        }
        for v in ["127.0.0.1:99999", ":-1", "127.0.0.1:", "host:65536", "127.0.0.1:0", "nocolon", "127.0.0.1:99999999999999999999"] {
            add("port-\(v)", base + "api: {address: \"\(v)\"}\n")
        }
        // NUL bytes and control characters at several places, binary garbage, invalid UTF-8.
        var bytes = Array(base.utf8)
        for (i, at) in [0, 10, 100, 400, bytes.count - 1].enumerated() {
            var b = bytes
            b.insert(0, at: at)
            out.append(("nul-\(i)", b))
            var c = bytes
            c.insert(0x1B, at: at)
            out.append(("escape-\(i)", c))
        }
        var rng = SystemRandomNumberGenerator()
        for i in 0..<8 {
            out.append(("binary-\(i)", (0..<(64 << i)).map { _ in UInt8.random(in: 0...255, using: &rng) }))
        }
        bytes[50] = 0xFF
        out.append(("invalid-utf8", bytes))
        out.append(("truncated-utf8", Array("data_dir: \"é".utf8.dropLast())))
        out.append(("gzip-magic", [0x1F, 0x8B, 0x08, 0x00] + Array(repeating: 0, count: 100)))
        // Nesting.
        add("deep-flow-seq", "a: " + String(repeating: "[", count: 10_000))
        add("deep-flow-map", "a: " + String(repeating: "{a: ", count: 10_000))
        add("deep-block-seq", String(repeating: "- ", count: 5_000) + "x\n")
        add("deep-block-map", (0..<500).map { String(repeating: " ", count: $0) + "a:" }.joined(separator: "\n") + " 1\n")
        add("deep-but-ok", "data_dir: " + String(repeating: "[", count: 50) + String(repeating: "]", count: 50) + "\n")
        // Anchors and aliases.
        var laughs = "a0: &a0 [x, x, x, x, x, x, x, x, x, x]\n"
        for i in 1..<12 { laughs += "a\(i): &a\(i) [" + Array(repeating: "*a\(i - 1)", count: 10).joined(separator: ", ") + "]\n" }
        add("billion-laughs", laughs)
        add("undefined-alias", base + "extra: *nowhere\n")
        add("alias-as-component", base.replacingOccurrences(of: "  local:\n", with: "  local: &loc\n") + "  copy: *loc\n")
        add("merge-key", base + "x: &m {a: 1}\ny: {<<: *m, b: 2}\n")
        add("anchor-on-key", "&k data_dir: ./d\n")
        // Wrong types and shapes.
        add("top-list", "- a\n- b\n")
        add("top-scalar", "hello\n")
        add("top-null", "null\n")
        add("empty", "")
        add("comments-only", "# nothing\n")
        add("two-docs", base + "---\n" + base)
        add("inputs-list", replacing("inputs:\n  containers:", "inputs:\n- containers:"))
        add("paths-map", replacing("paths: [\"./logs/*.log\"]", "paths: {a: b}"))
        add("from-map", replacing("from: [containers]", "from: {a: b}"))
        add("from-nested", replacing("from: [containers]", "from: [[containers]]"))
        add("from-nowhere", replacing("from: [containers]", "from: [nowhere]"))
        add("type-list", replacing("type: parse", "type: [parse]"))
        add("key-list", base + "[a, b]: c\n")
        add("key-map", base + "{a: b}: c\n")
        add("buffer-scalar", replacing("buffer: {type: disk, max_bytes: 1GiB, segment_bytes: 64MiB}", "buffer: disk"))
        add("userinfo-bad-scheme", replacing("hosts: [\"http://127.0.0.1:9\"]", "hosts: [\"ftp://elastic:\(secret)@127.0.0.1:9\"]"))
        add("userinfo-and-user", replacing("hosts: [\"http://127.0.0.1:9\"]", "hosts: [\"http://elastic:\(secret)@127.0.0.1:9\", \"http://h\"]"))
        add("segment-larger", replacing("segment_bytes: 64MiB", "segment_bytes: 2GiB"))
        // YAML syntax.
        add("tab-indent", base.replacingOccurrences(of: "    type: tail", with: "\ttype: tail"))
        add("unclosed-quote", base + "x: \"abc\n")
        add("unclosed-flow", base + "x: [a, b\n")
        add("duplicate-key", replacing("    password: \(secret)\n", "    password: \(secret)\n    password: \(secret)\n"))
        add("duplicate-top", base + "data_dir: ./again\n")
        add("colons", ": : :\n")
        add("bad-indent", "a:\n  b: 1\n c: 2\n")
        add("seq-then-map", "- a\nb: c\n")
        add("directive", "%YAML 9.9\n---\na: 1\n")
        add("bad-tag", "a: !!binary 1\n")
        add("custom-tag", "a: !secret x\n")
        add("bom", "\u{FEFF}" + base)
        add("crlf", base.replacingOccurrences(of: "\n", with: "\r\n"))
        add("cr-only", base.replacingOccurrences(of: "\n", with: "\r"))
        // Unicode in names, keys and values.
        add("emoji-name", replacing("  local:\n", "  l🙂cal:\n"))
        add("rtl-key", base + "da\u{202E}ta: x\n")
        add("rtl-value", replacing("path: ./out.ndjson", "path: \"./o\u{202E}ut\""))
        add("zero-width", base + "data\u{200B}_dir: x\n")
        add("combining", replacing("type: parse", "type: pa\u{0301}rse"))
        add("env-unset", replacing("path: ./out.ndjson", "path: ${NOPE_NOT_SET_\u{1F600}}"))
        add("huge-file", base + "# " + String(repeating: "x", count: 1 << 20) + "\n")
        add("long-line-value", replacing("path: ./out.ndjson", "path: " + String(repeating: "y", count: 100_000)))
        add("many-keys", base + (0..<3000).map { "k\($0): v" }.joined(separator: "\n") + "\n")
        return out
    }

    func testMutatedConfigsNeverCrashAndReportOneLineEach() throws {
        let problemLine = try NSRegularExpression(pattern: #"^[^:]+:\d+:\d+: "#)
        let summary = try NSRegularExpression(pattern: #"^\d+ problems? in "#)
        let corpus = Self.corpus()
        XCTAssertGreaterThanOrEqual(corpus.count, 200)
        let path = sandbox.path("c.yaml")
        var statuses: [Int32: Int] = [:]
        for (name, bytes) in corpus {
            XCTAssertTrue(FileManager.default.createFile(atPath: path, contents: Data(bytes)))
            let (normal, status, out, err) = try runCLI(["validate", "--config", path])
            XCTAssertTrue(normal, "\(name): anduin validate died by signal \(status)\n\(err.prefix(2000))")
            XCTAssertTrue(status == 0 || status == 1, "\(name): exit status \(status)\n\(err.prefix(2000))")
            statuses[status, default: 0] += 1
            if status == 1 {
                let lines = err.split(separator: "\n", omittingEmptySubsequences: false).dropLast()
                XCTAssertFalse(lines.isEmpty, "\(name): exit 1 without a problem line")
                for line in lines {
                    let s = String(line), r = NSRange(s.startIndex..., in: s)
                    XCTAssertTrue(problemLine.firstMatch(in: s, range: r) != nil || summary.firstMatch(in: s, range: r) != nil,
                                  "\(name): not FILE:LINE:COLUMN: \(s.prefix(300))")
                    XCTAssertFalse(s.unicodeScalars.contains { $0.value < 0x20 || $0.value == 0x7F || (0x202A...0x202E).contains($0.value) },
                                   "\(name): unescaped control character in \(s.debugDescription.prefix(300))")
                }
            }
            XCTAssertFalse(out.contains(Self.secret) || err.contains(Self.secret), "\(name): the password was printed")
        }
        XCTAssertGreaterThan(statuses[1] ?? 0, 150, "most of the corpus is invalid: \(statuses)")
    }

    /// `run` refuses a bad config with exit 1 before starting anything.
    func testRunExitsOneOnBadConfigs() throws {
        let path = sandbox.path("c.yaml")
        for text in [Self.base.replacingOccurrences(of: "max_line_bytes: 1MiB", with: "max_line_bytes: 99999999999TiB"),
                     Self.base.replacingOccurrences(of: "poll_interval: 250ms", with: "poll_interval: 1e308"),
                     Self.base.replacingOccurrences(of: "timeout: 1s", with: "timeout: 99999999999h"),
                     "a: [[[\n", "\u{0}"] {
            XCTAssertTrue(FileManager.default.createFile(atPath: path, contents: Data(text.utf8)))
            let (normal, status, _, err) = try runCLI(["run", "--config", path])
            XCTAssertTrue(normal && status == 1, "run: \(normal) \(status)\n\(err.prefix(1000))")
            XCTAssertTrue(err.hasPrefix(path + ":"), err)
        }
    }

    /// LINE:COLUMN of the `occurrence`-th (from 1) `needle` in `text`, columns counted in characters.
    private func position(of needle: String, in text: String, occurrence: Int = 1) -> String {
        var from = text.startIndex
        var found = text.startIndex
        for _ in 0..<occurrence {
            guard let r = text.range(of: needle, range: from..<text.endIndex) else { return "?" }
            found = r.lowerBound
            from = r.upperBound
        }
        let before = text[..<found]
        let line = before.filter { $0 == "\n" }.count + 1
        let column = before.count - (before.lastIndex(of: "\n").map { before.distance(from: before.startIndex, to: $0) + 1 } ?? 0) + 1
        return "\(line):\(column)"
    }

    /// Each problem at the offending value.
    func testPositionsPointAtTheOffendingValue() throws {
        let path = sandbox.path("c.yaml")
        let nowhere = Self.base.replacingOccurrences(of: "from: [containers]", with: "from: [containers, nowhere]")
        let huge = Self.base.replacingOccurrences(of: "max_line_bytes: 1MiB", with: "max_line_bytes: 99999999999TiB")
        let nul = Self.base + "a: \"x\u{0}\"\n"
        let dup = Self.base.replacingOccurrences(of: "    password: \(Self.secret)\n", with: "    password: \(Self.secret)\n    password: x\n")
        let cases: [(String, String, String)] = [
            (nowhere, position(of: "nowhere", in: nowhere), "\"nowhere\""),
            (huge, position(of: "99999999999TiB", in: huge), "too large"),
            (nul, position(of: "\u{0}", in: nul), "NUL"),
            (dup, position(of: "password:", in: dup, occurrence: 2), "duplicate key \"password\""),
        ]
        for (text, at, what) in cases {
            XCTAssertTrue(FileManager.default.createFile(atPath: path, contents: Data(text.utf8)))
            let (_, status, _, err) = try runCLI(["validate", "--config", path])
            XCTAssertEqual(status, 1)
            XCTAssertTrue(err.contains("\(path):\(at): ") && err.contains(what), "expected \(at) \(what) in:\n\(err)")
            XCTAssertFalse(err.contains(Self.secret))
        }
    }

    /// The README's tables are exactly what `anduin config reference` renders from the declarations,
    /// and every declared table is in the README. To update: `anduin config reference --update-readme README.md`.
    func testReadmeMatchesTheDeclaredOptions() throws {
        let root = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent()
        let readme = try String(contentsOf: root.appendingPathComponent("README.md"), encoding: .utf8)
        let (_, status, all, err) = try runCLI(["config", "reference"])
        XCTAssertEqual(status, 0, err)
        let names = all.split(separator: "\n").filter { $0.hasPrefix("### ") }.compactMap { line -> String? in
            if line == "### Top level" { return "agent" }
            return line.split(separator: "`").dropFirst().first.map(String.init)
        }
        XCTAssertGreaterThanOrEqual(names.count, 9, all)
        for name in names {
            let begin = "<!-- anduin config reference \(name): generated, do not edit -->\n"
            XCTAssertNotNil(readme.range(of: begin),
                            "README.md has no generated table for \(name): add the markers and run `anduin config reference --update-readme README.md`")
        }
        // Each block regenerated from the declarations: the copy must not change.
        let copy = sandbox.path("README.md")
        XCTAssertTrue(FileManager.default.createFile(atPath: copy, contents: Data(readme.utf8)))
        let (_, s, _, e) = try runCLI(["config", "reference", "--update-readme", copy])
        XCTAssertEqual(s, 0, e)
        let regenerated = try String(contentsOfFile: copy, encoding: .utf8)
        if regenerated != readme {
            let a = readme.split(separator: "\n", omittingEmptySubsequences: false), b = regenerated.split(separator: "\n", omittingEmptySubsequences: false)
            let at = zip(a, b).enumerated().first { $0.element.0 != $0.element.1 }?.offset ?? min(a.count, b.count)
            XCTFail("README.md's tables differ from the declarations from line \(at + 1) (\(a.count > at ? a[at] : "end") ≠ \(b.count > at ? b[at] : "end")): "
                    + "run `anduin config reference --update-readme README.md`")
        }
    }

    /// `config reference --type X` is everything an X accepts: its own options and the shared ones.
    func testReferenceOfATypeIncludesItsSharedOptions() throws {
        let (_, s, es, e) = try runCLI(["config", "reference", "--type", "elasticsearch"])
        XCTAssertEqual(s, 0, e)
        for key in ["`hosts`", "`host`", "`password`", "`tls.ca_file`", "`buffer.type`", "`batch.max_records`", "`index`"] {
            XCTAssertTrue(es.contains("| \(key) |"), "\(key) missing from:\n\(es)")
        }
        let (_, s2, tail, e2) = try runCLI(["config", "reference", "--type", "tail"])
        XCTAssertEqual(s2, 0, e2)
        XCTAssertTrue(tail.contains("| `paths` |") && !tail.contains("`password`"), tail)
    }
}
