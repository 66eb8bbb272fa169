import Foundation
import XCTest

/// Issue 13: credentials never appear in the agent's logs, `validate`, /metrics or dead letters, even
/// when a receiver echoes them back; everything under data_dir is private to the agent's user.
final class SecretsTests: AgentTestCase {
    func testCredentialsEchoedByAReceiverNeverReachLogsMetricsOrDeadLetters() throws {
        let receiver = try ReceiverPeer()
        defer { receiver.stop() }
        // Every delivery is refused with a body quoting the request's headers (Authorization too).
        try receiver.script([], then: "400echo")
        let port = receiver.port
        try sandbox.mkdir("logs")
        try sandbox.mkdir("data")
        let token = "bearer-Secret-Token-5"
        _ = try sandbox.write("token", token + "\n")
        // A checkpoint left world-readable by an older version must be tightened at start.
        let old = try sandbox.write("data/old-file.json", "{}")
        chmod(old, 0o644)
        let secrets = [
            "url-Pass-Secret-3", "pw-Inline-Secret-1", "hdr-Secret-Value-2", "apikey-Secret-4", token,
            Data("urluser:url-Pass-Secret-3".utf8).base64EncodedString(),
            Data("inline-user:pw-Inline-Secret-1".utf8).base64EncodedString(),
        ]
        try writeConfig("""
            data_dir: ./data
            api: {address: "127.0.0.1:0"}
            inputs:
              in: {type: tail, paths: ["./logs/*.log"], format: raw, glob_interval: 200ms}
            outputs:
              userinfo: {type: http, from: [in], uri: "http://urluser:url-Pass-Secret-3@127.0.0.1:\(port)/ingest", compression: none}
              basic: {type: http, from: [in], uri: "http://127.0.0.1:\(port)/ingest", user: inline-user,
                      password: pw-Inline-Secret-1, headers: {X-Api-Token: hdr-Secret-Value-2}}
              apikey: {type: http, from: [in], uri: "http://127.0.0.1:\(port)/ingest", api_key: apikey-Secret-4,
                       buffer: {type: memory}}
              bearer: {type: http, from: [in], uri: "http://127.0.0.1:\(port)/ingest", token_file: ./token}
            """)
        let agent = try startAgent()
        appendText(sandbox.path("logs/a.log"), (0..<5).map { "line \($0)" }.joined(separator: "\n") + "\n")
        let outputs = ["userinfo", "basic", "apikey", "bearer"]
        func deadLetters(_ o: String) -> String {
            // Every file of the output's dead-letter store, oldest first.
            let dir = sandbox.path("data/dead-letter/\(o)")
            let files = ((try? FileManager.default.contentsOfDirectory(atPath: dir)) ?? []).filter { $0.hasSuffix(".ndjson") }.sorted()
            return files.map { (try? String(contentsOfFile: dir + "/" + $0, encoding: .utf8)) ?? "" }.joined()
        }
        XCTAssertTrue(poll { outputs.allSatisfy { deadLetters($0).split(separator: "\n").count == 5 } },
                      outputs.map { "\($0): \(deadLetters($0).split(separator: "\n").count)" }.joined(separator: ", "))
        // The receiver really saw (and echoed) the credentials: the scrubbing is what hides them.
        let seen = try receiver.snapshot().auth.joined(separator: " ")
        XCTAssertTrue(seen.contains(token) && seen.contains("ApiKey apikey-Secret-4"), seen)
        for o in outputs { XCTAssertTrue(deadLetters(o).contains("***"), "\(o): \(deadLetters(o))") }

        let api = try XCTUnwrap(try? String(contentsOfFile: sandbox.path("data/api.address"), encoding: .utf8))
        let metrics = RawHTTP.get(port: RawHTTP.port(api.trimmingCharacters(in: .whitespacesAndNewlines)) ?? 0,
                                  path: "/metrics")?.body ?? ""
        XCTAssertTrue(metrics.contains("anduin_output"), metrics)
        stopAgent(agent)
        var places = ["log": agent.stderr, "metrics": metrics]
        for o in outputs { places["dead letters of \(o)"] = deadLetters(o) }
        for (place, text) in places {
            for s in secrets { XCTAssertFalse(text.contains(s), "\(s) found in \(place)") }
        }

        // `validate` on a config whose mistake sits next to a secret.
        try writeConfig("""
            inputs:
              in: {type: tail, paths: ["./logs/*.log"]}
            outputs:
              es: {type: elasticsearch, from: [in], hosts: ["ftp://esuser:es-Secret-6@127.0.0.1:1"]}
            """)
        let validate = try AgentProcess(binary: AnduinBinary.path!, arguments: ["validate", "--config", sandbox.configPath],
                                        stderrPath: sandbox.path("validate.stderr"), workingDirectory: NSTemporaryDirectory(),
                                        stdoutPath: sandbox.path("validate.stdout"))
        XCTAssertTrue(validate.waitExit())
        XCTAssertEqual(validate.exit?.status, 1)
        XCTAssertTrue(validate.stderr.contains("must start with http"), validate.stderr)
        XCTAssertFalse(validate.stderr.contains("es-Secret-6"), validate.stderr)

        // Everything under data_dir: files 0600, folders 0700 (the old file included).
        var checked = 0
        let dataDir = sandbox.path("data")
        let walker = FileManager.default.enumerator(atPath: dataDir)
        while let rel = walker?.nextObject() as? String {
            var st = stat()
            XCTAssertEqual(lstat(dataDir + "/" + rel, &st), 0)
            let mode = st.st_mode & 0o777
            if st.st_mode & S_IFMT == S_IFDIR {
                XCTAssertEqual(mode, 0o700, "\(rel) is \(String(mode, radix: 8))")
            } else {
                XCTAssertEqual(mode, 0o600, "\(rel) is \(String(mode, radix: 8))")
            }
            checked += 1
        }
        XCTAssertGreaterThan(checked, 6, "checkpoints, buffers and dead letters were written")
    }

