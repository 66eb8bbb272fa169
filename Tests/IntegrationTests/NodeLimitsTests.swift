import Foundation
import XCTest
#if canImport(Glibc)
import Glibc
#endif

/// What a real node's limits do to the tail input: file-descriptor limits, many files, a glob that
/// fails, and two agents pointed at one data_dir.
final class NodeLimitsTests: AgentTestCase {
    private static let long = ProcessInfo.processInfo.environment["ANDUIN_LONG_TESTS"] == "1"

    private func config(_ paths: String, extra: String = "") -> String {
        """
        data_dir: ./data
        shutdown_timeout: 30s
        inputs:
          in:
            type: tail
            paths: ["\(paths)"]
            format: raw
            rotate_wait: 1s
            glob_interval: 200ms
            poll_interval: 100ms
            checkpoint_interval: 200ms
        \(extra)
        outputs:
          local: {type: file, from: [in], path: ./out/records.ndjson, \(allMetadata)}
        """
    }

    // MARK: many files, few descriptors

    /// 5,000 files (10 lines each; 20 and a second round of appends with ANDUIN_LONG_TESTS=1) under
    /// `ulimit -n 4096`: the default max_open_files (3/4 of the limit) closes idle files and reopens
    /// them at their checkpoint when they grow. Every line exactly once.
    func testFiveThousandFilesUnderUlimit4096() throws {
        let files = 5000
        let perFile = Self.long ? 20 : 10
        for d in 0..<50 { try sandbox.mkdir("logs/d\(d)") }
        var expected: [String] = []
        for i in 0..<files {
            let lines = logLines("f\(i)", 0..<perFile)
            appendText(sandbox.path("logs/d\(i % 50)/f\(i).log"), joinedLines(lines))
            expected += lines
        }
        try writeConfig(config(sandbox.path("logs/*/*.log")))
        let agent = try startAgent(wrapper: ["/usr/bin/prlimit", "--nofile=4096:4096", "--"])
        waitForRecordCount(expected.count, timeout: 300)
        // A second line for every file, most of which were closed as idle by now.
        var more: [String] = []
        for i in 0..<files {
            let line = logLine("f\(i)", perFile)
            appendText(sandbox.path("logs/d\(i % 50)/f\(i).log"), line + "\n")
            more.append(line)
        }
        waitForRecordCount(expected.count + more.count, timeout: 300)
        stopAgent(agent)
        assertExactlyOnce(output.refresh(), expected + more)
        XCTAssertTrue(agent.stderr.contains("max_open_files: 3072"), "default derived from the limit")
        XCTAssertFalse(agent.stderr.contains("from offset 0 (checkpoint)"), "a file restarted at 0")
        print("5000 files under ulimit -n 4096: \(expected.count + more.count) lines exactly once")
    }

    /// The process has fewer descriptors than files, and max_open_files is set above the limit on
    /// purpose: it is lowered at start with a warning (every file open would leave the buffer, the
    /// sockets and the API without a descriptor: torture seed 61209 run 32 stalled so), opens beyond
    /// it wait, and while descriptors run short globs may fail to open their directory. No followed
    /// file is taken for rotated, none is read again from 0, and every line arrives exactly once.
    func testFailingGlobDoesNotRestartFiles() throws {
        let files = 120
        var expected: [String] = []
        for i in 0..<files {
            let lines = logLines("g\(i)", 0..<5)
            appendText(sandbox.path("logs/g\(i).log"), joinedLines(lines))
            expected += lines
        }
        try writeConfig(config(sandbox.path("logs/*.log"), extra: "    max_open_files: 100000"))
        let agent = try startAgent(wrapper: ["/usr/bin/prlimit", "--nofile=48:48", "--"])
        waitForLog(agent, "max_open_files 100000 leaves too few of the process's 48 file descriptors", timeout: 60)
        waitForRecordCount(expected.count, timeout: 120)
        var more: [String] = []
        for i in 0..<files {
            let line = logLine("g\(i)", 5)
            appendText(sandbox.path("logs/g\(i).log"), line + "\n")
            more.append(line)
        }
        waitForRecordCount(expected.count + more.count, timeout: 120)
        // A few more scans with the glob failing: still nothing read twice.
        usleep(1_000_000)
        agent.kill9()  // the stop needs descriptors too; what matters is what was shipped
        agent.waitExit(timeout: 30)
        assertExactlyOnce(output.refresh(), expected + more)
        XCTAssertFalse(agent.stderr.contains("was rotated or deleted"), "a glob failure was taken for a rotation")
    }

