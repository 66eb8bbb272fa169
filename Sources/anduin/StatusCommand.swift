import AnduinCore
import ArgumentParser
import Foundation

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
        address = bound.trimmingCharacters(in: .whitespacesAndNewlines)
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

    func run() throws {
        guard let cfg = loadConfig(options.config) else { throw ExitCode(1) }
        let url = "http://\(try runningAgentAddress(cfg, configPath: options.config))/status"
        let client = try HTTPClient(options: HTTPClientOptions())
        let response: HTTPResponse
        do {
            response = try client.send(method: "GET", url: url)
        } catch {
            throw RuntimeError("cannot reach the agent at \(url): \(error) (is it running with this config?)")
        }
        guard response.status == 200 else { throw RuntimeError("the agent answered HTTP \(response.status) for \(url)") }
        if json {
            _ = response.body.withUnsafeBytes { writeAll(fd: 1, $0) }
            return
        }
        guard let root = try? JSONSerialization.jsonObject(with: Data(response.body)) as? [String: Any] else {
            throw RuntimeError("the agent's /status is not JSON")
        }
        print(StatusTable.render(root))
    }
}

/// Formats `/status` for people: a verdict first, then per input, filter and output.
enum StatusTable {
    static func render(_ root: [String: Any]) -> String {
        func list(_ key: String) -> [[String: Any]] { root[key] as? [[String: Any]] ?? [] }
        func int(_ o: [String: Any], _ k: String) -> Int { (o[k] as? NSNumber)?.intValue ?? 0 }
        func dropped(_ o: [String: Any], _ k: String) -> Int { ((o["dropped"] as? [String: Any])?[k] as? NSNumber)?.intValue ?? 0 }
        var out: [String] = [verdict(root)]
        var rows = [["INPUT", "TYPE", "FILES", "BEHIND", "RECORDS READ", "DECODE ERRORS"]]
        var emptyGlobs = 0
        for i in list("inputs") {
            emptyGlobs += int(i, "globs_matching_nothing")
            rows.append([i["name"] as? String ?? "", i["type"] as? String ?? "", "\(int(i, "files"))",
                         ByteSize.human(int(i, "bytes_behind")), "\(int(i, "records"))", "\(int(i, "decode_errors"))"])
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
        let behind = inputs.reduce(0) { $0 + ((($1["bytes_behind"] as? NSNumber)?.intValue) ?? 0) }
        let pending = ((root["totals"] as? [String: Any])?["pending"] as? NSNumber)?.intValue ?? 0
        if behind == 0 && pending == 0 { return "OK: caught up, every output delivering" }
        return "OK: every output delivering; \(ByteSize.human(behind)) behind in files, \(pending) record(s) pending"
    }

    static func table(_ rows: [[String]]) -> String {
        guard let width = rows.map(\.count).max() else { return "" }
        var cols = Array(repeating: 0, count: width)
        for r in rows { for (i, c) in r.enumerated() { cols[i] = max(cols[i], c.count) } }
        return rows.map { r in
            r.enumerated().map { i, c in c.padding(toLength: cols[i], withPad: " ", startingAt: 0) }
                .joined(separator: "  ").trimmingCharacters(in: .whitespaces)
        }.joined(separator: "\n")
    }
}
