import AnduinCore
import Foundation
import Logging
import XCTest
@testable import in_tail

/// The tail input on a file written a line at a time: with inotify it reads what gathered over a
/// pass interval in one read, not once a line.
final class TailWakeUpTests: XCTestCase {
    private var dir: String!

    override func setUpWithError() throws {
        dir = NSTemporaryDirectory() + "anduin-tail-wake-\(UUID().uuidString.prefix(8))"
        try FileManager.default.createDirectory(atPath: dir + "/data", withIntermediateDirectories: true)
    }

    override func tearDown() { try? FileManager.default.removeItem(atPath: dir) }

    /// 200 lines written one at a time 4 ms apart: every line was a batch of its own (a wake-up of
    /// the tail thread and of every stage behind it); now a pass gathers about 25 of them.
    func testLinesWrittenOneAtATimeAreReadInFewBatches() throws {
        let path = dir + "/app.log"
        XCTAssertTrue(FileManager.default.createFile(atPath: path, contents: nil))
        var config = TailConfig(paths: [dir + "/*.log"])
        config.format = .raw
        let context = ComponentContext(name: "in", kind: .input, dataDirectory: dir + "/data", logger: .init(label: "test"),
                                       stats: ComponentStats(component: "in", kind: .input))
        let input = try config.build(context)
        let got = Locked<(batches: Int, records: Int)>((0, 0))
        let control = InputControl(name: "in") { batch, _ in got.withLock { $0.batches += 1; $0.records += batch.count } }
        let reader = startThread(name: "tail-test") { input.run(control) }
        usleep(300_000)  // watching
        guard let fh = FileHandle(forWritingAtPath: path) else { return XCTFail("cannot open \(path)") }
        for i in 0..<200 {
            fh.write(Data("line \(i)\n".utf8))
            usleep(4_000)
        }
        try fh.close()
        let deadline = monotonicSeconds() + 30
        while got.current.records < 200 && monotonicSeconds() < deadline { usleep(10_000) }
        control.requestStop()
        XCTAssertTrue(reader.join(timeout: 30))
        let (batches, records) = got.current
        XCTAssertEqual(records, 200)
        XCTAssertLessThan(batches, 60, "\(batches) batches for 200 lines written 4 ms apart")
    }
}
