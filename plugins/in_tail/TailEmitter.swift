import AnduinCore

/// Where `LineReader` hands its batches: the `TailEmitter` thread, or a test collecting them.
protocol BatchSink: AnyObject {
    /// True while another read may be pushed. Never blocks.
    var hasRoom: Bool { get }
    func push(_ batch: RecordBatch, _ ack: AckToken)
}

/// Decouples reading from delivery: the tail thread pushes batches here without ever blocking, and a
/// thread of its own hands them to `InputControl.emit`, which blocks while an output's queue is
/// full. So a full buffer pauses *reading* (the tail sees `hasRoom == false`), while discovery,
/// rotation tracking and housekeeping keep running on the tail thread: a file created and rotated
/// away during an outage is still found and pinned (kept open).
///
/// Order is kept (one emitting thread, FIFO), so acknowledgement order is unchanged.
final class TailEmitter: BatchSink, Sendable {
    private let queue: BoundedQueue<(RecordBatch, AckToken)>
    private let control: InputControl
    private let thread = Locked<ThreadHandle?>(nil)

    /// Room for `maxBatches` batches or `maxBytes` of record bytes, whichever comes first. Many
    /// small files make many small batches: the count bound is generous, the byte bound is what
    /// limits memory. 1 MiB is ~7 reads of docker lines ahead of the pipeline, enough to keep both
    /// threads busy; 4 MiB held ~6 MB more at P2's peak for no throughput.
    init(control: InputControl, maxBatches: Int = 1024, maxBytes: Int = 1 << 20) {
        self.control = control
        queue = BoundedQueue(capacity: maxBytes, maxItems: maxBatches)
    }

    func start() {
        let h = startThread(name: "in-\(control.name)-emit") { [self] in loop() }
        thread.withLock { $0 = h }
    }

    /// True while another read may be pushed. Never blocks.
    var hasRoom: Bool { queue.hasRoom }

    /// Queues a batch. Never blocks: the caller checks `hasRoom` before reading, so the queue exceeds
    /// its bound by at most one read plus small flushes. The emitting thread is woken by `publish`
    /// (once a pass over the files, not once a file), or here once a quarter of the room is used.
    func push(_ batch: RecordBatch, _ ack: AckToken) {
        queue.append((batch, ack), weight: batch.bytes.count, whenFull: .exceed,
                     wakeTakers: .atBacklog(items: queue.maxItems / 4, weight: queue.capacity / 4))
    }

    /// Wakes the emitting thread for what was pushed since the last time.
    func publish() { queue.wakeTakers() }

    /// Waits up to `seconds` for room (returns early when room appears or on stop).
    func waitForRoom(_ seconds: Double) {
        queue.waitForRoom(seconds: seconds) { control.isStopping }
    }

    /// Emits what is queued, then ends the thread. Called by the tail thread when it stops; returns
    /// once every batch went to the pipeline (an abandoning pipeline releases blocked emits).
    func finish() {
        queue.close()
        thread.withLock { $0 }?.join()
    }

    /// The next batch; waits for one unless `wait` is false (then nil when none is queued). Taking it
    /// wakes the tail thread if it waits for room.
    private func next(wait: Bool = true) -> (RecordBatch, AckToken)? {
        while true {
            switch queue.take(limit: .max, maxItems: 1, maxWait: wait ? 1 : 0) {
            case .items(let items): return items.first
            case .finished: return nil
            case .idle: if !wait { return nil }
            }
        }
    }

    /// Emits what a pass pushed as one run: outputs are woken once for it (`emittingRun`), at the
    /// latest every `runRecords` records.
    private func loop() {
        while let (batch, ack) = next() {
            control.emittingRun {
                var item: (RecordBatch, AckToken)? = (batch, ack)
                var records = 0
                while let (b, a) = item {
                    control.emit(b, ack: a)
                    records += b.count
                    item = records < Self.runRecords ? next(wait: false) : nil
                }
            }
        }
    }

    /// Records emitted before the outputs are woken, when batches keep coming.
    static let runRecords = 2048
}
