/// The bounded queue between the inputs and an output's delivery: the memory buffer itself, or the
/// small hand-off to the disk ring's writer. `enqueue` blocks while it is full (backpressure). A
/// `BoundedQueue` of batches weighed in records.
final class OutputQueue: Sendable {
    enum Taken {
        case batches([(batch: RecordBatch, ack: AckToken)])
        /// Nothing came within the wait.
        case idle
        /// Closed and drained, or abandoned.
        case finished
    }

    private let queue: BoundedQueue<(batch: RecordBatch, ack: AckToken)>
    var capacity: Int { queue.capacity }
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
        private let queues = Locked<[OutputQueue]>([])

        func add(_ q: OutputQueue) {
            queues.withLock { list in if !list.contains(where: { $0 === q }) { list.append(q) } }
        }

        func wakeAll() {
            let list = queues.withLock { l -> [OutputQueue] in
                defer { l.removeAll() }
                return l
            }
            for q in list { q.queue.wakeTakers() }
        }
    }

    init(capacity: Int, batchTimeout: Double, immediate: Bool, stats: ComponentStats) {
        queue = BoundedQueue(capacity: capacity)
        self.batchTimeout = batchTimeout
        self.immediate = immediate
        queued = stats.gauge("queued_records", "records waiting in memory for this output")
        queueFull = stats.counter("queue_full_events", "times an input waited because this output's queue was full")
    }

    /// Queues a batch, keeping a reference to its ack; once abandoned, abandons the ack and returns
    /// false.
    @discardableResult
    func enqueue(_ batch: RecordBatch, _ ack: AckToken) -> Bool {
        let pending = OutputQueue.pendingWakeUps
        let queuedIt = queue.append((batch, ack), weight: batch.count, wakeTakers: pending == nil ? .now : .later) {
            queueFull.add()
            // The run may wait here long: the takers of the batches it deferred must not wait for it.
            OutputQueue.pendingWakeUps?.wakeAll()
        }
        if queuedIt {
            queued.add(batch.count)
            pending?.add(self)
        } else {
            ack.abandon()
        }
        return queuedIt
    }

    /// Up to `limitRecords` records (at least one batch): once that many wait, or the first waited
    /// the batch timeout, or at once for a ring hand-off, when closing or when an input waits for
    /// room. Waits at most `maxWait` for a first batch. With `countInflight`, the records count
    /// against the capacity until `done`.
    func take(limitRecords: Int, maxWait: Double, countInflight: Bool) -> Taken {
        // Without the rule that a waiting input makes the batch due, a queue smaller than about three
        // batches idled a whole batch timeout per batch.
        switch queue.take(limit: limitRecords, linger: immediate ? 0 : batchTimeout, holding: countInflight, maxWait: maxWait) {
        case .idle: return .idle
        case .finished: return .finished
        case .items(let items):
            queued.add(-items.reduce(0) { $0 + $1.batch.count })
            return .batches(items)
        }
    }

    /// Taken records were decided (or handed to the retry lane, which has its own bound).
    func done(_ n: Int) { queue.release(n) }

    func close() { queue.close() }

    /// Drops what is queued (its acks abandoned: read again) and refuses what comes; the number of
    /// records dropped.
    @discardableResult
    func abandon() -> Int {
        let dropped = queue.abandon()
        let records = dropped.reduce(0) { $0 + $1.batch.count }
        queued.add(-records)
        for item in dropped { item.ack.abandon() }
        return records
    }

    var isClosing: Bool { queue.isClosing }

    /// Queued plus taken-and-undecided records.
    var records: Int { queue.heldWeight }
    var queuedRecords: Int { queue.queuedWeight }
    /// When the oldest queued batch arrived (monotonic), if any.
    var oldestSince: Double? { queue.oldestSince }
}
