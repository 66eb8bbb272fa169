import AnduinCore
import Foundation
@testable import out_file
import XCTest

/// The file output's sender, without a process.
final class FileSenderTests: XCTestCase {
    private var dir = ""

    override func setUpWithError() throws {
        dir = NSTemporaryDirectory() + "file-sender-\(UUID().uuidString.prefix(8))"
        try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
    }

    override func tearDown() {
        try? FileManager.default.removeItem(atPath: dir)
    }

    private func encoded(_ messages: [String]) -> EncodedBatch {
        var e = EncodedBatch()
        e.append(FilterTestBatch.make(messages.map { ($0, "") }))
        return e
    }

    private func lines(_ path: String) -> [String] {
        ((try? String(contentsOfFile: path, encoding: .utf8)) ?? "").components(separatedBy: "\n")
    }

    /// A batch is appended as one JSON line per record, after what the file held.
    func testAppendsOneLinePerRecord() throws {
        let path = dir + "/out/records.ndjson"
        var logged: [String] = []
        let sender = try FileSender(path: path, fsync: true, log: { logged.append($0) })
        XCTAssertEqual(sender.send(encoded(["one", "two"])), .delivered)
        XCTAssertEqual(sender.send(encoded(["three"])), .delivered)
        let l = lines(path)
        XCTAssertEqual(l.count, 4, "\(l)")
        XCTAssertEqual(l.last, "")
        for (line, m) in zip(l, ["one", "two", "three"]) { XCTAssertTrue(line.contains("\"message\":\"\(m)\""), line) }
        XCTAssertTrue(logged.isEmpty, "\(logged)")
    }

    /// A write cut short by a crash left part of a line: the next sender ends it with a newline
    /// before appending, so the first record written again is a whole line of its own.
    func testTornLastLineIsTerminatedAtOpen() throws {
        let path = dir + "/records.ndjson"
        try Data("{\"message\":\"whole\"}\n{\"message\":\"to".utf8).write(to: URL(fileURLWithPath: path))
        var logged: [String] = []
        let sender = try FileSender(path: path, fsync: false, log: { logged.append($0) })
        XCTAssertEqual(sender.send(encoded(["torn"])), .delivered)
        let l = lines(path)
        XCTAssertEqual(l.count, 4, "\(l)")
        XCTAssertEqual(l[1], "{\"message\":\"to")
        XCTAssertTrue(l[2].hasPrefix("{") && l[2].contains("\"message\":\"torn\""), l[2])
        XCTAssertEqual(logged.count, 1, "\(logged)")
    }

    /// The path cannot be opened: a start-up error (the runner's makeSender throws).
    func testUnopenablePathThrows() {
        XCTAssertThrowsError(try FileSender(path: dir, fsync: false, log: { _ in }))
    }
}
