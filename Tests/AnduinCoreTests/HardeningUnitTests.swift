import Foundation
import XCTest
@testable import AnduinCore

/// Issue 13: the small pieces behind safe reloads, secrets and the API.
final class HardeningUnitTests: XCTestCase {
    func testDurationsAreClampedBeforeWaitsAndConversions() {
        XCTAssertEqual(clampedSeconds(.infinity), maximumWaitSeconds)
        XCTAssertEqual(clampedSeconds(1e300), maximumWaitSeconds)
        XCTAssertEqual(clampedSeconds(.nan), 0)
        XCTAssertEqual(clampedSeconds(-5), 0)
        XCTAssertEqual(clampedSeconds(0.25), 0.25)
        XCTAssertEqual(clampedMillis(.infinity), Int(maximumWaitSeconds * 1000))
        XCTAssertEqual(clampedMillis(1.5), 1500)
        // A wait on an infinite duration returns when signalled (no trap building the timespec).
        let lock = ConditionLock()
        let done = Locked(false)
        let t = startThread(name: "waiter") {
            lock.withLock {
                while !done.current { lock.wait(seconds: .infinity) }
            }
        }
        Thread.sleep(forTimeInterval: 0.05)
        lock.withLock {
            done.withLock { $0 = true }
            lock.broadcast()
        }
        XCTAssertTrue(t.join(timeout: 30))
    }

    func testCredentialScrubberRemovesEveryFormOfTheSentCredentials() {
        let s = CredentialScrubber(url: "https://alice:p%40ss-w0rd@es.example:9200/_bulk?x=1",
                                   headers: [("Authorization", "Bearer tok-123456789"), ("X-Key", "key-abcdef"),
                                             ("Content-Type", "application/json")],
                                   basicAuth: ("bob", "hunter2-long"))
        let b64 = Data("bob:hunter2-long".utf8).base64EncodedString()
        let urlB64 = Data("alice:p@ss-w0rd".utf8).base64EncodedString()
        let body = """
            {"auth":"Basic \(b64)","url":"alice:p%40ss-w0rd","plain":"p@ss-w0rd","bearer":"tok-123456789",
             "k":"key-abcdef","pw":"hunter2-long","u":"Basic \(urlB64)","ct":"application/json"}
            """
        let clean = s.scrub(body)
        for secret in [b64, "p%40ss-w0rd", "p@ss-w0rd", "tok-123456789", "key-abcdef", "hunter2-long", urlB64] {
            XCTAssertFalse(clean.contains(secret), "\(secret) left in \(clean)")
        }
        XCTAssertTrue(clean.contains("application/json"), "content type is not a credential")
        XCTAssertEqual(s.scrub(Array("nothing here".utf8)), Array("nothing here".utf8))
        XCTAssertNil(CredentialScrubber.userinfo(of: "http://host/a@b"))
        XCTAssertEqual(CredentialScrubber.userinfo(of: "http://u:p@host/a@b"), "u:p")
    }

    func testConstantTimeEqual() {
        XCTAssertTrue(constantTimeEqual("Bearer abc", "Bearer abc"))
        XCTAssertFalse(constantTimeEqual("Bearer abc", "Bearer abd"))
        XCTAssertFalse(constantTimeEqual("Bearer ab", "Bearer abc"))
        XCTAssertFalse(constantTimeEqual("", "x"))
        XCTAssertTrue(constantTimeEqual("", ""))
    }

    func testLogSafeIsOneEscapedBoundedLine() {
        XCTAssertEqual(ConfigDiagnostic.logSafe("a\nb\u{1B}[2J\u{0}c"), "a\\nb\\u{1b}[2J\\u{0}c")
        XCTAssertEqual(ConfigDiagnostic.logSafe(String(repeating: "x", count: 600)).count, 501)
    }

    func testLoopbackAddresses() {
        for a in ["127.0.0.1:2020", "127.1.2.3:0", "[::1]:2021", "localhost:9"] { XCTAssertTrue(APIOptions.isLoopback(a), a) }
        for a in ["0.0.0.0:2020", ":2020", "10.0.0.5:2020", "[::]:2020"] { XCTAssertFalse(APIOptions.isLoopback(a), a) }
    }

