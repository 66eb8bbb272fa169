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
}

/// Batching, buffering, retries and concurrency of an output on the delivery runtime. Its fields
/// hold the defaults; ranges and meanings are in `table`.
public struct DeliveryOptions: Sendable {
    public var buffer: BufferOptions
    public var maxRecords = 5000
    public var maxBytes = 5 << 20
    /// A batch is sent when it reaches `maxRecords` or `maxBytes`, or this long after its first record.
    public var batchTimeout = 1.0
    public var retryInitial = 0.1
    public var retryMax = 30.0
    /// How long, and how many times, a record refused with a retriable status is retried before it
    /// is dead-lettered (0: no limit). An outage (no answer at all) is not counted against it.
    public var budget = RetryBudget()
    /// Bytes of records waiting out their backoff in the retry lane (outside the in-flight window);
    /// past it, a failing request is retried in place.
    public var laneMaxBytes = 64 << 20
    public var deadLetter = DeadLetterOptions()
    /// `/ready` fails when this output made no progress for this long with records waiting, or
    /// has records failing for this long.
    public var stallAfter = 300.0
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

    /// Reads `buffer:`, `batch:`, `retry:`, `dead_letter:`, `ready:`, `metadata:` and, when
    /// `concurrent`, `concurrency` from an output's options (not concurrent: one request at a time,
    /// in order).
    public static func parse(_ r: ConfigReader, defaultBuffer: BufferOptions = defaultBuffer, concurrent: Bool = true) -> DeliveryOptions {
        var o = DeliveryOptions(buffer: defaultBuffer)
        o.metadata = DocumentMetadata.read(r)
        (concurrent ? table : runtimeTable).read(r, into: &o)
        if !concurrent { o.concurrency = 1 }
        return o
    }

    /// What every output on the runtime reads: `buffer:`, `batch:`, `retry:`, `dead_letter:` and
    /// `ready:`, declared once.
    public static let runtimeTable: OptionTable<DeliveryOptions> = OptionTable(DeliveryOptions(buffer: defaultBuffer)) { d in [
        .group(ConfigGroup("buffer", "where records wait for delivery", defaultText: "`{type: disk}`", BufferSettings.table.options),
               \.buffer, BufferSettings.read),
        .group("batch", "a request is sent when any limit is reached", batch, \.self),
        .group("retry", "exponential backoff (equal jitter: each wait is between half and all of the nominal delay, and lasts until its deadline); the retry budget and the retry lane: see *Retries, the retry lane and the budget*", retry, \.self),
        .group("dead_letter", "bounds of the output's dead-letter store (see *Dead letters and replay*)", deadLetter, \.deadLetter),
        .group("ready", "`/ready` answers 503 when this output stalls (see *Observability*)", ready, \.self),
    ]}

    /// The network outputs' table: `runtimeTable` and `concurrency`.
    public static let table: OptionTable<DeliveryOptions> = OptionTable(DeliveryOptions(buffer: defaultBuffer)) { d in
        runtimeTable.rows + [
            .key(.int("concurrency", default: d.concurrency, 1...64, "requests in flight; acknowledgements still advance in order"), \.concurrency),
        ]
    }

    // The groups' tables; `batch`, `retry` and `ready` fill fields of `DeliveryOptions` itself.
    static let batch: OptionTable<DeliveryOptions> = OptionTable(DeliveryOptions(buffer: defaultBuffer)) { d in [
        .key(.int("max_records", default: d.maxRecords, 1...1_000_000, "records in one request"), \.maxRecords),
        .key(.size("max_bytes", default: d.maxBytes, 1024...(1 << 30), "bytes in one request (before compression)"), \.maxBytes),
        .key(.duration("timeout", default: d.batchTimeout, 0.001...3600, "a request is sent this long after its first record at the latest"), \.batchTimeout),
    ]}

    static let retry: OptionTable<DeliveryOptions> = OptionTable(DeliveryOptions(buffer: defaultBuffer), check: checkRetry) { d in [
        .key(.duration("initial", default: d.retryInitial, 0.001...3600, "first retry delay"), \.retryInitial),
        .key(.duration("max", default: d.retryMax, 0.001...86_400, "longest retry delay (at least `initial`)"), \.retryMax),
        .key(.duration("max_age", default: d.budget.maxAge, 0...(30 * 86_400), "a record refused with a retriable status (408, 429, 5xx) this long after its first refusal is dead-lettered; 0: no limit. An outage (no answer) does not count"), \.budget.maxAge),
        .key(.int("max_attempts", default: d.budget.maxAttempts, 0...1_000_000_000, "the same, in attempts (the first send included); 0: no limit"), \.budget.maxAttempts),
        .key(.size("lane_max_bytes", default: d.laneMaxBytes, (1 << 16)...(1 << 40), "records waiting out their backoff in the retry lane; past it, refused items are retried in place"), \.laneMaxBytes),
    ]}

