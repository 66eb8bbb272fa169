import AnduinCore
import XCTest
import in_tail
import out_es
import out_http

/// Secret-bearing options are `Secret`s: they print as `***`, and URL userinfo becomes Basic credentials.
final class ConfigSecretTests: XCTestCase {
    let registry = PluginRegistry([TailPlugin.spec, ElasticsearchPlugin.spec, HTTPOutputPlugin.spec])

    func load(_ output: String) -> Result<AgentConfig, ConfigErrors> {
        let yaml = "inputs:\n  in: {type: tail, paths: [x]}\noutputs:\n  o: {from: [in], buffer: {type: memory}, \(output)}\n"
        return AgentConfig.parse(yaml: yaml, file: "a.yaml", registry: registry, environment: [:])
    }

    func testUserinfoBecomesBasicCredentials() throws {
        let cfg = try load(#"type: elasticsearch, hosts: ["https://elastic:pa%40ss-Zq9@es-0:9200/", "https://elastic:pa%40ss-Zq9@es-1:9200"]"#).get()
        guard case .output(let o) = cfg.components[1].config, let es = o as? ElasticsearchConfig else { return XCTFail() }
        XCTAssertEqual(es.hosts, ["https://es-0:9200", "https://es-1:9200"])
        XCTAssertEqual(es.http.auth.user, "elastic")
        XCTAssertEqual(es.http.auth.password?.reveal(), "pa@ss-Zq9")
        XCTAssertEqual("\(es.http.auth)".contains("pa@ss"), false, "\(es.http.auth)")

        let h = try load(#"type: http, uri: "http://u:tok-Zq9@h:1/x", headers: {Authorization: "Bearer abc-Zq9", X-Tenant: t1}"#).get()
        guard case .output(let ho) = h.components[1].config, let http = ho as? HTTPOutputConfig else { return XCTFail() }
        XCTAssertEqual(http.uri, "http://h:1/x")
        XCTAssertEqual(http.http.auth.password?.reveal(), "tok-Zq9")
        XCTAssertEqual(http.http.headers.map { "\($0.0): \($0.1)" }, ["Authorization: ***", "X-Tenant: ***"])
    }

    func testProblemsNeverShowTheCredentials() {
        for output in [#"type: elasticsearch, hosts: ["ftp://u:hunter2-Zq9@h"]"#,
                       #"type: elasticsearch, hosts: ["https://u:hunter2-Zq9@a", "https://b"]"#,
                       #"type: elasticsearch, user: x, hosts: ["https://u:hunter2-Zq9@a"]"#,
                       #"type: http, uri: "ftp://u:hunter2-Zq9@h""#,
                       #"type: elasticsearch, hosts: "https://u:hunter2-Zq9@h""#,
                       #"type: http, uri: "http://h", headers: "Bearer hunter2-Zq9""#,
                       #"type: http, uri: "http://h", api_key: [hunter2-Zq9]"#] {
            guard case .failure(let e) = load(output) else { XCTFail(output); continue }
            XCTAssertFalse(e.description.contains("hunter2"), e.description)
        }
    }
}
