// End-to-end harness: runs the built `anduin` executable as a child process on a temporary folder,
// feeds it log files and reads what its file output wrote.
//
// Rules of the suite: every wait polls for a condition with a generous deadline (the CI box is a
// noisy 2-core machine); sleeps only pace writers, they are never what an assertion relies on.

import Foundation
import XCTest
#if canImport(Glibc)
import Glibc
#endif

// MARK: - locating the binary

enum AnduinBinary {
    /// The `anduin` executable built with this test bundle (it sits next to the .xctest), or
    /// `$ANDUIN_BIN`.
    static let path: String? = locate()

    private static func isExecutableFile(_ p: String) -> Bool {
        var isDir: ObjCBool = false
        return FileManager.default.fileExists(atPath: p, isDirectory: &isDir) && !isDir.boolValue
            && FileManager.default.isExecutableFile(atPath: p)
    }

    private static func locate() -> String? {
        let env = ProcessInfo.processInfo.environment
        if let p = env["ANDUIN_BIN"], isExecutableFile(p) { return p }
        var starts: [URL] = []
        if let exe = try? FileManager.default.destinationOfSymbolicLink(atPath: "/proc/self/exe") {
            starts.append(URL(fileURLWithPath: exe).deletingLastPathComponent())
        }
        starts.append(Bundle.main.bundleURL)
        starts.append(Bundle.main.executableURL?.deletingLastPathComponent() ?? Bundle.main.bundleURL)
        for start in starts {
            var dir = start
            for _ in 0..<4 {
                let candidate = dir.appendingPathComponent("anduin").path
                if isExecutableFile(candidate) { return candidate }
                dir = dir.deletingLastPathComponent()
            }
        }
        // Last resort: the package's own build folders.
        let root = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
            .deletingLastPathComponent()
        for scratch in [".build-c", ".build"] {
            let candidate = root.appendingPathComponent(scratch).appendingPathComponent("debug/anduin").path
            if isExecutableFile(candidate) { return candidate }
        }
        return nil
    }
}

// MARK: - small utilities

/// Polls `condition` every `interval` until it holds or `timeout` passes. Returns whether it held.
@discardableResult
func poll(timeout: Double = 60, interval: Double = 0.1, _ condition: () -> Bool) -> Bool {
    let deadline = Date().addingTimeInterval(timeout)
    while true {
        if condition() { return true }
        if Date() >= deadline { return false }
        usleep(UInt32(interval * 1_000_000))
    }
}

/// Appends `text` to `path` (creating it) with one open/write/close, the way a logging app with
/// O_APPEND does.
func appendText(_ path: String, _ text: String) {
    appendBytes(path, Array(text.utf8))
}

func appendBytes(_ path: String, _ bytes: [UInt8]) {
    let fd = open(path, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0o644)
    precondition(fd >= 0, "open \(path): \(String(cString: strerror(errno)))")
    var done = 0
    bytes.withUnsafeBytes { buf in
        while done < buf.count {
            let n = write(fd, buf.baseAddress! + done, buf.count - done)
            if n < 0 && errno == EINTR { continue }
            precondition(n > 0, "write \(path): \(String(cString: strerror(errno)))")
            done += n
        }
    }
    close(fd)
}

/// `PREFIX line 000042`: fixed width, so every line of a file is `lineLength(prefix)` bytes and a
/// record's offset says which line it is.
func logLine(_ prefix: String, _ i: Int) -> String {
    let digits = String(i)
    return "\(prefix) line \(String(repeating: "0", count: max(0, 6 - digits.count)))\(digits)"
}

func logLines(_ prefix: String, _ range: Range<Int>) -> [String] { range.map { logLine(prefix, $0) } }

func joinedLines(_ lines: [String]) -> String { lines.map { $0 + "\n" }.joined() }

func lineLength(_ prefix: String) -> Int { logLine(prefix, 0).utf8.count + 1 }

/// Index of a `logLine` message, and its prefix.
func parseLogLine(_ message: String) -> (prefix: String, index: Int)? {
    guard let r = message.range(of: " line ", options: .backwards),
          let i = Int(message[r.upperBound...]) else { return nil }
    return (String(message[..<r.lowerBound]), i)
}

