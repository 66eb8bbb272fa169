import XCTest
import Foundation
import AnduinCore

/// A Python http.server on 127.0.0.1:0, one per test class run. It echoes requests as JSON
/// (gunzipping Content-Encoding: gzip bodies), numbers accepted connections, and exits when
/// its stdin closes, so it never outlives the test process.
private final class TestHTTPServer: @unchecked Sendable {
    static let script = #"""
import sys, os, json, gzip, base64, threading, time
from http.server import ThreadingHTTPServer, BaseHTTPRequestHandler

lock = threading.Lock()
accepted = 0

class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def setup(self):
        global accepted
        with lock:
            accepted += 1
            self.conn_id = accepted
        super().setup()

    def log_message(self, *args):
        pass

    def reply(self, status, payload, ctype="application/json", extra=()):
        self.send_response(status)
        self.send_header("Content-Type", ctype)
        self.send_header("Content-Length", str(len(payload)))
        for k, v in extra:
            self.send_header(k, v)
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(payload)

    def handle_any(self):
        n = int(self.headers.get("Content-Length") or 0)
        raw = self.rfile.read(n) if n else b""
        path = self.path.split("?")[0]
        if path == "/hang":
            time.sleep(30)
            self.close_connection = True
            return
        if path == "/stats":
            with lock:
                count = accepted
            return self.reply(200, json.dumps({"connections": count}).encode())
        if path.startswith("/status/"):
            return self.reply(int(path[8:]), b"status body", "text/plain", [("X-Test", "Yes")])
        body = gzip.decompress(raw) if self.headers.get("Content-Encoding") == "gzip" else raw
        echo = {"method": self.command, "path": self.path, "conn": self.conn_id,
                "headers": {k.lower(): v for k, v in self.headers.items()},
                "body": base64.b64encode(body).decode(), "raw_len": len(raw)}
        self.reply(200, json.dumps(echo).encode())

