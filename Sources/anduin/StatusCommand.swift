import AnduinCore
import ArgumentParser
#if canImport(FoundationEssentials)
import FoundationEssentials
#else
import Foundation
#endif
#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// The API address of the agent running `cfg`: the one it wrote to data_dir (the config may say
/// port 0), else the configured one; 0.0.0.0 becomes 127.0.0.1.
func runningAgentAddress(_ cfg: AgentConfig, configPath: String) throws -> String {
    guard var address = cfg.apiAddress else {
        throw RuntimeError("""
            \(configPath) has no api: section, so the agent serves no API to ask. Add these lines at its top level
            and restart the agent (or send it SIGHUP):

            api:
              address: "127.0.0.1:2020"
            """)
    }
    if let bound = try? String(contentsOfFile: cfg.dataDirectory + "/api.address", encoding: .utf8) {
        address = bound.trimmed(.whitespacesAndNewlines)
    }
    if address.hasPrefix("0.0.0.0:") { address = "127.0.0.1:" + address.dropFirst(8) }
    return address
}

struct Status: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Print where the running agent's records are: per input and output, and whether every record is accounted for.")
    @OptionGroup var options: ConfigOption
    @Flag(help: "Print the agent's /status JSON as is.")
    var json = false
    @Flag(help: "Refresh every --interval until Ctrl-C (in place on a terminal, one block after another otherwise; with --json, one JSON document a line).")
    var watch = false
    @Option(help: "Seconds between refreshes with --watch.")
    var interval: Double = 2

    func validate() throws {
        guard interval.isFinite, interval >= 0.1, interval <= 3600 else {
            throw ValidationError("--interval must be between 0.1 and 3600 seconds")
        }
    }

    func run() throws {
        guard let cfg = loadConfig(options.config) else { throw ExitCode(1) }
        let url = "http://\(try runningAgentAddress(cfg, configPath: options.config))/status"
        let client = try HTTPClient(options: HTTPClientOptions())
        guard watch else {
            let body = try fetch(client, url)
            if json {
                _ = body.withUnsafeBytes { writeAll(fd: 1, $0) }
            } else {
                print(try render(body))
            }
            return
        }
        // SIGINT and SIGTERM end the watch between refreshes: they are taken by sigtimedwait, which
        // is also the wait between two refreshes.
        var set = sigset_t()
        sigemptyset(&set)
        sigaddset(&set, SIGINT)
        sigaddset(&set, SIGTERM)
        pthread_sigmask(SIG_BLOCK, &set, nil)
        let terminal = isatty(1) == 1
        let seconds = Int(interval), nanos = Int((interval - Double(seconds)) * 1e9)
        while true {
            let body: [UInt8]
            do {
                body = try fetch(client, url)
            } catch {
                throw RuntimeError("the agent went away: \(error); stopped watching")
            }
            let frame: String
            if json {
                // One JSON document a line (the agent writes it on one line), for scripts.
                frame = String(decoding: body, as: UTF8.self).trimmed(.newlines) + "\n"
            } else {
                let text = "anduin status \(isoTimestamp(Date())) (every \(formatSeconds(interval)), Ctrl-C to stop)\n\n"
                    + (try render(body))
                // On a terminal: home the cursor and clear, like `top`; in a pipe or a file, blocks
                // one after another, separated by a blank line.
                frame = terminal ? "\u{1B}[H\u{1B}[2J" + text + "\n" : text + "\n\n"
            }
            _ = Array(frame.utf8).withUnsafeBytes { writeAll(fd: 1, $0) }
            var wait = timespec(tv_sec: seconds, tv_nsec: nanos)
            let sig = sigtimedwait(&set, nil, &wait)
            if sig == SIGINT || sig == SIGTERM { return }
        }
    }

    private func fetch(_ client: HTTPClient, _ url: String) throws -> [UInt8] {
        let response: HTTPResponse
        do {
            response = try client.send(method: "GET", url: url)
        } catch {
            throw RuntimeError("cannot reach the agent at \(url): \(error) (is it running with this config?)")
        }
        guard response.status == 200 else { throw RuntimeError("the agent answered HTTP \(response.status) for \(url)") }
        return Array(response.body)
    }

    private func render(_ body: [UInt8]) throws -> String {
        guard let root = JSONAny.object(body) else {
            throw RuntimeError("the agent's /status is not JSON")
        }
        return StatusTable.render(root)
    }

    private func isoTimestamp(_ d: Date) -> String {
        d.formatted(.iso8601)
    }

    private func formatSeconds(_ s: Double) -> String {
        s == s.rounded() ? "\(Int(s)) s" : formatFixed(s, decimals: 1) + " s"
    }
}

