import Logging
import Synchronization

/// Drives one output: a bounded in-memory queue (the memory buffer) and a thread that delivers
/// batches in order, retrying each until the destination has it, then acknowledges it.
///
/// Invariant: the runner keeps a batch's ack token until `write` succeeded, then lets it go; when the
/// agent gives up at shutdown it abandons every token it holds, so the input does not checkpoint them.
/// The output itself is not shared: it waits in `pending` until `start` moves it to the runner's
/// thread, which alone uses it from then on.
final class OutputRunner: OutputStage {
    let name: String
    private let capacity: Int
    private let logger: Logger
    private struct State {
        /// Taken entries are cleared (nil) so the queue never keeps a token past its hand-over.
        var queue: [(RecordBatch, AckToken)?] = []
        var head = 0
        var queuedRecords = 0
        var closing = false   // no more batches will come: drain then exit
        var abandon = false   // give up now (shutdown timeout)
        var failing = false
    }
    private let state = Locked(State())
    private let pending: Handover<any Output>
    private let delivered: Counter
    private let deliveredBatches: Counter
    private let writeErrors: Counter
    private let queued: Gauge
    private let blockedEvents: Counter
    private let threadBox = Mutex<ThreadHandle?>(nil)

    init(name: String, output: sending any Output, capacity: Int, context: ComponentContext) {
        self.name = name
        self.pending = Handover(output)
        self.capacity = max(1, capacity)
        self.logger = context.logger
        delivered = context.stats.counter("records_out", "records delivered to the destination")
        deliveredBatches = context.stats.counter("batches_out", "batches delivered to the destination")
        writeErrors = context.stats.counter("write_errors", "failed deliveries (each is retried)")
        queued = context.stats.gauge("queued_records", "records waiting in memory for this output")
        blockedEvents = context.stats.counter("queue_full_events", "times an input waited because this output's queue was full")
    }

    func start() {
        guard let output = pending.take() else { return }
        let h = startThread(name: "out-\(name)") { [self] in loop(output) }
        threadBox.withLock { $0 = h }
    }

    /// Queues a batch; blocks while the queue is full (backpressure), unless the agent is abandoning.
    func enqueue(_ batch: RecordBatch, _ ack: AckToken) {
        let n = batch.count
        var waited = false
        state.withLockWaiting { s -> LockStep<Void> in
            if s.abandon {
                ack.abandon()
                return .done(())
            }
            // A batch larger than the capacity still goes into an empty queue: progress over strictness.
            guard s.queuedRecords == 0 || s.queuedRecords + n <= capacity else {
                if !waited {
                    waited = true
                    blockedEvents.add()
                }
                return .wait(seconds: 0.5)
            }
            s.queue.append((batch, ack))
            s.queuedRecords += n
            queued.add(n)
            return .done(())
        }
        state.broadcast()
    }

    private func next() -> (RecordBatch, AckToken)? {
        state.withLockWaiting { s -> LockStep<(RecordBatch, AckToken)?> in
            if s.abandon { return .done(nil) }
            if s.head < s.queue.count, let item = s.queue[s.head] {
                s.queue[s.head] = nil
                s.head += 1
                // Compact now and then instead of removeFirst per batch.
                if s.head > 64 && s.head * 2 > s.queue.count {
                    s.queue.removeFirst(s.head)
                    s.head = 0
                }
                return .done(item)
            }
            return s.closing ? .done(nil) : .wait(seconds: 1)
        }
    }

    private func dequeued(_ n: Int) {
        state.withLock { s in
            s.queuedRecords -= n
            queued.add(-n)
        }
        state.broadcast()
    }

    /// The runner's thread: the only user of `output`.
    private func loop(_ output: any Output) {
        defer { output.close() }  // also when abandoned mid-retry: no descriptor left behind
        var backoff = Backoff(initial: 0.1, max: 30, jitter: .none)
        while let (batch, ack) = next() {
            // The token stays referenced until the batch is written; abandoned if the runner gives up.
            let written = withExtendedLifetime(ack) { write(batch, to: output, &backoff) }
            guard written else {
                ack.abandon()
                return
            }
            delivered.add(batch.count)
            deliveredBatches.add()
            dequeued(batch.count)
        }
    }

    /// Writes one batch, retrying with backoff. False when the runner must abandon.
    private func write(_ batch: RecordBatch, to output: any Output, _ backoff: inout Backoff) -> Bool {
        while true {
            do {
                try output.write(batch)
                if backoff.attempt > 0 {
                    state.withLock { $0.failing = false }
                    logger.notice("output \(name): delivering again after \(backoff.attempt) failed attempts")
                }
                backoff.reset()
                return true
            } catch {
                writeErrors.add()
                state.withLock { $0.failing = true }
                let delay = backoff.next()
                // One line per failure streak step, not per record: the backoff spaces them out.
                logger.error("output \(name): write failed (attempt \(backoff.attempt)), retrying in \(clampedMillis(delay))ms: \(error)")
                if sleepUnlessAbandoned(delay) { return false }
            }
        }
    }

    /// Returns true when the runner must abandon its work.
    private func sleepUnlessAbandoned(_ seconds: Double) -> Bool {
        let deadline = monotonicSeconds() + seconds
        return state.withLock(waitingUntil: deadline) { $0.abandon ? true : nil } ?? false
    }

    /// No more batches will be queued: deliver what is queued, then stop.
    func close() {
        state.withLock { $0.closing = true }
        state.broadcast()
    }

    /// Stop now, leaving undelivered batches unacknowledged.
    func abandon() {
        state.withLock { s in
            s.abandon = true
            for item in s.queue { item?.1.abandon() }
            s.queue = []
            s.head = 0
        }
        state.broadcast()
        // Never started: the output was not handed to a thread; close it here.
        pending.take()?.close()
    }

    var pendingRecords: Int { state.withLock { $0.queuedRecords } }

    var keptRecords: Int { 0 }
    var descriptorsNeeded: Int { 2 }

    /// Nothing to do: what waits for this output's queue is delivered up to shutdown_timeout.
    func inputsStopping() {}

    /// A failing output whose queue is full (the inputs feeding it are paused); while it has room
    /// the queue is doing its job.
    var notReadyReason: String? {
        let (failing, queued) = state.withLock { ($0.failing, $0.queuedRecords) }
        guard failing && queued >= capacity else { return nil }
        return "output \(name): the destination is failing and its queue is full (\(queued) records waiting; inputs feeding it are paused)"
    }

    func join(timeout: Double) -> Bool {
        threadBox.withLock { $0 }?.join(timeout: timeout) ?? true
    }
}