    do_GET = do_POST = do_PUT = do_PATCH = do_DELETE = do_HEAD = handle_any

def watchdog():
    sys.stdin.buffer.read()
    os._exit(0)

server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
server.daemon_threads = True
threading.Thread(target=watchdog, daemon=True).start()
print(server.server_address[1], flush=True)
server.serve_forever()
"""#

    let process: Process
    let stdin: Pipe
    let port: Int
    var base: String { "http://127.0.0.1:\(port)" }

    private init(process: Process, stdin: Pipe, port: Int) {
        self.process = process
        self.stdin = stdin
        self.port = port
    }

    static func start() throws -> TestHTTPServer {
        let path = FileManager.default.temporaryDirectory
            .appendingPathComponent("anduin-http-test-\(getpid())-\(UInt32.random(in: 0...UInt32.max)).py")
        try Data(script.utf8).write(to: path)
        defer { try? FileManager.default.removeItem(at: path) }
        let p = Process()
        p.executableURL = URL(fileURLWithPath: "/usr/bin/env")
        p.arguments = ["python3", path.path]
        let inPipe = Pipe(), outPipe = Pipe()
        p.standardInput = inPipe
        p.standardOutput = outPipe
        p.standardError = FileHandle.nullDevice
        try p.run()
        // The port line; EOF first means python3 is missing or failed.
        var line = Data()
        while !line.contains(0x0A) {
            let chunk = outPipe.fileHandleForReading.availableData
            if chunk.isEmpty { break }
            line.append(chunk)
        }
        guard let text = String(data: line, encoding: .utf8),
              let port = Int(text.trimmingCharacters(in: .whitespacesAndNewlines)) else {
            p.terminate()
            XCTFail("could not start the python3 test server (python3 is needed for these tests)")
            throw HTTPClientError.setup(detail: "no test server")
        }
        return TestHTTPServer(process: p, stdin: inPipe, port: port)
    }

    func stop() {
        try? stdin.fileHandleForWriting.close()
        process.terminate()
        process.waitUntilExit()
    }
}

private let serverBox = Locked<TestHTTPServer?>(nil)

final class HTTPClientTests: XCTestCase {
    override class func tearDown() {
        serverBox.withLock { s in
            s?.stop()
            s = nil
        }
        super.tearDown()
    }

    private func server() throws -> TestHTTPServer {
        try serverBox.withLock { s in
            if let s { return s }
            let started = try TestHTTPServer.start()
            s = started
            return started
        }
    }

    private func client(timeout: Double = 10) throws -> HTTPClient {
        var o = HTTPClientOptions()
        o.requestTimeout = timeout
        o.connectTimeout = min(5, timeout)
        o.proxy = "" // ignore any http_proxy in the test environment
        return try HTTPClient(options: o)
    }

    private func json(_ r: HTTPResponse) throws -> [String: Any] {
        let obj = try JSONSerialization.jsonObject(with: Data(r.body))
        return try XCTUnwrap(obj as? [String: Any], String(decoding: r.body, as: UTF8.self))
    }

    private func echoedBody(_ echo: [String: Any]) throws -> [UInt8] {
        let b64 = try XCTUnwrap(echo["body"] as? String)
        return Array(try XCTUnwrap(Data(base64Encoded: b64)))
    }

    /// A port nothing listens on: bound by us, then closed.
    private func closedPort() throws -> Int {
        let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
        XCTAssertGreaterThanOrEqual(fd, 0)
        defer { close(fd) }
        var addr = sockaddr_in()
        addr.sin_family = sa_family_t(AF_INET)
        addr.sin_addr.s_addr = inet_addr("127.0.0.1")
        addr.sin_port = 0
        var len = socklen_t(MemoryLayout<sockaddr_in>.size)
        let ok = withUnsafeMutablePointer(to: &addr) { p in
            p.withMemoryRebound(to: sockaddr.self, capacity: 1) {
                bind(fd, $0, len) == 0 && getsockname(fd, $0, &len) == 0
            }
        }
        XCTAssertTrue(ok)
        return Int(UInt16(bigEndian: addr.sin_port))
    }

    func testPostBodyAndHeadersArrive() throws {
        let srv = try server()
        let c = try client()
        let body = Array("{\"msg\":\"hello\"}\n".utf8)
        let r = try c.send(method: "POST", url: srv.base + "/ingest?x=1",
                           headers: [("Content-Type", "application/json"), ("X-Custom", "abc"), ("X-Empty", "")],
                           body: body)
        XCTAssertEqual(r.status, 200)
        XCTAssertEqual(r.header("Content-Type"), "application/json")
        XCTAssertTrue(r.headers.allSatisfy { $0.0 == $0.0.lowercased() }, "names lowercased")
        let echo = try json(r)
        XCTAssertEqual(echo["method"] as? String, "POST")
        XCTAssertEqual(echo["path"] as? String, "/ingest?x=1")
        XCTAssertEqual(try echoedBody(echo), body)
        let h = try XCTUnwrap(echo["headers"] as? [String: String])
        XCTAssertEqual(h["content-type"], "application/json")
        XCTAssertEqual(h["x-custom"], "abc")
        XCTAssertEqual(h["x-empty"], "")
        XCTAssertEqual(h["content-length"], String(body.count))
        XCTAssertNil(h["expect"], "no 100-continue round trip")
        XCTAssertNil(h["authorization"])
    }

    func testGzipBodyDecodesServerSide() throws {
        let srv = try server()
        let c = try client()
        var original: [UInt8] = []
        for i in 0..<20_000 { original += Array("{\"seq\":\(i),\"msg\":\"line\"}\n".utf8) }
        var enc = try GzipEncoder(level: 6)
        var gz: [UInt8] = []
        try enc.compress(original, into: &gz)
        let r = try gz.withUnsafeBytes { b in
            try c.send(method: "POST", url: srv.base + "/gz",
                       headers: [("Content-Encoding", "gzip"), ("Content-Type", "application/x-ndjson")],
                       body: b, basicAuth: nil)
        }
        XCTAssertEqual(r.status, 200)
        let echo = try json(r)
        XCTAssertEqual(echo["raw_len"] as? Int, gz.count)
        XCTAssertEqual(try echoedBody(echo), original)
    }

    func testStatusCodesAreResponses() throws {
        let srv = try server()
        let c = try client()
        for code in [200, 429, 500, 503, 404] {
            let r = try c.send(method: "POST", url: srv.base + "/status/\(code)", body: Array("x".utf8))
            XCTAssertEqual(r.status, code)
            XCTAssertEqual(r.body, Array("status body".utf8))
            XCTAssertEqual(r.header("x-test"), "Yes")
        }
    }

    func testMethods() throws {
        let srv = try server()
        let c = try client()
        let put = try c.send(method: "PUT", url: srv.base + "/doc", body: Array("put-body".utf8))
        let echo = try json(put)
        XCTAssertEqual(echo["method"] as? String, "PUT")
        XCTAssertEqual(try echoedBody(echo), Array("put-body".utf8))

        // Method-related options must not leak from one request to the next on the same handle.
        let get = try json(try c.send(method: "GET", url: srv.base + "/g"))
        XCTAssertEqual(get["method"] as? String, "GET")
        let head = try c.send(method: "HEAD", url: srv.base + "/h")
        XCTAssertEqual(head.status, 200)
        XCTAssertTrue(head.body.isEmpty)
        let post = try json(try c.send(method: "POST", url: srv.base + "/p"))
        XCTAssertEqual(post["method"] as? String, "POST")
        XCTAssertEqual(try echoedBody(post), [])
        XCTAssertEqual((post["headers"] as? [String: String])?["content-length"], "0")
    }

    func testBasicAuth() throws {
        let srv = try server()
        let c = try client()
        let r = try c.send(method: "POST", url: srv.base + "/auth", body: Array("b".utf8),
                           basicAuth: ("elastic", "s3cr3t:pw"))
        let h = try XCTUnwrap(try json(r)["headers"] as? [String: String])
        XCTAssertEqual(h["authorization"], "Basic " + Data("elastic:s3cr3t:pw".utf8).base64EncodedString())
        // Credentials must not stick to the handle.
        let r2 = try c.send(method: "POST", url: srv.base + "/noauth", body: Array("b".utf8))
        XCTAssertNil((try json(r2)["headers"] as? [String: String])?["authorization"])
    }

    func testSecretsNeverInErrors() throws {
        let port = try closedPort()
        let c = try client()
        let url = "http://user:urlpass@127.0.0.1:\(port)/bulk?api_key=querysecret&x=1"
        XCTAssertThrowsError(try c.send(method: "POST", url: url, body: [1, 2, 3],
                                        basicAuth: ("user", "authpass"))) { e in
            let text = "\(e)"
            for secret in ["urlpass", "querysecret", "authpass"] {
                XCTAssertFalse(text.contains(secret), "secret in: \(text)")
            }
            XCTAssertTrue(text.contains("127.0.0.1:\(port)/bulk"), text)
        }
        XCTAssertThrowsError(try c.send(method: "POST", url: "http://127.0.0.1:\(port)/",
                                        headers: [("X-Api-Key", "hdrsecret\r\nInjected: 1")])) { e in
            guard case HTTPClientError.invalidRequest = e else { return XCTFail("\(e)") }
            XCTAssertFalse("\(e)".contains("hdrsecret"))
        }
        XCTAssertEqual(HTTPClient.redactedURL("https://u:p@es.example:9200/_bulk?api_key=abc&pretty#f"),
                       "https://es.example:9200/_bulk?api_key=***&pretty")
        XCTAssertEqual(HTTPClient.redactedURL("http://host/path"), "http://host/path")
    }

    func testConnectionReuse() throws {
        let srv = try server()
        let probe = try client()
        let c = try client()
        func accepted() throws -> Int {
            try XCTUnwrap(try json(try probe.send(method: "GET", url: srv.base + "/stats"))["connections"] as? Int)
        }
        let before = try accepted()
        var ids = Set<Int>()
        for i in 0..<5 {
            let r = try c.send(method: "POST", url: srv.base + "/reuse", body: Array("req \(i)".utf8))
            ids.insert(try XCTUnwrap(try json(r)["conn"] as? Int))
        }
        let after = try accepted()
        XCTAssertEqual(ids.count, 1, "all requests on one connection")
        XCTAssertEqual(after - before, 1, "server accepted exactly one connection for 5 requests")
    }

    func testTimeoutWhenServerNeverAnswers() throws {
        let srv = try server()
        let c = try client(timeout: 1)
        let start = Date()
        XCTAssertThrowsError(try c.send(method: "POST", url: srv.base + "/hang", body: Array("x".utf8))) { e in
            guard case HTTPClientError.timeout(_, let seconds) = e else { return XCTFail("\(e)") }
            XCTAssertEqual(seconds, 1)
        }
        let elapsed = Date().timeIntervalSince(start)
        XCTAssertGreaterThan(elapsed, 0.8)
        XCTAssertLessThan(elapsed, 5, "timed out late")
        // The client recovers on a fresh connection.
        XCTAssertEqual(try c.send(method: "GET", url: srv.base + "/status/200").status, 200)
    }

    /// Issue 24 (9): a request the server never answers ends as soon as `shouldAbort` says so, long
    /// before the request timeout; the client then works again, and the same client without
    /// `shouldAbort` is not affected by the last one.
    func testShouldAbortEndsARequestTheServerNeverAnswers() throws {
        let srv = try server()
        let c = try client(timeout: 60)
        let start = Date()
        let body: [UInt8] = Array("x".utf8)
        XCTAssertThrowsError(try body.withUnsafeBytes { b in
            try c.send(method: "POST", url: srv.base + "/hang", headers: [], body: b, basicAuth: nil,
                       shouldAbort: { Date().timeIntervalSince(start) > 0.5 })
        }) { e in
            guard case HTTPClientError.aborted(let url) = e else { return XCTFail("\(e)") }
            XCTAssertEqual(url, srv.base + "/hang")
        }
        let elapsed = Date().timeIntervalSince(start)
        XCTAssertGreaterThan(elapsed, 0.4)
        XCTAssertLessThan(elapsed, 5, "aborted late")
        XCTAssertEqual(try c.send(method: "GET", url: srv.base + "/status/200").status, 200)
        let never = try body.withUnsafeBytes { b in
            try c.send(method: "POST", url: srv.base + "/status/201", headers: [], body: b, basicAuth: nil, shouldAbort: { false })
        }
        XCTAssertEqual(never.status, 201)
    }

    func testConnectionRefused() throws {
        let port = try closedPort()
        let c = try client()
        XCTAssertThrowsError(try c.send(method: "POST", url: "http://127.0.0.1:\(port)/x", body: [1])) { e in
            guard case HTTPClientError.connect(let url, let detail) = e else { return XCTFail("\(e)") }
            XCTAssertEqual(url, "http://127.0.0.1:\(port)/x")
            XCTAssertFalse(detail.isEmpty)
        }
    }

    /// Out of descriptors, curl says only "Couldn't connect"; the error names the agent's limit.
    func testOutOfDescriptorsIsNotBlamedOnTheDestination() throws {
        let port = try closedPort()
        let c = try client()
        var held: [Int32] = []
        defer { for fd in held { close(fd) } }
        // Every free descriptor taken (bounded: the soft limit can be high).
        while held.count < 1 << 20 {
            let fd = dup(0)
            if fd < 0 { break }
            held.append(fd)
        }
        XCTAssertThrowsError(try c.send(method: "POST", url: "http://127.0.0.1:\(port)/x", body: [1])) { e in
            XCTAssertTrue("\(e)".contains("out of file descriptors (EMFILE)"), "\(e)")
        }
    }

    func testTLSFailures() throws {
        let srv = try server()
        let c = try client()
        // TLS handshake against a plain-HTTP port fails in the TLS layer.
        XCTAssertThrowsError(try c.send(method: "POST", url: "https://127.0.0.1:\(srv.port)/", body: [1])) { e in
            guard case HTTPClientError.tls = e else { return XCTFail("\(e)") }
        }
        var o = HTTPClientOptions()
        o.tls.caFile = "/nonexistent/ca.pem"
        XCTAssertThrowsError(try HTTPClient(options: o)) { e in
            guard case HTTPClientError.setup(let detail) = e else { return XCTFail("\(e)") }
            XCTAssertTrue(detail.contains("/nonexistent/ca.pem"), detail)
        }
    }

    func testInvalidRequests() throws {
        let c = try client()
        for (method, url) in [("POST", "ftp://127.0.0.1/x"), ("BAD METHOD", "http://127.0.0.1/"), ("", "http://127.0.0.1/")] {
            XCTAssertThrowsError(try c.send(method: method, url: url)) { e in
                guard case HTTPClientError.invalidRequest = e else { return XCTFail("\(e)") }
            }
        }
        XCTAssertThrowsError(try c.send(method: "GET", url: "http://127.0.0.1/", body: [1]))
    }
}
