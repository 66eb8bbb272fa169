import Synchronization

/// A monotonically increasing count, cheap to bump from any thread.
public final class Counter: Sendable {
    public let name: String
    public let help: String
    private let value = Atomic<Int>(0)
    public init(name: String, help: String) {
        self.name = name
        self.help = help
    }
    @inline(__always) public func add(_ n: Int = 1) { value.add(n, ordering: .relaxed) }
    public var current: Int { value.load(ordering: .relaxed) }
}

/// A value that goes up and down (files watched, bytes buffered).
public final class Gauge: Sendable {
    public let name: String
    public let help: String
    private let value = Atomic<Int>(0)
    public init(name: String, help: String) {
        self.name = name
        self.help = help
    }
    public func set(_ n: Int) { value.store(n, ordering: .relaxed) }
    public func add(_ n: Int) { value.add(n, ordering: .relaxed) }
    public var current: Int { value.load(ordering: .relaxed) }
}

/// One component's counters. Counters are created at build time, then bumped lock-free.
public final class ComponentStats: Sendable {
    public let component: String
    public let kind: ComponentKind
    private let state = Mutex<(counters: [Counter], gauges: [Gauge])>(([], []))

    public init(component: String, kind: ComponentKind) {
        self.component = component
        self.kind = kind
    }

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

    public var counters: [Counter] { state.withLock { $0.counters } }
    public var gauges: [Gauge] { state.withLock { $0.gauges } }
}

/// Every component's stats, owned by the running pipeline (no global state).
public final class StatsRegistry: Sendable {
    private let all = Mutex<[ComponentStats]>([])
    public init() {}
    public func stats(for name: String, kind: ComponentKind) -> ComponentStats {
        all.withLock { list in
            if let s = list.first(where: { $0.component == name && $0.kind == kind }) { return s }
            let s = ComponentStats(component: name, kind: kind)
            list.append(s)
            return s
        }
    }
    public var components: [ComponentStats] { all.withLock { $0 } }
}