/// A flag and counters shared with a writer thread.
final class SharedState: @unchecked Sendable {
    private let lock = NSLock()
    private var _stop = false
    private var _counts: [String: Int] = [:]

    var stopRequested: Bool { lock.withLock { _stop } }
    func requestStop() { lock.withLock { _stop = true } }
    func add(_ key: String, _ n: Int) { lock.withLock { _counts[key, default: 0] += n } }
    var counts: [String: Int] { lock.withLock { _counts } }
}

/// A thread running `body`; `join` waits for it with a deadline.
final class BackgroundJob: @unchecked Sendable {
    private let done = DispatchSemaphore(value: 0)

    init(_ name: String, _ body: @escaping @Sendable () -> Void) {
        let done = self.done
        let t = Thread {
            body()
            done.signal()
        }
        t.name = name
        t.start()
    }

    @discardableResult
    func join(timeout: Double = 120) -> Bool { done.wait(timeout: .now() + timeout) == .success }
}

// MARK: - config

/// Options of one `tail` input, with the suite's short intervals as defaults.
struct TailOptions {
    var paths: [String] = ["./logs/*.log"]
    var exclude: [String] = []
    var format = "raw"
    var startAt = "beginning"
    var watch = "auto"
    var maxLineBytes = "1MiB"
    var pollInterval = "100ms"
    var globInterval = "200ms"
    /// The scan that runs with inotify without a folder event; tests that count scans as the input
    /// loop's turns set it short (nil: the default).
    var refreshInterval: String?
    var rotateWait = "1s"
    var checkpointInterval = "200ms"
    /// More `key: value` lines of the input, each ending in a newline.
    var extra = ""

    func yaml(name: String) -> String {
        func list(_ xs: [String]) -> String { "[" + xs.map { "\"\($0)\"" }.joined(separator: ", ") + "]" }
        return """
              \(name):
                type: tail
                paths: \(list(paths))
                exclude: \(list(exclude))
                format: \(format)
                start_at: \(startAt)
                max_line_bytes: \(maxLineBytes)
                watch: \(watch)
                poll_interval: \(pollInterval)
                glob_interval: \(globInterval)\(refreshInterval.map { "\n    refresh_interval: \($0)" } ?? "")
                rotate_wait: \(rotateWait)
                checkpoint_interval: \(checkpointInterval)
            \(extra.split(separator: "\n").map { "    " + $0 + "\n" }.joined())
            """
    }
}

/// A whole config: the inputs, optionally through a `parse` filter (json, logfmt, root), into one
/// file output at ./out/records.ndjson.
func agentConfig(_ inputs: [(String, TailOptions)], parse: Bool = false) -> String {
    var y = "data_dir: ./data\nshutdown_timeout: 30s\ninputs:\n"
    for (name, opts) in inputs { y += opts.yaml(name: name) }
    let names = inputs.map(\.0).joined(separator: ", ")
    var feed = names
    if parse {
        y += "filters:\n  parse: {type: parse, from: [\(names)], formats: [json, logfmt], target: root}\n"
        feed = "parse"
    }
    // The checks read each record's log.offset and event.id: both on (off by default).
    y += "outputs:\n  local: {type: file, from: [\(feed)], path: ./out/records.ndjson, \(allMetadata)}\n"
    return y
}

/// The `metadata:` option with every field on, for outputs whose records the tests identify by
/// log.offset and event.id.
let allMetadata = "metadata: {file_path: true, offset: true, event_id: true}"

// MARK: - the temporary folder

final class Sandbox {
    let root: URL

    init(name: String) throws {
        let safe = name.map { $0.isLetter || $0.isNumber ? $0 : "-" }
        root = URL(fileURLWithPath: NSTemporaryDirectory())
            .appendingPathComponent("anduin-it-\(String(safe.suffix(40)))-\(UUID().uuidString.prefix(8))")
        try FileManager.default.createDirectory(at: root.appendingPathComponent("logs"), withIntermediateDirectories: true)
    }

