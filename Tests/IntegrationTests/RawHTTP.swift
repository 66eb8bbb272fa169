import Foundation
#if canImport(Glibc)
import Glibc
#endif

/// Plain TCP clients for the API tests: requests with chosen headers, clients that never read, idle
/// connections. 127.0.0.1 only.
enum RawHTTP {
    /// A connected socket to 127.0.0.1:`port`; `blocking: false` returns at once (the connection may
    /// still be in progress), for opening thousands.
    static func connect(port: Int, blocking: Bool = true) -> Int32? {
        let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
        guard fd >= 0 else { return nil }
        if !blocking { _ = fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) | O_NONBLOCK) }
        var addr = sockaddr_in()
        addr.sin_family = sa_family_t(AF_INET)
        addr.sin_port = in_port_t(UInt16(port).bigEndian)
        addr.sin_addr.s_addr = inet_addr("127.0.0.1")
        let rc = withUnsafePointer(to: &addr) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { Glibc.connect(fd, $0, socklen_t(MemoryLayout<sockaddr_in>.size)) }
        }
        if rc != 0 && !(blocking == false && errno == EINPROGRESS) {
            close(fd)
            return nil
        }
        return fd
    }

    static func send(_ fd: Int32, _ text: String) -> Bool {
        let bytes = Array(text.utf8)
        var sent = 0
        while sent < bytes.count {
            let n = bytes[sent...].withUnsafeBytes { Glibc.send(fd, $0.baseAddress, $0.count, Int32(MSG_NOSIGNAL)) }
            if n <= 0 { return false }
            sent += n
        }
        return true
    }

    /// Reads until EOF, `limit` bytes, or `timeout` seconds without data. `keepLast`: only the last
    /// that many bytes are kept (for long streams where only the end matters).
    static func readAll(_ fd: Int32, timeout: Double = 10, limit: Int = 256 << 20, keepLast: Int = .max) -> [UInt8] {
        var tv = timeval(tv_sec: Int(timeout), tv_usec: Int((timeout - Double(Int(timeout))) * 1e6))
        setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, socklen_t(MemoryLayout<timeval>.size))
        var out: [UInt8] = []
        var buf = [UInt8](repeating: 0, count: 65536)
        var total = 0
        while total < limit {
            let n = buf.withUnsafeMutableBytes { recv(fd, $0.baseAddress, $0.count, 0) }
            if n <= 0 { break }
            total += n
            out += buf[..<n]
            if out.count / 2 > keepLast { out.removeFirst(out.count - keepLast) }
        }
        if out.count > keepLast { out.removeFirst(out.count - keepLast) }
        return out
    }

    /// One GET on a new connection: (status, body), nil when the connection failed.
    static func get(port: Int, path: String, headers: [String: String] = [:], timeout: Double = 10) -> (status: Int, body: String)? {
        guard let fd = connect(port: port) else { return nil }
        defer { close(fd) }
        var req = "GET \(path) HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n"
        for (k, v) in headers { req += "\(k): \(v)\r\n" }
        req += "\r\n"
        guard send(fd, req) else { return nil }
        let text = String(decoding: readAll(fd, timeout: timeout), as: UTF8.self)
        let parts = text.split(separator: " ", maxSplits: 2)
        guard parts.count >= 2, let status = Int(parts[1]) else { return nil }
        let body = text.range(of: "\r\n\r\n").map { String(text[$0.upperBound...]) } ?? ""
        return (status, body)
    }

    /// The port of `HOST:PORT`.
    static func port(_ address: String) -> Int? {
        address.split(separator: ":").last.flatMap { Int($0) }
    }
}

/// Resident memory of a process in bytes (VmRSS), nil once it is gone.
func residentBytes(pid: Int32) -> Int? {
    guard let s = try? String(contentsOfFile: "/proc/\(pid)/status", encoding: .utf8) else { return nil }
    for line in s.split(separator: "\n") where line.hasPrefix("VmRSS:") {
        let kb = line.split(separator: " ").dropFirst().first.flatMap { Int($0) }
        return kb.map { $0 * 1024 }
    }
    return nil
}

/// Open file descriptors of a process.
func openFDs(pid: Int32) -> Int {
    (try? FileManager.default.contentsOfDirectory(atPath: "/proc/\(pid)/fd").count) ?? -1
}
