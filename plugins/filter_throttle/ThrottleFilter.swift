import AnduinCore
import Logging

/// The `throttle` filter: at most `rate` records per key, with bursts up to `burst`; the rest is dropped.
///
///     filters:
///       limit:
///         type: throttle
///         from: [kube]
///         key: kubernetes.pod_name   # a field path; records without it share one bucket
///         rate: 1000/s               # also /m, /h; a plain number is per second
///         burst: 1000                # default: the rate per second (at least 1)
///         max_keys: 10000            # buckets kept; idle ones are evicted first, then the least recently used
///         log_interval: 10s          # a log line per key that dropped records in the interval
///
/// A token bucket per key: each record takes a token, tokens refill at `rate`, a full bucket holds
/// `burst`. Drops are counted in `records_dropped` and per key (`droppedCounts()`).
public enum ThrottlePlugin {
    static let maximumRate = 1e9

    static let table = OptionTable(fields: ThrottleConfig(key: nil, rate: 0), check: defaultBurst)

    /// `key` as a field path; nil (one bucket) when absent or reported.
    @Sendable static func readKey(_ r: ConfigReader, _ text: String?) -> FieldPath?? {
        guard let text else { return nil }
        switch FieldPath.parse(text) {
        case .success(let p): return p
        case .failure(let problem):
            r.error("key", problem.message)
            return nil
        }
    }

    /// `rate` in records per second; 0 when absent (reported as missing) or invalid (reported).
    @Sendable static func readRate(_ r: ConfigReader, _ text: String?) -> Double? {
        guard let text else { return 0 }
        if let rate = ThrottleConfig.parseRate(text), rate > 0, rate <= maximumRate { return rate }
        r.error("rate", "invalid rate \"\(text)\": use a positive number of records per s, m or h (at most 1000000000/s), such as 1000/s or 600/m")
        return 0
    }

    /// Without `burst:`, a key may send one second's worth at once.
    @Sendable static func defaultBurst(_ r: ConfigReader, _ c: inout ThrottleConfig, _: Bool) {
        if !r.has("burst") { c.burst = max(1, c.rate.rounded(.down)) }
    }

    public static let spec: PluginSpec = .filter("throttle", "limit the record rate per key (token bucket), dropping the excess", table)
}

public struct ThrottleConfig: FilterConfig {
    @OptionField(.text("key", "field path", "records without it share the bucket `\"\"`", defaultText: "(one bucket)"),
                 adjust: ThrottlePlugin.readKey)
    public var key: FieldPath? = nil
    /// Records per second.
    @OptionField(.text("rate", "rate: N/s, N/m or N/h", required: true, "`1000/s`, `600/m`, `3600/h` (at most 1,000,000,000/s)"),
                 adjust: ThrottlePlugin.readRate)
    public var rate = 0.0
    /// Declared as an integer; without `burst:` the table's check sets the rate per second.
    @OptionField(.int("burst", 1...1_000_000_000, "records a key may send at once after a quiet period", defaultText: "rate per second (≥ 1)"),
                 declared: { Int($0) }, adjust: { _, b in Double(b) })
    public var burst = 1.0
    @OptionField(.int("max_keys", 1...10_000_000, "buckets kept; idle ones are forgotten first, then the least recently used"))
    public var maxKeys = 10_000
    @OptionField(.duration("log_interval", 0.001...86_400, "one warning per key that dropped records in the interval, with the count"))
    public var logInterval = 10.0

    /// `maxKeys` and `logInterval` at their defaults (the fields' initial values) unless given.
    public init(key: FieldPath?, rate: Double, burst: Double? = nil, maxKeys: Int? = nil, logInterval: Double? = nil) {
        self.key = key
        self.rate = rate
        self.burst = burst ?? max(1, rate.rounded(.down))
        if let maxKeys { self.maxKeys = maxKeys }
        if let logInterval { self.logInterval = logInterval }
    }

    /// `1000/s`, `60/m`, `3600/h`, `250` (per second) as records per second.
    public static func parseRate(_ text: String) -> Double? {
        func trim(_ s: Substring) -> String { String(s.drop { $0 == " " }.reversed().drop { $0 == " " }.reversed()) }
        let parts = text.split(separator: "/", omittingEmptySubsequences: false)
        guard parts.count <= 2, let n = Double(trim(parts[0])), n.isFinite, n >= 0 else { return nil }
        guard parts.count == 2 else { return n }
        switch trim(parts[1]) {
        case "s", "sec", "second": return n
        case "m", "min", "minute": return n / 60
        case "h", "hour": return n / 3600
        default: return nil
        }
    }

    public func build(_ context: ComponentContext) throws -> any Filter {
        ThrottleFilter(config: self, context: context)
    }
}

/// A `StatefulFilter` only for its tick (the per-interval drop log); records are never held.
public final class ThrottleFilter: StatefulFilter {
    struct Bucket {
        var tokens: Double
        var refilledAt: Double
        var lastSeen: Double
        var droppedInInterval: Int
        var droppedTotal: Int
    }

    struct State {
        var buckets: [[UInt8]: Bucket] = [:]
        var lastReport: Double
    }

    let key: FieldPath?
    let rate: Double
    let burst: Double
    let maxKeys: Int
    let logInterval: Double
    let clock: @Sendable () -> Double
    let logger: Logger
    /// Buckets are shared by every input thread; one lock per batch, not per record.
    let state: Locked<State>
    let dropped: Counter
    let keysGauge: Gauge

