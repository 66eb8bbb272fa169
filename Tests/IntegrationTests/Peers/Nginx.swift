// nginx (Debian `nginx-light`, /usr/sbin/nginx) as a test peer: TLS termination, basic auth and
// header rewriting in front of osmem-server or receiver.py. Also the test PKI (openssl) and the
// config/record helpers the network-output tests share.

import Foundation
import XCTest
#if canImport(Glibc)
import Glibc
#endif

// MARK: - running tools

/// Runs `executable` with `arguments`, waits, and returns its standard output; throws with its
/// output when it exits non-zero.
@discardableResult
func runTool(_ executable: String, _ arguments: [String], timeout: Double = 60) throws -> String {
    let p = Process()
    p.executableURL = URL(fileURLWithPath: executable)
    p.arguments = arguments
    let out = Pipe()
    p.standardOutput = out
    p.standardError = out
    p.standardInput = FileHandle.nullDevice
    try p.run()
    let data = out.fileHandleForReading.readDataToEndOfFile()
    guard poll(timeout: timeout, interval: 0.02, { !p.isRunning }) else {
        p.terminate()
        throw PeerError("\(executable) \(arguments.joined(separator: " ")): still running after \(timeout)s")
    }
    let text = String(decoding: data, as: UTF8.self)
    guard p.terminationStatus == 0 else {
        throw PeerError("\(executable) \(arguments.joined(separator: " ")) exited \(p.terminationStatus): \(text.suffix(2000))")
    }
    return text
}

// MARK: - ports

/// A TCP port that was free a moment ago (bind to port 0, read it, close). Whoever binds it next
/// may lose a race: callers retry on a bind failure.
func freeTCPPort() -> Int {
    for _ in 0..<20 {
        let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
        guard fd >= 0 else { continue }
        defer { close(fd) }
        var addr = sockaddr_in()
        addr.sin_family = sa_family_t(AF_INET)
        addr.sin_port = 0
        addr.sin_addr.s_addr = inet_addr("127.0.0.1")
        let bound = withUnsafePointer(to: &addr) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { bind(fd, $0, socklen_t(MemoryLayout<sockaddr_in>.size)) }
        }
        guard bound == 0 else { continue }
        var len = socklen_t(MemoryLayout<sockaddr_in>.size)
        let named = withUnsafeMutablePointer(to: &addr) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { getsockname(fd, $0, &len) }
        }
        if named == 0 { return Int(UInt16(bigEndian: addr.sin_port)) }
    }
    return 0
}

/// Whether something accepts TCP connections on 127.0.0.1:`port`.
func canConnect(port: Int) -> Bool {
    let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
    guard fd >= 0 else { return false }
    defer { close(fd) }
    var addr = sockaddr_in()
    addr.sin_family = sa_family_t(AF_INET)
    addr.sin_port = in_port_t(UInt16(port).bigEndian)
    addr.sin_addr.s_addr = inet_addr("127.0.0.1")
    return withUnsafePointer(to: &addr) {
        $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { connect(fd, $0, socklen_t(MemoryLayout<sockaddr_in>.size)) }
    } == 0
}

// MARK: - test PKI

/// A throw-away CA and a server certificate for IP 127.0.0.1 signed by it (PEM files in `dir`).
struct TestPKI {
    let caFile: String
    let certFile: String
    let keyFile: String

    init(in dir: String) throws {
        try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
        let ssl = "/usr/bin/openssl"
        caFile = dir + "/ca.pem"
        certFile = dir + "/server.pem"
        keyFile = dir + "/server.key"
        try runTool(ssl, ["req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", dir + "/ca.key", "-out", caFile,
                          "-days", "2", "-subj", "/CN=Anduin Test CA",
                          "-addext", "basicConstraints=critical,CA:TRUE", "-addext", "keyUsage=critical,keyCertSign,cRLSign"])
        try runTool(ssl, ["req", "-newkey", "rsa:2048", "-nodes", "-keyout", keyFile, "-out", dir + "/server.csr",
                          "-subj", "/CN=127.0.0.1"])
        try "subjectAltName=IP:127.0.0.1\nbasicConstraints=CA:FALSE\nkeyUsage=digitalSignature,keyEncipherment\nextendedKeyUsage=serverAuth\n"
            .write(toFile: dir + "/server.ext", atomically: true, encoding: .utf8)
        try runTool(ssl, ["x509", "-req", "-in", dir + "/server.csr", "-CA", caFile, "-CAkey", dir + "/ca.key",
                          "-CAcreateserial", "-out", certFile, "-days", "2", "-extfile", dir + "/server.ext"])
    }
}