    /// Absolute path of `rel` in the sandbox.
    func path(_ rel: String) -> String { root.appendingPathComponent(rel).path }

    var outputPath: String { path("out/records.ndjson") }
    var configPath: String { path("anduin.yaml") }

    func mkdir(_ rel: String) throws {
        try FileManager.default.createDirectory(atPath: path(rel), withIntermediateDirectories: true)
    }

    @discardableResult
    func write(_ rel: String, _ text: String) throws -> String {
        let p = path(rel)
        try text.write(toFile: p, atomically: false, encoding: .utf8)
        return p
    }

    /// The checkpoint file of `input`: path -> offset (empty when absent).
    func checkpoints(_ input: String) -> [String: Int64] {
        guard let data = FileManager.default.contents(atPath: path("data/checkpoints/\(input).json")),
              let obj = try? JSONSerialization.jsonObject(with: data) as? [String: Any],
              let files = obj["files"] as? [[String: Any]] else { return [:] }
        var out: [String: Int64] = [:]
        for f in files {
            if let p = f["path"] as? String, let o = (f["offset"] as? NSNumber)?.int64Value { out[p] = max(out[p] ?? 0, o) }
        }
        return out
    }

    func remove() { try? FileManager.default.removeItem(at: root) }
}

// MARK: - the agent process

final class AgentProcess {
    let process = Process()
    let stderrPath: String

    init(binary: String, arguments: [String], stderrPath: String, workingDirectory: String,
         stdoutPath: String? = nil, stdout: FileHandle? = nil) throws {
        self.stderrPath = stderrPath
        _ = FileManager.default.createFile(atPath: stderrPath, contents: nil)
        guard let err = FileHandle(forWritingAtPath: stderrPath) else {
            throw NSError(domain: "AgentProcess", code: 1, userInfo: [NSLocalizedDescriptionKey: "cannot open \(stderrPath)"])
        }
        process.executableURL = URL(fileURLWithPath: binary)
        process.arguments = arguments
        process.currentDirectoryURL = URL(fileURLWithPath: workingDirectory)
        process.standardError = err
        if let stdout {
            process.standardOutput = stdout
        } else if let stdoutPath {
            _ = FileManager.default.createFile(atPath: stdoutPath, contents: nil)
            process.standardOutput = FileHandle(forWritingAtPath: stdoutPath) ?? FileHandle.nullDevice
        } else {
            process.standardOutput = FileHandle.nullDevice
        }
        process.standardInput = FileHandle.nullDevice
        try process.run()
        try? err.close()
    }

    var pid: Int32 { process.processIdentifier }
    var isRunning: Bool { process.isRunning }
    var stderr: String { (try? String(contentsOfFile: stderrPath, encoding: .utf8)) ?? "" }

    func signal(_ sig: Int32) { kill(process.processIdentifier, sig) }
    func terminate() { signal(SIGTERM) }
    func kill9() { signal(SIGKILL) }

    /// Waits for the process to exit; returns false on timeout.
    @discardableResult
    func waitExit(timeout: Double = 60) -> Bool {
        poll(timeout: timeout, interval: 0.05) { !process.isRunning }
    }

    /// (status, killed by a signal) once it exited.
    var exit: (status: Int32, signalled: Bool)? {
        guard !process.isRunning else { return nil }
        return (process.terminationStatus, process.terminationReason == .uncaughtSignal)
    }
}

// MARK: - reading the output

/// One record of the file output.
struct OutRecord {
    let json: [String: Any]
    let message: String?
    let path: String
    let offset: Int64
    let eventID: String
    let truncated: Bool
    let stream: String?
    let timestamp: String
}

/// Follows the ndjson output file incrementally (only new bytes are parsed at each refresh).
final class OutputReader {
    let path: String
    private var readOffset: UInt64 = 0
    private var partial: [UInt8] = []
    private(set) var records: [OutRecord] = []
    /// Lines that are not a JSON object.
    private(set) var invalidLines: [String] = []
    /// Records that break the documented shape.
    private(set) var shapeProblems: [String] = []