/// Formats `/status` for people: a verdict first, then per input, filter and output.
enum StatusTable {
    static func render(_ root: [String: Any]) -> String {
        func list(_ key: String) -> [[String: Any]] { root[key] as? [[String: Any]] ?? [] }
        func int(_ o: [String: Any], _ k: String) -> Int { (o[k] as? JSONNumber)?.intValue ?? 0 }
        func dropped(_ o: [String: Any], _ k: String) -> Int { ((o["dropped"] as? [String: Any])?[k] as? JSONNumber)?.intValue ?? 0 }
        var out: [String] = [verdict(root)]
        var rows = [["INPUT", "TYPE", "FILES", "FILES BEHIND", "BEHIND", "CATCH UP", "RECORDS READ", "DECODE ERRORS"]]
        var emptyGlobs = 0
        for i in list("inputs") {
            emptyGlobs += int(i, "globs_matching_nothing")
            rows.append([i["name"] as? String ?? "", i["type"] as? String ?? "", "\(int(i, "files"))",
                         "\(int(i, "files_behind"))", ByteSize.human(int(i, "bytes_behind")),
                         catchUp(bytes: int(i, "bytes_behind"), seconds: int(i, "catch_up_seconds")),
                         "\(int(i, "records"))", "\(int(i, "decode_errors"))"])
        }
        out.append(table(rows) + (emptyGlobs > 0 ? "\n\(emptyGlobs) pattern(s) of paths match no file (see the agent's log)" : ""))
        if !list("filters").isEmpty {
            rows = [["FILTER", "TYPE", "IN", "OUT", "DROPPED", "IN FLIGHT"]]
            for f in list("filters") {
                rows.append([f["name"] as? String ?? "", f["type"] as? String ?? "", "\(int(f, "in"))", "\(int(f, "out"))",
                             "\(int(f, "dropped"))", "\(int(f, "in_flight"))"])
            }
            out.append(table(rows))
        }
        rows = [["OUTPUT", "TYPE", "IN", "RECOVERED", "DELIVERED", "DEAD-LETTERED", "DROPPED OLDEST", "DROPPED CORRUPT",
                 "PENDING", "RETRYING", "ERRORS", "LAG", "LAST DELIVERY", "LAST ERROR"]]
        var moving = false
        for o in list("outputs") {
            let settled = (o["settled"] as? Bool) ?? true
            if !settled { moving = true }
            let never = int(o, "delivered") == 0
            var lastError = "-"
            if let e = o["last_error"] as? String {
                let short = e.count > 60 ? String(e.prefix(60)) + "…" : e
                lastError = "\(int(o, "last_error_age_seconds"))s ago: \(short)"
            }
            rows.append([o["name"] as? String ?? "", o["type"] as? String ?? "", "\(int(o, "in"))", "\(int(o, "recovered"))",
                         "\(int(o, "delivered"))", "\(int(o, "dead_lettered"))", "\(dropped(o, "drop_oldest"))",
                         "\(dropped(o, "corrupt"))", "\(int(o, "pending"))", "\(int(o, "retrying"))", "\(int(o, "errors"))",
                         "\(int(o, "lag_seconds"))s", never ? "never" : "\(int(o, "seconds_since_last_delivery"))s ago", lastError])
        }
        if let t = root["totals"] as? [String: Any] {
            rows.append(["TOTAL", "", "\(int(t, "in"))", "\(int(t, "recovered"))", "\(int(t, "delivered"))",
                         "\(int(t, "dead_lettered"))", "\(dropped(t, "drop_oldest"))", "\(dropped(t, "corrupt"))",
                         "\(int(t, "pending"))", "", "", "", "", ""])
            out.append(table(rows))
            let unaccounted = int(t, "unaccounted")
            var identity = "in + recovered = delivered + dead-lettered + dropped + returned + pending (queued, buffered, in flight, retrying)"
            if unaccounted == 0 {
                identity += moving ? " (holds; records are moving, counted as pending)" : " (holds)"
            } else {
                identity += " (\(abs(unaccounted)) record(s) \(unaccounted > 0 ? "missing" : "counted twice") with the pipeline settled)"
            }
            out.append(identity + "; filters dropped \(dropped(t, "filters")) record(s)")
            let torn = int(t, "torn")
            if torn > 0 {
                out.append("\(torn) record(s) in a disk buffer block cut short by a crash during its write: not acknowledged, "
                           + "so read again from their files, not dropped (unless a power failure cut a write already "
                           + "acknowledged: see buffer.fsync)")
            }
        } else {
            out.append(table(rows))
        }
        return out.joined(separator: "\n\n")
    }

