/// The options of the config's top level, declared once.
public enum AgentKeys {
    public static let dataDir = ConfigKey<String>.path("data_dir", default: "./data", "checkpoints, disk buffers, dead letters (files 0600, folders 0700)")
    public static let logLevel = ConfigKey<LogLevelSetting>.choice("log_level", default: .info, "the agent's own logs, on stderr")
    public static let logFormat = ConfigKey<LogFormatSetting>.choice("log_format", default: .text, "the agent's own logs: text or one JSON object a line")
    public static let shutdownTimeout = ConfigKey<Double>.duration("shutdown_timeout", default: 30, 0...86_400, "how long a stop waits for outputs to deliver what was read (what is not delivered is read again at the next start)")
    public static let watchConfig = ConfigKey<Bool>.bool("watch_config", default: false, "reload when the config file's content changes (as `run --watch-config`; a ConfigMap update too)")
    public static let inputs = ConfigKey<ConfigValue?>.free("inputs", "mapping: name → input", "`<name>: {type: ..., ...}`")
    public static let filters = ConfigKey<ConfigValue?>.free("filters", "mapping: name → filter", "`<name>: {type: ..., from: [<input or filter>, ...], ...}`")
    public static let outputs = ConfigKey<ConfigValue?>.free("outputs", "mapping: name → output", "`<name>: {type: ..., from: [<input or filter>, ...], ...}`")

    public static let all = [dataDir.spec, logLevel.spec, logFormat.spec, shutdownTimeout.spec, watchConfig.spec, APIOptions.group.spec,
                             inputs.spec, filters.spec, outputs.spec]
}
