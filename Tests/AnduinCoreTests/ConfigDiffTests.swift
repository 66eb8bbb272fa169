import AnduinCore
import XCTest

/// The reload's one line: what was added, removed and changed, credentials named but not shown.
final class ConfigDiffTests: XCTestCase {
    func testDescribesAddedRemovedAndChangedSettings() {
        let old = [
            "data_dir": "./data", "log_level": "info",
            "inputs.in.type": "tail", "inputs.in.paths": "[./logs/*.log]",
            "outputs.es.type": "elasticsearch", "outputs.es.batch.max_records": "500", "outputs.es.password": "hunter2",
            "outputs.old.type": "stdout",
        ]
        var new = old
        new["outputs.es.batch.max_records"] = "1000"
        new["outputs.es.password"] = "s3cret"
        new["log_level"] = "debug"
        new["outputs.old.type"] = nil
        new["outputs.x.type"] = "file"
        new["outputs.x.path"] = "./x"
        let line = ConfigDiff.describe(old: old, new: new)
        XCTAssertEqual(line, "added output x; removed output old; changed log_level info → debug, es.batch.max_records 500 → 1000, es.password")
        XCTAssertFalse(line.contains("hunter2") || line.contains("s3cret"))
        XCTAssertEqual(ConfigDiff.describe(old: old, new: old), "no change")
        new = old
        new["outputs.es.batch.timeout"] = "1s"
        XCTAssertEqual(ConfigDiff.describe(old: old, new: new), "changed es.batch.timeout (unset) → 1s")
    }

    /// A URL's credentials never reach the line: flatten leaves them out of `hosts` and `uri`.
    func testURLCredentialsAreLeftOut() {
        func settings(_ yaml: String) -> [String: String] {
            let diags = Diagnostics()
            guard let root = ConfigValue.parse(yaml: yaml, file: "t.yaml", environment: [:], diagnostics: diags) else { return [:] }
            return ConfigDiff.flatten(root)
        }
        let a = settings("outputs:\n  es: {hosts: [\"https://elastic:hunter2@es:9200\"], batch: {max_records: 500}}\n")
        let b = settings("outputs:\n  es: {hosts: [\"https://elastic:hunter3@es2:9200\"], batch: {max_records: 1000}}\n")
        XCTAssertEqual(a["outputs.es.batch.max_records"], "500")
        let line = ConfigDiff.describe(old: a, new: b)
        XCTAssertEqual(line, "changed es.batch.max_records 500 → 1000, es.hosts [https://es:9200] → [https://es2:9200]")
        XCTAssertFalse(line.contains("hunter"))
    }
}