    /// The Kubernetes ConfigMap update: `..data` swapped by rename(2); and an in-place rewrite.
    func testConfigFileWatcherSeesSymlinkSwapsAndRewrites() throws {
        let dir = NSTemporaryDirectory() + "watch-\(UUID().uuidString)"
        try FileManager.default.createDirectory(atPath: dir + "/..v1", withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(atPath: dir) }
        try "a: 1\n".write(toFile: dir + "/..v1/c.yaml", atomically: false, encoding: .utf8)
        XCTAssertEqual(symlink("..v1", dir + "/..data"), 0)
        XCTAssertEqual(symlink("..data/c.yaml", dir + "/c.yaml"), 0)
        let changes = Locked(0)
        let w = ConfigFileWatcher(path: dir + "/c.yaml", interval: 0.05) { changes.withLock { $0 += 1 } }
        w.start()
        defer { w.stop() }
        Thread.sleep(forTimeInterval: 0.3)
        XCTAssertEqual(changes.current, 0, "no change, no reload")

        try FileManager.default.createDirectory(atPath: dir + "/..v2", withIntermediateDirectories: false)
        try "a: 2\n".write(toFile: dir + "/..v2/c.yaml", atomically: false, encoding: .utf8)
        XCTAssertEqual(symlink("..v2", dir + "/..tmp"), 0)
        XCTAssertEqual(rename(dir + "/..tmp", dir + "/..data"), 0)
        XCTAssertTrue(waitUntil { changes.current == 1 })

        try "a: 3\n".write(toFile: dir + "/..v2/c.yaml", atomically: false, encoding: .utf8)
        XCTAssertTrue(waitUntil { changes.current == 2 })
        Thread.sleep(forTimeInterval: 0.3)
        XCTAssertEqual(changes.current, 2, "one reload per change")
    }

    private func waitUntil(_ timeout: Double = 30, _ condition: () -> Bool) -> Bool {
        let end = Date().addingTimeInterval(timeout)
        while Date() < end {
            if condition() { return true }
            Thread.sleep(forTimeInterval: 0.02)
        }
        return condition()
    }
}

/// Crashes found by the fuzz targets (Tests/Fuzz), one test each.
final class FuzzRegressionTests: XCTestCase {
    /// FuzzConfig: `99999999999TiB` trapped converting the byte count to Int.
    func testHugeSizeIsAProblemNotATrap() {
        for text in ["99999999999TiB", "1e400", String(repeating: "9", count: 400), "9223372036854775807"] {
            guard case .failure = ByteSize.parse(text) else { return XCTFail("\(text) accepted") }
        }
        XCTAssertEqual(try ByteSize.parse("1024TiB").get(), 1 << 50)
    }
}

/// Threads carry their stage's name (`top -H`, gdb, /proc), cut to what Linux keeps.
final class ThreadNameTests: XCTestCase {
    func testThreadsAreNamed() throws {
        #if os(Linux)
        let seen = Locked("")
        let h = startThread(name: "out-élan-shipper-9") {
            let comm = (try? String(contentsOfFile: "/proc/thread-self/comm", encoding: .utf8)) ?? ""
            seen.withLock { $0 = comm.trimmingCharacters(in: .whitespacesAndNewlines) }
        }
        XCTAssertTrue(h.join(timeout: 5))
        XCTAssertEqual(seen.withLock { $0 }, "out-élan-shipp")
        XCTAssertEqual(threadName("out-élan-shipper-9").utf8.count, 15)
        XCTAssertEqual(threadName("日本語日本語"), "日本語日本")  // 3 bytes each: 5 fit
        XCTAssertEqual(threadName("buf-o0"), "buf-o0")
        #endif
    }
}

/// The descriptor headroom the tail keeps for the rest of the agent is read from /proc.
final class ProcessDescriptorsTests: XCTestCase {
    func testFreeDescriptorsCountOpenFiles() throws {
        let before = try XCTUnwrap(ProcessDescriptors.free())
        let fds = (0..<5).map { _ in open("/dev/null", O_RDONLY) }
        defer { for fd in fds { close(fd) } }
        let after = try XCTUnwrap(ProcessDescriptors.free())
        // Other threads of the test process may open or close descriptors meanwhile.
        XCTAssertLessThanOrEqual(after, before - 3)
        XCTAssertGreaterThan(after, 0)
    }
}
