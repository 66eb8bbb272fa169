import Foundation
import XCTest

/// Issue 13 (reload is safe) and issue 16 (reload on change): a running agent given a bad config keeps
/// delivering; a watched config reloads on a file rewrite and on a Kubernetes `..data` symlink swap.
final class ReloadSafetyTests: AgentTestCase {
    private func base(api: Bool = true) -> String {
        """
        data_dir: ./data
        \(api ? "api: {address: \"127.0.0.1:0\"}" : "")
        inputs:
          in: {type: tail, paths: ["./logs/*.log"], format: raw, glob_interval: 200ms, checkpoint_interval: 200ms}
        outputs:
          out: {type: file, from: [in], path: ./out/records.ndjson, \(allMetadata)}
        """
    }

    private func count(_ text: String, _ needle: String) -> Int { text.components(separatedBy: needle).count - 1 }

    func testSIGHUPWithBadConfigsKeepsThePipelineAndCountsFailures() throws {
        try sandbox.mkdir("logs")
        try writeConfig(base())
        setenv("ANDUIN_RELOAD_VALIDATION_TIMEOUT", "3", 1)
        let agent = try startAgent()
        unsetenv("ANDUIN_RELOAD_VALIDATION_TIMEOUT")
        var written = 0
        func writeAndCheck(_ n: Int) {
            appendText(sandbox.path("logs/a.log"), (written..<written + n).map { "line \($0)" }.joined(separator: "\n") + "\n")
            written += n
            XCTAssertTrue(poll { output.refresh().count == written }, "delivered \(output.refresh().count) of \(written)")
        }
        writeAndCheck(10)

        let secret = "Inline-Secret-Pa55word"
        let bad: [(String, () throws -> Void)] = [
            ("YAML syntax", { try self.writeConfig("inputs: [unclosed\n  x: {") }),
            ("binary", {
                var bytes: [UInt8] = [0x00, 0xFF, 0xFE, 0x1B, 0x5B, 0x32, 0x4A, 0x00, 0x7F]
                for i in 0..<512 { bytes.append(UInt8(truncatingIfNeeded: i &* 37 &+ 11)) }
                try Data(bytes).write(to: URL(fileURLWithPath: self.sandbox.configPath))
            }),
            ("duplicate keys with an inline password", {
                try self.writeConfig(self.base() + """

                    outputs:
                      h: {type: http, from: [in], uri: "http://127.0.0.1:9/x", user: u, password: "\(secret)"}
                    """)
            }),
            // This size trapped the config reader (issue 13); the child validation refuses it even
            // while (or if ever again) the parser traps.
            ("a size that overflows", {
                try self.writeConfig(self.base() + """

                      h: {type: http, from: [in], uri: "http://127.0.0.1:9/x", buffer: {type: disk, max_bytes: 99999999999TiB}}
                    """)
            }),
            // Aliases expanding to 10^9 nodes: the reader refuses more than 100,000 values at once
            // (ConfigText.maximumValues); the child validation's timeout stays as a backstop.
            ("exponential YAML aliases", {
                var lines = ["a0: &a0 [x, x, x, x, x, x, x, x, x, x]"]
                for i in 1..<9 { lines.append("a\(i): &a\(i) [" + Array(repeating: "*a\(i - 1)", count: 10).joined(separator: ", ") + "]") }
                try self.writeConfig(lines.joined(separator: "\n") + "\ninputs: *a8\n")
            }),
            // Its lines would be read and checkpointed unshipped: lost once a later config wires it up.
            ("an input nothing reads", {
                try self.writeConfig(self.base().replacingOccurrences(
                    of: "checkpoint_interval: 200ms}\n", with: "checkpoint_interval: 200ms}\n  spare: {type: tail, paths: [\"./logs/*.log\"]}\n"))
            }),
            ("a reference to nowhere", { try self.writeConfig(self.base() + "\n  broken: {type: file, from: [nowhere], path: x}\n") }),
            ("unreadable (a directory)", {
                try FileManager.default.removeItem(atPath: self.sandbox.configPath)
                try FileManager.default.createDirectory(atPath: self.sandbox.configPath, withIntermediateDirectories: false)
            }),
        ]
        for (i, (what, write)) in bad.enumerated() {
            try write()
            agent.signal(SIGHUP)
            XCTAssertTrue(poll { count(agent.stderr, "reload refused") == i + 1 }, "\(what): \(agent.stderr)")
            XCTAssertTrue(agent.isRunning, what)
            writeAndCheck(5)
        }
        try? FileManager.default.removeItem(atPath: sandbox.configPath)
        let log = agent.stderr
        XCTAssertFalse(log.contains(secret), "a refused config's secret reached the log")
        XCTAssertFalse(log.contains("\u{1B}"), "raw control bytes reached the log")
        XCTAssertTrue(log.contains("more than 100000 values"), "the alias bomb is refused by the value limit")
        // Every refused config's problems are FILE:LINE:COLUMN lines.
        XCTAssertTrue(log.contains("anduin.yaml:"), log)

        let api = try XCTUnwrap(try? String(contentsOfFile: sandbox.path("data/api.address"), encoding: .utf8))
        let metrics = RawHTTP.get(port: RawHTTP.port(api.trimmingCharacters(in: .whitespacesAndNewlines)) ?? 0, path: "/metrics")
        XCTAssertTrue(metrics?.body.contains("anduin_reload_failures_total \(bad.count)") == true, metrics?.body ?? "no metrics")

        // Durations that validate but are huge (or infinite) must not trap at run time.
        let huge = String(repeating: "9", count: 400)  // parses to +infinity seconds
        try writeConfig("""
            data_dir: ./data
            shutdown_timeout: 1s
            api: {address: "127.0.0.1:0"}
            inputs:
              in: {type: tail, paths: ["./logs/*.log"], format: raw, glob_interval: 200ms, poll_interval: \(huge)s,
                   rotate_wait: \(huge)h, checkpoint_interval: 200ms}
            outputs:
              out: {type: file, from: [in], path: ./out/records.ndjson, \(allMetadata)}
              far: {type: http, from: [in], uri: "http://127.0.0.1:9/x", request_timeout: \(huge)s,
                    batch: {timeout: \(huge)s}, retry: {initial: 1s, max: \(huge)h}, buffer: {type: memory}}
            """)
        agent.signal(SIGHUP)
        XCTAssertTrue(poll { count(agent.stderr, "reloaded") + count(agent.stderr, "reload refused") > bad.count },
                      agent.stderr)
        Thread.sleep(forTimeInterval: 1)  // give a trap the chance to happen
        XCTAssertTrue(agent.isRunning, agent.stderr)
        // Today these validate; if range checks refuse them one day, refusing is fine too.
        print("huge durations:", count(agent.stderr, "reloaded") == 1 ? "applied" : "refused")
        writeAndCheck(5)
        stopAgent(agent)
    }