    /// A file size limit (`ulimit -f`) reached by the file output is a failing write (EFBIG),
    /// retried, not SIGXFSZ, which would kill the agent.
    func testAFileSizeLimitDoesNotKillTheAgent() throws {
        appendText(sandbox.path("logs/a.log"), joinedLines(logLines("a", 0..<4000)))
        try writeConfig(config(sandbox.path("logs/*.log")).replacingOccurrences(of: "shutdown_timeout: 30s", with: "shutdown_timeout: 2s"))
        let agent = try startAgent(wrapper: ["/usr/bin/prlimit", "--fsize=200000", "--"])
        waitFor("the output file at the 200,000-byte limit") {
            ((try? FileManager.default.attributesOfItem(atPath: sandbox.path("out/records.ndjson"))[.size] as? NSNumber)?.intValue ?? 0) >= 150_000
        }
        usleep(1_000_000)  // writes past the limit keep failing
        XCTAssertTrue(agent.isRunning, "the agent died at the file size limit: \(String(describing: agent.exit))")
        agent.terminate()
        XCTAssertTrue(agent.waitExit(timeout: 60))
        XCTAssertEqual(agent.exit?.signalled, false, "exit by signal: \(String(describing: agent.exit))")
    }

    /// A descriptor limit too low for the outputs' connections and buffers is said at start, with
    /// what to change (torture seed 70002 run 12: under `nofile` 32 two disk-buffered outputs with
    /// six connections could not open a buffer segment, and only a retry warning showed it).
    func testADescriptorLimitTooLowForTheConfigIsSaid() throws {
        appendText(sandbox.path("logs/a.log"), joinedLines(logLines("a", 0..<3)))
        try writeConfig("""
            data_dir: ./data
            inputs:
              in: {type: tail, paths: ["./logs/*.log"], format: raw}
            outputs:
              es:
                type: elasticsearch
                from: [in]
                hosts: ["http://127.0.0.1:9"]
                concurrency: 8
                buffer: {type: disk}

            """)
        let agent = try startAgent(wrapper: ["/usr/bin/prlimit", "--nofile=32:32", "--"])
        waitForLog(agent, "the file descriptor limit (32) is below what this config needs")
        waitForLog(agent, "lower the outputs' concurrency")
        agent.kill9()
        agent.waitExit(timeout: 30)
    }

    // MARK: one agent per data_dir

    /// A second agent on the same data_dir exits at once with status 1 and names the first one's
    /// pid; after the first is killed (kill -9: a stale lock file stays) a new agent starts. A
    /// SIGHUP reload in the holder keeps working.
    func testSecondAgentOnTheSameDataDirIsRefused() throws {
        try writeConfig(config(sandbox.path("logs/*.log")))
        appendText(sandbox.path("logs/a.log"), "first\n")
        let first = try startAgent()
        waitForMessages(["first"])
        let second = try startAgent()
        XCTAssertTrue(second.waitExit(timeout: 30), "the second agent did not exit")
        XCTAssertEqual(second.exit?.status, 1)
        XCTAssertTrue(second.stderr.contains("pid \(first.pid)"), "message names the holder: \(second.stderr)")
        XCTAssertTrue(second.stderr.contains("in use by another anduin"), second.stderr)

        first.signal(SIGHUP)
        waitForLog(first, "reloaded ")
        appendText(sandbox.path("logs/a.log"), "after reload\n")
        waitForMessages(["after reload"])
        XCTAssertTrue(first.isRunning)

        // kill -9 replays what the last checkpoint does not cover: wait until it covers every line.
        let size = Int64("first\nafter reload\n".utf8.count)
        waitFor("the checkpoint to cover a.log") { sandbox.checkpoints("in")[sandbox.path("logs/a.log")] == size }
        killAgent(first)
        XCTAssertTrue(FileManager.default.fileExists(atPath: sandbox.path("data/anduin.lock")))
        let third = try startAgent()
        appendText(sandbox.path("logs/a.log"), "third\n")
        waitForMessages(["third"])
        stopAgent(third)
        assertExactlyOnce(output.refresh(), ["first", "after reload", "third"])
    }
}