    init(path: String) { self.path = path }

    @discardableResult
    func refresh() -> [OutRecord] {
        guard let h = FileHandle(forReadingAtPath: path) else { return records }
        defer { try? h.close() }
        try? h.seek(toOffset: readOffset)
        guard let data = try? h.readToEnd(), !data.isEmpty else { return records }
        readOffset += UInt64(data.count)
        partial.append(contentsOf: data)
        var start = 0
        var lines: [ArraySlice<UInt8>] = []
        while let nl = partial[start...].firstIndex(of: 0x0A) {
            lines.append(partial[start..<nl])
            start = nl + 1
        }
        for line in lines { parse(Data(line)) }
        partial.removeFirst(start)
        return records
    }

    /// Bytes after the last newline (a line being written, or a torn one).
    var unterminatedBytes: Int { partial.count }

    var messages: [String] { records.compactMap(\.message) }

    private static let hex = Set("0123456789abcdef")

    private func parse(_ line: Data) {
        // Valid UTF-8 first: JSON text must be, whatever bytes the logs held.
        guard String(validating: line, as: UTF8.self) != nil,
              let obj = (try? JSONSerialization.jsonObject(with: line)) as? [String: Any] else {
            invalidLines.append(String(decoding: line.prefix(300), as: UTF8.self))
            return
        }
        let log = obj["log"] as? [String: Any]
        let file = log?["file"] as? [String: Any]
        let event = obj["event"] as? [String: Any]
        let rec = OutRecord(json: obj, message: obj["message"] as? String,
                            path: file?["path"] as? String ?? "",
                            offset: (log?["offset"] as? NSNumber)?.int64Value ?? -1,
                            eventID: event?["id"] as? String ?? "",
                            truncated: (log?["truncated"] as? Bool) ?? false,
                            stream: obj["stream"] as? String,
                            timestamp: obj["@timestamp"] as? String ?? "")
        var problems: [String] = []
        if rec.eventID.count != 32 || !rec.eventID.allSatisfy({ Self.hex.contains($0) }) {
            problems.append("event.id \(rec.eventID) is not 32 hex digits")
        } else if UInt64(rec.eventID.suffix(16), radix: 16) != UInt64(bitPattern: rec.offset) {
            problems.append("event.id \(rec.eventID) does not end with the offset \(rec.offset)")
        }
        if !rec.path.hasPrefix("/") { problems.append("log.file.path \(rec.path) is not absolute") }
        if rec.offset < 0 { problems.append("log.offset missing") }
        if !Self.isRFC3339Nano(rec.timestamp) { problems.append("@timestamp \(rec.timestamp) is not RFC3339 with nanoseconds") }
        if let t = log?["truncated"], !(t is Bool) || (t as? Bool) != true { problems.append("log.truncated is \(t)") }
        if !problems.isEmpty {
            shapeProblems.append(problems.joined(separator: "; ") + " in " + String(decoding: line.prefix(300), as: UTF8.self))
        }
        records.append(rec)
    }

    /// `2024-01-02T03:04:05.123456789Z`
    static func isRFC3339Nano(_ s: String) -> Bool {
        let b = Array(s.utf8)
        guard b.count == 30 else { return false }
        let digitsAt = [0, 1, 2, 3, 5, 6, 8, 9, 11, 12, 14, 15, 17, 18] + Array(20...28)
        let fixed: [Int: UInt8] = [4: 0x2D, 7: 0x2D, 10: 0x54, 13: 0x3A, 16: 0x3A, 19: 0x2E, 29: 0x5A]
        for i in digitsAt where !(0x30...0x39).contains(b[i]) { return false }
        for (i, c) in fixed where b[i] != c { return false }
        return true
    }
}

// MARK: - the base test case

class AgentTestCase: XCTestCase {
    var sandbox: Sandbox!
    var output: OutputReader!
    private var agents: [AgentProcess] = []

