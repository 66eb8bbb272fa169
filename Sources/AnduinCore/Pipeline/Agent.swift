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
import Logging
import Prometheus

/// The running agent: the current pipeline, and what outlives a config reload (the metrics registry,
/// the tap hub, the API server).
///
/// `start`, `reload` and `stop` come from the CLI's main thread; the API's threads read the pipeline
/// (`/ready`) and the progress thread waits on `stopping`: all mutable state is in `state`.
public final class Agent: APIProvider {
    public let stats = StatsRegistry()
    public let tap = TapHub()
    private let logger: Logger
    private struct State {
        var pipeline: Pipeline?
        var config: AgentConfig
        /// The API's listeners: one, or two when /tap has its own address.
        var api: [APIServer] = []
        var progress: ThreadHandle?
        var stopping = false
        /// One agent per data_dir (see `DataDirLock`); kept across reloads of the same directory.
        var dataLock: DataDirLock?
    }
    private let state: Locked<State>
    private let reloads: Prometheus.Counter
    private let reloadFailures: Prometheus.Counter

    public init(config: AgentConfig, logger: Logger) {
        self.state = Locked(State(config: config))
        self.logger = logger
        reloads = stats.prometheus.makeCounter(descriptor: MetricNameDescriptor(
            namespace: "anduin", metricName: "reloads", unitName: "total",
            helpText: "config reloads applied (SIGHUP or a watched config file change)"))
        reloadFailures = stats.prometheus.makeCounter(descriptor: MetricNameDescriptor(
            namespace: "anduin", metricName: "reload_failures", unitName: "total",
            helpText: "config reloads refused (invalid, unreadable or crashing config) or that could not start; the running pipeline was kept"))
    }

    /// The config currently running.
    public var currentConfig: AgentConfig { state.withLock { $0.config } }

    /// Builds and starts the pipeline and, when configured, the API.
    public func start() throws {
        let config = currentConfig
        let dataLock = try DataDirLock.acquire(dataDirectory: config.dataDirectory)
        state.withLock { $0.dataLock = dataLock }
        let p = try Pipeline(config: config, logger: logger, stats: stats, tap: tap)
        try startAPI(config.api, dataDirectory: config.dataDirectory)
        p.start()
        state.withLock { $0.pipeline = p }
        startProgress()
    }

    /// SIGHUP: validates the new config first (a bad one is refused with the same FILE:LINE:COLUMN
    /// messages and the running pipeline keeps going), then stops the old pipeline the way SIGTERM
    /// does (deliver or buffer what was read, checkpoint) and starts the new one, which resumes from
    /// those checkpoints and buffers: nothing is lost or read twice.
    ///
    /// `precheck`, when given, runs first and may refuse the file (the CLI validates it in a child
    /// process, so a config that would crash the parser cannot take the running agent down).
    @discardableResult
    public func reload(configPath: String, registry: PluginRegistry,
                       precheck: ((String) -> String?)? = nil) -> Bool {
        if let problem = precheck?(configPath) {
            reloadFailures.increment()
            logger.error("reload refused, the running config stays: \(ConfigDiagnostic.logSafe(problem))")
            return false
        }
        let next: AgentConfig
        switch AgentConfig.load(path: configPath, registry: registry) {
        case .success(let c): next = c
        case .failure(let errors):
            reloadFailures.increment()
            logger.error("reload refused, the running config stays: \(errors.items.count) problem(s)")
            // One line per problem, never the YAML around it (it may hold inline secrets).
            for d in errors.items { logger.error("\(ConfigDiagnostic.logSafe(d.description))") }
            return false
        }
        let (old, config) = state.withLock { ($0.pipeline, $0.config) }
        old?.stop(reloading: true)
        do {
            // A new data_dir is locked too; the old one's lock is kept until the new pipeline runs.
            let newLock = next.dataDirectory != config.dataDirectory
                ? try DataDirLock.acquire(dataDirectory: next.dataDirectory) : nil
            let p = try Pipeline(config: next, logger: logger, stats: stats, tap: tap)
            if next.api != config.api {
                stopAPI()
                try startAPI(next.api, dataDirectory: next.dataDirectory)
            }
            p.start(reloading: true)
            state.withLock {
                $0.pipeline = p
                $0.config = next
                if let newLock { $0.dataLock = newLock }
            }
            reloads.increment()
            logger.info("reloaded \(configPath): \(ConfigDiff.describe(old: config.settings, new: next.settings))")
            return true
        } catch {
            // The new config validated but could not start (a port taken, a directory not writable):
            // go back to the previous one so logs keep flowing.
            reloadFailures.increment()
            logger.error("reload failed (\(error)); restarting the previous config")
            do {
                let p = try Pipeline(config: config, logger: logger, stats: stats, tap: tap)
                if state.withLock({ $0.api.isEmpty }) {  // the probes need it back
                    try? startAPI(config.api, dataDirectory: config.dataDirectory)
                }
                p.start()
                state.withLock { $0.pipeline = p }
            } catch {
                logger.critical("the previous config cannot start either: \(error)")
                state.withLock { $0.pipeline = nil }
            }
            return false
        }
    }

