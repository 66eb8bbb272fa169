import Prometheus
import Synchronization

/// A monotonically increasing count, cheap to bump from any thread (one relaxed atomic add: the
/// Prometheus registry is brought up to date at scrape time, not per record).
public final class Counter: Sendable {
    public let name: String
    public let help: String
    private let value = Atomic<Int>(0)
    public init(name: String, help: String) {
        self.name = name
        self.help = help
    }
    /// Saturates at Int.max: counts can come from disk (records in a damaged buffer).
    @inline(__always) public func add(_ n: Int = 1) { value.saturatingAdd(n) }
    public var current: Int { value.load(ordering: .relaxed) }
}

extension Atomic where Value == Int {
    /// Adds `n`, pinning the value to Int's bounds instead of trapping on overflow (the checked
    /// `add` traps). Relaxed ordering: counts and gauges, not synchronisation.
    @inline(__always)
    func saturatingAdd(_ n: Int) {
        let (old, new) = wrappingAdd(n, ordering: .relaxed)
        if n > 0 && new < old {
            store(.max, ordering: .relaxed)
        } else if n < 0 && new > old {
            store(.min, ordering: .relaxed)
        }
    }
}

/// A value that goes up and down (files watched, bytes buffered), or one computed when read (ages).
public final class Gauge: Sendable {
    public let name: String
    public let help: String
    private let value = Atomic<Int>(0)
    private let compute = Mutex<(@Sendable () -> Int)?>(nil)
    public init(name: String, help: String) {
        self.name = name
        self.help = help
    }
    public func set(_ n: Int) { value.store(n, ordering: .relaxed) }
    public func add(_ n: Int) { value.saturatingAdd(n) }
    /// Computes the value at each read (a scrape) instead; replaces an earlier function (a reload).
    public func computed(_ f: @escaping @Sendable () -> Int) { compute.withLock { $0 = f } }
    public var current: Int {
        if let f = compute.withLock({ $0 }) { return f() }
        return value.load(ordering: .relaxed)
    }
}

/// A text an operator reads next to the counters (an output's last error), with when it was set.
/// Shown by `/status`, not exported as a metric.
public final class Note: Sendable {
    public let name: String
    /// The text and the monotonic second it was set.
    private let value = Mutex<(text: String, at: Double)?>(nil)
    public init(name: String) { self.name = name }
    public func set(_ text: String) {
        let now = monotonicSeconds()
        value.withLock { $0 = (text, now) }
    }
    /// The text and its age in seconds, or nil when never set.
    public var current: (text: String, age: Double)? {
        let now = monotonicSeconds()
        return value.withLock { v in v.map { ($0.text, max(0, now - $0.at)) } }
    }
}

/// A distribution (request latency, delivery lag), recorded straight into Prometheus: these are
/// observed per request, not per record.
public final class Histogram: Sendable {
    public let name: String
    private let histogram: DurationHistogram
    init(name: String, histogram: DurationHistogram) {
        self.name = name
        self.histogram = histogram
    }
    public func observe(seconds: Double) {
        histogram.recordNanoseconds(Int64(clampedSeconds(seconds) * 1e9))
    }
}

/// One component's counters. Counters are created at build time, then bumped lock-free.
public final class ComponentStats: Sendable {
    public let component: String
    public let kind: ComponentKind
    public let type: String
    private let registry: StatsRegistry?
    private let state = Mutex<(counters: [Counter], gauges: [Gauge], histograms: [Histogram])>(([], [], []))
    private let noteList = Mutex<[Note]>([])

    public init(component: String, kind: ComponentKind, type: String = "", registry: StatsRegistry? = nil) {
        self.component = component
        self.kind = kind
        self.type = type
        self.registry = registry
    }

    /// Whether a counter of that name was made on these stats (by this run or, after a reload,
    /// by the one before).
    public func hasCounter(_ name: String) -> Bool { state.withLock { $0.counters.contains { $0.name == name } } }

    public func counter(_ name: String, _ help: String) -> Counter {
        state.withLock { s in
            if let c = s.counters.first(where: { $0.name == name }) { return c }
            let c = Counter(name: name, help: help)
            s.counters.append(c)
            return c
        }
    }

    public func gauge(_ name: String, _ help: String) -> Gauge {
        state.withLock { s in
            if let g = s.gauges.first(where: { $0.name == name }) { return g }
            let g = Gauge(name: name, help: help)
            s.gauges.append(g)
            return g
        }
    }