    override func setUpWithError() throws {
        try super.setUpWithError()
        guard AnduinBinary.path != nil else {
            XCTFail("the anduin executable was not found next to the test bundle; build it (swift build) or set ANDUIN_BIN")
            throw XCTSkip("no anduin binary")
        }
        sandbox = try Sandbox(name: name)
        output = OutputReader(path: sandbox.outputPath)
    }

    override func tearDown() {
        for a in agents where a.isRunning {
            a.kill9()
            a.waitExit(timeout: 10)
        }
        let failed = (testRun?.failureCount ?? 0) + (testRun?.unexpectedExceptionCount ?? 0) > 0
        if failed {
            for (i, a) in agents.enumerated() {
                let text = a.stderr
                let tail = text.count > 6000 ? "…" + String(text.suffix(6000)) : text
                print("----- agent #\(i) stderr (\(a.stderrPath)) -----\n\(tail)")
            }
        }
        if let sandbox {
            if failed && ProcessInfo.processInfo.environment["ANDUIN_KEEP_FAILED"] != nil {
                print("sandbox kept at \(sandbox.root.path)")
            } else {
                sandbox.remove()
            }
        }
        agents = []
        super.tearDown()
    }

    /// Writes `yaml` as the sandbox's config file.
    func writeConfig(_ yaml: String) throws {
        try sandbox.write("anduin.yaml", yaml)
    }

    /// Starts `anduin run` on the sandbox config (from another working directory: relative paths
    /// must be resolved against the config's folder).
    /// `wrapper`: a command that execs the agent (`["/usr/bin/prlimit", "--nofile=4096:4096", "--"]`).
    func startAgent(wrapper: [String] = []) throws -> AgentProcess {
        let cmd = wrapper + [AnduinBinary.path!, "run", "--config", sandbox.configPath]
        let a = try AgentProcess(binary: cmd[0], arguments: Array(cmd.dropFirst()),
                                 stderrPath: sandbox.path("agent-\(agents.count).stderr"),
                                 workingDirectory: NSTemporaryDirectory())
        agents.append(a)
        return a
    }

    /// SIGTERM, then expects exit status 0 within the deadline.
    func stopAgent(_ a: AgentProcess, file: StaticString = #filePath, line: UInt = #line) {
        a.terminate()
        guard a.waitExit(timeout: 60) else {
            XCTFail("agent did not exit within 60 s of SIGTERM", file: file, line: line)
            return
        }
        let e = a.exit!
        XCTAssertFalse(e.signalled, "agent died of signal \(e.status) after SIGTERM", file: file, line: line)
        XCTAssertEqual(e.status, 0, "exit status after SIGTERM", file: file, line: line)
    }

    /// SIGKILL, and waits for the process to be gone.
    func killAgent(_ a: AgentProcess, file: StaticString = #filePath, line: UInt = #line) {
        a.kill9()
        XCTAssertTrue(a.waitExit(timeout: 30), "agent still running 30 s after SIGKILL", file: file, line: line)
    }

    /// Waits (polling) until `condition` holds; fails the test with `what` otherwise.
    @discardableResult
    func waitFor(_ what: @autoclosure () -> String, timeout: Double = 60,
                 file: StaticString = #filePath, line: UInt = #line, _ condition: () -> Bool) -> Bool {
        if poll(timeout: timeout, interval: 0.1, condition) { return true }
        XCTFail("timed out after \(Int(timeout)) s waiting for: \(what())", file: file, line: line)
        return false
    }

    /// Waits until every message of `expected` is in the output.
    @discardableResult
    func waitForMessages(_ expected: [String], timeout: Double = 60,
                         file: StaticString = #filePath, line: UInt = #line) -> Bool {
        let want = Set(expected)
        var missing = want.count
        let ok = poll(timeout: timeout, interval: 0.1) {
            let have = Set(output.refresh().compactMap(\.message))
            missing = want.subtracting(have).count
            return missing == 0
        }
        if !ok {
            let have = Set(output.records.compactMap(\.message))
            let sample = want.subtracting(have).sorted().prefix(5)
            XCTFail("timed out after \(Int(timeout)) s: \(missing) of \(want.count) expected lines never arrived, e.g. \(Array(sample))",
                    file: file, line: line)
        }
        return ok
    }

