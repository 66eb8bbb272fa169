import Foundation
import XCTest
#if canImport(Glibc)
import Glibc
#endif

/// `anduin validate`, `anduin test`, `anduin version`, and the exit status of `anduin run` on signals.
final class CLITests: AgentTestCase {
    /// Runs the binary to completion; returns (status, stdout, stderr).
    private func runCLI(_ args: [String], timeout: Double = 60) throws -> (Int32, String, String) {
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
        let exited = poll(timeout: timeout, interval: 0.05) { !p.isRunning }
        if !exited { kill(p.processIdentifier, SIGKILL) }
        XCTAssertTrue(exited, "anduin \(args.joined(separator: " ")) did not exit within \(Int(timeout)) s")
        try? out.close()
        try? err.close()
        return (p.terminationStatus,
                (try? String(contentsOfFile: outPath, encoding: .utf8)) ?? "",
                (try? String(contentsOfFile: errPath, encoding: .utf8)) ?? "")
    }

    private var examplesConfig: String {
        URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
            .deletingLastPathComponent().appendingPathComponent("examples/anduin.yaml").path
    }

    func testValidateAcceptsTheBundledExample() throws {
        let (status, out, err) = try runCLI(["validate", "--config", examplesConfig])
        XCTAssertEqual(status, 0, "stderr: \(err)")
        XCTAssertTrue(out.contains("ok"), "stdout: \(out)")
    }

    /// `anduin test` on the example's tests (examples/anduin.tests.yaml, next to the config); the
    /// failing case and its diff are checked in Tests/DeployTests/test_examples.py.
    func testPipelineTestsOfTheBundledExamplePass() throws {
        let (status, out, err) = try runCLI(["test", "--config", examplesConfig])
        XCTAssertEqual(status, 0, "stdout: \(out)\nstderr: \(err)")
        XCTAssertEqual(out.split(separator: "\n").last, "4 tests: 4 passed, 0 failed", out)
    }