    /// The Kubernetes ConfigMap layout: anduin.yaml -> ..data/anduin.yaml, ..data -> ..<timestamp>.
    func testWatchConfigReloadsOnSymlinkSwapAndRewriteAndRefusesAnInvalidChange() throws {
        try sandbox.mkdir("logs")
        try sandbox.mkdir("cm")
        let cm = sandbox.path("cm")
        let root = sandbox.root.path
        func config(_ outputs: [String], broken: Bool = false) -> String {
            var s = """
                data_dir: \(root)/data
                inputs:
                  in: {type: tail, paths: ["\(root)/logs/*.log"], format: raw, glob_interval: 200ms, checkpoint_interval: 200ms}
                outputs:

                """
            for o in outputs { s += "  \(o): {type: file, from: [in], path: \(root)/out/\(o).ndjson, \(allMetadata)}\n" }
            if broken { s += "  broken: {type: file, from: [nowhere], path: x}\n" }
            return s
        }
        func publish(_ version: String, _ text: String) throws {
            // What the kubelet does: a new timestamped folder, then ..data swapped by rename(2).
            try FileManager.default.createDirectory(atPath: "\(cm)/\(version)", withIntermediateDirectories: false)
            try text.write(toFile: "\(cm)/\(version)/anduin.yaml", atomically: false, encoding: .utf8)
            unlink("\(cm)/..data_tmp")
            XCTAssertEqual(symlink(version, "\(cm)/..data_tmp"), 0)
            XCTAssertEqual(rename("\(cm)/..data_tmp", "\(cm)/..data"), 0)
        }
        try publish("..v1", config(["out"]))
        XCTAssertEqual(symlink("..data/anduin.yaml", "\(cm)/anduin.yaml"), 0)

        let agent = try AgentProcess(binary: AnduinBinary.path!, arguments: ["run", "--watch-config", "--config", "\(cm)/anduin.yaml"],
                                     stderrPath: sandbox.path("agent-watch.stderr"), workingDirectory: NSTemporaryDirectory())
        defer { if agent.isRunning { agent.kill9() } }
        let out = OutputReader(path: sandbox.path("out/out.ndjson"))
        let second = OutputReader(path: sandbox.path("out/second.ndjson"))
        let third = OutputReader(path: sandbox.path("out/third.ndjson"))
        var written = 0
        func write(_ n: Int) {
            appendText(sandbox.path("logs/a.log"), (written..<written + n).map { "line \($0)" }.joined(separator: "\n") + "\n")
            written += n
        }
        write(100)
        XCTAssertTrue(poll { out.refresh().count == 100 }, agent.stderr)

        // 1. A ConfigMap update (symlink swap) adding an output.
        try publish("..v2", config(["out", "second"]))
        XCTAssertTrue(poll { count(agent.stderr, "reloaded") == 1 }, agent.stderr)
        XCTAssertTrue(agent.stderr.contains("changed: reloading"), agent.stderr)
        write(50)
        XCTAssertTrue(poll { out.refresh().count == 150 && second.refresh().count == 50 },
                      "out \(out.refresh().count), second \(second.refresh().count)")

        // 2. An invalid update is refused; the running pipeline keeps delivering.
        try publish("..v3", config(["out", "second"], broken: true))
        XCTAssertTrue(poll { agent.stderr.contains("reload refused") }, agent.stderr)
        write(50)
        XCTAssertTrue(poll { out.refresh().count == 200 && second.refresh().count == 100 },
                      "out \(out.refresh().count), second \(second.refresh().count)")

        // 3. The file rewritten in place (not the kubelet's way, but an operator's).
        try config(["out", "third"]).write(toFile: "\(cm)/..v3/anduin.yaml", atomically: false, encoding: .utf8)
        XCTAssertTrue(poll { count(agent.stderr, "reloaded") == 2 }, agent.stderr)
        write(50)
        XCTAssertTrue(poll { out.refresh().count == 250 && third.refresh().count == 50 },
                      "out \(out.refresh().count), third \(third.refresh().count)")

        // Nothing lost or doubled in the output that lived through every change.
        XCTAssertEqual(out.refresh().compactMap(\.message), (0..<250).map { "line \($0)" })
        XCTAssertEqual(second.refresh().compactMap(\.message), (100..<200).map { "line \($0)" })
        XCTAssertEqual(third.refresh().compactMap(\.message), (200..<250).map { "line \($0)" })
        agent.terminate()
        XCTAssertTrue(agent.waitExit())
        XCTAssertEqual(agent.exit?.status, 0, agent.stderr)
    }

