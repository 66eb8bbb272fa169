/// The options of every network output, in one table of the reference.
public let networkOutputOptions = OptionSection(name: "network-outputs", options: DeliveryKeys.all + HTTPOutputOptions.table.options + [DocumentMetadata.group.spec])

public enum BufferType: String, CaseIterable, Sendable { case disk, memory }
public enum FsyncMode: String, CaseIterable, Sendable { case interval, always, never }

/// Buffering, batching, retries and concurrency of a network output, declared once (the disk
/// buffer's defaults are `DiskRingOptions`'s).
public enum DeliveryKeys {
    public static let bufferType = ConfigKey<BufferType>.choice("type", default: .disk, "`disk`: a ring of LZ4 segment files under `data_dir/buffers/<output>/`; `memory`: a bounded queue (see *Buffers*)")
    public static let memoryMaxRecords = ConfigKey<Int>.int("max_records", default: 50_000, 1...100_000_000, "(memory) records held")
    public static let diskMaxBytes = ConfigKey<Int>.size("max_bytes", default: DiskRingOptions().maxBytes, (1 << 16)...(1 << 50), "(disk) hard cap on segment files")
    public static let segmentBytes = ConfigKey<Int>.size("segment_bytes", default: DiskRingOptions().segmentBytes, (1 << 12)...(1 << 32), "(disk) size of one segment file (at most `max_bytes`)")
    public static let whenFull = ConfigKey<WhenFull>.choice("when_full", default: DiskRingOptions().whenFull, "(disk) `block` pauses the inputs that feed this output; `drop_oldest` deletes the oldest segment (`buffer_records_dropped`)")
    public static let fsync = ConfigKey<FsyncMode>.choice("fsync", default: .interval, "(disk) when appended records are fsynced (see *Buffers*)")
    public static let fsyncInterval = ConfigKey<Double>.duration("fsync_interval", default: DiskRingOptions.defaultFsyncInterval, 0.001...3600, "(disk) with `fsync: interval`")
    public static let compress = ConfigKey<Bool>.bool("compress", default: DiskRingOptions().compress, "(disk) LZ4-compress blocks")
    public static let buffer = ConfigGroup("buffer", "where records wait for delivery", defaultText: "`{type: disk}`",
                                          [bufferType.spec, memoryMaxRecords.spec, diskMaxBytes.spec, segmentBytes.spec, whenFull.spec,
                                           fsync.spec, fsyncInterval.spec, compress.spec])

    public static let batchMaxRecords = ConfigKey<Int>.int("max_records", default: 5000, 1...1_000_000, "records in one request")
    public static let batchMaxBytes = ConfigKey<Int>.size("max_bytes", default: 5 << 20, 1024...(1 << 30), "bytes in one request (before compression)")
    public static let batchTimeout = ConfigKey<Double>.duration("timeout", default: 1, 0.001...3600, "a request is sent this long after its first record at the latest")
    public static let batch = ConfigGroup("batch", "a request is sent when any limit is reached",
                                         [batchMaxRecords.spec, batchMaxBytes.spec, batchTimeout.spec])

    public static let retryInitial = ConfigKey<Double>.duration("initial", default: 0.1, 0.001...3600, "first retry delay")
    public static let retryMax = ConfigKey<Double>.duration("max", default: 30, 0.001...86_400, "longest retry delay (at least `initial`)")
    public static let maxAge = ConfigKey<Double>.duration("max_age", default: 900, 0...(30 * 86_400), "a record refused with a retriable status (408, 429, 5xx) this long after its first refusal is dead-lettered; 0: no limit. An outage (no answer) does not count")
    public static let maxAttempts = ConfigKey<Int>.int("max_attempts", default: 0, 0...1_000_000_000, "the same, in attempts (the first send included); 0: no limit")
    public static let laneMaxBytes = ConfigKey<Int>.size("lane_max_bytes", default: 64 << 20, (1 << 16)...(1 << 40), "records waiting out their backoff in the retry lane; past it, refused items are retried in place")
    public static let retry = ConfigGroup("retry", "exponential backoff (equal jitter: each wait is between half and all of the nominal delay, and lasts until its deadline); the retry budget and the retry lane: see *Retries, the retry lane and the budget*",
                                         [retryInitial.spec, retryMax.spec, maxAge.spec, maxAttempts.spec, laneMaxBytes.spec])

    public static let deadLetterMaxBytes = ConfigKey<Int>.size("max_bytes", default: 256 << 20, (1 << 16)...(1 << 40), "bytes of the dead-letter store (`data_dir/dead-letter/<output>/`); the oldest file goes first")
    public static let deadLetterMaxFiles = ConfigKey<Int>.int("max_files", default: 8, 2...10_000, "files of the dead-letter store")
    public static let deadLetter = ConfigGroup("dead_letter", "bounds of the output's dead-letter store (see *Dead letters and replay*)", [deadLetterMaxBytes.spec, deadLetterMaxFiles.spec])

    public static let stallAfter = ConfigKey<Double>.duration("stall_after", default: 300, 0.001...(7 * 86_400), "`/ready` fails when this output made no progress for this long with records waiting, or has had records failing this long")
    public static let ready = ConfigGroup("ready", "`/ready` answers 503 when this output stalls (see *Observability*)", [stallAfter.spec])

    public static let concurrency = ConfigKey<Int>.int("concurrency", default: 2, 1...64, "requests in flight; acknowledgements still advance in order")

    public static let all = [buffer.spec, batch.spec, retry.spec, deadLetter.spec, ready.spec, concurrency.spec]
}
