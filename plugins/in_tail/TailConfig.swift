import AnduinCore
#if canImport(Glibc)
import Glibc
#endif

public enum StartAt: String, CaseIterable, Sendable { case beginning, end }
public enum WatchMode: String, CaseIterable, Sendable { case auto, inotify, poll }

/// Options of the `tail` input.
public struct TailConfig: InputConfig {
    public var paths: [String]
    public var exclude: [String] = []
    public var format: LogFormat = .auto
    public var startAt: StartAt = .beginning
    public var maxLineBytes: Int = 1 << 20
    public var watch: WatchMode = .auto
    /// How often files are checked for new data in poll mode (and files inotify could not watch).
    public var pollInterval: Double = 0.25
    /// How often globs are re-evaluated to find new files (inotify also wakes the scan at once).
    public var globInterval: Double = 1
    /// How long a rotated or deleted file keeps being read after its last data.
    public var rotateWait: Double = 5
    /// Fairness: bytes read from one file before the next file gets its turn.
    public var readBudget: Int = 1 << 20
    /// A partial (CRI `P` / Docker split) record whose last part never comes is shipped after this.
    public var partialTimeout: Double = 5
    public var checkpointInterval: Double = 1
    /// Checkpoints of files seen nowhere (no glob, no search of their directories) are dropped after this.
    public var checkpointTTL: Double = 3600
    /// Files held open at once; 0: derived from RLIMIT_NOFILE (see `defaultMaxOpenFiles`).
    public var maxOpenFiles: Int = 0
    /// Rotated files held open (draining) per directory; more are given up, oldest first, counted.
    public var maxRotatedFiles: Int = 5

    public init(paths: [String]) { self.paths = paths }

    public func build(_ context: ComponentContext) throws -> any Input {
        TailInput(config: self, context: context)
    }

    /// Three quarters of the soft RLIMIT_NOFILE, leaving the rest (at least 64) to sockets, buffer
    /// segments, checkpoints and the API.
    public static func defaultMaxOpenFiles() -> Int {
        var rl = rlimit()
        guard getrlimit(Int32(RLIMIT_NOFILE.rawValue), &rl) == 0, rl.rlim_cur != rlim_t.max else { return 65536 }
        let limit = Int(min(rl.rlim_cur, 1 << 30))
        return max(16, min(limit - 64, limit * 3 / 4))
    }
}

public enum TailPlugin {
    public static let spec = PluginSpec.input("tail", "follow log files (docker json-file, CRI, plain lines)") { r in
        let paths = r.pathList("paths")
        if paths.isEmpty {
            r.error(r.has("paths") ? "paths" : nil, "needs at least one glob in paths, such as [\"/var/log/containers/*.log\"]")
        }
        var c = TailConfig(paths: paths)
        c.exclude = r.stringList("exclude").map { $0.contains("/") ? r.resolvePath($0) : $0 }
        c.format = r.choice("format", default: .auto)
        c.startAt = r.choice("start_at", default: .beginning)
        c.maxLineBytes = r.size("max_line_bytes", default: 1 << 20, minimum: 256)
        c.watch = r.choice("watch", default: .auto)
        c.pollInterval = r.duration("poll_interval", default: 0.25)
        c.globInterval = r.duration("glob_interval", default: 1)
        c.rotateWait = r.duration("rotate_wait", default: 5)
        c.readBudget = r.size("read_budget", default: 1 << 20, minimum: 4096)
        c.partialTimeout = r.duration("partial_timeout", default: 5)
        c.checkpointInterval = r.duration("checkpoint_interval", default: 1)
        c.checkpointTTL = r.duration("checkpoint_ttl", default: 3600)
        c.maxOpenFiles = r.int("max_open_files", default: 0, range: 0...10_000_000)
        c.maxRotatedFiles = r.int("max_rotated_files", default: 5, range: 1...1000)
        for (key, v) in [("poll_interval", c.pollInterval), ("glob_interval", c.globInterval),
                         ("checkpoint_interval", c.checkpointInterval)] where v <= 0 {
            r.error(key, "must be more than 0")
        }
        return c
    }
}
