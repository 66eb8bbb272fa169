@testable import AnduinCore
import Foundation
import XCTest

/// The checkpoint file: read with the project's JSON reader, written with `JSONWriter`; older files
/// keep loading, a newer version or a damaged file is refused (moved aside, said clearly), never a crash.
final class CheckpointStoreTests: XCTestCase {
    private var dir: String!
    private var store: CheckpointStore!

    override func setUpWithError() throws {
        dir = NSTemporaryDirectory() + "anduin-checkpoints-\(UUID().uuidString.prefix(8))"
        try FileManager.default.createDirectory(atPath: dir + "/checkpoints", withIntermediateDirectories: true)
        store = CheckpointStore(dataDirectory: dir, input: "in")
    }

    override func tearDown() { try? FileManager.default.removeItem(atPath: dir) }

    private func write(_ text: String) {
        XCTAssertTrue(FileManager.default.createFile(atPath: store.path, contents: Data(text.utf8)))
    }

    private func exists(_ path: String) -> Bool { FileManager.default.fileExists(atPath: path) }

    private func loadError() throws -> String {
        switch try store.load() {
        case .success(let files): XCTFail("loaded \(files)"); return ""
        case .failure(let e): return e.message
        }
    }

    func testRoundTripKeepsEveryFieldAndFullRangeNumbers() throws {
        let files = [
            FileCheckpoint(device: UInt64.max, inode: 1 << 63, fingerprintLength: 1024, fingerprint: UInt64.max - 1,
                           offset: Int64.max, delivered: Int64.max, path: "/var/log/pods/a \"b\" \\ é\u{1}/0.log",
                           generation: 3, realPath: "/real/0.log", seen: 1_796_000_000),
            FileCheckpoint(device: 0, inode: 7, fingerprintLength: 0, fingerprint: 0, offset: 0, path: "/x.log"),
        ]
        try store.save(files)
        XCTAssertEqual(try store.load().get(), files)
        let text = String(decoding: try XCTUnwrap(FileManager.default.contents(atPath: store.path)), as: UTF8.self)
        XCTAssertTrue(text.hasPrefix("{\"files\":[{\"delivered\":9223372036854775807,\"dev\":18446744073709551615,"), text)
        XCTAssertTrue(text.hasSuffix("],\"version\":1}"), text)
        // Valid JSON for any reader (people and scripts read it).
        XCTAssertNoThrow(try JSONSerialization.jsonObject(with: Data(text.utf8)))
        try store.save([])
        XCTAssertEqual(try store.load().get(), [])
    }

    /// There but not readable (a folder in its place gives EISDIR, even to root): an error, never a
    /// first start, and nothing is moved aside.
    func testAFileThatCannotBeReadIsAnErrorNotAFirstStart() throws {
        try FileManager.default.createDirectory(atPath: store.path, withIntermediateDirectories: false)
        XCTAssertThrowsError(try store.load()) { e in
            XCTAssertTrue("\(e)".contains("read \(store.path)"), "\(e)")
        }
        XCTAssertTrue(exists(store.path))
        XCTAssertFalse(exists(store.path + ".unreadable"))
        XCTAssertEqual(rmdir(store.path), 0)
        XCTAssertEqual(try store.load().get(), [], "missing: a first start")
    }

