// Real servers the integration tests talk to, on 127.0.0.1, started and stopped by the tests.

import Foundation
#if canImport(FoundationNetworking)
import FoundationNetworking
#endif
import XCTest

/// The package root (for peers shipped in the repo and the test venv made by `make test`).
let packageRoot = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
    .deletingLastPathComponent().deletingLastPathComponent()

/// A child process that prints one JSON line when ready and exits when its stdin closes.
final class PeerProcess {
    let process = Process()
    private let stdin = Pipe()
    private let stdout = Pipe()
    let ready: [String: Any]

    init(executable: String, arguments: [String], timeout: Double = 30) throws {
        process.executableURL = URL(fileURLWithPath: executable)
        process.arguments = arguments
        process.standardInput = stdin
        process.standardOutput = stdout
        process.standardError = FileHandle.standardError
        try process.run()
        // Read the first line (the ready message) with a deadline.
        let handle = stdout.fileHandleForReading
        let box = ReadyBox()
        let reader = Thread {
            var line = Data()
            while true {
                let d = handle.readData(ofLength: 1)
                if d.isEmpty || d == Data([0x0A]) { break }
                line.append(d)
            }
            box.set(line)
        }
        reader.start()
        guard poll(timeout: timeout, interval: 0.02, { box.get() != nil }),
              let data = box.get(),
              let json = try? JSONSerialization.jsonObject(with: data) as? [String: Any] else {
            process.terminate()
            throw PeerError("\(executable) did not start within \(timeout)s")
        }
        ready = json
    }

    func stop() {
        try? stdin.fileHandleForWriting.close()
        if !poll(timeout: 5, interval: 0.05, { !process.isRunning }) {
            process.terminate()
            _ = poll(timeout: 5, interval: 0.05) { !process.isRunning }
        }
    }

    deinit { if process.isRunning { process.terminate() } }
}

private final class ReadyBox: @unchecked Sendable {
    private let lock = NSLock()
    private var value: Data?
    func set(_ d: Data) { lock.lock(); value = d; lock.unlock() }
    func get() -> Data? { lock.lock(); defer { lock.unlock() }; return value }
}

struct PeerError: Error, CustomStringConvertible {
    let description: String
    init(_ d: String) { description = d }
}

/// Tests/IntegrationTests/Peers/receiver.py: an HTTP endpoint that records what it gets and answers
/// as scripted (200, 429, 500, 400, or hang).
final class ReceiverPeer {
    let peer: PeerProcess
    let port: Int
    var url: String { "http://127.0.0.1:\(port)/ingest" }

    /// `port`: reuse a port (to bring a receiver "back up" where the agent expects it); 0 picks one.
    init(port: Int = 0) throws {
        let script = packageRoot.appendingPathComponent("Tests/IntegrationTests/Peers/receiver.py").path
        peer = try PeerProcess(executable: "/usr/bin/env", arguments: ["python3", script, String(port)])
        guard let p = peer.ready["port"] as? Int else { throw PeerError("receiver.py gave no port") }
        self.port = p
    }

    func stop() { peer.stop() }

    /// Scripted answers for the next deliveries, then `then` for the rest.
    func script(_ responses: [String], then: String = "200", hangSeconds: Double = 30) throws {
        _ = try request("POST", "/_control/script",
                        body: ["responses": responses, "then": then, "hang_seconds": hangSeconds])
    }

    struct Snapshot {
        var records: [[String: Any]]
        var requests: Int
        var gzipRequests: Int
        var auth: [String]
        var contentTypes: [String]
        /// Per kept delivery: its records and its body's bytes (gunzipped).
        var batches: [(records: Int, bytes: Int)]
        /// When each delivery arrived (the receiver's monotonic seconds).
        var requestTimes: [Double]
    }

    func snapshot() throws -> Snapshot {
        let j = try request("GET", "/_control/records", body: nil)
        return Snapshot(records: j["records"] as? [[String: Any]] ?? [], requests: j["requests"] as? Int ?? 0,
                        gzipRequests: j["gzip_requests"] as? Int ?? 0, auth: j["auth"] as? [String] ?? [],
                        contentTypes: j["content_types"] as? [String] ?? [],
                        batches: (j["batches"] as? [[Int]] ?? []).map { ($0.first ?? 0, $0.last ?? 0) },
                        requestTimes: j["request_times"] as? [Double] ?? [])
    }

