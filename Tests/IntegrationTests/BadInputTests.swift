import Foundation
import XCTest
#if canImport(Glibc)
import Glibc
#endif

/// Hostile or odd input: none of it stops the agent or the other files, and the output stays valid
/// JSON lines.
final class BadInputTests: AgentTestCase {
    /// Deterministic bytes (splitmix64).
    private struct Bytes {
        var state: UInt64
        mutating func next() -> UInt8 {
            state &+= 0x9E37_79B9_7F4A_7C15
            var z = state
            z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
            z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
            return UInt8(truncatingIfNeeded: z ^ (z >> 31))
        }
    }

    /// 64 KiB of random bytes, with NULs, invalid UTF-8 (lone continuation, overlong, surrogate,
    /// out of range, truncated sequences) and CRs sprinkled in; ends with a newline.
    private func garbage() -> [UInt8] {
        var g = Bytes(state: 42)
        var out: [UInt8] = []
        let nasty: [[UInt8]] = [[0x00], [0xFF, 0xFE], [0x80], [0xC0, 0xAF], [0xED, 0xA0, 0x80], [0xF4, 0x90, 0x80, 0x80],
                                [0xE2, 0x82], [0x0D], [0x22, 0x5C], [0x1B, 0x5B, 0x33, 0x31, 0x6D]]
        while out.count < 64 * 1024 {
            let b = g.next()
            if b < 12 { out += nasty[Int(b) % nasty.count] } else { out.append(g.next()) }
        }
        out.append(0x0A)
        return out
    }

