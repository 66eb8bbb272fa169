import AnduinCore
import Multiline
#if canImport(Glibc)
import Glibc
#endif

public enum StartAt: String, CaseIterable, Sendable { case beginning, end }
public enum WatchMode: String, CaseIterable, Sendable { case auto, inotify, poll }

/// Options of the `tail` input.
public struct TailConfig: InputConfig {
    public var paths: [String]
    public var exclude: [String] = []
    public var format = TailKeys.format.defaultValue
    public var startAt = TailKeys.startAt.defaultValue
    public var maxLineBytes = TailKeys.maxLineBytes.defaultValue
    public var watch = TailKeys.watch.defaultValue
    /// How often files are checked for new data in poll mode (and files inotify could not watch).
    public var pollInterval = TailKeys.pollInterval.defaultValue
    /// How often globs are re-evaluated to find new files (inotify also wakes the scan at once).
    public var globInterval = TailKeys.globInterval.defaultValue
    /// How long a rotated or deleted file keeps being read after its last data.
    public var rotateWait = TailKeys.rotateWait.defaultValue
    /// Fairness: bytes read from one file before the next file gets its turn.
    public var readBudget = TailKeys.readBudget.defaultValue
    /// A partial (CRI `P` / Docker split) record whose last part never comes is shipped after this.
    public var partialTimeout = TailKeys.partialTimeout.defaultValue
    public var checkpointInterval = TailKeys.checkpointInterval.defaultValue
    /// Checkpoints of files seen nowhere (no glob, no search of their directories) are dropped after this.
    public var checkpointTTL = TailKeys.checkpointTTL.defaultValue
    /// Files held open at once; 0: derived from RLIMIT_NOFILE (see `defaultMaxOpenFiles`).
    public var maxOpenFiles = TailKeys.maxOpenFiles.defaultValue
    /// Rotated files held open (draining) per directory; more are given up, oldest first, counted.
    public var maxRotatedFiles = TailKeys.maxRotatedFiles.defaultValue
    /// Lines joined into multi-line records as they are decoded; nil: every line is a record.
    public var multiline: MultilineSettings?

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
    public static let spec = PluginSpec.input("tail", "follow log files (docker json-file, CRI, plain lines)", options: TailKeys.all) { r in
        typealias K = TailKeys
        let paths = r.has(K.paths.key) ? r.get(K.paths) : []
        if paths.isEmpty {
            r.error(r.has("paths") ? "paths" : nil, "needs at least one glob in paths, such as [\"/var/log/containers/*.log\"]")
        }
        // A folder named without a glob would be watched for nothing: its files are never matched.
        for p in paths where !p.contains(where: { "*?[".contains($0) }) {
            var st = stat()
            if stat(p, &st) == 0 && (st.st_mode & S_IFMT) == S_IFDIR {
                let dir = p.hasSuffix("/") ? String(p.dropLast()) : p
                r.error("paths", "\(p) is a directory: give a glob of the files in it, such as \"\(dir)/*.log\"")
            }
        }
        var c = TailConfig(paths: paths)
        c.exclude = r.get(K.exclude).map { $0.contains("/") ? r.resolvePath($0) : $0 }
        c.format = r.get(K.format)
        c.startAt = r.get(K.startAt)
        c.maxLineBytes = r.get(K.maxLineBytes)
        c.watch = r.get(K.watch)
        c.pollInterval = r.get(K.pollInterval)
        c.globInterval = r.get(K.globInterval)
        c.rotateWait = r.get(K.rotateWait)
        c.readBudget = r.get(K.readBudget)
        c.partialTimeout = r.get(K.partialTimeout)
        c.checkpointInterval = r.get(K.checkpointInterval)
        c.checkpointTTL = r.get(K.checkpointTTL)
        c.maxOpenFiles = r.get(K.maxOpenFiles)
        c.maxRotatedFiles = r.get(K.maxRotatedFiles)
        if let g = r.group(K.multiline) { c.multiline = MultilineSettings.read(g) }
        return c
    }
}
