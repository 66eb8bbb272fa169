/// The bounded queue between the inputs and an output's delivery: the memory buffer itself, or the
/// small hand-off to the disk ring's writer. `enqueue` blocks while it is full (backpressure).
final class HandOffQueue: @unchecked Sendable {  // everything under `lock`
    enum Taken {
        case batches([(batch: RecordBatch, ack: AckToken)])
        /// Nothing came within the wait.
        case idle
        /// Closed and drained, or abandoned.
        case finished
    }

    private let lock = ConditionLock()
    private var queue: [(batch: RecordBatch, ack: AckToken, since: Double)] = []
    private var head = 0
    private(set) var queuedRecords = 0
    let capacity: Int
    private let batchTimeout: Double
    /// Hand-off to a ring: take what is there at once (the ring does the batching).
    private let immediate: Bool
    private var closing = false
    private var abandoned = false
    /// Records taken and not yet decided (memory buffer), counted against the capacity.
    private var inflight = 0
    private let queued: Gauge
    private let queueFull: Counter

    init(capacity: Int, batchTimeout: Double, immediate: Bool, stats: ComponentStats) {
        self.capacity = capacity
        self.batchTimeout = batchTimeout
        self.immediate = immediate
        queued = stats.gauge("queued_records", "records waiting in memory for this output")
        queueFull = stats.counter("queue_full_events", "times an input waited because this output's queue was full")
    }

    /// Queues a batch, keeping a reference to its ack; once abandoned, abandons the ack and returns false.
    @discardableResult
    func enqueue(_ batch: RecordBatch, _ ack: AckToken) -> Bool {
        let n = batch.count
        return lock.withLock {
            var waited = false
            // A batch larger than the capacity still goes into an empty queue: progress over strictness.
            while !abandoned && queuedRecords + inflight > 0 && queuedRecords + inflight + n > capacity {
                if !waited {
                    waited = true
                    queueFull.add()
                }
                lock.wait(seconds: 0.5)
            }
            if abandoned {
                ack.abandon()
                return false
            }
            queue.append((batch, ack, monotonicSeconds()))
            queuedRecords += n
            queued.add(n)
            lock.broadcast()
            return true
        }
    }

    /// Up to `limitRecords` records (at least one batch): once that many wait, or the first waited
    /// the batch timeout, or at once for a ring hand-off or when closing. Waits at most `maxWait`
    /// for a first batch.
    func take(limitRecords: Int, maxWait: Double, countInflight: Bool) -> Taken {
        lock.withLock {
            let deadline = monotonicSeconds() + maxWait
            while true {
                if abandoned { return .finished }
                if head < queue.count {
                    let since = queue[head].since
                    let due = monotonicSeconds() - since >= batchTimeout
                    if queuedRecords >= limitRecords || due || closing || immediate { break }
                    lock.wait(seconds: max(0.001, batchTimeout - (monotonicSeconds() - since)))
                    continue
                }
                if closing { return .finished }
                let left = deadline - monotonicSeconds()
                if left <= 0 { return .idle }
                lock.wait(seconds: left)
            }
            var out: [(RecordBatch, AckToken)] = []
            var n = 0
            while head < queue.count, out.isEmpty || n + queue[head].batch.count <= limitRecords {
                let item = queue[head]
                head += 1
                n += item.batch.count
                out.append((item.batch, item.ack))
            }
            // Compact now and then instead of removeFirst per batch.
            if head > 64 && head * 2 > queue.count {
                queue.removeFirst(head)
                head = 0
            } else if head == queue.count {
                queue.removeAll(keepingCapacity: true)
                head = 0
            }
            queuedRecords -= n
            queued.add(-n)
            if countInflight { inflight += n }
            lock.broadcast()
            return .batches(out)
        }
    }

    /// Taken records were decided (or handed to the retry lane, which has its own bound).
    func done(_ n: Int) {
        lock.withLock {
            inflight -= n
            lock.broadcast()
        }
    }

    func close() {
        lock.withLock {
            closing = true
            lock.broadcast()
        }
    }

    func abandon() {
        lock.withLock {
            abandoned = true
            for item in queue[head...] { item.ack.abandon() }
            queue = []
            head = 0
            lock.broadcast()
        }
    }

    var isAbandoned: Bool { lock.withLock { abandoned } }
    var isClosing: Bool { lock.withLock { closing } }

    /// Queued plus taken-and-undecided records.
    var records: Int { lock.withLock { queuedRecords + inflight } }
    var isFull: Bool { lock.withLock { queuedRecords + inflight >= capacity } }
    /// When the oldest queued batch arrived (monotonic), if any.
    var oldestSince: Double? { lock.withLock { head < queue.count ? queue[head].since : nil } }
}
