import Foundation
import XCTest
#if canImport(Glibc)
import Glibc
#endif

/// Log rotation while the application writes: rename-and-create, and copytruncate.
final class RotationTests: AgentTestCase {
    /// A writer thread appends 1,500 lines and rotates twice midway (app.log.1 -> app.log.2,
    /// app.log -> app.log.1, new app.log); the rotated names do not match `*.log`. Every line arrives
    /// exactly once, the rotated files are closed after rotate_wait, and a restart after a clean stop
    /// repeats nothing.
    func testRenameRotationWhileWriting() throws {
        let app = sandbox.path("logs/app.log")
        appendText(app, joinedLines(logLines("app", 0..<10)))
        try writeConfig(agentConfig([("in", TailOptions())]))
        let agent = try startAgent()
        waitForMessages(logLines("app", 0..<10))

        let total = 1500
        let job = BackgroundJob("writer") {
            var i = 10
            while i < total {
                if i == 500 || i == 1000 {
                    if FileManager.default.fileExists(atPath: app + ".1") { rename(app + ".1", app + ".2") }
                    rename(app, app + ".1")
                }
                let end = min(i + 25, total, i < 500 ? 500 : i < 1000 ? 1000 : total)
                appendText(app, joinedLines(logLines("app", i..<end)))
                i = end
                usleep(20_000)
            }
        }
        XCTAssertTrue(job.join(), "writer finished")
        let expected = logLines("app", 0..<total)
        waitForMessages(expected)
        // Both rotated files are drained, then closed rotate_wait (1 s) after their last data.
        waitForLog(agent, "closing ", count: 2)
        stopAgent(agent)

        assertWellFormed()
        assertExactlyOnce(output.refresh(), expected)
        assertInOrderPerPrefix(output.records)
        let countBefore = output.records.count

        // Restart on the same data_dir: nothing is read again; a new line arrives alone.
        let again = try startAgent()
        waitForLog(again, "following ")
        appendText(app, "after restart\n")
        waitForMessages(["after restart"])
        stopAgent(again)
        output.refresh()
        XCTAssertEqual(output.records.count, countBefore + 1,
                       "records repeated after a clean restart: \(output.records.dropFirst(countBefore).compactMap(\.message).prefix(5))")
        assertWellFormed()
    }

    /// Fast rotation with more rotated files than max_rotated_files: a rotated file already read to
    /// its end is closed early without being "given up" (no warning, rotated_given_up stays 0), and
    /// every line arrives exactly once.
    func testRotatedFilesReadToTheirEndAreNotGivenUp() throws {
        let app = sandbox.path("logs/app.log")
        var opts = TailOptions()
        opts.rotateWait = "30s"
        opts.extra = "max_rotated_files: 1\n"
        try writeConfig(agentConfig([("in", opts)]))
        let agent = try startAgent()
        let rotations = 8, perFile = 20
        for r in 0..<rotations {
            appendText(app, joinedLines(logLines("app", (r * perFile)..<((r + 1) * perFile))))
            waitForMessages(logLines("app", 0..<((r + 1) * perFile)))
            rename(app, app + ".\(r)")
        }
        appendText(app, "last\n")
        let expected = logLines("app", 0..<(rotations * perFile)) + ["last"]
        waitForMessages(expected)
        // Every rotated file but the newest was closed for room (read to its end).
        waitForLog(agent, "rotated away and read to its end", count: rotations - 1)
        stopAgent(agent)
        XCTAssertFalse(agent.stderr.contains("giving up"), agent.stderr)
        assertExactlyOnce(output.refresh(), expected)
    }

    /// copytruncate: the first half is shipped, then the file is copied away and truncated in place,
    /// and the application keeps appending (in small bursts, as it would). The second half arrives
    /// completely, under a new identity (event.ids differ from the first half's at the same offsets).
    func testCopyTruncateWhileWriting() throws {
        let app = sandbox.path("logs/app.log")
        try writeConfig(agentConfig([("in", TailOptions())]))
        let agent = try startAgent()
        for k in 0..<10 {
            appendText(app, joinedLines(logLines("app", (k * 50)..<(k * 50 + 50))))
            usleep(20_000)
        }
        let firstHalf = logLines("app", 0..<500)
        waitForMessages(firstHalf)

        try FileManager.default.copyItem(atPath: app, toPath: app + ".1")
        XCTAssertEqual(truncate(app, 0), 0)
        for k in 0..<50 {
            appendText(app, joinedLines(logLines("app", (500 + k * 10)..<(510 + k * 10))))
            usleep(20_000)
        }
        let secondHalf = logLines("app", 500..<1000)
        waitForMessages(secondHalf)
        stopAgent(agent)

        assertWellFormed()
        output.refresh()
        assertExactlyOnce(output.records, firstHalf + secondHalf)
        assertInOrderPerPrefix(output.records)
        XCTAssertTrue(agent.stderr.contains("was truncated"), "the truncation is logged")
        // The second half starts again at offset 0.
        let first500 = output.records.first { $0.message == logLine("app", 500) }
        XCTAssertEqual(first500?.offset, 0)
        let firstIDs = Set(output.records.filter { (parseLogLine($0.message ?? "")?.index ?? -1) < 500 }.map(\.eventID))
        let secondIDs = Set(output.records.filter { (parseLogLine($0.message ?? "")?.index ?? -1) >= 500 }.map(\.eventID))
        XCTAssertTrue(firstIDs.isDisjoint(with: secondIDs), "a truncated file's new content must get new event.ids")
    }

    /// copytruncate where the file grows back past the old offset before the agent looks at it again
    /// (poll mode; the application writes a burst right after the truncation, then keeps writing a
    /// few lines every 200 ms). The size never goes below the read offset when the agent looks, so
    /// only the fingerprint check (documented as "re-checked against the file") can notice; every
    /// line of the new content must still arrive.
    func testCopyTruncateRegrowingPastOldOffsetIsDetected() throws {
        let app = sandbox.path("logs/app.log")
        var opts = TailOptions()
        opts.watch = "poll"
        try writeConfig(agentConfig([("in", opts)]))
        let agent = try startAgent()
        // The application writes steadily: a few lines every 200 ms.
        var next = 0
        for _ in 0..<10 {
            appendText(app, joinedLines(logLines("app", next..<(next + 5))))
            next += 5
            usleep(200_000)
        }
        waitForMessages(logLines("app", 0..<next))
        let oldLines = next

        // copytruncate, and a startup burst larger than the old file in the same instant.
        try FileManager.default.copyItem(atPath: app, toPath: app + ".1")
        let burst = logLines("new", 0..<(2 * oldLines))
        var text = joinedLines(burst)
        XCTAssertEqual(truncate(app, 0), 0)
        appendText(app, text)
        // Then the steady writing goes on for a few seconds.
        var more: [String] = []
        for k in 0..<15 {
            let lines = logLines("new", (2 * oldLines + k * 3)..<(2 * oldLines + k * 3 + 3))
            more += lines
            text = joinedLines(lines)
            appendText(app, text)
            usleep(200_000)
        }
        let expected = burst + more
        // Detection is due within about a second (the fingerprint re-check); 20 s is generous.
        waitForMessages(expected, timeout: 20)
        stopAgent(agent)
        assertWellFormed()
        XCTAssertTrue(agent.stderr.contains("was truncated"), "the truncation is noticed and logged")
    }
}
