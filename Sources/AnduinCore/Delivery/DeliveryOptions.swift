import Foundation

/// Where an output's records wait before delivery.
public enum BufferOptions: Sendable {
    /// Bounded queue in memory: records are acknowledged to the input only once delivered.
    case memory(maxRecords: Int)
    /// The disk ring: records are acknowledged to the input once written to it (they survive
    /// restarts and crashes), and removed from it once delivered.
    case disk(DiskRingOptions)
}

/// Batching, retries and concurrency of a network output.
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

    public init(buffer: BufferOptions) { self.buffer = buffer }

    /// Reads `buffer:`, `batch:`, `retry:` and `concurrency` from an output's options.
    /// `defaultBuffer` is the output type's documented default.
    public static func parse(_ r: ConfigReader, defaultBuffer: BufferOptions) -> DeliveryOptions {
        var o = DeliveryOptions(buffer: defaultBuffer)
        if let b = r.mapping("buffer") {
            let type = b.string("type", default: "disk")
            switch type {
            case "memory":
                o.buffer = .memory(maxRecords: b.int("max_records", default: 50_000, range: 1...100_000_000))
            case "disk":
                var d = DiskRingOptions(segmentBytes: 64 << 20)
                d.maxBytes = b.size("max_bytes", default: d.maxBytes, minimum: 1 << 16)
                d.segmentBytes = b.size("segment_bytes", default: min(d.segmentBytes, d.maxBytes), minimum: 1 << 12)
                d.whenFull = b.choice("when_full", default: .block)
                switch b.string("fsync", default: "interval") {
                case "always": d.fsync = .always
                case "never": d.fsync = .never
                case "interval": d.fsync = .interval(b.duration("fsync_interval", default: 1))
                case let other: b.error("fsync", "unknown value \"\(other)\"; expected interval | always | never")
                }
                if d.segmentBytes > d.maxBytes {
                    b.error("segment_bytes", "\(ByteSize.format(d.segmentBytes)) is larger than max_bytes (\(ByteSize.format(d.maxBytes))): the ring needs room for at least one segment")
                } else if let problem = d.problem {
                    b.error("segment_bytes", problem)
                }
                d.compress = b.bool("compress", default: true)
                o.buffer = .disk(d)
            default:
                b.error("type", "unknown buffer type \"\(type)\"; expected disk | memory")
            }
        }
        if let b = r.mapping("batch") {
            o.maxRecords = b.int("max_records", default: o.maxRecords, range: 1...1_000_000)
            o.maxBytes = b.size("max_bytes", default: o.maxBytes, minimum: 1024)
            o.batchTimeout = b.duration("timeout", default: o.batchTimeout)
        }
        if let b = r.mapping("retry") {
            o.retryInitial = b.duration("initial", default: o.retryInitial)
            o.retryMax = b.duration("max", default: o.retryMax)
            if o.retryInitial <= 0 { b.error("initial", "must be more than 0") }
            if o.retryMax < o.retryInitial { b.error("max", "must be at least retry.initial") }
            o.budget.maxAge = b.duration("max_age", default: o.budget.maxAge)
            o.budget.maxAttempts = b.int("max_attempts", default: o.budget.maxAttempts, range: 0...1_000_000_000)
            o.laneMaxBytes = b.size("lane_max_bytes", default: o.laneMaxBytes, minimum: 1 << 16)
        }
        if let b = r.mapping("dead_letter") {
            o.deadLetter.maxBytes = b.size("max_bytes", default: o.deadLetter.maxBytes, minimum: 1 << 16)
            o.deadLetter.maxFiles = b.int("max_files", default: o.deadLetter.maxFiles, range: 2...10_000)
        }
        if let b = r.mapping("ready") {
            o.stallAfter = b.duration("stall_after", default: o.stallAfter)
            if o.stallAfter <= 0 { b.error("stall_after", "must be more than 0") }
        }
        o.concurrency = r.int("concurrency", default: o.concurrency, range: 1...64)
        return o
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