    /// The line a person reads first: `/ready`'s verdict and reasons, and whether the agent is caught up.
    static func verdict(_ root: [String: Any]) -> String {
        if let reasons = root["not_ready"] as? [String], !reasons.isEmpty {
            return "NOT READY: " + reasons.joined(separator: "; ")
        }
        let inputs = root["inputs"] as? [[String: Any]] ?? []
        func sum(_ k: String) -> Int { inputs.reduce(0) { $0.addingSaturating((($1[k] as? JSONNumber)?.intValue) ?? 0) } }
        let behind = sum("bytes_behind"), files = sum("files_behind"), waiting = sum("files_waiting")
        // The slowest input sets when all are caught up; one without an estimate leaves it unknown.
        let seconds = inputs.map { (($0["catch_up_seconds"] as? JSONNumber)?.intValue) ?? 0 }
        let eta = seconds.contains(-1) ? -1 : seconds.max() ?? 0
        let pending = ((root["totals"] as? [String: Any])?["pending"] as? JSONNumber)?.intValue ?? 0
        if behind == 0 && pending == 0 && waiting == 0 { return "OK: caught up, every output delivering" }
        var line = "OK: every output delivering; "
        if waiting > 0 { line += "\(waiting) file(s) waiting to be opened (max_open_files or the descriptor limit), " }
        if behind > 0 {
            line += "\(ByteSize.human(behind)) behind in \(files) file(s)"
            line += eta < 0 ? " (no progress lately: no estimate)" : " (caught up in \(catchUp(bytes: behind, seconds: eta)) at the recent read rate)"
            line += ", "
        }
        return line + "\(pending) record(s) pending"
    }

    /// `~1m30s` at the recent rate (bytes read and acknowledged); `-` when caught up; `?` with no
    /// progress lately.
    static func catchUp(bytes: Int, seconds: Int) -> String {
        if bytes == 0 { return "-" }
        if seconds < 0 { return "?" }
        let s = max(1, seconds)
        if s < 60 { return "~\(s)s" }
        if s < 3600 { return "~\(s / 60)m\(s % 60 == 0 ? "" : "\(s % 60)s")" }
        return "~\(s / 3600)h\((s % 3600) / 60)m"
    }

    static func table(_ rows: [[String]]) -> String {
        guard let width = rows.map(\.count).max() else { return "" }
        var cols = Array(repeating: 0, count: width)
        for r in rows { for (i, c) in r.enumerated() { cols[i] = max(cols[i], c.count) } }
        return rows.map { r in
            r.enumerated().map { i, c in c + String(repeating: " ", count: max(0, cols[i] - c.count)) }
                .joined(separator: "  ").trimmed(.whitespaces)
        }.joined(separator: "\n")
    }
}
