import Foundation
import XCTest
#if canImport(Glibc)
import Glibc
#endif

/// The file output on the shared delivery runtime with a disk buffer, across kill -9.
final class FileOutputCrashTests: AgentTestCase {
    /// Lines are written continuously to two files while an agent whose file output has a disk
    /// buffer is SIGKILLed three times and restarted on the same data_dir. In the end every line is
    /// in the output file; a record written twice has the same event.id both times, and was either in
    /// the killed run's last write (at most one batch before the kill) or read by the input again after
    /// the checkpoint the killed run left. A torn last line is at most one per kill.
    func testDiskBufferedFileOutputKilledDashNineLosesNothing() throws {
        let batchMax = 100
        let files = ["fo-a", "fo-b"]
        let plain = agentConfig([("in", TailOptions())])
        let config = plain.replacingOccurrences(
            of: "path: ./out/records.ndjson,",
            with: "path: ./out/records.ndjson, buffer: {type: disk, segment_bytes: 64KiB}, batch: {max_records: \(batchMax), timeout: 50ms},")
        XCTAssertNotEqual(config, plain, "the harness config changed: the buffer was not set")
        try writeConfig(config)
        let kills = 3
        let killed = try killRepeatedlyWhileWriting(files, agent: try startAgent(), kills: kills)
        let (boundaries, checkpointsAtKill, expected) = (killed.boundaries, killed.checkpointsAtKill, killed.expected)
        XCTAssertTrue(FileManager.default.fileExists(atPath: sandbox.path("data/buffers/local")), "the file output has a disk buffer")
        waitForMessages(expected, timeout: 90)
        stopAgent(killed.agent)

        let records = output.refresh()
        let present = Set(records.compactMap(\.message))
        let missing = expected.filter { !present.contains($0) }
        XCTAssertTrue(missing.isEmpty, "lost across kill -9: \(missing.count) lines, e.g. \(missing.prefix(5))")
        XCTAssertLessThanOrEqual(output.invalidLines.count, kills, "more torn lines than kills: \(output.invalidLines.prefix(3))")
        XCTAssertTrue(output.shapeProblems.isEmpty, "\(output.shapeProblems.prefix(3))")

        func run(of index: Int) -> Int { boundaries.filter { $0 <= index }.count }
        var first: [String: (index: Int, id: String, run: Int)] = [:]
        var duplicates = 0
        var problems: [String] = []
        for (j, r) in records.enumerated() {
            guard let m = r.message else { continue }
            let rj = run(of: j)
            guard let f = first[m] else {
                first[m] = (j, r.eventID, rj)
                continue
            }
            duplicates += 1
            if f.id != r.eventID { problems.append("\(m): event.id \(r.eventID) differs from the first copy's \(f.id)") }
            // Read again by the input (in the ring twice: both copies may come from the restarted run),
            // or in the last write of the killed run, written again from the ring.
            let replayedByInput = rj > 0 && r.offset >= (checkpointsAtKill[rj - 1][r.path] ?? 0)
            let lastWrite = rj > 0 && f.run == rj - 1 && f.index >= boundaries[rj - 1] - batchMax
            if !replayedByInput && !lastWrite {
                problems.append("\(m) (offset \(r.offset)): copy \(j) in run \(rj) of copy \(f.index) in run \(f.run), "
                                + "neither in the last write before a kill nor read after the checkpoint \(rj > 0 ? "\(checkpointsAtKill[rj - 1][r.path] ?? 0)" : "-")")
            }
        }
        XCTAssertTrue(problems.isEmpty, "\(problems.count) bad duplicates: \(problems.prefix(5))")
        print("file output kill -9 test: \(expected.count) lines, \(records.count) records, \(duplicates) duplicates, \(output.invalidLines.count) torn lines")
    }
}
