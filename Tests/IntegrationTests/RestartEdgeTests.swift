import Foundation
import XCTest

/// Edge cases of identity and checkpoints found in review: nothing may be skipped or mistaken for a
/// replay across a restart.
final class RestartEdgeTests: AgentTestCase {
    func config(startAt: String) -> String {
        """
        data_dir: ./data
        inputs:
          in: {type: tail, paths: ["./logs/*.log"], format: raw, start_at: \(startAt), glob_interval: 200ms, poll_interval: 100ms, checkpoint_interval: 200ms}
        outputs:
          out: {type: file, from: [in], path: ./out/records.ndjson, \(allMetadata)}
        """
    }

    /// logs/a.log's two lines shipped and checkpointed, the agent stopped; returns the checkpoint
    /// file's path.
    private func shipTwoLinesAndStop() throws -> String {
        try sandbox.mkdir("logs")
        appendText(sandbox.path("logs/a.log"), "a 1\na 2\n")
        try writeConfig(config(startAt: "beginning"))
        let first = try startAgent()
        XCTAssertTrue(poll { output.refresh().count == 2 && sandbox.checkpoints("in").values.first == 8 }, first.stderr)
        first.terminate()
        XCTAssertTrue(first.waitExit())
        return sandbox.path("data/checkpoints/in.json")
    }

    /// start_at: end, and files that get no line before the stop (one with old lines, one empty):
    /// lines written while the agent is down must arrive after the restart.
    func testStartAtEndFilesIdleUntilAStopDoNotLoseTheLinesWrittenWhileDown() throws {
        try sandbox.mkdir("logs")
        appendText(sandbox.path("logs/old.log"), "old 1\nold 2\n")
        appendText(sandbox.path("logs/empty.log"), "")
        appendText(sandbox.path("logs/live.log"), "")
        try writeConfig(config(startAt: "end"))
        let first = try startAgent()
        // start_at: end applies to what is there at the first scan: wait for it.
        XCTAssertTrue(poll { first.stderr.components(separatedBy: "following ").count - 1 == 3 }, first.stderr)
        appendText(sandbox.path("logs/live.log"), "live 1\n")
        XCTAssertTrue(poll { output.refresh().compactMap(\.message) == ["live 1"] }, first.stderr)
        first.terminate()
        XCTAssertTrue(first.waitExit())

        appendText(sandbox.path("logs/old.log"), "old 3\n")
        appendText(sandbox.path("logs/empty.log"), "empty 1\n")
        let second = try startAgent()
        XCTAssertTrue(poll { Set(output.refresh().compactMap(\.message)) == ["live 1", "old 3", "empty 1"] },
                      "\(output.refresh().compactMap(\.message)) \(second.stderr)")
        second.terminate()
        XCTAssertTrue(second.waitExit())
        XCTAssertEqual(output.refresh().count, 3, "nothing twice, old lines never shipped")
    }

    /// A checkpoint file edited or damaged to hold a negative offset and the largest generation: the
    /// file is read again from its start (a new generation, saturated), never at a negative offset,
    /// and the agent does not trap (issue 24, item 2).
    func testCheckpointWithNegativeOffsetAndLargestGeneration() throws {
        let cpPath = try shipTwoLinesAndStop()
        var text = try String(contentsOfFile: cpPath, encoding: .utf8)
        let obj = try XCTUnwrap(try JSONSerialization.jsonObject(with: Data(text.utf8)) as? [String: Any])
        var files = try XCTUnwrap(obj["files"] as? [[String: Any]])
        files[0]["offset"] = -5
        files[0]["generation"] = Int.max
        var edited = obj
        edited["files"] = files
        text = String(decoding: try JSONSerialization.data(withJSONObject: edited), as: UTF8.self)
        try text.write(toFile: cpPath, atomically: true, encoding: .utf8)

        let second = try startAgent()
        XCTAssertTrue(poll { output.refresh().count == 4 }, "read again from the start: \(second.stderr)")
        XCTAssertTrue(second.stderr.contains("is outside the file"), second.stderr)
        appendText(sandbox.path("logs/a.log"), "a 3\n")
        XCTAssertTrue(poll { output.refresh().count == 5 }, second.stderr)
        second.terminate()
        XCTAssertTrue(second.waitExit())
        XCTAssertEqual(second.exit?.signalled, false, second.stderr)
        XCTAssertEqual(output.refresh().compactMap(\.message), ["a 1", "a 2", "a 1", "a 2", "a 3"])
    }

    /// A checkpoint file that is there but cannot be read (here a folder in its place: EISDIR, which
    /// root gets too, unlike a permission): nothing is read until it can be, then the input resumes
    /// from it. Starting without it would ship a 1 and a 2 again.
    func testACheckpointFileThatCannotBeReadHoldsTheInputUntilItCan() throws {
        let cpPath = try shipTwoLinesAndStop()
        XCTAssertEqual(rename(cpPath, cpPath + ".kept"), 0)
        try FileManager.default.createDirectory(atPath: cpPath, withIntermediateDirectories: false)
        appendText(sandbox.path("logs/a.log"), "a 3\n")

        let second = try startAgent()
        XCTAssertTrue(poll { second.stderr.contains("cannot be read") }, second.stderr)
        Thread.sleep(forTimeInterval: 1.5)  // several scans' worth: a 1 and a 2 would be shipped again by now
        XCTAssertEqual(output.refresh().count, 2, second.stderr)
        XCTAssertEqual(rmdir(cpPath), 0)
        XCTAssertEqual(rename(cpPath + ".kept", cpPath), 0)
        XCTAssertTrue(poll(timeout: 30) { output.refresh().count == 3 }, second.stderr)
        XCTAssertTrue(second.stderr.contains("read: input in starts"), second.stderr)
        second.terminate()
        XCTAssertTrue(second.waitExit())
        XCTAssertEqual(second.exit?.signalled, false, second.stderr)
        XCTAssertEqual(output.refresh().compactMap(\.message), ["a 1", "a 2", "a 3"])
    }

    /// copytruncate whose new content starts with the same line as the old: the new records must not
    /// reuse the old records' event.id (a destination would drop them as replays).
    func testCopytruncateWithTheSameFirstLineGetsNewEventIDs() throws {
        try sandbox.mkdir("logs")
        let path = sandbox.path("logs/app.log")
        appendText(path, "same first line\nold second\n")
        try writeConfig(config(startAt: "beginning"))
        let agent = try startAgent()
        XCTAssertTrue(poll { output.refresh().count == 2 })
        // Truncate in place and write the same first line again.
        XCTAssertTrue(FileManager.default.createFile(atPath: path, contents: Data("same first line\nnew second\n".utf8)))
        XCTAssertTrue(poll { output.refresh().count == 4 }, agent.stderr)
        agent.terminate()
        XCTAssertTrue(agent.waitExit())
        let records = output.refresh()
        let ids = records.compactMap { ($0.json["event"] as? [String: Any])?["id"] as? String }
        XCTAssertEqual(ids.count, 4)
        XCTAssertEqual(Set(ids).count, 4, "every record has its own event.id: \(ids)")
        XCTAssertEqual(records.compactMap(\.message), ["same first line", "old second", "same first line", "new second"])
    }
}
