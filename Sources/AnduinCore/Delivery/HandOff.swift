import NIOCore

/// The bounded queue between the inputs and an output's delivery: the memory buffer itself, or the
/// small hand-off to the disk ring's writer. `enqueue` blocks while it is full (backpressure).
final class HandOffQueue: Sendable {
    enum Taken {
        case batches([(batch: RecordBatch, ack: AckToken)])
        /// Nothing came within the wait.
        case idle
        /// Closed and drained, or abandoned.
        case finished
    }

    private struct State {
        /// A taken batch leaves the queue at once: the array with a moving head kept up to 64 taken
        /// batches referenced until it compacted (P2's peak: ~60 batches, 15 MB, already sent).
        var queue = CircularBuffer<(batch: RecordBatch, ack: AckToken, since: Double)>()
        var queuedRecords = 0
        var closing = false
        var abandoned = false
        /// Records taken and not yet decided (memory buffer), counted against the capacity.
        var inflight = 0
        /// Inputs waiting for room: nothing more can arrive, so a partial batch is due at once.
        var blockedEnqueues = 0
        /// A batch that finds no room is refused (abandoned) instead of waiting (`refuseWhenFull`).
        var refuseWhenFull = false
    }
    private let state = Locked(State())
    let capacity: Int
    private let batchTimeout: Double
    /// Hand-off to a ring: take what is there at once (the ring does the batching).
    private let immediate: Bool
    private let queued: Gauge
    private let queueFull: Counter

    /// Set on a thread that emits a run of batches (`deferringWakeUps`): queues they fill wake their
    /// takers once at its end instead of at each enqueue.
    @TaskLocal static var pendingWakeUps: PendingWakeUps?

    /// Runs `body`; the takers of the queues it fills are woken when it returns (or when an enqueue
    /// finds a queue full), once each, rather than at every batch: a burst of small batches (one a
    /// file) wakes the output once.
    static func deferringWakeUps<R>(_ body: () throws -> R) rethrows -> R {
        let pending = PendingWakeUps()
        defer { pending.wakeAll() }
        return try $pendingWakeUps.withValue(pending) { try body() }
    }

    /// The queues enqueued to under `deferringWakeUps` whose takers were not woken yet.
    final class PendingWakeUps: Sendable {
        private let queues = Locked<[HandOffQueue]>([])

        func add(_ q: HandOffQueue) {
            queues.withLock { list in if !list.contains(where: { $0 === q }) { list.append(q) } }
        }

        func wakeAll() {
            let list = queues.withLock { l -> [HandOffQueue] in
                defer { l.removeAll() }
                return l
            }
            for q in list { q.state.broadcast() }
        }
    }

    init(capacity: Int, batchTimeout: Double, immediate: Bool, stats: ComponentStats) {
        self.capacity = capacity
        self.batchTimeout = batchTimeout
        self.immediate = immediate
        queued = stats.gauge("queued_records", "records waiting in memory for this output")
        queueFull = stats.counter("queue_full_events", "times an input waited because this output's queue was full")
    }

    /// Queues a batch, keeping a reference to its ack; once abandoned (or refusing a batch that does
    /// not fit, see `refuseWhenFull`), abandons the ack and returns false.
    @discardableResult
    func enqueue(_ batch: RecordBatch, _ ack: AckToken) -> Bool {
        let n = batch.count
        var waited = false
        let queuedIt = state.withLockWaiting { s -> LockStep<Bool> in
            // A batch larger than the capacity still goes into an empty queue: progress over strictness.
            let held = s.queuedRecords + s.inflight
            if !s.abandoned && held > 0 && held + n > capacity {
                if s.refuseWhenFull {
                    if waited { s.blockedEnqueues -= 1 }
                    return .done(false)
                }
                if !waited {
                    waited = true
                    queueFull.add()
                    s.blockedEnqueues += 1
                    state.broadcast()  // a taker waiting for a fuller batch need not wait any more
                    HandOffQueue.pendingWakeUps?.wakeAll()  // nor may the takers of deferred batches
                }
                return .wait(seconds: 0.5)
            }
            if waited { s.blockedEnqueues -= 1 }
            if s.abandoned { return .done(false) }
            s.queue.append((batch, ack, monotonicSeconds()))
            s.queuedRecords += n
            queued.add(n)
            return .done(true)
        }
        if queuedIt {
            if let pending = HandOffQueue.pendingWakeUps { pending.add(self) } else { state.broadcast() }
        } else {
            ack.abandon()
        }
        return queuedIt
    }

    /// Up to `limitRecords` records (at least one batch): once that many wait, or the first waited
    /// the batch timeout, or at once for a ring hand-off or when closing. Waits at most `maxWait`
    /// for a first batch.
    func take(limitRecords: Int, maxWait: Double, countInflight: Bool) -> Taken {
        let deadline = monotonicSeconds() + maxWait
        let taken = state.withLockWaiting { s -> LockStep<Taken> in
            if s.abandoned { return .done(.finished) }
            if let first = s.queue.first {
                let waited = monotonicSeconds() - first.since
                // Without this, a queue smaller than about three batches idled a whole batch
                // timeout per batch (P2 with max_records 5,000: 58 s instead of 8 s wall-clock).
                let due = waited >= batchTimeout || s.blockedEnqueues > 0
                if !(s.queuedRecords >= limitRecords || due || s.closing || immediate) {
                    return .wait(seconds: max(0.001, batchTimeout - waited))
                }
            } else {
                if s.closing { return .done(.finished) }
                let left = deadline - monotonicSeconds()
                return left <= 0 ? .done(.idle) : .wait(seconds: left)
            }
            var out: [(RecordBatch, AckToken)] = []
            var n = 0
            while let first = s.queue.first, out.isEmpty || n + first.batch.count <= limitRecords {
                s.queue.removeFirst()
                n += first.batch.count
                out.append((first.batch, first.ack))
            }
            s.queuedRecords -= n
            queued.add(-n)
            if countInflight { s.inflight += n }
            return .done(.batches(out))
        }
        if case .batches = taken { state.broadcast() }
        return taken
    }

    /// Taken records were decided (or handed to the retry lane, which has its own bound).
    func done(_ n: Int) {
        state.withLock { $0.inflight -= n }
        state.broadcast()
    }

    func close() {
        state.withLock { $0.closing = true }
        state.broadcast()
    }

    /// Drops what is queued (its acks abandoned: read again) and refuses what comes; the number of
    /// records dropped.
    @discardableResult
    func abandon() -> Int {
        let (dropped, records) = state.withLock { s -> ([AckToken], Int) in
            s.abandoned = true
            let acks = s.queue.map(\.ack)
            let records = s.queue.reduce(0) { $0 + $1.batch.count }
            s.queue.removeAll()
            return (acks, records)
        }
        state.broadcast()
        for ack in dropped { ack.abandon() }
        return records
    }

    /// From now on a batch that does not fit is refused at once (its ack abandoned), and inputs
    /// waiting for room give up.
    func refuseWhenFull() {
        state.withLock { $0.refuseWhenFull = true }
        state.broadcast()
    }

    var isClosing: Bool { state.withLock { $0.closing } }

    /// Queued plus taken-and-undecided records.
    var records: Int { state.withLock { $0.queuedRecords + $0.inflight } }
    var queuedRecords: Int { state.withLock { $0.queuedRecords } }
    /// When the oldest queued batch arrived (monotonic), if any.
    var oldestSince: Double? { state.withLock { $0.queue.first?.since } }
}
