import Foundation
import XCTest
#if canImport(Glibc)
import Glibc
#endif

/// A file the agent may not read (EACCES): logged once, skipped, the other files keep shipping, and
/// it is picked up once readable. Root reads everything, so when the tests run as root the agent is
/// started as `nobody` with util-linux's setpriv.
final class PermissionTests: AgentTestCase {
    func testUnreadableFileIsLoggedOnceSkippedAndRetried() throws {
        var args = ["run", "--config", sandbox.configPath]
        var binary = try XCTUnwrap(AnduinBinary.path)
        if getuid() == 0 {
            // util-linux, on every Debian/Ubuntu: its absence is a broken setup, not a reason to skip.
            guard FileManager.default.isExecutableFile(atPath: "/usr/bin/setpriv") else {
                return XCTFail("running as root without /usr/bin/setpriv (util-linux): cannot drop privileges to test EACCES")
            }
            args = ["--reuid=65534", "--regid=65534", "--clear-groups", binary] + args
            binary = "/usr/bin/setpriv"
        }
        try sandbox.mkdir("logs")
        try writeConfig("""
            data_dir: ./data
            api: {address: "127.0.0.1:0"}
            inputs:
              in: {type: tail, paths: ["./logs/*.log"], format: raw, glob_interval: 200ms, poll_interval: 100ms}
            outputs:
              out: {type: file, from: [in], path: ./out/records.ndjson, \(allMetadata)}
            """)
        let secret = sandbox.path("logs/secret.log")
        appendText(secret, "secret 1\nsecret 2\n")
        appendText(sandbox.path("logs/open.log"), "open 1\n")
        chmod(secret, 0o000)
        // `nobody` must be able to walk to the sandbox and write its data and output folders.
        for dir in [sandbox.root.path, sandbox.path("logs")] { chmod(dir, 0o777) }
        chmod(sandbox.path("logs/open.log"), 0o644)
        var dir = sandbox.root.deletingLastPathComponent()
        while dir.path != "/" {
            var st = stat()
            if stat(dir.path, &st) == 0 && (st.st_mode & 0o001) == 0 { chmod(dir.path, st.st_mode | 0o001) }
            dir = dir.deletingLastPathComponent()
        }

        let agent = try AgentProcess(binary: binary, arguments: args, stderrPath: sandbox.path("agent.stderr"),
                                     workingDirectory: NSTemporaryDirectory())
        defer { if agent.isRunning { agent.kill9() } }
        XCTAssertTrue(poll { output.refresh().compactMap(\.message) == ["open 1"] }, agent.stderr)
        appendText(sandbox.path("logs/open.log"), "open 2\n")
        XCTAssertTrue(poll { output.refresh().count == 2 }, agent.stderr)
        XCTAssertTrue(poll { agent.stderr.contains("cannot open \(secret): Permission denied") }, agent.stderr)
        // Several scans later (each scan tries the file again and counts a failed open), still one
        // log line for it.
        let api = try XCTUnwrap(apiAddress(), "the agent wrote no data/api.address: \(agent.stderr)")
        var openErrors = 0.0
        XCTAssertTrue(poll {
            openErrors = scrapeMetrics(api)?["anduin_input_open_errors_total{component=in,type=tail}"] ?? 0
            return openErrors >= 5
        }, "open_errors \(openErrors): the file was not tried again at each scan")
        XCTAssertEqual(agent.stderr.components(separatedBy: "cannot open \(secret)").count - 1, 1, agent.stderr)

        chmod(secret, 0o644)
        XCTAssertTrue(poll { Set(output.refresh().compactMap(\.message)) == ["open 1", "open 2", "secret 1", "secret 2"] },
                      "\(output.refresh().compactMap(\.message)) \(agent.stderr)")
        agent.terminate()
        XCTAssertTrue(agent.waitExit())
        XCTAssertEqual(agent.exit?.status, 0, agent.stderr)
        XCTAssertTrue(agent.stderr.contains("open_errors="), agent.stderr)
    }
}
