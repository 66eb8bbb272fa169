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

/// Where an output's records wait before delivery.
public enum BufferOptions: Sendable {
    /// Bounded queue in memory: records are acknowledged to the input only once delivered.
    case memory(maxRecords: Int)
    /// The disk ring: records are acknowledged to the input once written to it (they survive
    /// restarts and crashes), and removed from it once delivered.
    case disk(DiskRingOptions)

    var type: BufferType {
        switch self {
        case .memory: return .memory
        case .disk: return .disk
        }
    }
}

/// Batching, buffering, retries and readiness of an output on the delivery runtime: the options
/// every output reads (`buffer:`, `batch:`, `retry:`, `dead_letter:`, `ready:`), declared once by
/// their fields. `concurrency` and `metadata` are set by the output from its own options.
public struct DeliveryOptions: Sendable {
    /// Without `buffer:`, the value the output made the options with (`defaultBuffer` or
    /// `localDefaultBuffer`); `buffer:` without `type` keeps its type.
    @OptionField(group: "buffer", "where records wait for delivery", defaultText: "`{type: disk}` (`{type: memory}` for `file`, `stdout`, `blackhole`)",
                 BufferSettings.table, make: { settings, b, replaced in settings.buffer(b, typeNotWritten: replaced.type) })
    public var buffer: BufferOptions = defaultBuffer
    @OptionField(group: "batch", "a request is sent when any limit is reached", BatchOptions.table)
    public var batch = BatchOptions()
    @OptionField(group: "retry", "exponential backoff (equal jitter: each wait is between half and all of the nominal delay, and lasts until its deadline); the retry budget and the retry lane: see *Retries, the retry lane and the budget*", RetryOptions.table)
    public var retry = RetryOptions()
    @OptionField(group: "dead_letter", "bounds of the output's dead-letter store (see *Dead letters and replay*)", DeadLetterOptions.table)
    public var deadLetter = DeadLetterOptions()
    @OptionField(group: "ready", "`/ready` answers 503 when this output stalls (see *Observability*)", ReadyOptions.table)
    public var ready = ReadyOptions()
    /// Requests in flight at once. Acknowledgements still advance in order.
    public var concurrency = 2
    /// Source-position fields written into each document (encoded before the buffer for `disk`).
    public var metadata = DocumentMetadata.all
    /// False: records are handed to the sender unserialised (empty documents), for the `blackhole`
    /// output measuring the rest of the pipeline.
    public var encode = true

    public init(buffer: BufferOptions) { self.buffer = buffer }

    /// The buffer an output has when `buffer:` is not written: the disk ring with the declared defaults.
    public static var defaultBuffer: BufferOptions { .disk(DiskRingOptions()) }

    /// The buffer of `file`, `stdout` and `blackhole` when `buffer:` is not written.
    public static var localDefaultBuffer: BufferOptions { .memory(maxRecords: BufferSettings().memoryMaxRecords) }

    /// The options of the network outputs (a disk buffer by default).
    public static let table = OptionTable(fields: DeliveryOptions(buffer: defaultBuffer))
    /// The options of `file`, `stdout` and `blackhole` (a memory buffer by default).
    public static let localTable = OptionTable(fields: DeliveryOptions(buffer: localDefaultBuffer))
}

/// `batch:`. A batch is sent when it reaches `maxRecords` or `maxBytes`, or `timeout` after its
/// first record.
public struct BatchOptions: Sendable {
    @OptionField(.int("max_records", 1...1_000_000, "records in one request"))
    public var maxRecords = 5000
    @OptionField(.size("max_bytes", 1024...(1 << 30), "bytes in one request (before compression)"))
    public var maxBytes = 5 << 20
    @OptionField(.duration("timeout", 0.001...3600, "a request is sent this long after its first record at the latest"))
    public var timeout = 1.0

    public init() {}
    static let table = OptionTable(fields: BatchOptions())
}

/// `retry:`: the backoff, the retry budget and the retry lane.
public struct RetryOptions: Sendable {
    @OptionField(.duration("initial", 0.001...3600, "first retry delay"))
    public var initial = 0.1
    @OptionField(.duration("max", 0.001...86_400, "longest retry delay (at least `initial`)"))
    public var max = 30.0
    /// How long, and how many times, a record refused with a retriable status is retried before it
    /// is dead-lettered (0: no limit). An outage (no answer at all) is not counted against it.
    @OptionField(.duration("max_age", 0...(30 * 86_400), "a record refused with a retriable status (408, 429, 5xx) this long after its first refusal is dead-lettered; 0: no limit. An outage (no answer) does not count"))
    public var maxAge = RetryBudget().maxAge
    @OptionField(.int("max_attempts", 0...1_000_000_000, "the same, in attempts (the first send included); 0: no limit"))
    public var maxAttempts = RetryBudget().maxAttempts
    /// Bytes of records waiting out their backoff in the retry lane (outside the in-flight window);
    /// past it, a failing request is retried in place.
    @OptionField(.size("lane_max_bytes", (1 << 16)...(1 << 40), "records waiting out their backoff in the retry lane; past it, refused items are retried in place"))
    public var laneMaxBytes = 64 << 20

    public init() {}

    /// The retry budget of one record.
    public var budget: RetryBudget { RetryBudget(maxAge: maxAge, maxAttempts: maxAttempts) }

