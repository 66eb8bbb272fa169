import Logging

// The component model: every plugin has a typed config parsed (and validated) from YAML, then is
// built into a running component. `anduin validate` runs only the first step.

public enum ComponentKind: String, Sendable, CaseIterable {
    case input, filter, output
    public var section: String { rawValue + "s" }
}

/// What a component gets when it is built.
public struct ComponentContext: Sendable {
    public let name: String
    public let kind: ComponentKind
    /// `data_dir` from the config; plugins keep their state in a subfolder of it.
    public let dataDirectory: String
    public let logger: Logger
    public let stats: ComponentStats
    /// Network outputs: set by the output's runner when it stops, polled by its senders' requests.
    public let requestAbort = RequestAbort()

    public init(name: String, kind: ComponentKind, dataDirectory: String, logger: Logger, stats: ComponentStats) {
        self.name = name
        self.kind = kind
        self.dataDirectory = dataDirectory
        self.logger = logger
        self.stats = stats
    }
}

// MARK: inputs

/// An input reads records from somewhere and hands them to the pipeline.
/// Not `Sendable`: the pipeline moves an input to its thread for `run` and takes it back for
/// `finish` (see `TakeOnceSlot`), so an implementation keeps plain `var`s and the compiler checks that
/// nothing else shares it. State other threads must reach (acknowledgements) lives in Sendable parts.
public protocol Input: AnyObject {
    /// Runs on the input's own thread until `control.isStopping`. Hand records over with
    /// `control.emit`, which blocks while downstream buffers are full (backpressure).
    func run(_ control: InputControl)
    /// Called once after the pipeline has drained (or given up draining): persist final state such as
    /// checkpoints. Only what was acknowledged may be persisted as done.
    func finish()
}

public protocol InputConfig: Sendable {
    func build(_ context: ComponentContext) throws -> any Input
}

// MARK: filters

/// A filter transforms batches: drop, change or add records. It runs on the thread of the input that
/// produced the batch, so a filter with state must protect it (several inputs may feed one filter).
public protocol Filter: AnyObject, Sendable {
    func process(_ batch: inout RecordBatch)
    /// Called once when the pipeline stops (shutdown or reload): end background work such as watches.
    func close()
}

public extension Filter {
    func close() {}
}

public protocol FilterConfig: Sendable {
    func build(_ context: ComponentContext) throws -> any Filter
}

// MARK: outputs

/// An output's typed options. Every output is a `BatchSender` behind the one delivery runtime, which
/// does the buffering (memory or disk), batching, retries, dead letters and acknowledgements.
public protocol OutputConfig: Sendable {}

public protocol EncodedOutputConfig: OutputConfig {
    var delivery: DeliveryOptions { get }
    /// One sender per concurrent request slot (one for outputs without `concurrency`); each is used by one thread.
    func makeSender(_ context: ComponentContext) throws -> any BatchSender
    /// Whether the destination can refuse a record, so the output may have dead letters (`anduin
    /// dead-letter` offers only those). A file, stdout and the blackhole refuse none: their failures
    /// are outages, retried.
    var refusesRecords: Bool { get }
}

public extension EncodedOutputConfig {
    var refusesRecords: Bool { true }
}

/// An output that writes itself (`file`, `stdout`, `blackhole`): the runtime's options are read into
/// `runtime` (`PluginSpec.localOutput`), its own `metadata:` and `encode` complete them, and it
/// delivers one batch at a time, in order, refusing no record (a failed write is an outage).
public protocol LocalOutputConfig: EncodedOutputConfig {
    var runtime: DeliveryOptions { get set }
    var metadata: DocumentMetadata { get }
    /// False: records are handed to the sender unserialised (a blackhole measuring the rest).
    var encode: Bool { get }
}

public extension LocalOutputConfig {
    var encode: Bool { true }
    var refusesRecords: Bool { false }
    var delivery: DeliveryOptions {
        var d = runtime
        d.metadata = metadata
        d.encode = encode
        d.concurrency = 1
        return d
    }
}

/// What the pipeline needs of an output's runner, whichever kind.
protocol OutputStage: AnyObject, Sendable {
    var name: String { get }
    func start()
    /// Takes a batch and keeps a reference to its ack until the batch is safe (or abandons the ack
    /// when giving up); may block (backpressure). Abandoned already: abandons `ack` at once.
    func enqueue(_ batch: RecordBatch, _ ack: AckToken)
    /// The inputs were told to stop: an input waiting for room in this output's queue may give up
    /// (its batch is read again at the next start) where the output keeps what it has anyway.
    func inputsStopping()
    func close()
    func abandon()
    func join(timeout: Double) -> Bool
    var pendingRecords: Int { get }
    /// Of `pendingRecords`, those a disk buffer keeps for the next start.
    var keptRecords: Int { get }
    /// About how many file descriptors the output holds at most (its connections, buffer files).
    var descriptorsNeeded: Int { get }
    /// For `/ready`: why this output is not ready (stalled), or nil.
    var notReadyReason: String? { get }
}