    public func note(_ name: String) -> Note {
        noteList.withLock { list in
            if let n = list.first(where: { $0.name == name }) { return n }
            let n = Note(name: name)
            list.append(n)
            return n
        }
    }

    public var notes: [Note] { noteList.withLock { $0 } }

    /// Seconds-valued histogram with the given bucket bounds.
    public func histogram(_ name: String, _ help: String, buckets: [Double]) -> Histogram {
        state.withLock { s in
            if let h = s.histograms.first(where: { $0.name == name }) { return h }
            let prom = (registry ?? StatsRegistry.detached).makeHistogram(kind: kind, name: name, help: help,
                                                                          labels: labels, buckets: buckets)
            let h = Histogram(name: name, histogram: prom)
            s.histograms.append(h)
            return h
        }
    }

    var labels: [(String, String)] { [("component", component), ("type", type)] }

    public var counters: [Counter] { state.withLock { $0.counters } }
    public var gauges: [Gauge] { state.withLock { $0.gauges } }
}

/// Every component's stats and the Prometheus registry they are exposed through. One per process,
/// kept across config reloads so counters stay monotonic (a component that survives a reload keeps
/// its series).
public final class StatsRegistry: Sendable {
    public let prometheus: PrometheusCollectorRegistry
    private let all = Mutex<[ComponentStats]>([])
    /// Per series (metric name and labels): our counter, its Prometheus counter, and how much of our
    /// count that already has. A reload replaces our counter (starting at 0) but keeps the series.
    private let synced = Mutex<[String: (Counter, Prometheus.Counter, Int)]>([:])
    private let gauges = Mutex<[String: Prometheus.Gauge]>([:])
    /// The registry refuses two help texts for one metric name: the first one wins.
    private let helps = Mutex<[String: String]>([:])

    /// For stats created outside a pipeline (tests, benchmarks).
    static let detached = StatsRegistry()

    public init(prometheus: PrometheusCollectorRegistry = PrometheusCollectorRegistry()) {
        self.prometheus = prometheus
    }

    public func stats(for name: String, kind: ComponentKind, type: String = "") -> ComponentStats {
        all.withLock { list in
            if let s = list.first(where: { $0.component == name && $0.kind == kind && $0.type == type }) { return s }
            let s = ComponentStats(component: name, kind: kind, type: type, registry: self)
            list.append(s)
            return s
        }
    }

    public var components: [ComponentStats] { all.withLock { $0 } }

    private func help(_ metric: String, _ text: String) -> String {
        helps.withLock { h in
            if let existing = h[metric] { return existing }
            h[metric] = text
            return text
        }
    }

    func makeHistogram(kind: ComponentKind, name: String, help text: String, labels: [(String, String)],
                       buckets: [Double]) -> DurationHistogram {
        let metric = "anduin_\(kind.rawValue)_\(name)_seconds"
        return prometheus.makeDurationHistogram(name: metric, labels: labels,
                                                buckets: buckets.map { .nanoseconds(Int64($0 * 1e9)) },
                                                help: help(metric, text))
    }

    /// The Prometheus text exposition of every metric, brought up to date first.
    public func renderPrometheus() -> String {
        for s in components {
            for c in s.counters {
                let metric = "anduin_\(s.kind.rawValue)_\(c.name)_total"
                let current = c.current
                let key = "\(metric)|\(s.component)|\(s.type)"
                synced.withLock { m in
                    var entry = m[key] ?? (c, prometheus.makeCounter(name: metric, labels: s.labels, help: help(metric, c.help)), 0)
                    if entry.0 !== c { entry = (c, entry.1, 0) }
                    if current > entry.2 { entry.1.increment(by: Int64(current - entry.2)) }
                    entry.2 = max(entry.2, current)
                    m[key] = entry
                }
            }
            for g in s.gauges {
                let metric = "anduin_\(s.kind.rawValue)_\(g.name)"
                let key = "\(metric)|\(s.component)|\(s.type)"
                gauges.withLock { m in
                    let prom = m[key] ?? prometheus.makeGauge(name: metric, labels: s.labels, help: help(metric, g.help))
                    m[key] = prom
                    prom.set(Int64(g.current))
                }
            }
        }
        return prometheus.emitToString() + ProcessMetrics.text()
    }
}
