import Foundation
import XCTest
#if canImport(Glibc)
import Glibc
#endif

/// What `killRepeatedlyWhileWriting` saw.
struct KillsWhileWriting {
    /// Started after the last kill, still running.
    var agent: AgentProcess
    /// The output's record count when each run died.
    var boundaries: [Int]
    /// The input's checkpoints (path → offset) right after each kill.
    var checkpointsAtKill: [[String: Int64]]
    /// Every line written, file by file.
    var expected: [String]
}

extension AgentTestCase {
    /// Writes 5 lines to each of `files` (`logs/<name>.log`) every 10 ms while `agent` is SIGKILLed
    /// `kills` times and restarted on the same data_dir, each kill once 300 more records reached the
    /// output, at a random moment within a checkpoint interval. Then waits for 300 more records and
    /// stops writing.
    func killRepeatedlyWhileWriting(_ files: [String], agent first: AgentProcess, kills: Int = 3,
                                    file: StaticString = #filePath, line: UInt = #line) throws -> KillsWhileWriting {
        let paths = files.map { sandbox.path("logs/\($0).log") }
        let state = SharedState()
        let job = BackgroundJob("writer") {
            var next = 0
            while !state.stopRequested {
                for (f, p) in zip(files, paths) {
                    appendText(p, joinedLines(logLines(f, next..<(next + 5))))
                    state.add(f, 5)
                }
                next += 5
                usleep(10_000)
            }
        }
        var agent = first
        var boundaries: [Int] = []
        var checkpointsAtKill: [[String: Int64]] = []
        for k in 0..<kills {
            let before = output.refresh().count
            waitForRecordCount(before + 300, file: file, line: line)
            usleep(UInt32.random(in: 50_000...350_000))  // spreads the kill time within a checkpoint interval
            killAgent(agent, file: file, line: line)
            XCTAssertEqual(agent.exit?.signalled, true, "run \(k) died of SIGKILL", file: file, line: line)
            boundaries.append(output.refresh().count)
            checkpointsAtKill.append(sandbox.checkpoints("in"))
            agent = try startAgent()
        }
        waitForRecordCount(output.refresh().count + 300, file: file, line: line)
        state.requestStop()
        XCTAssertTrue(job.join(), "writer stopped", file: file, line: line)
        let written = state.counts
        return KillsWhileWriting(agent: agent, boundaries: boundaries, checkpointsAtKill: checkpointsAtKill,
                                 expected: files.flatMap { logLines($0, 0..<(written[$0] ?? 0)) })
    }
}