    /// Issue 24 (3): Elasticsearch's per-item reasons quote the request's Authorization header
    /// (`request auth was ApiKey …`) in an HTTP 200 answer. Neither the credential nor any form of
    /// it (raw, base64 of `user:password`, the decoded `id:key` of an API key, a bearer token from a
    /// file before and after it is replaced) reaches the log, the dead-letter store, `dead-letter
    /// list`, `status` or /metrics.
    func testPerItemReasonsQuotingTheAuthorizationHeaderAreScrubbed() throws {
        let receiver = try ReceiverPeer()
        defer { receiver.stop() }
        try receiver.script([], then: "item400echo")
        let port = receiver.port
        try sandbox.mkdir("logs")
        try sandbox.mkdir("data")
        let apiKeySecret = "esKeySecretPart-24x"
        let apiKey = Data("keyid-1:\(apiKeySecret)".utf8).base64EncodedString()
        let tokenA = "bearer-FileToken-A-24", tokenB = "bearer-FileToken-B-24"
        _ = try sandbox.write("token", tokenA + "\n")
        let basicB64 = Data("es-user:es-Password-24".utf8).base64EncodedString()
        let secrets = [apiKey, apiKeySecret, "es-Password-24", basicB64, tokenA, tokenB, "hdr-Token-24z",
                       "url-Secret-24", Data("urluser:url-Secret-24".utf8).base64EncodedString()]
        try writeConfig("""
            data_dir: ./data
            api: {address: "127.0.0.1:0"}
            inputs:
              in: {type: tail, paths: ["./logs/*.log"], format: raw, glob_interval: 200ms}
            outputs:
              apikey: {type: elasticsearch, from: [in], hosts: ["http://127.0.0.1:\(port)"], api_key: "\(apiKey)", compression: none}
              basic: {type: elasticsearch, from: [in], hosts: ["http://127.0.0.1:\(port)"], user: es-user, password: es-Password-24}
              bearer: {type: elasticsearch, from: [in], hosts: ["http://127.0.0.1:\(port)"], token_file: ./token}
              header: {type: elasticsearch, from: [in], hosts: ["http://127.0.0.1:\(port)"], headers: {Authorization: "Bearer hdr-Token-24z"}}
              userinfo: {type: elasticsearch, from: [in], hosts: ["http://urluser:url-Secret-24@127.0.0.1:\(port)"]}
            """)
        let agent = try startAgent()
        let outputs = ["apikey", "basic", "bearer", "header", "userinfo"]
        func deadLetters(_ o: String) -> String {
            let dir = sandbox.path("data/dead-letter/\(o)")
            let files = ((try? FileManager.default.contentsOfDirectory(atPath: dir)) ?? []).filter { $0.hasSuffix(".ndjson") }.sorted()
            return files.map { (try? String(contentsOfFile: dir + "/" + $0, encoding: .utf8)) ?? "" }.joined()
        }
        func waitFor(_ n: Int) {
            XCTAssertTrue(poll { outputs.allSatisfy { deadLetters($0).split(separator: "\n").count == n } },
                          outputs.map { "\($0): \(deadLetters($0).split(separator: "\n").count)" }.joined(separator: ", "))
        }
        appendText(sandbox.path("logs/a.log"), (0..<5).map { "line \($0)" }.joined(separator: "\n") + "\n")
        waitFor(5)
        // The token file is replaced: the new token is sent, and scrubbed, from the next request on.
        _ = try sandbox.write("token", tokenB + "\n")
        appendText(sandbox.path("logs/a.log"), (5..<10).map { "line \($0)" }.joined(separator: "\n") + "\n")
        waitFor(10)
        // The receiver saw (and echoed) each credential: the scrubbing is what hides them.
        let seen = try receiver.snapshot().auth.joined(separator: " ")
        for s in ["ApiKey " + apiKey, "Basic " + basicB64, "Bearer " + tokenA, "Bearer " + tokenB, "Bearer hdr-Token-24z"] {
            XCTAssertTrue(seen.contains(s), "\(s) not sent: \(seen)")
        }
        // libcurl's `Basic …` header is replaced by its base64 part.
        for o in outputs {
            XCTAssertTrue(deadLetters(o).contains("request auth was ***") || deadLetters(o).contains("request auth was Basic ***"),
                          "\(o): \(deadLetters(o))")
        }

        let api = try XCTUnwrap(try? String(contentsOfFile: sandbox.path("data/api.address"), encoding: .utf8))
        let apiPort = RawHTTP.port(api.trimmingCharacters(in: .whitespacesAndNewlines)) ?? 0
        let metrics = RawHTTP.get(port: apiPort, path: "/metrics")?.body ?? ""
        let status = RawHTTP.get(port: apiPort, path: "/status")?.body ?? ""
        let ready = RawHTTP.get(port: apiPort, path: "/ready")?.body ?? ""
        XCTAssertTrue(metrics.contains("anduin_output"), metrics)
        stopAgent(agent)
        var places = ["log": agent.stderr, "metrics": metrics, "status": status, "ready": ready]
        for o in outputs {
            places["dead letters of \(o)"] = deadLetters(o)
            let list = try AgentProcess(binary: AnduinBinary.path!,
                                        arguments: ["dead-letter", "list", "--config", sandbox.configPath, "--output", o],
                                        stderrPath: sandbox.path("list-\(o).stderr"), workingDirectory: NSTemporaryDirectory(),
                                        stdoutPath: sandbox.path("list-\(o).stdout"))
            XCTAssertTrue(list.waitExit())
            let text = ((try? String(contentsOfFile: sandbox.path("list-\(o).stdout"), encoding: .utf8)) ?? "") + list.stderr
            XCTAssertTrue(text.contains("***"), "dead-letter list --output \(o): \(text)")
            places["dead-letter list of \(o)"] = text
        }
        for (place, text) in places {
            for s in secrets { XCTAssertFalse(text.contains(s), "\(s) found in \(place)") }
        }
    }
}
