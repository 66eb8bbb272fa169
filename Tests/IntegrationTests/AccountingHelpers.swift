import Foundation
import XCTest
#if canImport(FoundationNetworking)
import FoundationNetworking
#endif

/// Reading the running agent's API from a test: its address, and the accounting identity of an
/// output from `/status` (records in + recovered = delivered + dead-lettered + dropped + pending).
extension AgentTestCase {
    /// The API address bound by the agent whose data_dir is `dataDir` (configs ask for port 0).
    func apiAddress(dataDir: String) -> String? {
        var address: String?
        poll(timeout: 30) {
            address = (try? String(contentsOfFile: sandbox.path("\(dataDir)/api.address"), encoding: .utf8))?
                .trimmingCharacters(in: .whitespacesAndNewlines)
            return address?.isEmpty == false
        }
        return address
    }

    /// A counter of output `out` from /metrics (text exposition, read by hand: one sample per line):
    /// nil when /metrics cannot be read, 0 when the counter is not there.
    func outputCounter(_ name: String) -> Int? {
        guard let api = (try? String(contentsOfFile: sandbox.path("data/api.address"), encoding: .utf8))?
            .trimmingCharacters(in: .whitespacesAndNewlines), !api.isEmpty,
              let url = URL(string: "http://\(api)/metrics"),
              let data = try? Data(contentsOf: url) else { return nil }
        let metric = "anduin_output_\(name)_total{"
        for line in String(decoding: data, as: UTF8.self).split(separator: "\n")
        where line.hasPrefix(metric) && line.contains("component=\"out\"") {
            return line.split(separator: " ").last.flatMap { Double($0) }.map { Int($0) }
        }
        return 0
    }

    /// The accounting of `output` from the agent's /status.
    func accounting(_ api: String, _ output: String) -> [String: Any]? {
        guard let s = try? httpJSON("GET", "http://\(api)/status", body: nil),
              let outs = s["outputs"] as? [[String: Any]] else { return nil }
        return outs.first { $0["name"] as? String == output }
    }

    /// Waits until nothing is pending for `output`, then checks in + recovered = delivered +
    /// dead-lettered + dropped exactly; returns the accounting.
    @discardableResult
    func assertAccounted(_ api: String, _ output: String, delivered: Int? = nil, deadLettered: Int? = nil,
                         file: StaticString = #filePath, line: UInt = #line) -> [String: Any] {
        var a: [String: Any] = [:]
        func n(_ k: String) -> Int { (a[k] as? NSNumber)?.intValue ?? -1 }
        func d(_ k: String) -> Int { ((a["dropped"] as? [String: Any])?[k] as? NSNumber)?.intValue ?? -1 }
        waitFor("output \(output): nothing pending and every record accounted for (\(a))", timeout: 60, file: file, line: line) {
            a = accounting(api, output) ?? [:]
            return n("pending") == 0 && n("unaccounted") == 0
                && (delivered == nil || n("delivered") == delivered) && (deadLettered == nil || n("dead_lettered") == deadLettered)
        }
        XCTAssertEqual(n("in") + n("recovered"), n("delivered") + n("dead_lettered") + d("drop_oldest") + d("corrupt"),
                       "identity for \(output): \(a)", file: file, line: line)
        return a
    }
}