    init(config: ThrottleConfig, context: ComponentContext, clock: @escaping @Sendable () -> Double = { monotonicSeconds() }) {
        key = config.key
        rate = config.rate
        burst = config.burst
        maxKeys = config.maxKeys
        logInterval = config.logInterval
        self.clock = clock
        logger = context.logger
        state = Locked(State(lastReport: clock()))
        dropped = context.stats.counter("records_dropped", "records over their key's rate, dropped")
        keysGauge = context.stats.gauge("throttle_keys", "keys with a bucket")
    }

    public func process(_ batch: RecordBatch, ack: AckToken, emit: (RecordBatch, AckToken) -> Void) {
        var b = batch
        apply(&b)
        if !b.isEmpty { emit(b, ack) }
    }

    public func tick(now: Double, emit: (RecordBatch, AckToken) -> Void) {
        report(now: clock())
    }

    public func flushAll(emit: (RecordBatch, AckToken) -> Void) {
        report(now: clock(), force: true)
    }

    /// Drops the records over their key's rate (what `process` does, without the token plumbing).
    public func apply(_ batch: inout RecordBatch) {
        guard !batch.isEmpty else { return }
        let now = clock()
        var scratch: [UInt8] = []
        var current: [UInt8] = []
        var haveCurrent = false
        var sharedKey: [UInt8]?
        var kept = 0
        var nDropped = 0
        state.withLock { s in
            // Consecutive records usually share a key (a batch is one container's lines): hash
            // and look up only when it changes.
            var index: Dictionary<[UInt8], Bucket>.Index?
            for i in batch.records.indices {
                let same: Bool
                if let key, key.kind == .field, !key.inRecordFields(batch, i) {
                    // From the shared fields: one value for the whole batch, read once.
                    if sharedKey == nil {
                        sharedKey = key.withSharedValue(batch, scratch: &scratch) { v in v.map { Array($0) } ?? [] }
                    }
                    let k = sharedKey ?? []
                    same = haveCurrent && k == current
                    if !same { current = k }
                } else if let key {
                    same = key.withValue(batch, i, scratch: &scratch) { v -> Bool in
                        let v = v ?? UnsafeRawBufferPointer(start: nil, count: 0)
                        if haveCurrent && v.elementsEqual(current) { return true }
                        current.removeAll(keepingCapacity: true)
                        current.append(contentsOf: v)
                        return false
                    }
                } else {
                    same = haveCurrent
                }
                if !same || index == nil {
                    haveCurrent = true
                    index = s.buckets.index(forKey: current)
                    if index == nil {
                        if s.buckets.count >= maxKeys { evict(&s, now: now) }
                        s.buckets[current] = Bucket(tokens: burst, refilledAt: now, lastSeen: now, droppedInInterval: 0, droppedTotal: 0)
                        index = s.buckets.index(forKey: current)
                    }
                }
                guard let idx = index else { continue }
                var bucket = s.buckets.values[idx]
                bucket.tokens = min(burst, bucket.tokens + (now - bucket.refilledAt) * rate)
                bucket.refilledAt = now
                bucket.lastSeen = now
                if bucket.tokens >= 1 {
                    bucket.tokens -= 1
                    if kept != i { batch.records[kept] = batch.records[i] }
                    kept += 1
                } else {
                    bucket.droppedInInterval += 1
                    bucket.droppedTotal += 1
                    nDropped += 1
                }
                s.buckets.values[idx] = bucket
            }
            keysGauge.set(s.buckets.count)
        }
        if nDropped > 0 {
            batch.records.removeLast(nDropped)
            dropped.add(nDropped)
        }
    }

    /// Makes room for one key: idle buckets first (full again, nothing unreported: forgetting them
    /// changes nothing), then the least recently used tenth.
    private func evict(_ s: inout State, now: Double) {
        let idleAfter = burst / rate
        s.buckets = s.buckets.filter { now - $0.value.lastSeen < idleAfter || $0.value.droppedInInterval > 0 }
        guard s.buckets.count >= maxKeys else { return }
        let n = max(1, maxKeys / 10)
        for (k, _) in s.buckets.sorted(by: { $0.value.lastSeen < $1.value.lastSeen }).prefix(n) {
            s.buckets[k] = nil
        }
    }

    /// Logs each key that dropped records since the last report (at most 20 lines, then a summary).
    func report(now: Double, force: Bool = false) {
        let lines: [(String, Int)]? = state.withLock { s in
            guard force || now - s.lastReport >= logInterval else { return nil }
            s.lastReport = now
            var out: [(String, Int)] = []
            for (k, b) in s.buckets where b.droppedInInterval > 0 {
                out.append((String(decoding: k, as: UTF8.self), b.droppedInInterval))
                s.buckets[k]?.droppedInInterval = 0
            }
            return out
        }
        guard let lines, !lines.isEmpty else { return }
        let sorted = lines.sorted { $0.1 > $1.1 }
        for (k, n) in sorted.prefix(20) {
            logger.warning("throttle: dropped \(n) record(s) of \(key?.description ?? "all records") = \"\(k)\" over \(rate)/s (burst \(Int(burst)))")
        }
        if sorted.count > 20 {
            let rest = sorted.dropFirst(20).reduce(0) { $0 + $1.1 }
            logger.warning("throttle: dropped \(rest) more record(s) of \(sorted.count - 20) other key(s)")
        }
    }

    /// Records dropped per key since start, for keys that still have a bucket (for metrics).
    public func droppedCounts() -> [String: Int] {
        state.withLock { s in
            var out: [String: Int] = [:]
            for (k, b) in s.buckets where b.droppedTotal > 0 { out[String(decoding: k, as: UTF8.self)] = b.droppedTotal }
            return out
        }
    }
}
