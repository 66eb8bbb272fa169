import Foundation
import XCTest
#if canImport(Glibc)
import Glibc
#endif

/// Checkpoints across restarts: kill -9 (at-least-once, bounded duplicates), clean stops (no
/// duplicates), and `start_at: end`.
final class CrashRestartTests: AgentTestCase {
    /// Lines are written continuously to two files while the agent is SIGKILLed three times and
    /// restarted on the same data_dir. In the end every line arrived at least once; a line shipped
    /// twice has the same event.id both times; duplicates come only from after the checkpoint the
    /// killed run left (each run resumes exactly at it), and that un-checkpointed tail is small. Then
    /// a clean stop and restart with no new lines repeats nothing.
    func testKillDashNineAndRestartIsAtLeastOnceWithBoundedDuplicates() throws {
        let files = ["kill-a", "kill-b"]
        let paths = files.map { sandbox.path("logs/\($0).log") }
        try writeConfig(agentConfig([("in", TailOptions())]))
        let kills = 3
        let killed = try killRepeatedlyWhileWriting(files, agent: try startAgent(), kills: kills)
        let (boundaries, checkpointsAtKill, expected) = (killed.boundaries, killed.checkpointsAtKill, killed.expected)
        waitForMessages(expected, timeout: 90)
        stopAgent(killed.agent)

        assertWellFormed()
        let records = output.refresh()
        let present = Set(records.compactMap(\.message))
        let missing = expected.filter { !present.contains($0) }
        XCTAssertTrue(missing.isEmpty, "at-least-once broken: \(missing.count) lines lost, e.g. \(missing.prefix(5))")

        // Duplicates: same id as the first copy, only in a later run, only at or past the killed
        // run's checkpoint.
        func run(of index: Int) -> Int { boundaries.filter { $0 <= index }.count }
        var first: [String: (id: String, run: Int)] = [:]
        var duplicates = 0
        var problems: [String] = []
        for (j, r) in records.enumerated() {
            guard let m = r.message else { continue }
            let rj = run(of: j)
            guard let f = first[m] else {
                first[m] = (r.eventID, rj)
                continue
            }
            duplicates += 1
            if f.id != r.eventID { problems.append("\(m): event.id \(r.eventID) differs from the first copy's \(f.id)") }
            if f.run == rj { problems.append("\(m): shipped twice by run \(rj) (no crash in between)") }
            if rj > 0, let cp = checkpointsAtKill[rj - 1][r.path], r.offset < cp {
                problems.append("\(m): replayed by run \(rj) although before the checkpoint \(cp)")
            }
        }
        XCTAssertTrue(problems.isEmpty, "\(problems.count) bad duplicates: \(problems.prefix(5))")

        // Each restarted run resumed exactly at the checkpoint the killed run left.
        for k in 0..<kills {
            let lower = boundaries[k], upper = k + 1 < kills ? boundaries[k + 1] : records.count
            for p in paths {
                guard let firstOfRun = records[lower..<upper].first(where: { $0.path == p }) else { continue }
                XCTAssertEqual(firstOfRun.offset, checkpointsAtKill[k][p] ?? 0,
                               "run \(k + 1) should resume \(p) at the checkpoint")
            }
        }
        // The un-checkpointed tail at each kill (what gets replayed) is about one checkpoint interval
        // (200 ms) of lines, not a large part of the file.
        var tails: [Int] = []
        for k in 0..<kills {
            var tail = 0
            for p in paths {
                let cp = checkpointsAtKill[k][p] ?? 0
                tail += records[0..<boundaries[k]].filter { $0.path == p && $0.offset >= cp }.count
            }
            tails.append(tail)
        }
        XCTAssertEqual(duplicates, records.count - present.count)
        XCTAssertLessThanOrEqual(duplicates, tails.reduce(0, +), "duplicates beyond the un-checkpointed tails \(tails)")
        for (k, t) in tails.enumerated() {
            XCTAssertLessThanOrEqual(t, 1000, "kill \(k): \(t) records shipped but not checkpointed (checkpoint_interval 200ms)")
        }
        print("kill -9 test: \(expected.count) lines, \(records.count) records, \(duplicates) duplicates, un-checkpointed tails \(tails)")

        // A clean stop and restart with no new lines: nothing is repeated (a sentinel line proves
        // the restarted agent is reading).
        let countBefore = records.count
        let again = try startAgent()
        waitForLog(again, "following ", count: 2)
        appendText(paths[0], "sentinel\n")
        waitForMessages(["sentinel"])
        stopAgent(again)
        output.refresh()
        XCTAssertEqual(output.records.count, countBefore + 1,
                       "a restart after SIGTERM repeated \(output.records.count - countBefore - 1) records")
    }

    /// `start_at: end` skips the lines a file holds at the first start and ships only new ones; a
    /// file created later is read from its beginning; after a clean stop, lines written while the
    /// agent was down are shipped at restart (from the checkpoint) and nothing is shipped twice.
    func testStartAtEndAndResumeFromCheckpoint() throws {
        let pre = sandbox.path("logs/pre.log")
        appendText(pre, joinedLines(logLines("pre", 0..<50)))
        var opts = TailOptions()
        opts.startAt = "end"
        try writeConfig(agentConfig([("in", opts)]))
        let agent = try startAgent()
        waitForLog(agent, "following \(pre) from offset \(50 * lineLength("pre"))")

        appendText(pre, joinedLines(logLines("pre", 50..<70)))
        appendText(sandbox.path("logs/later.log"), joinedLines(logLines("later", 0..<10)))
        waitForMessages(logLines("pre", 50..<70) + logLines("later", 0..<10))
        stopAgent(agent)

        // Written while the agent is down.
        appendText(pre, joinedLines(logLines("pre", 70..<85)))
        appendText(sandbox.path("logs/later.log"), joinedLines(logLines("later", 10..<15)))

        let again = try startAgent()
        appendText(pre, joinedLines(logLines("pre", 85..<90)))
        let expected = logLines("pre", 50..<90) + logLines("later", 0..<15)
        waitForMessages(expected)
        stopAgent(again)

        assertWellFormed()
        output.refresh()
        assertExactlyOnce(output.records, expected)
        assertInOrderPerPrefix(output.records)
        XCTAssertTrue(again.stderr.contains("(checkpoint)"), "the restart resumes from the checkpoint")
    }
}
