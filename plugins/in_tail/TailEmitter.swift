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
    private struct State {
        /// Taken slots are set to nil at once: a token is released (and may complete) as soon as the
        /// pipeline is done with it, never kept alive by this queue.
        var queue: [(RecordBatch, AckToken)?] = []
        var head = 0
        var bytes = 0
        var finishing = false
        /// Batches pushed since the emitting thread was last woken (see `publish`).
        var unpublished = 0
    }
    private let state = Locked(State())
    private let signal = ConditionLock()
    private let control: InputControl
    private let maxBatches: Int
    private let maxBytes: Int
    private let thread = Locked<ThreadHandle?>(nil)

    /// Room for `maxBatches` batches or `maxBytes` of record bytes, whichever comes first. Many
    /// small files make many small batches: the count bound is generous, the byte bound is what
    /// limits memory. 1 MiB is ~7 reads of docker lines ahead of the pipeline, enough to keep both
    /// threads busy; 4 MiB held ~6 MB more at P2's peak for no throughput.
    init(control: InputControl, maxBatches: Int = 1024, maxBytes: Int = 1 << 20) {
        self.control = control
        self.maxBatches = maxBatches
        self.maxBytes = maxBytes
    }

    func start() {
        let h = startThread(name: "in-\(control.name)-emit") { [self] in loop() }
        thread.withLock { $0 = h }
    }

    /// True while another read may be pushed. Never blocks.
    var hasRoom: Bool {
        state.withLock { s in s.queue.count - s.head < maxBatches && s.bytes < maxBytes }
    }

    /// Queues a batch. Never blocks: the caller checks `hasRoom` before reading, so the queue exceeds
    /// its bound by at most one read plus small flushes. The emitting thread is woken by `publish`
    /// (once a pass over the files, not once a file), or here once a quarter of the room is used.
    func push(_ batch: RecordBatch, _ ack: AckToken) {
        let n = batch.bytes.count
        let wake = state.withLock { s in
            s.queue.append((batch, ack))
            s.bytes += n
            s.unpublished += 1
            return s.unpublished >= maxBatches / 4 || s.bytes >= maxBytes / 4
        }
        if wake { publish() }
    }

    /// Wakes the emitting thread for what was pushed since the last time.
    func publish() {
        let any = state.withLock { s in
            defer { s.unpublished = 0 }
            return s.unpublished > 0
        }
        if any { signal.withLock { signal.broadcast() } }
    }

    /// Waits up to `seconds` for room (returns early when room appears or on stop).
    func waitForRoom(_ seconds: Double) {
        publish()
        signal.withLock {
            if !hasRoom && !control.isStopping { signal.wait(seconds: seconds) }
        }
    }

    /// Emits what is queued, then ends the thread. Called by the tail thread when it stops; returns
    /// once every batch went to the pipeline (an abandoning pipeline releases blocked emits).
    func finish() {
        state.withLock { $0.finishing = true }
        signal.withLock { signal.broadcast() }
        thread.withLock { $0 }?.join()
    }

    /// The next batch; waits for one unless `wait` is false (then nil when none is queued).
    private func next(wait: Bool = true) -> (RecordBatch, AckToken)? {
        while true {
            let item: (RecordBatch, AckToken)?? = state.withLock { s in
                if s.head < s.queue.count, let item = s.queue[s.head] {
                    s.queue[s.head] = nil
                    s.head += 1
                    s.bytes -= item.0.bytes.count
                    if s.head > 64 && s.head * 2 > s.queue.count {
                        s.queue.removeFirst(s.head)
                        s.head = 0
                    }
                    return .some(item)
                }
                return s.finishing ? .some(nil) : nil
            }
            if let item { return item }
            if !wait { return nil }
            signal.withLock {
                let empty = state.withLock { $0.head == $0.queue.count && !$0.finishing }
                if empty { signal.wait(seconds: 1) }
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
                    signal.withLock { signal.broadcast() }  // room for the tail thread
                    item = records < Self.runRecords ? next(wait: false) : nil
                }
            }
        }
    }

    /// Records emitted before the outputs are woken, when batches keep coming.
    static let runRecords = 2048
}
