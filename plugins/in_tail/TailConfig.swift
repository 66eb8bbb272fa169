import AnduinCore
import Multiline
#if canImport(Glibc)
import Glibc
#endif

public enum StartAt: String, CaseIterable, Sendable { case beginning, end }
public enum WatchMode: String, CaseIterable, Sendable { case auto, inotify, poll }

/// Options of the `tail` input: each field is its option's declaration (key, range, meaning) with
/// its default, from which come the parsing, the checks and the README (`table`).
public struct TailConfig: InputConfig {
    @OptionField(.pathList("paths", required: true, "globs; symlinks are followed. On a node: `/var/log/pods/*/*/*.log` and `/var/log/pods/*/*/*.log.*` (the DaemonSet's default), or `/var/log/containers/*.log`"), read: readPaths)
    public var paths: [String] = []
    @OptionField(.list("exclude", "globs; a pattern without `/` matches the file name only. Compressed rotations (`*.gz`, `*.gz.tmp`, or a file starting with the gzip magic) are never read, whatever the globs"),
                 adjust: { r, globs in globs.map { $0.contains("/") ? r.resolvePath($0) : $0 } })
    public var exclude: [String] = []
    @OptionField(.choice("format", "`auto` (per file, from its first line) | `docker` | `cri` | `raw`"))
    public var format = LogFormat.auto
    @OptionField(.choice("start_at", "where to start a file present at start-up that has no checkpoint (`end`: after its last complete line). Files that appear later are always read from the start"))
    public var startAt = StartAt.beginning
    @OptionField(.size("max_line_bytes", 256...(64 << 20), "longer lines, and merged partial records, are cut to this and flagged `log.truncated: true`"))
    public var maxLineBytes = 1 << 20
    @OptionField(.choice("watch", "`auto` (inotify, falling back to polling when it cannot be set up) | `inotify` | `poll`"))
    public var watch = WatchMode.auto
    /// How often files are checked for new data in poll mode (and files inotify could not watch).
    @OptionField(.duration("poll_interval", 0.001...3600, "poll mode, and files inotify could not watch (watch limit reached)"))
    public var pollInterval = 0.25
    /// How often globs are re-evaluated to find new files when they are not all watched by inotify;
    /// with inotify, folder events start a scan at most this often (and at most once a second).
    @OptionField(.duration("glob_interval", 0.001...3600, "globs are re-evaluated this often to find new, rotated and deleted files when polling (`watch: poll`, inotify unavailable, a folder inotify cannot watch, or files waiting for `max_open_files`); with inotify, a change in a folder the globs pass through re-evaluates them at once (at most once a second, or every glob_interval when shorter)"))
    public var globInterval = 1.0
    /// With inotify watching every folder the globs pass through: the full re-evaluation of the
    /// globs that runs anyway (folder events find new files at once).
    @OptionField(.duration("refresh_interval", 0.001...86_400, "with inotify watching every folder the globs pass through, new files are found from its events and the globs are re-evaluated this often as a safety net"))
    public var refreshInterval = 60.0
    /// How long a rotated or deleted file keeps being read after its last data.
    @OptionField(.duration("rotate_wait", 0...86_400, "a rotated or deleted file is closed this long after it was read to its end *and* everything read from it was acknowledged (a full buffer pauses the clock)"))
    public var rotateWait = 5.0
    /// Fairness: bytes read from one file before the next file gets its turn.
    @OptionField(.size("read_budget", 4096...(1 << 30), "bytes read from one file before the next file gets a turn (fairness)"))
    public var readBudget = 1 << 20
    /// A partial (CRI `P` / Docker split) record whose last part never comes is shipped after this.
    @OptionField(.duration("partial_timeout", 0.001...3600, "a partial record whose last part never comes is shipped after this"))
    public var partialTimeout = 5.0
    @OptionField(.duration("checkpoint_interval", 0.001...3600, "how often acknowledged positions are written (a newly followed file at once, within 100 ms)"))
    public var checkpointInterval = 1.0
    /// Checkpoints of files seen nowhere (no glob, no search of their directories) are dropped after this
    /// (those of deleted files sooner: `CheckpointRegistry.goneGrace`).
    @OptionField(.duration("checkpoint_ttl", 1...(30 * 86_400), "a checkpoint whose file is seen nowhere (no glob, no search of its directory and its symlink's target directory) is dropped after this, counted from start-up at the earliest; one whose folders no longer hold it (deleted) is dropped after 1m, or this when shorter"))
    public var checkpointTTL = 3600.0
    /// Files held open at once; 0: derived from RLIMIT_NOFILE (see `defaultMaxOpenFiles`).
    @OptionField(.int("max_open_files", 0...10_000_000, "files held open at once; `0`: 3/4 of `RLIMIT_NOFILE` (at least 64 left free). Idle ones (read to their end, acknowledged) are closed and reopened at their checkpoint when they change. Running out of descriptors (EMFILE) lowers it; an open that cannot be done yet is retried, counted in `open_deferred`, never restarted at 0"))
    public var maxOpenFiles = 0
    /// Rotated files held open (draining) per directory; more are given up, oldest first, counted.
    @OptionField(.int("max_rotated_files", 1...1000, "rotated files held open (draining) per directory, like kubelet's 5; beyond it the oldest is given up, logged with the bytes left, counted in `rotated_given_up` / `rotated_bytes_given_up`"))
    public var maxRotatedFiles = 5
    /// Lines joined into multi-line records as they are decoded; nil: every line is a record.
    @OptionField(group: "multiline", "join the lines of a stack trace (or any multi-line message) into one record, per file and stream, as they are read: the checkpoint never passes the first line of a record still open, so a crash never ships a fragment", MultilineSettings.table)
    public var multiline: MultilineSettings? = nil

    static let table = OptionTable(fields: TailConfig(paths: []))

    /// `paths`: at least one glob, and no bare folder (it would be watched for nothing: its files are
    /// never matched).
    @Sendable static func readPaths(_ r: ConfigReader) -> [String] {
        let paths = r.has("paths") ? r.pathList("paths") : []
        if paths.isEmpty {
            r.error(r.has("paths") ? "paths" : nil, "needs at least one glob in paths, such as [\"/var/log/containers/*.log\"]")
        }
        for p in paths where !p.contains(where: { "*?[".contains($0) }) {
            var st = stat()
            if stat(p, &st) == 0 && (st.st_mode & S_IFMT) == S_IFDIR {
                let dir = p.hasSuffix("/") ? String(p.dropLast()) : p
                r.error("paths", "\(p) is a directory: give a glob of the files in it, such as \"\(dir)/*.log\"")
            }
        }
        return paths
    }

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
    public static let spec = PluginSpec.input("tail", "follow log files (docker json-file, CRI, plain lines)", TailConfig.table)
}