    func testBadInputsDoNotStopTheAgentOrOtherFiles() throws {
        try sandbox.mkdir("docker")
        try sandbox.mkdir("cri")
        var raw = TailOptions()
        raw.paths = ["./logs/*.log", "./later/*.log"]
        raw.maxLineBytes = "1MiB"
        var docker = TailOptions()
        docker.paths = ["./docker/*.log"]
        docker.format = "docker"
        var cri = TailOptions()
        cri.paths = ["./cri/*.log"]
        cri.format = "cri"
        try writeConfig(agentConfig([("raw", raw), ("docker", docker), ("cri", cri)]))

        // Before the start.
        let empty = sandbox.path("logs/empty.log")
        XCTAssertTrue(FileManager.default.createFile(atPath: empty, contents: Data()))
        let garbagePath = sandbox.path("logs/garbage.log")
        let garbageBytes = garbage()
        appendBytes(garbagePath, garbageBytes)
        let bigPath = sandbox.path("logs/big.log")
        let bigLength = 50 << 20
        appendBytes(bigPath, [UInt8](repeating: UInt8(ascii: "x"), count: bigLength))
        appendText(bigPath, "\n" + joinedLines(logLines("big", 0..<10)))
        let good = sandbox.path("logs/good.log")
        appendText(good, joinedLines(logLines("good", 0..<10)))
        let dockerPath = sandbox.path("docker/bad.log")
        let dockerTruncated = #"{"log":"cut in the mid"#
        appendText(dockerPath, #"{"log":"docker ok 1\n","stream":"stdout","time":"2024-01-02T03:04:05Z"}"# + "\n"
            + dockerTruncated + "\n"
            + #"{"log":"docker ok 2\n","stream":"stdout","time":"2024-01-02T03:04:06Z"}"# + "\n")
        let criPath = sandbox.path("cri/bad.log")
        let criMissingField = "2024-01-02T03:04:05Z stdout"
        appendText(criPath, "2024-01-02T03:04:04Z stdout F cri ok 1\n" + criMissingField + "\n"
            + "2024-01-02T03:04:06Z stderr F cri ok 2\n")

        let agent = try startAgent()
        waitForMessages(logLines("good", 0..<10) + logLines("big", 0..<10)
            + ["docker ok 1", "docker ok 2", "cri ok 1", "cri ok 2", dockerTruncated, criMissingField])

        // A file deleted right after a large append: its open descriptor is drained.
        let deleted = sandbox.path("logs/deleted.log")
        appendText(deleted, joinedLines(logLines("deleted", 0..<10)))
        waitForMessages(logLines("deleted", 0..<10))
        appendText(deleted, joinedLines(logLines("deleted", 10..<20_000)))
        XCTAssertEqual(unlink(deleted), 0)

        // A folder that did not exist at the start.
        try sandbox.mkdir("later")
        appendText(sandbox.path("later/late.log"), joinedLines(logLines("late", 0..<10)))
        // The empty file gets a line; the good file keeps going.
        appendText(empty, "empty line 000000\n")
        appendText(good, joinedLines(logLines("good", 10..<20)))

        let expected = logLines("good", 0..<20) + logLines("big", 0..<10) + logLines("deleted", 0..<20_000)
            + logLines("late", 0..<10) + ["empty line 000000"]
        waitForMessages(expected, timeout: 90)
        waitForLog(agent, "was rotated or deleted")
        XCTAssertTrue(agent.isRunning, "the agent is still running")
        stopAgent(agent)

        assertWellFormed()
        let records = output.refresh()
        assertExactlyOnce(records, expected, onlyPrefixes: ["good", "big", "deleted", "late", "empty"])

        // Garbage: one record per line, at each line's offset, all valid JSON (checked above).
        var lineStarts: [Int64] = [0]
        for (i, b) in garbageBytes.enumerated() where b == 0x0A && i + 1 < garbageBytes.count { lineStarts.append(Int64(i + 1)) }
        let garbageOffsets = records.filter { $0.path == garbagePath }.map(\.offset)
        XCTAssertEqual(garbageOffsets, lineStarts, "garbage.log: one record per line, in order")

        // The 50 MiB line: one record of max_line_bytes, flagged truncated; then the normal lines.
        let bigRecords = records.filter { $0.path == bigPath }
        let cut = bigRecords.filter(\.truncated)
        XCTAssertEqual(cut.count, 1, "one truncated record for the long line")
        XCTAssertEqual(cut.first?.offset, 0)
        XCTAssertEqual(cut.first?.message?.utf8.count, 1 << 20, "cut at max_line_bytes")
        XCTAssertTrue(cut.first?.message?.utf8.allSatisfy { $0 == UInt8(ascii: "x") } ?? false)
        XCTAssertEqual(bigRecords.count, 11)
        for r in bigRecords where !r.truncated {
            let i = parseLogLine(r.message ?? "")?.index ?? -1
            XCTAssertEqual(r.offset, Int64(bigLength + 1 + i * lineLength("big")), "offset of \(r.message ?? "")")
        }

        // Docker: the cut JSON is shipped as a plain message (no stream); the valid lines decode.
        let dockerRecords = records.filter { $0.path == dockerPath }
        XCTAssertEqual(dockerRecords.map { $0.message ?? "" }, ["docker ok 1", dockerTruncated, "docker ok 2"])
        XCTAssertEqual(dockerRecords.map { $0.stream ?? "-" }, ["stdout", "-", "stdout"])
        // CRI: the line missing its tag and message is shipped as it is.
        let criRecords = records.filter { $0.path == criPath }
        XCTAssertEqual(criRecords.map { $0.message ?? "" }, ["cri ok 1", criMissingField, "cri ok 2"])
        XCTAssertEqual(criRecords.map { $0.stream ?? "-" }, ["stdout", "-", "stderr"])
        // The empty file produced nothing but its one later line.
        XCTAssertEqual(records.filter { $0.path == empty }.map { $0.message ?? "" }, ["empty line 000000"])
    }

    /// A glob match that cannot be opened (a symlink loop a.log -> b.log -> a.log) is reported in the
    /// agent's log, and the other files keep shipping.
    func testUnopenablePathIsLoggedAndOtherFilesKeepShipping() throws {
        let a = sandbox.path("logs/loop-a.log"), b = sandbox.path("logs/loop-b.log")
        XCTAssertEqual(symlink(b, a), 0)
        XCTAssertEqual(symlink(a, b), 0)
        let good = sandbox.path("logs/good.log")
        appendText(good, joinedLines(logLines("good", 0..<10)))
        try writeConfig(agentConfig([("in", TailOptions())]))
        let agent = try startAgent()
        waitForMessages(logLines("good", 0..<10))
        appendText(good, joinedLines(logLines("good", 10..<20)))
        waitForMessages(logLines("good", 0..<20))
        // Reported once (not at every scan), naming the path.
        waitForLog(agent, "loop-a.log", timeout: 10)
        XCTAssertTrue(agent.isRunning)
        stopAgent(agent)
        assertWellFormed()
        assertExactlyOnce(output.refresh(), logLines("good", 0..<20))
    }
}
