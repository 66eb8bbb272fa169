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

struct Tap: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Print records as they pass a component of the running agent (needs `api:` in its config).")
    @OptionGroup var options: ConfigOption
    @Option(help: "Component to watch (an input, filter or output name); all when omitted.")
    var component: String?
    @Option(help: "Stop after this many records (0: until interrupted).")
    var limit: Int = 0

    func run() throws {
        guard let cfg = loadConfig(options.config) else { throw ExitCode(1) }
        guard let api = cfg.api, var address = api.tapListenAddress else {
            let lines = cfg.api == nil ? "api:\n  address: \"127.0.0.1:2020\"\n  tap: true" : "  tap: true"
            let place = cfg.api == nil ? "at its top level" : "under its api: section"
            throw RuntimeError("""
                \(options.config) does not turn /tap on. Add \(cfg.api == nil ? "these lines" : "this line") \(place) and restart the \
                agent (or send it SIGHUP):

                \(lines)
                """)
        }
        // The agent writes the address it really bound (the config may say port 0).
        if let bound = try? String(contentsOfFile: cfg.dataDirectory + "/tap.address", encoding: .utf8) {
            address = bound.trimmed(.whitespacesAndNewlines)
        }
        if address.hasPrefix("0.0.0.0:") { address = "127.0.0.1:" + address.dropFirst(8) }
        var headers: [(String, String)] = []
        if let file = api.tapTokenFile {
            switch APIOptions.readToken(file) {
            case .success(let token): headers.append(("Authorization", "Bearer " + token.reveal()))
            case .failure(let p): throw RuntimeError("api.tap_token_file: \(p.message)")
            }
        }
        if let c = component, !cfg.components.contains(where: { $0.name == c }) {
            throw ValidationError("no component named \"\(c)\" in \(options.config); its components: "
                                  + cfg.components.map { "\"\($0.name)\"" }.joined(separator: ", "))
        }
        var url = "http://\(address)/tap?limit=\(limit)"
        if let c = component { url += "&component=" + c.percentEncodedForQuery }
        let client = try HTTPClient(options: HTTPClientOptions())
        let result = try client.stream(url: url, headers: headers, timeout: 365 * 86_400, onData: { status, chunk in
            if status == 200 { _ = writeAll(fd: 1, chunk) }
            return true  // keep reading until the agent ends the stream (the limit) or we are interrupted
        })
        if result.status != 200 {
            throw RuntimeError("the agent answered HTTP \(result.status) for \(url)")
        }
    }
}
