import AnduinCore
import Foundation
import Logging
import XCTest
@testable import in_tail

/// The tail input's checkpoint registry (parked files, ttl) and the directory search by identity.
final class TailRegistryTests: XCTestCase {
    private var dir: String!

    override func setUpWithError() throws {
        dir = NSTemporaryDirectory() + "anduin-registry-\(UUID().uuidString.prefix(8))"
        try FileManager.default.createDirectory(atPath: dir + "/data", withIntermediateDirectories: true)
    }

    override func tearDown() { try? FileManager.default.removeItem(atPath: dir) }

    /// A settable wall clock.
    private final class Clock: @unchecked Sendable {  // used by one test thread
        var now: Double = 1_000_000
    }

    private func cp(_ ino: UInt64, offset: Int64, path: String, seen: Int64? = nil) -> FileCheckpoint {
        FileCheckpoint(device: 1, inode: ino, fingerprintLength: 5, fingerprint: 42, offset: offset, path: path, seen: seen)
    }

    /// Entries not seen are kept for checkpoint_ttl counted from start-up at the earliest (a long
    /// downtime does not expire them before they were looked for); seeing a file renews it.
    func testParkedEntriesExpireAfterTTLSinceLastSeenNotAtFirstScan() throws {
        let store = CheckpointStore(dataDirectory: dir + "/data", input: "in")
        // Last seen a day before this start.
        try store.save([cp(7, offset: 10, path: "/gone.log", seen: 1_000_000 - 86_400), cp(8, offset: 3, path: "/here.log", seen: 1_000_000 - 86_400)])
        let clock = Clock()
        let r = CheckpointRegistry(store: store, ttl: 3600, wallClock: { clock.now })
        r.load(logger: Logger(label: "test"))
        XCTAssertEqual(r.expire(), [], "nothing expires at start-up, however old")
        clock.now += 3000
        // here.log is seen by a scan (unchanged since its checkpoint: not reopened when found by a search).
        let here = FoundFile(path: "/here.log", key: FileKey(device: 1, inode: 8), size: 3, mtime: 0)
        XCTAssertFalse(r.seen(here, matchedByGlob: false))
        XCTAssertTrue(r.seen(here, matchedByGlob: true), "a matched file with a checkpoint is followed again")
        clock.now += 601  // 3601 s after start-up
        XCTAssertEqual(r.expire(), ["/gone.log"])
        XCTAssertNotNil(r.parked[FileKey(device: 1, inode: 8)])
        clock.now += 3601
        XCTAssertEqual(r.expire(), ["/here.log"])
    }

    /// A parked (closed) file is reopened when it changed since: grew past what was read.
    func testParkedFileReopensOnlyWhenItChanged() {
        let clock = Clock()
        let r = CheckpointRegistry(store: CheckpointStore(dataDirectory: dir + "/data", input: "in"), ttl: 3600, wallClock: { clock.now })
        r.park(cp(9, offset: 100, path: "/a.log"), size: 100, mtime: 5)
        let key = FileKey(device: 1, inode: 9)
        XCTAssertFalse(r.seen(FoundFile(path: "/a.log", key: key, size: 100, mtime: 5), matchedByGlob: true))
        XCTAssertTrue(r.seen(FoundFile(path: "/a.log", key: key, size: 120, mtime: 6), matchedByGlob: true))
        XCTAssertTrue(r.seen(FoundFile(path: "/a.log", key: key, size: 100, mtime: 9), matchedByGlob: true), "rewritten to the same size")
        r.park(cp(9, offset: 100, path: "/a.log"), size: 100, mtime: 5, givenUp: true)
        XCTAssertFalse(r.seen(FoundFile(path: "/a.log.1", key: key, size: 150, mtime: 9), matchedByGlob: false), "given up: only a glob brings it back")
    }

    /// The search finds a file by device + inode under any name in the directories given, and never
    /// a compressed rotation.
    func testSearchFindsARenamedFileByIdentity() throws {
        let d = dir + "/pods/app"
        try FileManager.default.createDirectory(atPath: d, withIntermediateDirectories: true)
        FileManager.default.createFile(atPath: d + "/0.log", contents: Data("x\n".utf8))
        var st = stat()
        XCTAssertEqual(stat(d + "/0.log", &st), 0)
        let key = FileKey(device: UInt64(st.st_dev), inode: UInt64(st.st_ino))
        XCTAssertEqual(rename(d + "/0.log", d + "/0.log.20261201-061500"), 0)
        FileManager.default.createFile(atPath: d + "/0.log", contents: Data())
        XCTAssertEqual(Discovery.search(key, in: [dir + "/nowhere", d])?.path, d + "/0.log.20261201-061500")
        XCTAssertEqual(rename(d + "/0.log.20261201-061500", d + "/0.log.20261201-061500.gz"), 0)
        XCTAssertNil(Discovery.search(key, in: [d]))
        XCTAssertTrue(Discovery(patterns: [], exclude: []).isExcluded(d + "/0.log.1.gz.tmp"))
    }

    /// A checkpoint file of an older version with `held` (a filter's held records per stream) still
    /// loads: it resumes at the lowest held offset, and counts nothing from there on as delivered.
    func testAnOldCheckpointWithHeldResumesAtTheLowestHeldOffset() throws {
        let store = CheckpointStore(dataDirectory: dir + "/data", input: "in")
        try FileManager.default.createDirectory(atPath: dir + "/data/checkpoints", withIntermediateDirectories: true)
        let old = """
            {"files":[{"delivered":900,"dev":1,"fp":42,"fp_len":5,"held":{"stderr":400,"stdout":700,"through_stdout":650},\
            "ino":7,"offset":380,"path":"/logs/a.log"},\
            {"delivered":900,"dev":1,"fp":42,"fp_len":5,"held":{"stdout":300},"ino":8,"offset":300,"path":"/logs/b.log"},\
            {"dev":1,"fp":42,"fp_len":5,"ino":9,"offset":50,"path":"/logs/c.log"}],"version":1}
            """
        XCTAssertTrue(FileManager.default.createFile(atPath: store.path, contents: Data(old.utf8)))
        let files = try store.load().get()
        XCTAssertEqual(files.map(\.offset), [380, 300, 50])
        XCTAssertEqual(files.map(\.delivered), [400, nil, nil], "nothing at or past a held offset counts as delivered")
        // Written back without it.
        try store.save(files)
        let text = String(decoding: try XCTUnwrap(FileManager.default.contents(atPath: store.path)), as: UTF8.self)
        XCTAssertFalse(text.contains("held"), text)
        XCTAssertEqual(try store.load().get(), files)
    }
}
