import Foundation

/// Where an output's records wait before delivery.
public enum BufferOptions: Sendable {
    /// Bounded queue in memory: records are acknowledged to the input only once delivered.
    case memory(maxRecords: Int)
    /// The disk ring: records are acknowledged to the input once written to it (they survive
    /// restarts and crashes), and removed from it once delivered.
    case disk(DiskRingOptions)
}

/// Batching, retries and concurrency of a network output. Defaults and ranges: `DeliveryKeys`.
public struct DeliveryOptions: Sendable {
    public var buffer: BufferOptions
    public var maxRecords = DeliveryKeys.batchMaxRecords.defaultValue
    public var maxBytes = DeliveryKeys.batchMaxBytes.defaultValue
    /// A batch is sent when it reaches `maxRecords` or `maxBytes`, or this long after its first record.
    public var batchTimeout = DeliveryKeys.batchTimeout.defaultValue
    public var retryInitial = DeliveryKeys.retryInitial.defaultValue
    public var retryMax = DeliveryKeys.retryMax.defaultValue
    /// How long, and how many times, a record refused with a retriable status is retried before it
    /// is dead-lettered (0: no limit). An outage (no answer at all) is not counted against it.
    public var budget = RetryBudget()
    /// Bytes of records waiting out their backoff in the retry lane (outside the in-flight window);
    /// past it, a failing request is retried in place.
    public var laneMaxBytes = DeliveryKeys.laneMaxBytes.defaultValue
    public var deadLetter = DeadLetterOptions()
    /// `/ready` fails when this output made no progress for this long with records waiting, or
    /// has records failing for this long.
    public var stallAfter = DeliveryKeys.stallAfter.defaultValue
    /// Requests in flight at once. Acknowledgements still advance in order.
    public var concurrency = DeliveryKeys.concurrency.defaultValue
    /// Source-position fields written into each document (encoded before the buffer for `disk`).
    public var metadata = DocumentMetadata.all

    public init(buffer: BufferOptions) { self.buffer = buffer }

    /// The buffer an output has when `buffer:` is not written: the disk ring with the declared defaults.
    public static var defaultBuffer: BufferOptions { .disk(DiskRingOptions()) }

    /// Reads `buffer:`, `batch:`, `retry:`, `dead_letter:`, `ready:` and `concurrency` from an output's options.
    public static func parse(_ r: ConfigReader, defaultBuffer: BufferOptions = defaultBuffer) -> DeliveryOptions {
        typealias K = DeliveryKeys
        var o = DeliveryOptions(buffer: defaultBuffer)
        o.metadata = DocumentMetadata.read(r)
        if let b = r.group(K.buffer) {
            switch b.get(K.bufferType) {
            case .memory:
                o.buffer = .memory(maxRecords: b.get(K.memoryMaxRecords))
            case .disk:
                var d = DiskRingOptions()
                d.maxBytes = b.get(K.diskMaxBytes)
                // A small ring gets one segment of its size rather than an error.
                d.segmentBytes = b.has(K.segmentBytes.key) ? b.get(K.segmentBytes) : min(d.segmentBytes, d.maxBytes)
                d.whenFull = b.get(K.whenFull)
                switch b.get(K.fsync) {
                case .always: d.fsync = .always
                case .never: d.fsync = .never
                case .interval: d.fsync = .interval(b.get(K.fsyncInterval))
                }
                if d.segmentBytes > d.maxBytes {
                    b.error("segment_bytes", "\(ByteSize.format(d.segmentBytes)) is larger than max_bytes (\(ByteSize.format(d.maxBytes))): the ring needs room for at least one segment")
                } else if let problem = d.problem {
                    b.error("segment_bytes", problem)
                }
                d.compress = b.get(K.compress)
                o.buffer = .disk(d)
            }
        }
        if let b = r.group(K.batch) {
            o.maxRecords = b.get(K.batchMaxRecords)
            o.maxBytes = b.get(K.batchMaxBytes)
            o.batchTimeout = b.get(K.batchTimeout)
        }
        if let b = r.group(K.retry) {
            o.retryInitial = b.get(K.retryInitial)
            o.retryMax = b.get(K.retryMax)
            if o.retryMax < o.retryInitial { b.error("max", "must be at least retry.initial") }
            o.budget.maxAge = b.get(K.maxAge)
            o.budget.maxAttempts = b.get(K.maxAttempts)
            o.laneMaxBytes = b.get(K.laneMaxBytes)
        }
        if let b = r.group(K.deadLetter) {
            o.deadLetter.maxBytes = b.get(K.deadLetterMaxBytes)
            o.deadLetter.maxFiles = b.get(K.deadLetterMaxFiles)
        }
        if let b = r.group(K.ready) {
            o.stallAfter = b.get(K.stallAfter)
        }
        o.concurrency = r.get(K.concurrency)
        return o
    }
}

/// The retry budget of one record: retriable refusals (item or request 408/429/5xx, a 2xx that is
/// not a complete receipt) are retried with backoff until either limit, then dead-lettered.
public struct RetryBudget: Sendable, Equatable {
    /// Seconds from the record's first failure; 0: no limit.
    public var maxAge = DeliveryKeys.maxAge.defaultValue
    /// Attempts (the first send included); 0: no limit.
    public var maxAttempts = DeliveryKeys.maxAttempts.defaultValue

    public init(maxAge: Double = DeliveryKeys.maxAge.defaultValue, maxAttempts: Int = DeliveryKeys.maxAttempts.defaultValue) {
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
    public var maxBytes = DeliveryKeys.deadLetterMaxBytes.defaultValue
    public var maxFiles = DeliveryKeys.deadLetterMaxFiles.defaultValue
    public init() {}
}
