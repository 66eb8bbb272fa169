import AnduinCore

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

    public init(paths: [String]) { self.paths = paths }

    public func build(_ context: ComponentContext) throws -> any Input {
        TailInput(config: self, context: context)
    }
}

public enum TailPlugin {
    public static let spec = PluginSpec.input("tail", "follow log files (docker json-file, CRI, plain lines)", options: TailKeys.all) { r in
        typealias K = TailKeys
        let paths = r.has(K.paths.key) ? r.get(K.paths) : []
        if paths.isEmpty {
            r.error(r.has("paths") ? "paths" : nil, "needs at least one glob in paths, such as [\"/var/log/containers/*.log\"]")
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
        return c
    }
}