    public func stop() {
        let (pipeline, progress) = state.withLock { s in
            s.stopping = true
            return (s.pipeline, s.progress)
        }
        state.broadcast()
        pipeline?.stop()
        stopAPI()
        progress?.join(timeout: 2)
    }

    private func stopAPI() {
        let servers = state.withLock { s in
            defer { s.api = [] }
            return s.api
        }
        for server in servers { server.stop() }
    }

    /// Starts the API's listeners: the probes on `address`; /tap, when enabled, on the same one or on
    /// `tap_address`. Writes the bound addresses to data_dir (`api.address`, `tap.address`): `anduin
    /// tap` finds the agent through them when the config asked for port 0.
    private func startAPI(_ options: APIOptions?, dataDirectory dir: String) throws {
        guard let options else { return }
        var token: Secret?
        if let file = options.tapTokenFile, options.tapEnabled {
            switch APIOptions.readToken(file) {
            case .success(let t): token = t
            case .failure(let p): throw StartupError("api: tap_token_file: \(p.message)")
            }
        }
        let shared = options.tapEnabled && options.tapAddress == nil
        let main = try APIServer(address: options.address, routes: APIRoutes(probes: true, tap: shared),
                                 options: options, tapToken: token, provider: self)
        state.withLock { $0.api = [main] }
        logger.info("API listening on http://\(main.boundAddress) (/metrics, /health, /ready, /status\(shared ? ", /tap" : ""))")
        try? AtomicFile.write(Data((main.boundAddress + "\n").utf8), to: dir + "/api.address", durable: false)
        var tapBound = shared ? main.boundAddress : nil
        if options.tapEnabled, let tapAddress = options.tapAddress {
            do {
                let tap = try APIServer(address: tapAddress, routes: APIRoutes(probes: false, tap: true),
                                        options: options, tapToken: token, provider: self)
                state.withLock { $0.api.append(tap) }
                tapBound = tap.boundAddress
                logger.info("API /tap listening on http://\(tap.boundAddress)")
            } catch {
                stopAPI()
                throw error
            }
        }
        if let tapBound {
            try? AtomicFile.write(Data((tapBound + "\n").utf8), to: dir + "/tap.address", durable: false)
        } else {
            unlink(dir + "/tap.address")
        }
    }

    // MARK: APIProvider

    public func metricsText() -> String { stats.renderPrometheus() }

    public func notReadyReasons() -> [String] {
        guard let p = state.withLock({ $0.pipeline }) else { return ["the pipeline is not running"] }
        return p.notReadyReasons()
    }

    // MARK: progress