    /// As the previous version wrote it (Foundation's encoder: sorted keys, `\/` in paths).
    func testAFileOfThePreviousWriterLoads() throws {
        write(#"{"files":[{"delivered":120,"dev":64768,"fp":13835058055282163712,"fp_len":22,"generation":1,"ino":131,"offset":100,"path":"\/var\/log\/containers\/a.log","real_path":"\/var\/log\/pods\/ns_a_1\/app\/0.log","seen":1796564806},{"dev":64768,"fp":5,"fp_len":5,"ino":132,"offset":0,"path":"\/b.log"}],"version":1}"#)
        XCTAssertEqual(try store.load().get(), [
            FileCheckpoint(device: 64768, inode: 131, fingerprintLength: 22, fingerprint: 13_835_058_055_282_163_712, offset: 100,
                           delivered: 120, path: "/var/log/containers/a.log", generation: 1,
                           realPath: "/var/log/pods/ns_a_1/app/0.log", seen: 1_796_564_806),
            FileCheckpoint(device: 64768, inode: 132, fingerprintLength: 5, fingerprint: 5, offset: 0, path: "/b.log"),
        ])
    }

    /// A file written by a newer agent is not used (its fields may mean something else): said with
    /// the file, its version and what to do, and kept aside for that agent.
    func testANewerVersionIsRefusedAndKeptAside() throws {
        let newer = #"{"files":[{"dev":1,"fp":2,"fp_len":3,"ino":4,"offset":5,"path":"/a.log"}],"version":2}"#
        write(newer)
        let message = try loadError()
        XCTAssertTrue(message.contains(store.path), message)
        XCTAssertTrue(message.contains("version 2"), message)
        XCTAssertTrue(message.contains("newer anduin"), message)
        XCTAssertTrue(message.contains("run that version"), message)
        XCTAssertFalse(exists(store.path))
        XCTAssertEqual(FileManager.default.contents(atPath: store.path + ".v2"), Data(newer.utf8), "kept as it was")
        XCTAssertEqual(try store.load().get(), [], "then a first start")
        try store.save([])
        XCTAssertTrue(exists(store.path + ".v2"), "saving does not touch the newer file")
    }

    /// Truncated, garbage, empty, or JSON that is not a checkpoint file: no crash, the file is
    /// named with the reason, moved aside, and the input starts as on a first start.
    func testADamagedFileIsReportedAndMovedAside() throws {
        try store.save([FileCheckpoint(device: 1, inode: 2, fingerprintLength: 3, fingerprint: 4, offset: 5, path: "/a.log")])
        let good = String(decoding: try XCTUnwrap(FileManager.default.contents(atPath: store.path)), as: UTF8.self)
        let damaged = [
            String(good.prefix(good.count / 2)),  // torn (not by AtomicFile; by a copy, a full disk)
            "\u{0}\u{1}\u{FF}garbage{{[",
            "",
            "[]",
            #"{"files":[]}"#,  // no version
            #"{"files":[],"version":0}"#,
            #"{"files":{},"version":1}"#,
            #"{"files":[{"dev":1,"fp":2,"fp_len":3,"ino":4,"path":"/a.log"}],"version":1}"#,  // no offset
            #"{"files":[{"dev":-1,"fp":2,"fp_len":3,"ino":4,"offset":5,"path":"/a.log"}],"version":1}"#,
            #"{"files":[{"dev":1,"fp":2,"fp_len":3,"ino":4,"offset":1e400,"path":"/a.log"}],"version":1}"#,
            #"{"files":[{"dev":1,"fp":2,"fp_len":3,"ino":4,"offset":99999999999999999999,"path":"/a.log"}],"version":1}"#,
            #"{"files":[{"dev":1,"fp":2,"fp_len":3,"ino":4,"offset":5,"path":7}],"version":1}"#,
            #"{"files":[{"dev":1,"fp":2,"fp_len":3,"held":{"stdout":"x"},"ino":4,"offset":5,"path":"/a.log"}],"version":1}"#,
            String(repeating: "[", count: 100_000),
        ]
        for text in damaged {
            write(text)
            let message = try loadError()
            XCTAssertTrue(message.contains("checkpoint file \(store.path) is unreadable"), "\(text.prefix(80)): \(message)")
            XCTAssertTrue(message.contains("first start"), message)
            XCTAssertFalse(exists(store.path), text)
            XCTAssertEqual(FileManager.default.contents(atPath: store.path + ".unreadable"), Data(text.utf8))
            XCTAssertEqual(try store.load().get(), [])
        }
    }
}