/// One `user:hash` line for an nginx auth_basic_user_file (apr1, as `htpasswd` writes).
func htpasswdLine(user: String, password: String) throws -> String {
    let hash = try runTool("/usr/bin/openssl", ["passwd", "-apr1", password]).trimmingCharacters(in: .whitespacesAndNewlines)
    return "\(user):\(hash)\n"
}

// MARK: - nginx

/// nginx in the foreground (`daemon off; master_process off`) with a generated config, proxying
/// every request to `upstream`. Runs under a small shell that kills it when our stdin closes, so a
/// crashed test run leaves no nginx behind.
final class NginxPeer {
    static let binary = "/usr/sbin/nginx"

    struct TLS {
        var certFile: String
        var keyFile: String
    }

    let dir: String
    let port: Int
    let scheme: String
    private let process: Process
    private let stdin = Pipe()

    /// `scheme://127.0.0.1:port` (no trailing slash).
    var url: String { "\(scheme)://127.0.0.1:\(port)" }
    var errorLog: String { (try? String(contentsOfFile: dir + "/error.log", encoding: .utf8)) ?? "" }

    /// - `htpasswd`: contents of an auth_basic_user_file (nil: no auth).
    /// - `locationExtra`: more directives for the proxying location (e.g. `proxy_set_header`).
    /// - `maxBodySize`: `client_max_body_size` (larger requests get 413).
    init(dir: String, upstream: String, tls: TLS? = nil, htpasswd: String? = nil, locationExtra: String = "",
         maxBodySize: String = "50m") throws {
        guard FileManager.default.isExecutableFile(atPath: NginxPeer.binary) else {
            throw PeerError("\(NginxPeer.binary) not found: install nginx-light (make test-deps does)")
        }
        self.dir = dir
        scheme = tls == nil ? "http" : "https"
        let fm = FileManager.default
        for sub in ["body", "proxy", "fastcgi", "uwsgi", "scgi"] {
            try fm.createDirectory(atPath: dir + "/" + sub, withIntermediateDirectories: true)
        }
        var auth = ""
        if let htpasswd {
            try htpasswd.write(toFile: dir + "/htpasswd", atomically: true, encoding: .utf8)
            auth = "auth_basic \"anduin-test\";\n        auth_basic_user_file \(dir)/htpasswd;"
        }
        var lastError = ""
        for _ in 0..<8 {
            let port = freeTCPPort()
            let ssl = tls.map { "ssl;\n    ssl_certificate \($0.certFile);\n    ssl_certificate_key \($0.keyFile);" } ?? ";"
            let conf = """
                daemon off;
                master_process off;
                pid \(dir)/nginx.pid;
                error_log \(dir)/error.log info;
                events { worker_connections 256; }
                http {
                  access_log off;
                  client_body_temp_path \(dir)/body;
                  proxy_temp_path \(dir)/proxy;
                  fastcgi_temp_path \(dir)/fastcgi;
                  uwsgi_temp_path \(dir)/uwsgi;
                  scgi_temp_path \(dir)/scgi;
                  server {
                    listen 127.0.0.1:\(port) \(ssl)
                    client_max_body_size \(maxBodySize);
                    location / {
                        \(auth)
                        proxy_http_version 1.1;
                        proxy_set_header Connection "";
                        proxy_read_timeout 60s;
                        \(locationExtra)
                        proxy_pass \(upstream);
                    }
                  }
                }

                """
            try conf.write(toFile: dir + "/nginx.conf", atomically: true, encoding: .utf8)
            try? fm.removeItem(atPath: dir + "/error.log")
            let p = Process()
            p.executableURL = URL(fileURLWithPath: "/bin/sh")
            p.arguments = ["-c", #""$@" </dev/null & p=$!; cat >/dev/null; kill $p 2>/dev/null; wait $p"#, "sh",
                           NginxPeer.binary, "-p", dir, "-e", dir + "/error.log", "-c", dir + "/nginx.conf"]
            let input = Pipe()
            p.standardInput = input
            p.standardOutput = FileHandle.standardError
            p.standardError = FileHandle.standardError
            try p.run()
            var failed = false
            let up = poll(timeout: 20, interval: 0.05) {
                if (try? String(contentsOfFile: dir + "/error.log", encoding: .utf8))?.contains("[emerg]") == true {
                    failed = true
                    return true
                }
                return canConnect(port: port)
            }
            if up && !failed {
                self.port = port
                self.process = p
                self.stdinWriter = input
                return
            }
            lastError = (try? String(contentsOfFile: dir + "/error.log", encoding: .utf8)) ?? "no error log"
            try? input.fileHandleForWriting.close()
            _ = poll(timeout: 10, interval: 0.05) { !p.isRunning }
            if !lastError.contains("Address already in use") { break }
        }
        throw PeerError("nginx did not start: \(lastError.suffix(1500))")
    }