    /// Waits until the output holds at least `n` records.
    @discardableResult
    func waitForRecordCount(_ n: Int, timeout: Double = 60, file: StaticString = #filePath, line: UInt = #line) -> Bool {
        waitFor("\(n) records in the output (have \(output.records.count))", timeout: timeout, file: file, line: line) {
            output.refresh().count >= n
        }
    }

    /// Waits until `agent`'s stderr contains `text` at least `count` times.
    @discardableResult
    func waitForLog(_ agent: AgentProcess, _ text: String, count: Int = 1, timeout: Double = 60,
                    file: StaticString = #filePath, line: UInt = #line) -> Bool {
        waitFor("agent log to contain \(count)× \"\(text)\"", timeout: timeout, file: file, line: line) {
            agent.stderr.components(separatedBy: text).count - 1 >= count
        }
    }

    // MARK: assertions

    /// Every message of `expected` appears exactly once among `records` (restricted to `prefixes`
    /// when given: other records are ignored), and nothing else is there.
    func assertExactlyOnce(_ records: [OutRecord], _ expected: [String], onlyPrefixes prefixes: [String]? = nil,
                           file: StaticString = #filePath, line: UInt = #line) {
        var counts: [String: Int] = [:]
        for r in records {
            guard let m = r.message else { continue }
            if let prefixes, !prefixes.contains(where: { m.hasPrefix($0 + " line ") }) { continue }
            counts[m, default: 0] += 1
        }
        let want = Set(expected)
        let missing = expected.filter { counts[$0] == nil }
        let dups = counts.filter { $0.value > 1 }.sorted { $0.key < $1.key }
        let extra = counts.keys.filter { !want.contains($0) }.sorted()
        XCTAssertTrue(missing.isEmpty, "\(missing.count) of \(expected.count) lines missing, e.g. \(missing.prefix(5))",
                      file: file, line: line)
        XCTAssertTrue(dups.isEmpty, "\(dups.count) lines duplicated, e.g. \(dups.prefix(5).map { "\($0.key) ×\($0.value)" })",
                      file: file, line: line)
        XCTAssertTrue(extra.isEmpty, "\(extra.count) unexpected messages, e.g. \(extra.prefix(5))", file: file, line: line)
    }

    /// For each prefix, its lines appear in the output in increasing order.
    func assertInOrderPerPrefix(_ records: [OutRecord], file: StaticString = #filePath, line: UInt = #line) {
        var last: [String: Int] = [:]
        var problems: [String] = []
        for r in records {
            guard let m = r.message, let (p, i) = parseLogLine(m) else { continue }
            if let prev = last[p], i <= prev { problems.append("\(p): line \(i) after line \(prev)") }
            last[p] = i
        }
        XCTAssertTrue(problems.isEmpty, "out of order: \(problems.prefix(5))", file: file, line: line)
    }

    /// The output is well formed: every line JSON, every record of the documented shape, no two
    /// records with one event.id unless they are the same line.
    func assertWellFormed(file: StaticString = #filePath, line: UInt = #line) {
        output.refresh()
        XCTAssertEqual(output.invalidLines.count, 0, "output lines that are not JSON objects: \(output.invalidLines.prefix(3))",
                       file: file, line: line)
        XCTAssertEqual(output.unterminatedBytes, 0, "the output ends with an unterminated line", file: file, line: line)
        XCTAssertTrue(output.shapeProblems.isEmpty, "malformed records: \(output.shapeProblems.prefix(3))", file: file, line: line)
        var byID: [String: String?] = [:]
        var clashes: [String] = []
        for r in output.records {
            if let m = byID[r.eventID], m != r.message {
                clashes.append("\(r.eventID): \(m ?? "nil") vs \(r.message ?? "nil")")
            }
            byID[r.eventID] = r.message
        }
        XCTAssertTrue(clashes.isEmpty, "different records share an event.id: \(clashes.prefix(3))", file: file, line: line)
    }
}
