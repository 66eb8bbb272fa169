import AnduinCore

/// The `tail` input's options, declared once (parsing, defaults, ranges and the README).
public enum TailKeys {
    static let paths = ConfigKey<[String]>.pathList("paths", required: true, "globs; symlinks are followed (`/var/log/containers/*.log` on a node)")
    static let exclude = ConfigKey<[String]>.list("exclude", "globs; a pattern without `/` matches the file name only")
    static let format = ConfigKey<LogFormat>.choice("format", default: .auto, "`auto` (per file, from its first line) | `docker` | `cri` | `raw`")
    static let startAt = ConfigKey<StartAt>.choice("start_at", default: .beginning, "where to start a file present at start-up that has no checkpoint (`end`: after its last complete line). Files that appear later are always read from the start")
    static let maxLineBytes = ConfigKey<Int>.size("max_line_bytes", default: 1 << 20, 256...(64 << 20), "longer lines, and merged partial records, are cut to this and flagged `log.truncated: true`")
    static let watch = ConfigKey<WatchMode>.choice("watch", default: .auto, "`auto` (inotify, falling back to polling when it cannot be set up) | `inotify` | `poll`")
    static let pollInterval = ConfigKey<Double>.duration("poll_interval", default: 0.25, 0.001...3600, "poll mode, and files inotify could not watch (watch limit reached)")
    static let globInterval = ConfigKey<Double>.duration("glob_interval", default: 1, 0.001...3600, "globs are re-evaluated this often (inotify directory events trigger it at once)")
    static let rotateWait = ConfigKey<Double>.duration("rotate_wait", default: 5, 0...86_400, "a rotated or deleted file is read to its end, then closed after this long without new data")
    static let readBudget = ConfigKey<Int>.size("read_budget", default: 1 << 20, 4096...(1 << 30), "bytes read from one file before the next file gets a turn (fairness)")
    static let partialTimeout = ConfigKey<Double>.duration("partial_timeout", default: 5, 0.001...3600, "a partial record whose last part never comes is shipped after this")
    static let checkpointInterval = ConfigKey<Double>.duration("checkpoint_interval", default: 1, 0.001...3600, "how often acknowledged positions are written")

    public static let all = [paths.spec, exclude.spec, format.spec, startAt.spec, maxLineBytes.spec, watch.spec, pollInterval.spec,
                             globInterval.spec, rotateWait.spec, readBudget.spec, partialTimeout.spec, checkpointInterval.spec]
}
