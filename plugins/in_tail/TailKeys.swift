import AnduinCore
import Multiline

/// The `tail` input's options, declared once (parsing, defaults, ranges and the README).
public enum TailKeys {
    static let paths = ConfigKey<[String]>.pathList("paths", required: true, "globs; symlinks are followed. On a node: `/var/log/pods/*/*/*.log` and `/var/log/pods/*/*/*.log.*` (the DaemonSet's default), or `/var/log/containers/*.log`")
    static let exclude = ConfigKey<[String]>.list("exclude", "globs; a pattern without `/` matches the file name only. Compressed rotations (`*.gz`, `*.gz.tmp`, or a file starting with the gzip magic) are never read, whatever the globs")
    static let format = ConfigKey<LogFormat>.choice("format", default: .auto, "`auto` (per file, from its first line) | `docker` | `cri` | `raw`")
    static let startAt = ConfigKey<StartAt>.choice("start_at", default: .beginning, "where to start a file present at start-up that has no checkpoint (`end`: after its last complete line). Files that appear later are always read from the start")
    static let maxLineBytes = ConfigKey<Int>.size("max_line_bytes", default: 1 << 20, 256...(64 << 20), "longer lines, and merged partial records, are cut to this and flagged `log.truncated: true`")
    static let watch = ConfigKey<WatchMode>.choice("watch", default: .auto, "`auto` (inotify, falling back to polling when it cannot be set up) | `inotify` | `poll`")
    static let pollInterval = ConfigKey<Double>.duration("poll_interval", default: 0.25, 0.001...3600, "poll mode, and files inotify could not watch (watch limit reached)")
    static let globInterval = ConfigKey<Double>.duration("glob_interval", default: 1, 0.001...3600, "globs are re-evaluated this often (inotify directory events trigger it at once)")
    static let rotateWait = ConfigKey<Double>.duration("rotate_wait", default: 5, 0...86_400, "a rotated or deleted file is closed this long after it was read to its end *and* everything read from it was acknowledged (a full buffer pauses the clock)")
    static let readBudget = ConfigKey<Int>.size("read_budget", default: 1 << 20, 4096...(1 << 30), "bytes read from one file before the next file gets a turn (fairness)")
    static let partialTimeout = ConfigKey<Double>.duration("partial_timeout", default: 5, 0.001...3600, "a partial record whose last part never comes is shipped after this")
    static let checkpointInterval = ConfigKey<Double>.duration("checkpoint_interval", default: 1, 0.001...3600, "how often acknowledged positions are written (a newly followed file at once, within 100 ms)")
    static let checkpointTTL = ConfigKey<Double>.duration("checkpoint_ttl", default: 3600, 1...(30 * 86_400), "a checkpoint whose file is seen nowhere (no glob, no search of its directory and its symlink's target directory) is dropped after this, counted from start-up at the earliest")
    static let maxOpenFiles = ConfigKey<Int>.int("max_open_files", default: 0, 0...10_000_000, "files held open at once; `0`: 3/4 of `RLIMIT_NOFILE` (at least 64 left free). Idle ones (read to their end, acknowledged) are closed and reopened at their checkpoint when they change. Running out of descriptors (EMFILE) lowers it; an open that cannot be done yet is retried, counted in `open_deferred`, never restarted at 0")
    static let maxRotatedFiles = ConfigKey<Int>.int("max_rotated_files", default: 5, 1...1000, "rotated files held open (draining) per directory, like kubelet's 5; beyond it the oldest is given up, logged with the bytes left, counted in `rotated_given_up` / `rotated_bytes_given_up`")

    static let multiline = ConfigGroup("multiline", "join the lines of a stack trace (or any multi-line message) into one record, per file and stream, as they are read: the checkpoint never passes the first line of a record still open, so a crash never ships a fragment", MultilineKeys.options)

    public static let all = [paths.spec, exclude.spec, format.spec, startAt.spec, maxLineBytes.spec, watch.spec, pollInterval.spec,
                             globInterval.spec, rotateWait.spec, readBudget.spec, partialTimeout.spec, checkpointInterval.spec,
                             checkpointTTL.spec, maxOpenFiles.spec, maxRotatedFiles.spec, multiline.spec]
}
