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
        XCTAssertEqual(r.expire(now: 0).map(\.path), [], "nothing expires at start-up, however old")
        clock.now += 3000
        // here.log is seen by a scan (unchanged since its checkpoint: not reopened when found by a search).
        let here = FoundFile(path: "/here.log", key: FileKey(device: 1, inode: 8), size: 3, mtime: 0)
        XCTAssertFalse(r.seen(here, matchedByGlob: false))
        XCTAssertTrue(r.seen(here, matchedByGlob: true), "a matched file with a checkpoint is followed again")
        clock.now += 601  // 3601 s after start-up
        XCTAssertEqual(r.expire(now: 0).map(\.path), ["/gone.log"])
        XCTAssertNotNil(r.parked[FileKey(device: 1, inode: 8)])
        clock.now += 3601
        XCTAssertEqual(r.expire(now: 0).map(\.path), ["/here.log"])
    }

    /// A parked file a search found gone from its folders is dropped `goneGrace` later (or after the
    /// ttl when shorter); seeing it again cancels that. The ttl rule is unchanged for the rest.
    func testAFileGoneFromItsFoldersIsDroppedAfterTheGrace() {
        let clock = Clock()
        let store = CheckpointStore(dataDirectory: dir + "/data", input: "in")
        let r = CheckpointRegistry(store: store, ttl: 3600, wallClock: { clock.now })
        let (a, b, c) = (FileKey(device: 1, inode: 1), FileKey(device: 1, inode: 2), FileKey(device: 1, inode: 3))
        r.park(cp(1, offset: 5, path: "/a.log"), size: 5, mtime: 1)
        r.park(cp(2, offset: 5, path: "/b.log"), size: 5, mtime: 1)
        r.park(cp(3, offset: 5, path: "/c.log"), size: 5, mtime: 1)
        r.gone(a, now: 100)
        r.gone(b, now: 100)
        r.gone(a, now: 150)  // found gone again: the grace counts from the first time
        XCTAssertFalse(r.seen(FoundFile(path: "/b.log", key: b, size: 5, mtime: 1), matchedByGlob: false))
        XCTAssertEqual(r.expire(now: 159.9).map(\.path), [])
        XCTAssertEqual(r.expire(now: 160).map(\.path), ["/a.log"])
        XCTAssertEqual(r.expire(now: 160).map(\.gone), [])
        XCTAssertNotNil(r.parked[b], "seen again")
        XCTAssertNotNil(r.parked[c], "never found gone")
        r.gone(b, now: 200)
        XCTAssertEqual(r.expire(now: 260).map(\.gone), [true])
        clock.now += 3601
        XCTAssertEqual(r.expire(now: 300).map(\.path), ["/c.log"])
        XCTAssertEqual(r.expire(now: 300).count, 0)

        let short = CheckpointRegistry(store: store, ttl: 5, wallClock: { clock.now })
        short.park(cp(4, offset: 5, path: "/d.log"), size: 5, mtime: 1)
        short.gone(FileKey(device: 1, inode: 4), now: 0)
        XCTAssertEqual(short.expire(now: 5).map(\.path), ["/d.log"], "a ttl under a minute bounds the grace")
    }

    /// A file truncated (copytruncate) while its batches were in flight, then rotated away and
    /// closed with its new content in flight too, has several retired generations. A scan that
    /// finds it must compare its start with the newest: compared with an older one, it looked like
    /// a new file that took the inode, and was read again from 0 (torture seed 99302 run 20: two
    /// lines delivered twice, every time).
    func testARetiredFileIsComparedWithItsNewestGeneration() throws {
        let path = dir + "/0.log.1"
        XCTAssertTrue(FileManager.default.createFile(atPath: path, contents: Data("new content\n".utf8)))
        var st = stat()
        XCTAssertEqual(stat(path, &st), 0)
        let fd = open(path, O_RDONLY)
        let fingerprint = try XCTUnwrap(Fingerprint.hash(fd: fd, length: 11))
        close(fd)
        let r = CheckpointRegistry(store: CheckpointStore(dataDirectory: dir + "/data", input: "in"), ttl: 3600)
        func generation(_ fp: UInt64) -> FileCheckpoint {
            FileCheckpoint(device: UInt64(st.st_dev), inode: UInt64(st.st_ino), fingerprintLength: 11, fingerprint: fp, offset: 0, path: path)
        }
        for id in 1...20 { r.retire(id: id, generation(fingerprint &+ UInt64(id)), size: nil, mtime: nil) }
        r.retire(id: 21, generation(fingerprint), size: nil, mtime: nil)
        XCTAssertTrue(r.isRetired(FileKey(device: UInt64(st.st_dev), inode: UInt64(st.st_ino)), at: path))
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
        guard case .found(let f) = Discovery.search(key, in: [dir + "/nowhere", d]) else { return XCTFail("not found") }
        XCTAssertEqual(f.path, d + "/0.log.20261201-061500")
        XCTAssertEqual(rename(d + "/0.log.20261201-061500", d + "/0.log.20261201-061500.gz"), 0)
        XCTAssertEqual(Discovery.search(key, in: [d]), .gone, "a compressed rotation is not the file")
        XCTAssertTrue(Discovery(patterns: [], exclude: []).isExcluded(d + "/0.log.1.gz.tmp"))
    }

    /// Gone only when every folder was listed without the file or is gone itself (a deleted pod's
    /// folder); a folder that cannot be listed says nothing.
    func testSearchSaysGoneOnlyWhenItKnows() throws {
        let pod = dir + "/pods/ns_pod_1/app"
        try FileManager.default.createDirectory(atPath: pod, withIntermediateDirectories: true)
        let key = FileKey(device: 1, inode: 1)
        XCTAssertEqual(Discovery.search(key, in: [pod]), .gone)
        XCTAssertTrue(FileManager.default.createFile(atPath: dir + "/afile", contents: nil))
        XCTAssertEqual(Discovery.search(key, in: [pod, dir + "/afile"]), .unknown, "ENOTDIR: not listed")
        try FileManager.default.removeItem(atPath: dir + "/pods/ns_pod_1")
        XCTAssertEqual(Discovery.search(key, in: [pod]), .gone, "the pod's folder is gone")
        XCTAssertEqual(Discovery.search(key, in: []), .unknown)
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
