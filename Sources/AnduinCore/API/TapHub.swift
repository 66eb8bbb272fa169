import Synchronization

/// Live copies of the records passing a component, for `anduin tap`. Costs one atomic load per batch
/// when nobody is tapping; records are serialised only for a component someone watches.
public final class TapHub: Sendable {
    public final class Subscription: Sendable {
        let component: String?
        let remaining: Atomic<Int>
        let deliver: @Sendable ([UInt8], Int) -> Void
        let closed = Atomic<Bool>(false)
        let onEnd: @Sendable () -> Void

        init(component: String?, limit: Int, deliver: @escaping @Sendable ([UInt8], Int) -> Void, onEnd: @escaping @Sendable () -> Void) {
            self.component = component
            remaining = Atomic(limit <= 0 ? Int.max : limit)
            self.deliver = deliver
            self.onEnd = onEnd
        }
    }

    private let subscribers = Mutex<[Subscription]>([])
    private let active = Atomic<Int>(0)

    public init() {}

    /// Starts copying records of `component` (all components when nil) to `deliver`, one NDJSON chunk
    /// per batch, `{"component":..., "record":{...}}` a line, until `limit` records (0: no limit) or
    /// `cancel`. `deliver` gets the chunk and how many records it holds. `onEnd` runs once when the
    /// limit is reached.
    public func subscribe(component: String?, limit: Int, deliver: @escaping @Sendable ([UInt8], Int) -> Void,
                          onEnd: @escaping @Sendable () -> Void) -> Subscription {
        let s = Subscription(component: component, limit: limit, deliver: deliver, onEnd: onEnd)
        subscribers.withLock { $0.append(s) }
        active.add(1, ordering: .releasing)
        return s
    }

    /// Stops a subscription; true for the call that actually stopped it.
    @discardableResult
    public func cancel(_ s: Subscription) -> Bool {
        guard !s.closed.exchange(true, ordering: .acquiringAndReleasing) else { return false }
        subscribers.withLock { $0.removeAll { $0 === s } }
        active.subtract(1, ordering: .releasing)
        return true
    }

    @inline(__always)
    public var isActive: Bool { active.load(ordering: .acquiring) > 0 }

    public func publish(component: String, _ batch: RecordBatch) {
        guard isActive, !batch.isEmpty else { return }
        let targets = subscribers.withLock { $0.filter { $0.component == nil || $0.component == component } }
        guard !targets.isEmpty else { return }
        var componentJSON = JSONWriter()
        componentJSON.writeString(component)
        for s in targets {
            var out: [UInt8] = []
            var sent = 0
            for i in batch.records.indices {
                let left = s.remaining.subtract(1, ordering: .relaxed).newValue
                if left < 0 { break }
                out.append(contentsOf: #"{"component":"#.utf8)
                out.append(contentsOf: componentJSON.bytes)
                out.append(contentsOf: #","record":"#.utf8)
                RecordEncoder.append(batch, i, to: &out)
                out.append(contentsOf: "}\n".utf8)
                sent += 1
                if left == 0 { break }
            }
            if sent > 0 { s.deliver(out, sent) }
            if s.remaining.load(ordering: .relaxed) <= 0, cancel(s) { s.onEnd() }
        }
    }
}