    static let table = OptionTable(fields: RetryOptions(), check: { r, o, _ in
        if o.max < o.initial { r.error("max", "must be at least retry.initial") }
    })
}

/// `ready:`.
public struct ReadyOptions: Sendable {
    /// `/ready` fails when this output made no progress for this long with records waiting, or
    /// has records failing for this long.
    @OptionField(.duration("stall_after", 0.001...(7 * 86_400), "`/ready` fails when this output made no progress for this long with records waiting, or has had records failing this long"))
    public var stallAfter = 300.0

    public init() {}
    static let table = OptionTable(fields: ReadyOptions())
}

public enum BufferType: String, CaseIterable, Sendable { case disk, memory }
public enum FsyncMode: String, CaseIterable, Sendable { case interval, always, never }

/// `buffer:` as written; `buffer(_:)` makes the `BufferOptions` of its type. The disk defaults are
/// `DiskRingOptions`'s.
struct BufferSettings: Sendable {
    @OptionField(.choice("type", "`disk`: a ring of LZ4 segment files under `data_dir/buffers/<output>/`; `memory`: a bounded queue (see *Buffers*). `file`, `stdout` and `blackhole` default to `memory`"))
    var type = BufferType.disk
    @OptionField(.int("max_records", 1...100_000_000, "(memory) records held"))
    var memoryMaxRecords = 50_000
    @OptionField(.size("max_bytes", (1 << 16)...(1 << 50), "(disk) cap on segment files; only a stop may pass it, by up to 64 MiB, to keep what the output had queued"))
    var maxBytes = DiskRingOptions().maxBytes
    @OptionField(.size("segment_bytes", (1 << 12)...BlockHeader.maxPayload, "(disk) size of one segment file (at most `max_bytes`)"))
    var segmentBytes = DiskRingOptions().segmentBytes
    @OptionField(.choice("when_full", "(disk) `block` pauses the inputs that feed this output; `drop_oldest` deletes the oldest segment (`buffer_records_dropped`)"))
    var whenFull = DiskRingOptions().whenFull
    @OptionField(.choice("fsync", "(disk) when appended records are fsynced (see *Buffers*)"))
    var fsync = FsyncMode.interval
    @OptionField(.duration("fsync_interval", 0.001...3600, "(disk) with `fsync: interval`"))
    var fsyncInterval = DiskRingOptions.defaultFsyncInterval
    @OptionField(.bool("compress", "(disk) LZ4-compress blocks"))
    var compress = DiskRingOptions().compress

    static let table = OptionTable(fields: BufferSettings())

    /// The buffer of `type` (`typeNotWritten` when `b` has no `type`), its problems reported on `b`
    /// (the `buffer:` reader).
    func buffer(_ b: ConfigReader, typeNotWritten: BufferType) -> BufferOptions {
        switch b.has("type") ? type : typeNotWritten {
        case .memory:
            return .memory(maxRecords: memoryMaxRecords)
        case .disk:
            var d = DiskRingOptions(maxBytes: maxBytes, segmentBytes: segmentBytes, whenFull: whenFull, compress: compress)
            // A small ring gets one segment of its size rather than an error.
            if !b.has("segment_bytes") { d.segmentBytes = min(d.segmentBytes, d.maxBytes) }
            switch fsync {
            case .always: d.fsync = .always
            case .never: d.fsync = .never
            case .interval: d.fsync = .interval(fsyncInterval)
            }
            if d.segmentBytes > d.maxBytes {
                b.error("segment_bytes", "\(ByteSize.format(d.segmentBytes)) is larger than max_bytes (\(ByteSize.format(d.maxBytes))): the ring needs room for at least one segment")
            } else if let problem = d.problem {
                b.error("segment_bytes", problem)
            }
            return .disk(d)
        }
    }
}

/// The retry budget of one record: retriable refusals (item or request 408/429/5xx, a 2xx that is
/// not a complete receipt) are retried with backoff until either limit, then dead-lettered.
public struct RetryBudget: Sendable, Equatable {
    /// Seconds from the record's first failure; 0: no limit.
    public var maxAge = 900.0
    /// Attempts (the first send included); 0: no limit.
    public var maxAttempts = 0

    public init(maxAge: Double = 900, maxAttempts: Int = 0) {
        self.maxAge = maxAge
        self.maxAttempts = maxAttempts
    }

    /// Whether a record that failed `attempts` times, first at `firstFailure` (wall-clock ns), is done.
    public func spent(attempts: Int, firstFailure: Int64, now: Int64) -> Bool {
        if maxAttempts > 0 && attempts >= maxAttempts { return true }
        if maxAge > 0 && firstFailure > 0 && Double(now - firstFailure) / 1e9 >= maxAge { return true }
        return false
    }
}

/// Bounds of an output's dead-letter store (`data_dir/dead-letter/<output>/`).
public struct DeadLetterOptions: Sendable {
    @OptionField(.size("max_bytes", (1 << 16)...(1 << 40), "bytes of the dead-letter store (`data_dir/dead-letter/<output>/`); the oldest file goes first"))
    public var maxBytes = 256 << 20
    @OptionField(.int("max_files", 2...10_000, "files of the dead-letter store"))
    public var maxFiles = 8
    public init() {}
    static let table = OptionTable(fields: DeadLetterOptions())
}