// MARK: registry

/// A plugin type: its name in `type:`, its declared options and how to read them.
public struct PluginSpec: Sendable {
    public enum Configure: Sendable {
        case input(@Sendable (ConfigReader) -> (any InputConfig)?)
        case filter(@Sendable (ConfigReader) -> (any FilterConfig)?)
        case output(@Sendable (ConfigReader) -> (any OutputConfig)?)
    }

    public let type: String
    public let summary: String
    /// The option table (without `type` and `from`).
    public let options: [OptionSpec]
    /// Options shared with other plugin types (the network outputs' buffer, batch, TLS...), documented once.
    public let shared: OptionSection?
    public let configure: Configure

    /// Every option this type accepts besides `type` and `from`.
    public var allOptions: [OptionSpec] { options + (shared?.options ?? []) }

    public var kind: ComponentKind {
        switch configure {
        case .input: return .input
        case .filter: return .filter
        case .output: return .output
        }
    }

    public static func input(_ type: String, _ summary: String, options: [OptionSpec],
                             _ parse: @escaping @Sendable (ConfigReader) -> (any InputConfig)?) -> PluginSpec {
        PluginSpec(type: type, summary: summary, options: options, shared: nil, configure: .input(parse))
    }
    public static func filter(_ type: String, _ summary: String, options: [OptionSpec],
                              _ parse: @escaping @Sendable (ConfigReader) -> (any FilterConfig)?) -> PluginSpec {
        PluginSpec(type: type, summary: summary, options: options, shared: nil, configure: .filter(parse))
    }
    public static func output(_ type: String, _ summary: String, options: [OptionSpec], shared: OptionSection? = nil,
                              _ parse: @escaping @Sendable (ConfigReader) -> (any OutputConfig)?) -> PluginSpec {
        PluginSpec(type: type, summary: summary, options: options, shared: shared, configure: .output(parse))
    }

    /// A plugin whose options are all in `table`: its config is the table's defaults with the table
    /// read into them.
    public static func input<C: InputConfig>(_ type: String, _ summary: String, _ table: OptionTable<C>) -> PluginSpec {
        .input(type, summary, options: table.options) { table.parse($0) }
    }
    public static func filter<C: FilterConfig>(_ type: String, _ summary: String, _ table: OptionTable<C>) -> PluginSpec {
        .filter(type, summary, options: table.options) { table.parse($0) }
    }
    public static func output<C: OutputConfig>(_ type: String, _ summary: String, _ table: OptionTable<C>,
                                               shared: OptionSection? = nil) -> PluginSpec {
        .output(type, summary, options: table.options, shared: shared) { table.parse($0) }
    }

    /// An output that writes itself (file, stdout, blackhole): its own options in `table`, and the
    /// runtime's `buffer:`, `batch:`, `retry:`, `dead_letter:` and `ready:` (`localOutputOptions`)
    /// read into `runtime`.
    public static func localOutput<C: LocalOutputConfig>(_ type: String, _ summary: String, _ table: OptionTable<C>) -> PluginSpec {
        .output(type, summary, options: table.options, shared: localOutputOptions) { r in
            let errorsBefore = r.diagnostics.items.count
            var c = table.defaults
            table.read(r, into: &c)
            DeliveryOptions.localTable.read(r, into: &c.runtime)
            return r.diagnostics.items.count == errorsBefore ? c : nil
        }
    }
}

public struct PluginRegistry: Sendable {
    public private(set) var specs: [ComponentKind: [String: PluginSpec]] = [:]
    public init(_ all: [PluginSpec]) {
        for s in all { specs[s.kind, default: [:]][s.type] = s }
    }
    public func spec(_ kind: ComponentKind, _ type: String) -> PluginSpec? { specs[kind]?[type] }
    public func types(_ kind: ComponentKind) -> [String] { (specs[kind] ?? [:]).keys.sorted() }
    /// The spec of `type` whatever its kind (type names are unique across kinds in practice).
    public func spec(named type: String) -> PluginSpec? {
        ComponentKind.allCases.lazy.compactMap { specs[$0]?[type] }.first
    }
}