    private func request(_ method: String, _ path: String, body: [String: Any]?) throws -> [String: Any] {
        try httpJSON(method, "http://127.0.0.1:\(port)\(path)", body: body)
    }
}

/// osmem-server (PyPI, installed in .venv-test by `make test`): an in-memory OpenSearch-compatible
/// server with `_bulk` per-item errors, gzip bodies, `_count` and `_search`.
final class OsmemPeer {
    let peer: PeerProcess
    let url: String

    static func binary() throws -> String {
        if let p = ProcessInfo.processInfo.environment["OSMEM_SERVER_BIN"] { return p }
        let lib = packageRoot.appendingPathComponent(".venv-test/lib")
        for py in (try? FileManager.default.contentsOfDirectory(atPath: lib.path)) ?? [] {
            let p = lib.appendingPathComponent(py).appendingPathComponent("site-packages/osmem_server/bin/osmem-server").path
            if FileManager.default.isExecutableFile(atPath: p) { return p }
        }
        throw PeerError("osmem-server not found: run the tests with `make test` (it installs it in .venv-test) or set OSMEM_SERVER_BIN")
    }

    init() throws {
        peer = try PeerProcess(executable: try OsmemPeer.binary(), arguments: ["--no-ja"])
        guard let u = peer.ready["url"] as? String else { throw PeerError("osmem-server gave no url") }
        url = u
    }

    func stop() { peer.stop() }

    /// `_count` of an index pattern (refreshing first so the count is current).
    func count(_ index: String) throws -> Int {
        _ = try? httpJSON("POST", "\(url)/\(index)/_refresh", body: nil)
        let j = try httpJSON("GET", "\(url)/\(index)/_count", body: nil)
        return j["count"] as? Int ?? -1
    }

    /// Every document's `_id` and `_source` (up to `size`).
    func search(_ index: String, size: Int = 10_000) throws -> [(id: String, source: [String: Any])] {
        _ = try? httpJSON("POST", "\(url)/\(index)/_refresh", body: nil)
        let j = try httpJSON("POST", "\(url)/\(index)/_search", body: ["size": size, "query": ["match_all": [:] as [String: Any]]])
        let hits = (j["hits"] as? [String: Any])?["hits"] as? [[String: Any]] ?? []
        return hits.map { ($0["_id"] as? String ?? "", $0["_source"] as? [String: Any] ?? [:]) }
    }

    func put(_ path: String, _ body: [String: Any]) throws -> [String: Any] {
        try httpJSON("PUT", "\(url)\(path)", body: body)
    }
}

/// A small synchronous JSON request for test control traffic (not the agent's path).
func httpJSON(_ method: String, _ url: String, body: [String: Any]?, timeout: Double = 30) throws -> [String: Any] {
    guard let u = URL(string: url) else { throw PeerError("bad url \(url)") }
    var req = URLRequest(url: u, timeoutInterval: timeout)
    req.httpMethod = method
    if let body {
        req.httpBody = try JSONSerialization.data(withJSONObject: body)
        req.setValue("application/json", forHTTPHeaderField: "Content-Type")
    }
    let result = ResultBox()
    let done = DispatchSemaphore(value: 0)
    URLSession.shared.dataTask(with: req) { data, _, error in
        result.set(data, error)
        done.signal()
    }.resume()
    guard done.wait(timeout: .now() + timeout + 5) == .success else { throw PeerError("\(method) \(url): no answer") }
    let (data, error) = result.get()
    if let error { throw PeerError("\(method) \(url): \(error)") }
    guard let data, !data.isEmpty else { return [:] }
    return (try? JSONSerialization.jsonObject(with: data) as? [String: Any]) ?? [:]
}

private final class ResultBox: @unchecked Sendable {
    private let lock = NSLock()
    private var data: Data?
    private var error: Error?
    func set(_ d: Data?, _ e: Error?) { lock.lock(); data = d; error = e; lock.unlock() }
    func get() -> (Data?, Error?) { lock.lock(); defer { lock.unlock() }; return (data, error) }
}