    /// A one-line summary every 5 s on a terminal (only when something changed), or an info log
    /// line every minute otherwise.
    private func startProgress() {
        let tty = isatty(2) == 1
        let interval = tty ? 5.0 : 60.0
        let handle = startThread(name: "progress") { [self] in
            var progress = ProgressLine(start: totals())
            var lastTime = monotonicSeconds()
            while true {
                let deadline = monotonicSeconds() + interval
                if state.withLock(waitingUntil: deadline, { $0.stopping ? true : nil }) == true { return }
                let now = monotonicSeconds()
                let line = progress.next(totals(), seconds: now - lastTime, quietWhenUnchanged: tty)
                lastTime = now
                guard let line else { continue }
                if tty {
                    writeToStandardError("anduin: " + line + "\n")
                } else {
                    logger.info("\(line)")
                }
            }
        }
        state.withLock { $0.progress = handle }
    }

    private func totals() -> ProgressLine.Totals {
        var t = ProgressLine.Totals()
        for s in stats.components {
            for g in s.gauges {
                switch g.name {
                case "files_watched": t.files = t.files.addingSaturating(g.current)
                case "bytes_behind": t.behind = t.behind.addingSaturating(g.current)
                case "acked_bytes_per_second": t.ackedRate = t.ackedRate.addingSaturating(g.current)
                case "buffer_records", "queued_records": t.buffered = t.buffered.addingSaturating(g.current)
                default: break
                }
            }
            for c in s.counters {
                switch c.name {
                case "records_out" where s.kind == .input: t.lines = t.lines.addingSaturating(c.current)
                case "decode_errors", "write_errors", "request_failures", "dead_lettered_records", "open_errors":
                    t.errors = t.errors.addingSaturating(c.current)
                default: break
                }
            }
        }
        return t
    }
}

/// The progress line's text, and whether a terminal needs it: a line repeating the last one
/// (nothing read, nothing behind or buffered changed) is left out.
public struct ProgressLine {
    public struct Totals: Equatable, Sendable {
        public var files = 0, lines = 0, behind = 0, ackedRate = 0, buffered = 0, errors = 0
        public init() {}
    }

    private var last: Totals
    private var lastShown: (totals: Totals, rate: Int)?

    public init(start: Totals) { last = start }

    /// The line for `t`, `seconds` after the previous call; nil when `quietWhenUnchanged` and it
    /// would say what the last line said.
    public mutating func next(_ t: Totals, seconds: Double, quietWhenUnchanged: Bool) -> String? {
        let rate = Int(Double(t.lines.subtractingSaturating(last.lines)) / max(0.001, seconds))
        last = t
        var same = t
        same.ackedRate = lastShown?.totals.ackedRate ?? -1  // the estimate moves with the rate; not a change
        if quietWhenUnchanged, let shown = lastShown, shown.totals == same, shown.rate == rate { return nil }
        lastShown = (t, rate)
        var behind = "behind \(ByteSize.human(t.behind))"
        if t.behind > 0 && t.ackedRate > 0 {
            behind += " (caught up in ~\(Self.duration(t.behind / t.ackedRate)))"
        }
        return "files \(t.files) | \(rate) lines/s | \(behind) | buffered \(t.buffered) records | errors \(t.errors)"
    }

    static func duration(_ seconds: Int) -> String {
        let s = max(1, seconds)
        if s < 60 { return "\(s)s" }
        if s < 3600 { return "\(s / 60)m\(s % 60 == 0 ? "" : "\(s % 60)s")" }
        return "\(s / 3600)h\((s % 3600) / 60)m"
    }
}

extension ByteSize {
    /// 1.5 MiB, 12 KiB, 300 B: for people, not configs.
    public static func human(_ n: Int) -> String {
        let units = ["B", "KiB", "MiB", "GiB", "TiB"]
        var v = Double(n)
        var i = 0
        while v >= 1024 && i < units.count - 1 {
            v /= 1024
            i += 1
        }
        return i == 0 ? "\(n) B" : formatFixed(v, decimals: 1) + " " + units[i]
    }
}
