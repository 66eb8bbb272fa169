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
        }
        o.concurrency = r.int("concurrency", default: o.concurrency, range: 1...64)
        return o
    }
}

/// Exponential backoff with full jitter (the AWS architecture blog's variant): spreads retries of
/// many agents so a recovering server is not hit by all of them at once.
public struct Backoff: Sendable {
    public let initial: Double
    public let max: Double
    public private(set) var attempt = 0

    public init(initial: Double, max: Double) {
        self.initial = initial
        self.max = max
    }

    public mutating func next() -> Double {
        let cap = Swift.min(max, initial * pow(2, Double(Swift.min(attempt, 40))))
        attempt += 1
        return Double.random(in: 0...cap)
    }

    public mutating func reset() { attempt = 0 }
}