    /// Without `--watch-config` and `watch_config`, the file is not watched (an edit changes nothing
    /// until SIGHUP); a SIGHUP reload that turns `watch_config` on starts the watching, and the next
    /// edit reloads by itself.
    func testWatchConfigTurnedOnByAReloadStartsWatching() throws {
        try sandbox.mkdir("logs")
        let root = sandbox.root.path
        func config(_ outputs: [String], watch: Bool) -> String {
            var s = """
                data_dir: \(root)/data
                watch_config: \(watch)
                inputs:
                  in: {type: tail, paths: ["\(root)/logs/*.log"], format: raw, glob_interval: 200ms, checkpoint_interval: 200ms}
                outputs:

                """
            for o in outputs { s += "  \(o): {type: file, from: [in], path: \(root)/out/\(o).ndjson, \(allMetadata)}\n" }
            return s
        }
        let path = sandbox.path("anduin.yaml")
        try config(["out"], watch: false).write(toFile: path, atomically: true, encoding: .utf8)
        let agent = try AgentProcess(binary: AnduinBinary.path!, arguments: ["run", "--config", path],
                                     stderrPath: sandbox.path("agent-watch-later.stderr"), workingDirectory: NSTemporaryDirectory())
        defer { if agent.isRunning { agent.kill9() } }
        let out = OutputReader(path: sandbox.path("out/out.ndjson"))
        appendText(sandbox.path("logs/a.log"), "line 0\n")
        XCTAssertTrue(poll { out.refresh().count == 1 }, agent.stderr)
        XCTAssertFalse(agent.stderr.contains("for changes"), agent.stderr)

        // Not watched: an edit is not applied by itself.
        try config(["out", "second"], watch: false).write(toFile: path, atomically: true, encoding: .utf8)
        Thread.sleep(forTimeInterval: 3)
        XCTAssertEqual(count(agent.stderr, "reloaded"), 0, agent.stderr)

        // SIGHUP with watch_config on: reloaded, and watched from now on.
        try config(["out"], watch: true).write(toFile: path, atomically: true, encoding: .utf8)
        agent.signal(SIGHUP)
        XCTAssertTrue(poll { count(agent.stderr, "reloaded") == 1 && agent.stderr.contains("watching \(path) for changes") }, agent.stderr)
        try config(["out", "third"], watch: true).write(toFile: path, atomically: true, encoding: .utf8)
        XCTAssertTrue(poll { count(agent.stderr, "reloaded") == 2 }, agent.stderr)
        XCTAssertTrue(agent.stderr.contains("changed: reloading"), agent.stderr)
        let third = OutputReader(path: sandbox.path("out/third.ndjson"))
        appendText(sandbox.path("logs/a.log"), "line 1\n")
        XCTAssertTrue(poll { out.refresh().count == 2 && third.refresh().count == 1 },
                      "out \(out.refresh().count), third \(third.refresh().count)")
        agent.terminate()
        XCTAssertTrue(agent.waitExit())
        XCTAssertEqual(agent.exit?.status, 0, agent.stderr)
    }
}