    /// `equals` compares types: a quoted `"42"` is not the number 42, a plain `true` is not the
    /// string "true"; the diff names both types. Same-typed values still pass.
    func testPipelineTestComparesTypes() throws {
        let line = #"2026-11-21T10:00:00.2Z stdout F {"level":"error","order":42,"ok":true,"code":"7"}"#
        func tests(_ equals: String) -> String {
            """
            tests:
              - name: typed
                input:
                  component: containers
                  format: cri
                  path: /var/log/containers/api-7d9f8b6c5-x2k4q_payments_server-3f1e9a7c5b2d4e6f8a0c1b3d5e7f9a2c4b6d8e0f1a3c5e7b9d2f4a6c8e0b1d3f.log
                  lines: ['\(line)']
                expect:
                  component: parse
                  records:
                    - equals: \(equals)

            """
        }
        let good = try sandbox.write("good.tests.yaml", tests(#"{level: error, order: 42, ok: true, code: "7"}"#))
        var (status, out, err) = try runCLI(["test", "--config", examplesConfig, "--tests", good])
        XCTAssertEqual(status, 0, "stdout: \(out)\nstderr: \(err)")
        let bad = try sandbox.write("bad.tests.yaml", tests(#"{order: "42", ok: "true", code: 7}"#))
        (status, out, err) = try runCLI(["test", "--config", examplesConfig, "--tests", bad])
        XCTAssertEqual(status, 1, "stdout: \(out)\nstderr: \(err)")
        XCTAssertTrue(out.contains(#"order: expected "42", got 42 (expected a string, got a number)"#), out)
        XCTAssertTrue(out.contains(#"ok: expected "true", got true (expected a string, got a boolean)"#), out)
        XCTAssertTrue(out.contains(#"code: expected 7, got "7" (expected a number, got a string)"#), out)
    }

    /// Each broken config: exit 1, and a `FILE:LINE:COLUMN: message` line at the right place.
    func testValidateReportsProblemsWithPositions() throws {
        let output = "outputs:\n  out: {type: file, from: [in], path: ./o.ndjson}\n"
        func input(_ extra: String = "", type: String = "tail", paths: String = #"["./logs/*.log"]"#) -> String {
            "data_dir: ./data\ninputs:\n  in:\n    type: \(type)\n    paths: \(paths)\n" + extra
        }
        let cases: [(name: String, yaml: String, line: Int, column: Int?, text: String)] = [
            ("unknown-key", input("    bogus_key: 1\n") + output, 6, 5, #"unknown key "bogus_key""#),
            ("wrong-type", input(paths: "5") + output, 5, 12, "expected a list"),
            ("wrong-type-duration", input("    poll_interval: [1, 2]\n") + output, 6, 20, "poll_interval"),
            ("unknown-plugin", input(type: "tial") + output, 4, 11, #"unknown input type "tial""#),
            ("missing-from", input() + "filters:\n  p: {type: parse, from: [nothere]}\n"
                + "outputs:\n  out: {type: file, from: [p], path: ./o.ndjson}\n", 7, nil, #""nothere""#),
            ("cycle", input() + "filters:\n  f1: {type: parse, from: [f2]}\n  f2: {type: parse, from: [f1]}\n"
                + "outputs:\n  out: {type: file, from: [f1], path: ./o.ndjson}\n", 7, nil, "cycle"),
            ("no-from", input() + "outputs:\n  out: {type: file, path: ./o.ndjson}\n", 7, 3, "no inputs"),
            ("decimal-size", input("    max_line_bytes: 1GB\n") + output, 6, 21, "1GB"),
        ]
        for c in cases {
            let path = try sandbox.write("\(c.name).yaml", c.yaml)
            let (status, out, err) = try runCLI(["validate", "--config", path])
            XCTAssertEqual(status, 1, "\(c.name): exit status; stdout: \(out)")
            let lines = err.split(separator: "\n").map(String.init)
            let prefix = "\(path):\(c.line):" + (c.column.map { "\($0): " } ?? "")
            let hit = lines.first { $0.hasPrefix(prefix) && $0.contains(c.text) }
            XCTAssertNotNil(hit, "\(c.name): expected a line starting with \(prefix) mentioning \(c.text); stderr:\n\(err)")
            // Every problem line has the FILE:LINE:COLUMN: shape.
            for l in lines where l.hasPrefix(path + ":") {
                let rest = l.dropFirst(path.count + 1).split(separator: ":", maxSplits: 2)
                XCTAssertTrue(rest.count == 3 && Int(rest[0]) != nil && Int(rest[1]) != nil, "\(c.name): malformed line \(l)")
            }
        }
        // Unreadable config file.
        let (status, _, err) = try runCLI(["validate", "--config", sandbox.path("nope.yaml")])
        XCTAssertEqual(status, 1)
        XCTAssertTrue(err.contains(sandbox.path("nope.yaml") + ":1:1:"), err)
    }

    /// An input (or filter) nothing reads: `validate` and `run` exit 1 with `FILE:LINE:COLUMN:` at its
    /// name and what to add; nothing is read, so nothing is checkpointed.
    func testInputNothingReadsIsRefusedAtItsName() throws {
        try sandbox.mkdir("logs")
        try sandbox.mkdir("spare")
        appendText(sandbox.path("spare/s.log"), joinedLines(logLines("s", 0..<5)))
        let yaml = """
            data_dir: ./data
            inputs:
              in: {type: tail, paths: ["./logs/*.log"]}
              spare: {type: tail, paths: ["./spare/*.log"]}
            filters:
              p: {type: parse, from: [in]}
              idle: {type: parse, from: [spare]}
            outputs:
              out: {type: file, from: [p], path: ./o.ndjson}
            """
        let path = try sandbox.write("unread.yaml", yaml)
        let (status, out, err) = try runCLI(["validate", "--config", path])
        XCTAssertEqual(status, 1, "stdout: \(out)")
        XCTAssertTrue(err.contains("\(path):7:3: filter \"idle\": nothing reads its records"), err)
        XCTAssertTrue(err.contains("add \"idle\" to the from: of output \"out\""), err)
        XCTAssertFalse(err.contains("input \"spare\""), "spare is read by idle: \(err)")

        let (runStatus, _, runErr) = try runCLI(["run", "--config", path])
        XCTAssertEqual(runStatus, 1, runErr)
        XCTAssertTrue(runErr.contains("\(path):7:3: "), runErr)
        XCTAssertFalse(FileManager.default.fileExists(atPath: sandbox.path("data")) &&
                       ((try? FileManager.default.subpathsOfDirectory(atPath: sandbox.path("data"))) ?? []).contains { $0.contains("checkpoint") },
                       "nothing was read, nothing checkpointed")

        let wired = try sandbox.write("wired.yaml", yaml.replacingOccurrences(of: "from: [p]", with: "from: [p, idle]"))
        let (okStatus, okOut, okErr) = try runCLI(["validate", "--config", wired])
        XCTAssertEqual(okStatus, 0, okErr)
        XCTAssertTrue(okOut.contains("ok"), okOut)
    }

    func testVersion() throws {
        let (status, out, _) = try runCLI(["version"])
        XCTAssertEqual(status, 0)
        XCTAssertNotNil(out.range(of: #"^anduin \d+\.\d+\.\d+"#, options: .regularExpression), "version output: \(out)")
        let (s2, out2, _) = try runCLI(["--version"])
        XCTAssertEqual(s2, 0)
        XCTAssertNotNil(out2.range(of: #"\d+\.\d+\.\d+"#, options: .regularExpression), "--version output: \(out2)")
    }

    /// `run` exits 0 on SIGTERM and on SIGINT (idle, and right after reading), and 1 on a broken config.
    func testRunExitsZeroOnSIGTERMAndSIGINT() throws {
        appendText(sandbox.path("logs/a.log"), joinedLines(logLines("a", 0..<5)))
        try writeConfig(agentConfig([("in", TailOptions())]))
        let a = try startAgent()
        waitForMessages(logLines("a", 0..<5))
        stopAgent(a)
        XCTAssertTrue(a.stderr.contains("received SIGTERM"))

        let b = try startAgent()
        waitForLog(b, "anduin started")
        b.signal(SIGINT)
        XCTAssertTrue(b.waitExit(timeout: 60), "exit after SIGINT")
        XCTAssertEqual(b.exit?.status, 0)
        XCTAssertEqual(b.exit?.signalled, false)
        XCTAssertEqual(output.refresh().count, 5, "nothing repeated")

        try writeConfig("inputs: 5\n")
        let c = try startAgent()
        XCTAssertTrue(c.waitExit(timeout: 60))
        XCTAssertEqual(c.exit?.status, 1, "run refuses a broken config")
        XCTAssertTrue(c.stderr.contains(sandbox.configPath + ":1:"), c.stderr)
    }

    /// A command used correctly that fails at run time says why and exits 1, without a `Usage:`
    /// trailer; a wrong argument exits 64 with the usage. A missing section is answered with the
    /// lines to add.
    func testRuntimeErrorsExitOneAndUsageErrorsSixtyFour() throws {
        let base = """
            data_dir: ./data
            inputs:
              in: {type: tail, paths: ["./logs/*.log"]}
            outputs:
              es: {type: elasticsearch, from: [in], hosts: ["http://127.0.0.1:9"]}
              local: {type: file, from: [in], path: ./o.ndjson}

            """
        let noAPI = try sandbox.write("noapi.yaml", base)
        var (status, out, err) = try runCLI(["status", "--config", noAPI])
        XCTAssertEqual(status, 1, err)
        XCTAssertFalse(err.contains("Usage:"), err)
        XCTAssertTrue(err.contains("has no api: section") && err.contains("\napi:\n  address: \"127.0.0.1:2020\"\n"), err)

        (status, _, err) = try runCLI(["tap", "--config", noAPI])
        XCTAssertEqual(status, 1, err)
        XCTAssertFalse(err.contains("Usage:"), err)
        XCTAssertTrue(err.contains("\napi:\n  address: \"127.0.0.1:2020\"\n  tap: true"), err)

        // An API on a port nobody listens on: the agent is not running.
        let port = try DG.freePort()
        let withAPI = try sandbox.write("api.yaml", base + "api: {address: \"127.0.0.1:\(port)\"}\n")
        (status, _, err) = try runCLI(["status", "--config", withAPI])
        XCTAssertEqual(status, 1, err)
        XCTAssertTrue(err.contains("cannot reach the agent") && !err.contains("Usage:"), err)
        (status, _, err) = try runCLI(["tap", "--config", withAPI])
        XCTAssertEqual(status, 1, err)
        XCTAssertTrue(err.contains("under its api: section") && err.contains("\n  tap: true") && !err.contains("Usage:"), err)

        // The only output with dead letters is chosen without --output.
        (status, out, err) = try runCLI(["dead-letter", "list", "--config", noAPI])
        XCTAssertEqual(status, 0, err)
        XCTAssertTrue(err.contains("0 dead letter(s)") && err.contains("/es"), "\(out)\n\(err)")
        // Lines it cannot read (damaged, or torn by a crash) are said, with file and offset, not skipped silently.
        let store = try XCTUnwrap(err.components(separatedBy: " in ").last?.components(separatedBy: ",").first)
        try FileManager.default.createDirectory(atPath: store, withIntermediateDirectories: true)
        try Data("{not a dead letter}\n{\"torn".utf8).write(to: URL(fileURLWithPath: store + "/0000000000000001.ndjson"))
        (status, out, err) = try runCLI(["dead-letter", "list", "--config", noAPI])
        XCTAssertEqual(status, 0, err)
        XCTAssertTrue(err.contains("0000000000000001.ndjson: the line at offset 0 is not a dead letter")
                      && err.contains("offset 20 ") && err.contains("0 dead letter(s)") && err.contains("2 unreadable line(s) skipped"), err)
        try FileManager.default.removeItem(atPath: store)
        // A wrong name is a usage error that lists the valid ones.
        (status, _, err) = try runCLI(["dead-letter", "list", "--config", noAPI, "--output", "nope"])
        XCTAssertEqual(status, 64, err)
        XCTAssertTrue(err.contains("no output named \"nope\"") && err.contains("outputs with dead letters: \"es\"") && err.contains("Usage:"), err)
        (status, _, err) = try runCLI(["dead-letter", "list", "--config", noAPI, "--output", "local"])
        XCTAssertEqual(status, 64, err)
        XCTAssertTrue(err.contains("output \"local\" has no dead letters") && err.contains("\"es\""), err)
        (status, _, err) = try runCLI(["dead-letter", "list", "--config", noAPI, "--since", "yesterday"])
        XCTAssertEqual(status, 64, err)
        XCTAssertTrue(err.contains("Usage:"), err)
        // Two such outputs: --output is needed, and the message names both.
        let two = try sandbox.write("two.yaml", base + "  web: {type: http, from: [in], uri: \"http://127.0.0.1:9/x\"}\n")
        (status, _, err) = try runCLI(["dead-letter", "list", "--config", two])
        XCTAssertEqual(status, 64, err)
        XCTAssertTrue(err.contains("\"es\", \"web\""), err)
    }

    /// `paths:` naming a folder and a data_dir that cannot be used are validate errors, said in
    /// words (never a Foundation error code); `run` refuses the data_dir the same way.
    func testValidateRefusesAFolderInPathsAndAnUnusableDataDir() throws {
        let output = "outputs:\n  out: {type: file, from: [in], path: ./o.ndjson}\n"
        let folder = try sandbox.write("folder.yaml", "data_dir: ./data\ninputs:\n  in: {type: tail, paths: [\"./logs\"]}\n" + output)
        var (status, _, err) = try runCLI(["validate", "--config", folder])
        XCTAssertEqual(status, 1, err)
        XCTAssertTrue(err.contains("\(sandbox.path("logs")) is a directory: give a glob of the files in it, such as \"\(sandbox.path("logs"))/*.log\""), err)

        _ = try sandbox.write("blocker", "a regular file\n")
        let below = try sandbox.write("below.yaml", "data_dir: ./blocker/data\ninputs:\n  in: {type: tail, paths: [\"./logs/*.log\"]}\n" + output)
        (status, _, err) = try runCLI(["validate", "--config", below])
        XCTAssertEqual(status, 1, err)
        XCTAssertTrue(err.contains("below.yaml:1:11: ") && err.contains("not a directory: \(sandbox.path("blocker"))"), err)
        (status, _, err) = try runCLI(["run", "--config", below])
        XCTAssertEqual(status, 1, err)
        XCTAssertTrue(err.contains("not a directory: \(sandbox.path("blocker"))") && !err.contains("NSCocoaErrorDomain"), err)

        // A data_dir still to be made under a folder this user cannot write: validate (which often
        // runs elsewhere than the agent) lets it pass, the start refuses it in words. As root only a
        // read-only mount makes such a folder.
        guard getuid() == 0 else { return }
        let ro = sandbox.path("ro")
        try sandbox.mkdir("ro")
        let (rc, text) = DG.tool("mount", ["-t", "tmpfs", "-o", "ro,size=64k", "tmpfs", ro])
        guard rc == 0 else { return print("read-only part skipped: mount failed (\(text))") }
        addTeardownBlock { _ = DG.tool("umount", ["-l", ro]) }
        let later = try sandbox.write("later.yaml", "data_dir: ./ro/data\ninputs:\n  in: {type: tail, paths: [\"./logs/*.log\"]}\n" + output)
        (status, _, err) = try runCLI(["validate", "--config", later])
        XCTAssertEqual(status, 0, err)
        (status, _, err) = try runCLI(["run", "--config", later])
        XCTAssertEqual(status, 1, err)
        XCTAssertTrue(err.contains("cannot create it: \(ro) is on a read-only file system"), err)
    }

    /// A glob that matches nothing is said once (then every 10 minutes while it lasts), counted, and
    /// said again when files appear.
    func testAGlobMatchingNothingIsSaidOnceAndCounted() throws {
        appendText(sandbox.path("logs/a.log"), joinedLines(logLines("a", 0..<3)))
        var opts = TailOptions()
        opts.paths = ["./logs/*.log", "./later/*.log"]
        try writeConfig(agentConfig([("in", opts)]))
        let a = try startAgent()
        let pattern = sandbox.path("later/*.log")
        waitForLog(a, "input in: paths: \(pattern) matches no file")
        waitForMessages(logLines("a", 0..<3))
        // Many scans (glob_interval 200ms) later, still said once.
        Thread.sleep(forTimeInterval: 2)
        XCTAssertEqual(a.stderr.components(separatedBy: "matches no file").count - 1, 1, a.stderr)
        XCTAssertFalse(a.stderr.contains("\(sandbox.path("logs/*.log")) matches no file"), a.stderr)
        try sandbox.mkdir("later")
        appendText(sandbox.path("later/b.log"), joinedLines(logLines("b", 0..<2)))
        waitForLog(a, "input in: paths: \(pattern) matches files again")
        waitForMessages(logLines("a", 0..<3) + logLines("b", 0..<2))
        stopAgent(a)
        XCTAssertEqual(stopLineCounters(a.stderr, component: "in")["empty_glob_warnings"], 1, a.stderr)
    }

    /// The agent's own log lines carry UTC times to the millisecond, `Z`-suffixed.
    func testLogLinesHaveMillisecondUTCTimes() throws {
        try writeConfig(agentConfig([("in", TailOptions())]))
        let a = try startAgent()
        waitForLog(a, "anduin started")
        stopAgent(a)
        let lines = a.stderr.split(separator: "\n").map(String.init)
        XCTAssertGreaterThan(lines.count, 1)
        for line in lines {
            XCTAssertNotNil(line.range(of: #"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}\.\d{3}Z (trace|debug|info|notice|warning|error|critical) anduin: "#,
                                       options: .regularExpression), line)
        }
    }

    /// `format: auto` takes a file of plain JSON lines for Docker json-file: the lines are shipped as
    /// plain messages, counted, and said once for the file with the offset, the first bytes and why.
    func testDecodeErrorsAreSaidOncePerFileWithOffsetBytesAndReason() throws {
        let first = #"{"level":"info","msg":"app started"}"#
        appendText(sandbox.path("logs/app.log"), first + "\n" + #"{"level":"warn","msg":"slow"}"# + "\n")
        var opts = TailOptions()
        opts.format = "auto"
        try writeConfig(agentConfig([("in", opts)]))
        let a = try startAgent()
        waitForMessages([first, #"{"level":"warn","msg":"slow"}"#])
        appendText(sandbox.path("logs/app.log"), #"{"level":"info","msg":"later"}"# + "\n")
        waitForMessages([#"{"level":"info","msg":"later"}"#])
        waitForLog(a, "\(sandbox.path("logs/app.log")): line at offset 0 does not fit format docker, detected by format: auto")
        XCTAssertTrue(a.stderr.contains(#"it begins "{"level":"info","msg":"app started"}""#) && a.stderr.contains("needs format: raw"), a.stderr)
        stopAgent(a)
        XCTAssertEqual(a.stderr.components(separatedBy: "does not fit").count - 1, 1, "said once for the file: \(a.stderr)")
        XCTAssertEqual(stopLineCounters(a.stderr, component: "in")["decode_errors"], 3, a.stderr)
    }
}
