import AnduinCore
import Foundation
import XCTest

@testable import filter_kubernetes

/// `HTTPClient.stream` and the watcher against Tests/IntegrationTests/Peers/kube_apiserver.py.
final class KubernetesWatchTests: XCTestCase {
    private var server: Process?
    private var stdin: Pipe?
    private var port = 0
    private var controlPort = 0
    private var tokenFile = ""

    override func setUpWithError() throws {
        let script = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
            .appendingPathComponent("IntegrationTests/Peers/kube_apiserver.py").path
        tokenFile = NSTemporaryDirectory() + "k8s-watch-token-\(UUID().uuidString)"
        try "secret".write(toFile: tokenFile, atomically: true, encoding: .utf8)
        let p = Process()
        p.executableURL = URL(fileURLWithPath: "/usr/bin/env")
        p.arguments = ["python3", script, "--token-file", tokenFile]
        let input = Pipe(), output = Pipe()
        p.standardInput = input
        p.standardOutput = output
        try p.run()
        server = p
        stdin = input
        // The first line says where it listens.
        var line = Data()
        while true {
            let d = output.fileHandleForReading.readData(ofLength: 1)
            if d.isEmpty || d == Data([0x0A]) { break }
            line.append(d)
        }
        let ready = try XCTUnwrap(try JSONSerialization.jsonObject(with: line) as? [String: Any])
        port = try XCTUnwrap(ready["port"] as? Int)
        controlPort = try XCTUnwrap(ready["control_port"] as? Int)
    }

    override func tearDown() {
        try? stdin?.fileHandleForWriting.close()
        if let server {
            let deadline = Date().addingTimeInterval(5)
            while server.isRunning && Date() < deadline { usleep(20_000) }
            if server.isRunning { server.terminate() }
        }
        try? FileManager.default.removeItem(atPath: tokenFile)
        super.tearDown()
    }

    private func client(timeout: Double = 10) throws -> HTTPClient {
        var o = HTTPClientOptions()
        o.connectTimeout = 5
        o.requestTimeout = timeout
        return try HTTPClient(options: o)
    }

    private var auth: [(String, String)] { [("Authorization", "Bearer secret")] }

    private func watchURL(_ seconds: Int, rv: String = "1000") -> String {
        "http://127.0.0.1:\(port)/api/v1/pods?watch=true&resourceVersion=\(rv)&allowWatchBookmarks=true&timeoutSeconds=\(seconds)"
    }

    private func control(_ action: String, _ body: String) throws {
        let c = try client()
        let r = try c.send(method: "POST", url: "http://127.0.0.1:\(controlPort)/_control/\(action)",
                           headers: [("Content-Type", "application/json")], body: Array(body.utf8))
        XCTAssertEqual(r.status, 200, String(decoding: r.body, as: UTF8.self))
    }

    func testStreamDeliversEventsAndEndsWithTheServer() throws {
        try control("pods", #"{"name":"a","namespace":"n"}"#)
        let c = try client()
        var body: [UInt8] = []
        var headerStatus = 0
        let r = try c.stream(url: watchURL(1), headers: auth, timeout: 10, onHeaders: { headerStatus = $0 }) { status, chunk in
            XCTAssertEqual(status, 200)
            body.append(contentsOf: chunk)
            return true
        }
        XCTAssertEqual(r.status, 200)
        XCTAssertEqual(r.end, .complete)
        XCTAssertEqual(headerStatus, 200)
        let text = String(decoding: body, as: UTF8.self)
        XCTAssertTrue(text.hasPrefix(#"{"type": "ADDED""#), text)
        XCTAssertTrue(text.hasSuffix("\n"))
        // The handle is back to normal requests afterwards (sink, timeout, no progress callback).
        let list = try c.send(method: "GET", url: "http://127.0.0.1:\(port)/api/v1/pods", headers: auth)
        XCTAssertEqual(list.status, 200)
        XCTAssertTrue(String(decoding: list.body, as: UTF8.self).contains("PodList"))
    }

    func testStreamStopsWhenTheCallerSaysSo() throws {
        try control("pods", #"{"name":"a","namespace":"n"}"#)
        let c = try client()
        let r = try c.stream(url: watchURL(30), headers: auth, timeout: 60) { _, _ in false }
        XCTAssertEqual(r.end, .stoppedByCaller)
    }

    func testStreamAbortsWhileIdle() throws {
        let c = try client()
        let t0 = monotonicSeconds()
        let r = try c.stream(url: watchURL(30), headers: auth, timeout: 60,
                             shouldAbort: { monotonicSeconds() - t0 > 0.3 }) { _, _ in true }
        XCTAssertEqual(r.end, .aborted)
        XCTAssertLessThan(monotonicSeconds() - t0, 5, "polled about once a second while no data flows")
    }

    func testStreamTimeoutAndErrorStatus() throws {
        let c = try client()
        XCTAssertThrowsError(try c.stream(url: watchURL(30), headers: auth, timeout: 1) { _, _ in true }) { e in
            guard case HTTPClientError.timeout(_, let s)? = e as? HTTPClientError else { return XCTFail("\(e)") }
            XCTAssertEqual(s, 1)
        }
        var body: [UInt8] = []
        let r = try c.stream(url: watchURL(30), headers: [("Authorization", "Bearer wrong")], timeout: 10) { status, chunk in
            XCTAssertEqual(status, 401)
            body.append(contentsOf: chunk)
            return true
        }
        XCTAssertEqual(r.status, 401)
        XCTAssertTrue(String(decoding: body, as: UTF8.self).contains("Unauthorized"))
        XCTAssertThrowsError(try c.stream(method: "POST", url: watchURL(1), timeout: 1) { _, _ in true })
    }

    func testWatcherFillsTheCacheAndStopsPromptly() throws {
        try control("pods", #"{"pods":[{"name":"web-1","namespace":"shop","labels":{"v":"1"}},{"name":"elsewhere","namespace":"shop","node":"node-b"}]}"#)
        let cache = KubernetesCache(apiEnabled: true, deleteGrace: 60, waitForPod: 0, options: .init(), rules: .init(), podsGauge: nil)
        let stats = ComponentStats(component: "k8s", kind: .filter)
        let counters = KubernetesWatcher.Counters(apiRequests: stats.counter("api_requests", ""),
                                                  reconnects: stats.counter("watch_reconnects", ""),
                                                  relists: stats.counter("watch_relists", ""))
        let w = try KubernetesWatcher(resource: .pods(node: "node-a"),
                                      endpoint: KubeEndpoint(server: "http://127.0.0.1:\(port)/", token: .file(tokenFile)),
                                      cache: cache, logger: .init(label: "test"), counters: counters,
                                      settings: .init(), clientOptions: HTTPClientOptions(), drivesState: true)
        w.start()
        let deadline = monotonicSeconds() + 30
        while cache.currentState != .synced && monotonicSeconds() < deadline { usleep(20_000) }
        XCTAssertEqual(cache.currentState, .synced)
        XCTAssertEqual(cache.podCount, 1, "only this node's pods")
        try control("pods", #"{"name":"web-2","namespace":"shop"}"#)
        while cache.podCount < 2 && monotonicSeconds() < deadline { usleep(20_000) }
        XCTAssertEqual(cache.podCount, 2, "the watch added it")
        let t0 = monotonicSeconds()
        w.stop(wait: 10)
        XCTAssertLessThan(monotonicSeconds() - t0, 5, "an idle watch ends within about a second of stop")
        XCTAssertEqual(counters.apiRequests.current, 2)
    }
}