    private var stdinWriter: Pipe!

    func stop() {
        try? stdinWriter.fileHandleForWriting.close()
        if !poll(timeout: 10, interval: 0.05, { !process.isRunning }) {
            process.terminate()
            _ = poll(timeout: 5, interval: 0.05) { !process.isRunning }
        }
    }

    deinit { if process.isRunning { stop() } }
}

// MARK: - configs for network outputs

/// One output: `name` and its option lines (`key: value`, YAML flow style). `type` and `from`
/// are added by `deliveryConfig`.
struct NetOutput {
    var name: String
    var lines: [String]

    /// Replaces (or adds) the option `key`.
    func with(_ key: String, _ value: String) -> NetOutput {
        var c = self
        c.lines.removeAll { $0.hasPrefix(key + ":") }
        c.lines.append("\(key): \(value)")
        return c
    }

    /// The suite's quick settings: small batches, 100 ms batch timeout, 50 ms..500 ms retries; and
    /// every metadata field, by which the checks identify records (log.offset, event.id).
    static let quick = ["batch: {max_records: 500, timeout: 100ms}", "retry: {initial: 50ms, max: 500ms}", allMetadata]

    static func elasticsearch(_ name: String, url: String, index: String, _ extra: [String] = []) -> NetOutput {
        var o = NetOutput(name: name, lines: ["type: elasticsearch", "hosts: [\"\(url)\"]", "index: \"\(index)\""] + quick)
        for l in extra { o = o.with(String(l.prefix { $0 != ":" }), String(l.drop { $0 != ":" }.dropFirst().drop { $0 == " " })) }
        return o
    }

    static func http(_ name: String, uri: String, _ extra: [String] = []) -> NetOutput {
        var o = NetOutput(name: name, lines: ["type: http", "uri: \"\(uri)\""] + quick)
        for l in extra { o = o.with(String(l.prefix { $0 != ":" }), String(l.drop { $0 != ":" }.dropFirst().drop { $0 == " " })) }
        return o
    }
}

/// A config with one tail input `in` (through a `parse` filter when `parse`) feeding `outputs`.
func deliveryConfig(_ tail: TailOptions = TailOptions(), parse: Bool = false, shutdownTimeout: String = "30s",
                    outputs: [NetOutput]) -> String {
    var y = "data_dir: ./data\nshutdown_timeout: \(shutdownTimeout)\ninputs:\n" + tail.yaml(name: "in")
    var feed = "in"
    if parse {
        y += "filters:\n  parse: {type: parse, from: [in], formats: [json, logfmt], target: root}\n"
        feed = "parse"
    }
    y += "outputs:\n"
    for o in outputs {
        y += "  \(o.name):\n    from: [\(feed)]\n" + o.lines.map { "    \($0)\n" }.joined()
    }
    return y
}

// MARK: - reading results

/// The dead letters of `output` in the sandbox's data_dir (every file of its store, oldest first).
func deadLetters(_ sandbox: Sandbox, _ output: String, dataDir: String = "data") -> [[String: Any]] {
    let dir = sandbox.path("\(dataDir)/dead-letter/\(output)")
    let names = ((try? FileManager.default.contentsOfDirectory(atPath: dir)) ?? []).filter { $0.hasSuffix(".ndjson") }.sorted()
    return names.flatMap { name -> [[String: Any]] in
        guard let data = FileManager.default.contents(atPath: dir + "/" + name) else { return [] }
        return data.split(separator: 0x0A).compactMap { (try? JSONSerialization.jsonObject(with: Data($0))) as? [String: Any] }
    }
}

/// `event.id` of a received record or document source.
func eventID(_ doc: [String: Any]) -> String? { (doc["event"] as? [String: Any])?["id"] as? String }

/// `log.offset` / `log.file.path` of a received record or document source.
func logOffset(_ doc: [String: Any]) -> Int64? { ((doc["log"] as? [String: Any])?["offset"] as? NSNumber)?.int64Value }
func logPath(_ doc: [String: Any]) -> String? { ((doc["log"] as? [String: Any])?["file"] as? [String: Any])?["path"] as? String }

/// Writes `lines` to `path` in chunks of `chunk`, pausing `pause` seconds in between (paces a
/// writer; nothing relies on the timing).
func appendInChunks(_ path: String, _ lines: [String], chunk: Int, pause: Double = 0.02) {
    var i = 0
    while i < lines.count {
        appendText(path, joinedLines(Array(lines[i..<min(lines.count, i + chunk)])))
        i += chunk
        if i < lines.count { usleep(UInt32(pause * 1_000_000)) }
    }
}

/// Every occurrence count of `text` in `haystack`.
func occurrences(_ text: String, in haystack: String) -> Int { haystack.components(separatedBy: text).count - 1 }