    @Sendable static func checkRetry(_ r: ConfigReader, _ o: inout DeliveryOptions, _: Bool) {
        if o.retryMax < o.retryInitial { r.error("max", "must be at least retry.initial") }
    }

    static let deadLetter: OptionTable<DeadLetterOptions> = OptionTable(DeadLetterOptions()) { d in [
        .key(.size("max_bytes", default: d.maxBytes, (1 << 16)...(1 << 40), "bytes of the dead-letter store (`data_dir/dead-letter/<output>/`); the oldest file goes first"), \.maxBytes),
        .key(.int("max_files", default: d.maxFiles, 2...10_000, "files of the dead-letter store"), \.maxFiles),
    ]}

    static let ready: OptionTable<DeliveryOptions> = OptionTable(DeliveryOptions(buffer: defaultBuffer)) { d in [
        .key(.duration("stall_after", default: d.stallAfter, 0.001...(7 * 86_400), "`/ready` fails when this output made no progress for this long with records waiting, or has had records failing this long"), \.stallAfter),
    ]}
}

public enum BufferType: String, CaseIterable, Sendable { case disk, memory }
public enum FsyncMode: String, CaseIterable, Sendable { case interval, always, never }

/// `buffer:` as written; `buffer(_:)` makes the `BufferOptions` of its type. The disk defaults are
/// `DiskRingOptions`'s.
struct BufferSettings: Sendable {
    var type = BufferType.disk
    var memoryMaxRecords = 50_000
    var disk = DiskRingOptions()
    var fsync = FsyncMode.interval
    var fsyncInterval = DiskRingOptions.defaultFsyncInterval

    static let table: OptionTable<BufferSettings> = OptionTable(BufferSettings()) { d in [
        .key(.choice("type", default: d.type, "`disk`: a ring of LZ4 segment files under `data_dir/buffers/<output>/`; `memory`: a bounded queue (see *Buffers*)"), \.type),
        .key(.int("max_records", default: d.memoryMaxRecords, 1...100_000_000, "(memory) records held"), \.memoryMaxRecords),
        .key(.size("max_bytes", default: d.disk.maxBytes, (1 << 16)...(1 << 50), "(disk) cap on segment files; only a stop may pass it, by up to 64 MiB, to keep what the output had queued"), \.disk.maxBytes),
        .key(.size("segment_bytes", default: d.disk.segmentBytes, (1 << 12)...BlockHeader.maxPayload, "(disk) size of one segment file (at most `max_bytes`)"), \.disk.segmentBytes),
        .key(.choice("when_full", default: d.disk.whenFull, "(disk) `block` pauses the inputs that feed this output; `drop_oldest` deletes the oldest segment (`buffer_records_dropped`)"), \.disk.whenFull),
        .key(.choice("fsync", default: d.fsync, "(disk) when appended records are fsynced (see *Buffers*)"), \.fsync),
        .key(.duration("fsync_interval", default: d.fsyncInterval, 0.001...3600, "(disk) with `fsync: interval`"), \.fsyncInterval),
        .key(.bool("compress", default: d.disk.compress, "(disk) LZ4-compress blocks"), \.disk.compress),
    ]}

    /// The buffer `b` (the `buffer:` reader) describes, its problems reported on `b`.
    @Sendable static func read(_ b: ConfigReader) -> BufferOptions {
        var settings = table.defaults
        table.read(b, into: &settings)
        return settings.buffer(b)
    }

    /// The buffer of `type`, its problems reported on `b`.
    func buffer(_ b: ConfigReader) -> BufferOptions {
        switch type {
        case .memory:
            return .memory(maxRecords: memoryMaxRecords)
        case .disk:
            var d = disk
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
public struct DeadLetterOptions: Sendable, Equatable {
    public var maxBytes = 256 << 20
    public var maxFiles = 8
    public init() {}
}
