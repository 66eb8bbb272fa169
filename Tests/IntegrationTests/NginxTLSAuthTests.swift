import Foundation
import XCTest
#if canImport(Glibc)
import Glibc
#endif

/// The `elasticsearch` output through a real nginx (TLS with a test CA, basic auth) in front of
/// osmem-server: authentication failures and certificate checks.
final class NginxTLSAuthTests: AgentTestCase {
    private var os: OsmemPeer!
    private var nginx: NginxPeer?
    private var pki: TestPKI!

    override func setUpWithError() throws {
        try super.setUpWithError()
        os = try OsmemPeer()
        pki = try TestPKI(in: sandbox.path("pki"))
    }

    override func tearDown() {
        super.tearDown()  // kills agents first
        if let nginx, testRun.map({ $0.failureCount + $0.unexpectedExceptionCount > 0 }) == true {
            print("----- nginx error log -----\n\(nginx.errorLog.suffix(3000))")
        }
        nginx?.stop()
        nginx = nil
        os?.stop()
        os = nil
    }

    private func startNginx(htpasswd: String? = nil) throws -> NginxPeer {
        let n = try NginxPeer(dir: sandbox.path("nginx"), upstream: os.url,
                              tls: .init(certFile: pki.certFile, keyFile: pki.keyFile), htpasswd: htpasswd)
        nginx = n
        return n
    }

    private func count(_ index: String) -> Int { max(0, (try? os.count(index)) ?? 0) }

    // MARK: 11

    /// A wrong password (from `password_file`): the agent logs an authentication error naming 401
    /// and the credentials, never the password, keeps retrying and indexes nothing. Rewriting the
    /// password file (re-read per request) lets everything through; nothing is lost.
    func testWrongPasswordIsRetriedUntilFixedAndNeverLogged() throws {
        let wrong = "wrong-Pa55-7c1e", right = "right-Pa55-93ab"
        let ngx = try startNginx(htpasswd: try htpasswdLine(user: "shipper", password: right))
        try sandbox.mkdir("secrets")
        let passwordFile = try sandbox.write("secrets/password", wrong + "\n")
        let path = sandbox.path("logs/app.log")
        let lines = logLines("auth", 0..<400)
        appendText(path, joinedLines(Array(lines[0..<200])))
        try writeConfig(deliveryConfig(outputs: [
            .elasticsearch("es", url: ngx.url, index: "auth", ["user: shipper", "password_file: ./secrets/password",
                                                              "tls: {ca_file: \(pki.caFile)}"]),
        ]))
        let agent = try startAgent()
        waitForLog(agent, "authentication refused")
        // Several refused attempts (the server saw them), still nothing indexed.
        waitFor("nginx refusing several attempts") { occurrences("password mismatch", in: ngx.errorLog) >= 3 }
        XCTAssertEqual(count("auth"), 0, "nothing indexed with a wrong password")
        let log = agent.stderr
        let authLine = log.split(separator: "\n").first { $0.contains("authentication refused") }.map(String.init) ?? ""
        print("auth failure log line: \(authLine)")
        XCTAssertTrue(authLine.contains("401"), "the log names the status: \(authLine)")
        XCTAssertTrue(authLine.lowercased().contains("password") || authLine.lowercased().contains("credential"),
                      "the log points at the credentials: \(authLine)")
        XCTAssertTrue(authLine.contains("error"), "logged at error level: \(authLine)")
        XCTAssertTrue(deadLetters(sandbox, "es").isEmpty, "auth failures are never dead-lettered")

        // Fix the secret in place; lines keep coming meanwhile.
        try (right + "\n").write(toFile: passwordFile, atomically: true, encoding: .utf8)
        appendInChunks(path, Array(lines[200...]), chunk: 50)
        var have = 0
        waitFor("all 400 lines indexed after the password was fixed (have \(have))", timeout: 60) {
            have = count("auth")
            return have >= 400
        }
        stopAgent(agent)
        XCTAssertEqual(count("auth"), 400)
        XCTAssertEqual(Set(try os.search("auth").compactMap { $0.source["message"] as? String }), Set(lines))
        let finalLog = agent.stderr
        XCTAssertFalse(finalLog.contains(wrong), "the wrong password appears in the agent's log")
        XCTAssertFalse(finalLog.contains(right), "the password appears in the agent's log")
    }

    // MARK: 12

    /// Three outputs to one nginx with a certificate from an unknown CA: `tls.ca_file` delivers;
    /// no ca_file refuses (a TLS/certificate error is logged, nothing is indexed); no ca_file but
    /// `insecure_skip_verify: true` delivers.
    func testTLSVerificationWithCAFileUnknownCAAndInsecureSkipVerify() throws {
        let ngx = try startNginx()
        let lines = logLines("tls", 0..<300)
        appendText(sandbox.path("logs/app.log"), joinedLines(lines))
        try writeConfig(deliveryConfig(shutdownTimeout: "2s", outputs: [
            .elasticsearch("ca", url: ngx.url, index: "tls-ca", ["tls: {ca_file: \(pki.caFile)}"]),
            .elasticsearch("noca", url: ngx.url, index: "tls-noca", ["buffer: {type: memory, max_records: 10000}"]),
            .elasticsearch("insecure", url: ngx.url, index: "tls-insecure", ["tls: {insecure_skip_verify: true}"]),
        ]))
        let agent = try startAgent()
        waitFor("tls-ca and tls-insecure filled") { count("tls-ca") >= 300 && count("tls-insecure") >= 300 }
        waitForLog(agent, "output noca")
        waitFor("nginx seeing the refused handshakes") { occurrences("unknown ca", in: ngx.errorLog) >= 2 }
        let noca = agent.stderr.split(separator: "\n").first { $0.contains("output noca") }.map(String.init) ?? ""
        print("unknown CA log line: \(noca)")
        XCTAssertTrue(noca.contains("TLS"), "a TLS error is logged: \(noca)")
        XCTAssertTrue(noca.lowercased().contains("certificate") || noca.contains("CA"), "it names the certificate problem: \(noca)")
        XCTAssertEqual(count("tls-noca"), 0, "nothing delivered to an unverified server")
        XCTAssertEqual(count("tls-ca"), 300)
        XCTAssertEqual(count("tls-insecure"), 300)
        XCTAssertFalse(agent.stderr.contains("output ca:"), "the verified output logged a failure")
        XCTAssertFalse(agent.stderr.contains("output insecure:"), "the insecure output logged a failure")
        // `noca` cannot deliver: do not wait for a clean stop.
        killAgent(agent)
    }
}
