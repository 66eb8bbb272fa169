import Foundation
import XCTest
#if canImport(FoundationNetworking)
import FoundationNetworking
#endif

/// The agent's HTTP API as tests read it (configs ask for `api: {address: "127.0.0.1:0"}`; the agent
/// writes the address it bound to data/api.address).
extension AgentTestCase {
    /// The API address the agent bound.
    func apiAddress() -> String? {
        var address: String?
        poll(timeout: 30) {
            address = (try? String(contentsOfFile: sandbox.path("data/api.address"), encoding: .utf8))?
                .trimmingCharacters(in: .whitespacesAndNewlines)
            return address?.isEmpty == false
        }
        return address
    }

    func get(_ url: String) -> (status: Int, body: String)? {
        guard let u = URL(string: url) else { return nil }
        let box = GetBox()
        let done = DispatchSemaphore(value: 0)
        URLSession.shared.dataTask(with: URLRequest(url: u, timeoutInterval: 10)) { data, response, _ in
            box.set((response as? HTTPURLResponse)?.statusCode ?? 0, data.map { String(decoding: $0, as: UTF8.self) } ?? "")
            done.signal()
        }.resume()
        _ = done.wait(timeout: .now() + 15)
        return box.get()
    }

    /// One scrape of /metrics as {"name{label=value,...}": value}, labels sorted (the keys the
    /// reference parser's output uses in ObservabilityTests). A small reader for the agent's own
    /// output: no escapes in label values. nil when the scrape failed.
    func scrapeMetrics(_ api: String) -> [String: Double]? {
        guard let m = get("http://\(api)/metrics"), m.status == 200 else { return nil }
        var out: [String: Double] = [:]
        for line in m.body.split(separator: "\n") where !line.hasPrefix("#") {
            guard let space = line.lastIndex(of: " "), let value = Double(line[line.index(after: space)...]) else { continue }
            let series = line[..<space]
            guard let brace = series.firstIndex(of: "{") else {
                out[String(series) + "{}"] = value
                continue
            }
            let labels = series[series.index(after: brace)...].dropLast()
                .split(separator: ",")
                .map { $0.replacingOccurrences(of: "\"", with: "") }
                .sorted()
            out[String(series[..<brace]) + "{" + labels.joined(separator: ",") + "}"] = value
        }
        return out
    }
}

private final class GetBox: @unchecked Sendable {
    // `lock` protects `value` (set by URLSession's queue, read by the test thread).
    private let lock = NSLock()
    private var value: (Int, String)?
    func set(_ s: Int, _ b: String) { lock.lock(); value = (s, b); lock.unlock() }
    func get() -> (status: Int, body: String)? { lock.lock(); defer { lock.unlock() }; return value.map { ($0.0, $0.1) } }
}

/// Counters of one component from the agent's stop line (`anduin stopped: input in: a=1 b=2; filter
/// f: ...`); counters at zero are not printed, so they are absent here.
func stopLineCounters(_ stderr: String, component: String) -> [String: Int] {
    guard let line = stderr.split(separator: "\n").last(where: { $0.contains("anduin stopped: ") }),
          let start = line.range(of: "anduin stopped: ") else { return [:] }
    var out: [String: Int] = [:]
    for part in line[start.upperBound...].components(separatedBy: "; ") {
        // "<kind> <name>: k=v k=v"
        let words = part.split(separator: " ", maxSplits: 2)
        guard words.count == 3, words[1] == "\(component):" else { continue }
        for kv in words[2].split(separator: " ") {
            let p = kv.split(separator: "=", maxSplits: 1)
            if p.count == 2, let v = Int(p[1]) { out[String(p[0])] = v }
        }
    }
    return out
}
