import Foundation
import XCTest
#if canImport(Glibc)
import Glibc
#endif

/// The `stdout` output on the shared delivery runtime.
final class StdoutOutputTests: AgentTestCase {
    private func config(retry: String = "") -> String {
        """
        data_dir: ./data
        shutdown_timeout: 3s
        inputs:
          in: {type: tail, paths: ["./logs/*.log"], format: raw, glob_interval: 200ms}
        outputs:
          out: {type: stdout, from: [in]\(retry)}
        """
    }

    /// Records arrive on standard output as JSON lines, and `/status` counts them delivered.
    func testRecordsArriveOnStandardOutput() throws {
        try writeConfig(config())
        let out = sandbox.path("stdout.ndjson")
        let agent = try AgentProcess(binary: AnduinBinary.path!, arguments: ["run", "--config", sandbox.configPath],
                                     stderrPath: sandbox.path("agent.stderr"), workingDirectory: NSTemporaryDirectory(),
                                     stdoutPath: out)
        defer { if agent.isRunning { agent.kill9() } }
        appendText(sandbox.path("logs/a.log"), "one\ntwo\n")
        waitFor("both records on stdout") {
            let text = (try? String(contentsOfFile: out, encoding: .utf8)) ?? ""
            return text.contains("\"message\":\"one\"") && text.contains("\"message\":\"two\"")
        }
        agent.terminate()
        XCTAssertTrue(agent.waitExit(timeout: 60))
        XCTAssertEqual(agent.exit?.status, 0, agent.stderr)
        XCTAssertTrue(agent.stderr.contains("output out: records_out=2"), agent.stderr)
    }

    /// Standard output is a pipe nobody reads any more: each write fails with EPIPE (SIGPIPE is
    /// ignored), which is retried like an outage with backoff. The agent keeps running, logs the
    /// failure, and stops cleanly on SIGTERM (the undelivered records are not acknowledged: read again).
    func testClosedPipeIsRetriedNotACrash() throws {
        try writeConfig(config(retry: ", retry: {initial: 50ms, max: 200ms}"))
        let pipe = Pipe()
        try pipe.fileHandleForReading.close()
        let agent = try AgentProcess(binary: AnduinBinary.path!, arguments: ["run", "--config", sandbox.configPath],
                                     stderrPath: sandbox.path("agent.stderr"), workingDirectory: NSTemporaryDirectory(),
                                     stdout: pipe.fileHandleForWriting)
        defer { if agent.isRunning { agent.kill9() } }
        try pipe.fileHandleForWriting.close()
        appendText(sandbox.path("logs/a.log"), "one\ntwo\n")
        waitFor("the failed write logged") { agent.stderr.contains("write to stdout: Broken pipe") }
        usleep(500_000)  // several retries at 50-200 ms
        XCTAssertTrue(agent.isRunning, "the agent died on EPIPE: \(agent.stderr)")
        agent.terminate()
        XCTAssertTrue(agent.waitExit(timeout: 60), "stops within shutdown_timeout")
        XCTAssertEqual(agent.exit?.signalled, false, agent.stderr)
        let failures = agent.stderr.components(separatedBy: "request_failures=").dropFirst().first.map { Int($0.prefix { $0.isNumber }) ?? 0 } ?? 0
        XCTAssertGreaterThanOrEqual(failures, 2, "retried, not given up: \(agent.stderr)")
        XCTAssertTrue(agent.stderr.contains("records_returned=2"), "handed back unacknowledged: \(agent.stderr)")
        XCTAssertEqual(sandbox.checkpoints("in").values.reduce(0, +), 0, "nothing undelivered is checkpointed")
    }
}
