import Logging
import Synchronization

/// Runs an output (network or local): its buffer (memory or disk), `concurrency` delivery threads each
/// with its own sender, the retry lane, the dead-letter store, and acknowledgements.
///
/// Delivery contract:
/// - memory buffer: a batch's ack token is let go once every record of it was delivered or
///   dead-lettered (`DeliveryTicket`); until then the input does not checkpoint it. Giving up
///   abandons it.
/// - disk buffer: the token is let go once the batch is written to the ring; the ring's delivered
///   position advances (in order, whatever the concurrency) over records delivered, dead-lettered or
///   journaled in the retry lane (`RingCommitOrder`).
/// - records refused with a retriable status wait in the retry lane, so the records behind them
///   flow on; the retry budget bounds how long (`RetryPolicy`).
final class DeliveryRunner: OutputStage, Sendable {
    let name: String
    private let options: DeliveryOptions
    private let logger: Logger
    /// One per delivery thread, moved to that thread at `start` and used only there.
    private let senders: [TakeOnceSlot<any BatchSender>]
    private let ring: DiskRing?
    private let queue: OutputQueue
    private let lane: RetryLane
    private let deadLetters: DeadLetterStore
    private let progress: DeliveryProgress
    private let waiter: RetryWaiter
    /// The senders' requests poll it (`ComponentContext.requestAbort`).
    private let requestAbort: RequestAbort
    /// Records received and handed back to the inputs unacknowledged (see `enqueue`, `writerLoop`).
    private let returned: Counter
    /// Records found buffered at start, and records decided but left in the ring or the lane by a
    /// stop, to be decided again by the next reader (see `settleUncommitted`).
    private let recovered: Counter
    /// With a disk buffer, how long a stop lets a request in flight finish before abandoning it (the
    /// ring keeps its records for the next start; a replay is deduplicated by `_id` with Elasticsearch).
    static let stopGrace = 2.0
    private struct State {
        var commits = RingCommitOrder()
        /// The stop counted what the ring keeps: later takes are not committed but counted at once.
        var settled = false
        var writerDone = false
        var writer: ThreadHandle?
        var workers: [ThreadHandle] = []
    }
    private let state = Mutex(State())
    /// Serialises gathering a batch from the ring (see `takeFromRing`); never held with `lock` waiting.
    private let takeLock = ConditionLock()

    init(name: String, options: DeliveryOptions, context: ComponentContext,
         makeSender: () throws -> any BatchSender) throws {
        self.name = name
        self.options = options
        self.logger = context.logger
        senders = try (0..<options.concurrency).map { _ in TakeOnceSlot(try makeSender()) }
        let logger = context.logger
        let s = context.stats
        // A reload rebuilds the runner on the same stats: what the ring holds then was counted in
        // already, by the runner that made `records_recovered` (other parts may register counters on
        // these stats before this runner, so their absence says nothing).
        let firstRun = !s.hasCounter("records_recovered")
        var fsync = FsyncPolicy.interval(1)
        switch options.buffer {
        case .memory(let maxRecords):
            ring = nil
            queue = OutputQueue(capacity: maxRecords, batchTimeout: options.batch.timeout, immediate: false, stats: s)
        case .disk(let ringOptions):
            do {
                ring = try DiskRing(directory: context.dataDirectory + "/buffers/" + name, options: ringOptions,
                                    stats: s, log: { logger.warning("\($0)") })
            } catch {
                throw StartupError("disk buffer: \(error)")
            }
            fsync = ringOptions.fsync
            // Only a small hand-off: the ring is the buffer.
            queue = OutputQueue(capacity: max(options.batch.maxRecords, 10_000), batchTimeout: options.batch.timeout,
                                immediate: true, stats: s)
        }
        lane = RetryLane(maxBytes: options.retry.laneMaxBytes,
                         journalPath: ring.map { _ in context.dataDirectory + "/buffers/" + name + ".retry-lane" },
                         fsync: fsync, stats: s, log: { logger.warning("\($0)") })
        deadLetters = DeadLetterStore(dataDirectory: context.dataDirectory, output: name, options: options.deadLetter,
                                      fsync: fsync, stats: s)
        progress = DeliveryProgress(name: name, stallAfter: options.ready.stallAfter, logger: logger, stats: s)
        waiter = RetryWaiter(diskBuffered: ring != nil, retryInitial: options.retry.initial, retryMax: options.retry.max)
        requestAbort = context.requestAbort
        // What this run found buffered from the previous one: the "in" side of the accounting for
        // records this process never received.
        recovered = s.counter("records_recovered", "records found in the disk buffer (damaged ones included) and retry lane at start (from a previous run), or decided and left there by a reload to be decided again")
        returned = s.counter("records_returned", "records received and handed back unacknowledged, to be read again (stopping or reloading with a disk buffer: not yet in it)")
        // Records the ring counted as lost while opening were buffered by the previous run as well.
        if firstRun {
            recovered.add((ring?.bufferedRecords ?? 0).addingSaturating(ring?.lostAtStart ?? 0).addingSaturating(lane.recovered))
        }
        progress.sinceDelivery.computed { [weak self] in self?.progress.secondsSinceLastDelivery() ?? 0 }
        progress.oldestAge.computed { [weak self] in self?.oldestUndeliveredAge() ?? 0 }
        s.gauge("pending_records", "records received and not yet decided: queued, in the disk buffer, in flight or retrying")
            .computed { [weak self] in self?.pendingRecords ?? 0 }
        s.gauge("unaccounted_records", "records_in + records_recovered - (records_out + dead_lettered_records + buffer_records_dropped + buffer_corrupt_records + records_returned + pending_records): 0 when every record is accounted for (transiently off while records move)")
            .computed { [weak s] in s.map { Accounting(output: $0).unaccounted } ?? 0 }
    }

    func start() {
        var writer: ThreadHandle?
        var hs: [ThreadHandle] = []
        if ring != nil {
            writer = startThread(name: "buf-\(name)") { [self] in writerLoop() }
        }
        for (i, slot) in senders.enumerated() {
            guard let sender = slot.take() else { continue }  // started already
            hs.append(startThread(name: "out-\(name)-\(i)") { [self] in workerLoop(slot: i, sender) })
        }
        state.withLock {
            $0.writer = writer
            $0.workers = hs
        }
    }

    // MARK: input side

    func enqueue(_ batch: RecordBatch, _ ack: AckToken) {
        // Refused once the runner gave up (or its disk buffer's writer did, at a stop): `ack` is
        // abandoned, so the input reads the records again.
        if !queue.enqueue(batch, ack) { returned.add(batch.count) }
    }

    // MARK: disk buffer writer

    private func writerLoop() {
        guard let ring else { return }
        loop: while true {
            switch queue.take(limitRecords: options.batch.maxRecords, maxWait: 1, countInflight: false) {
            case .idle: continue
            case .finished: break loop
            case .batches(let items):
                // The acks stay referenced until their batches are in the ring, then go.
                let unwritten = withExtendedLifetime(items) { appendToRing(ring, items) }
                if let (first, inRing) = unwritten {
                    // Shut down: those not in the ring are not acknowledged, read again at the next
                    // start, nor are the batches still queued. Records of the first one already in
                    // the ring stay there (and are delivered) as well as read again.
                    for item in items[first...] { item.ack.abandon() }
                    let notInRing = items[first...].reduce(0) { $0 + $1.batch.count } - inRing
                    returned.add(notInRing + queue.abandon())
                    return
                }
            }
        }
        state.withLock { $0.writerDone = true }
    }

    /// Appends the batches of a take, several to one append (one block and one write, where a
    /// quiet node's take is a batch of a line or two from each of many files), up to `ringAppendBytes`
    /// of documents each. nil when all are in the ring; after a shutdown, the first batch not wholly
    /// in it and how many of its records are.
    private func appendToRing(_ ring: DiskRing, _ items: [(batch: RecordBatch, ack: AckToken)]) -> (first: Int, inRing: Int)? {
        var start = 0
        while start < items.count {
            var encoded = EncodedBatch()
            var end = start
            var estimate = 0
            while end < items.count && (end == start || estimate < Self.ringAppendBytes) {
                estimate = estimate.addingSaturating(RecordEncoder.estimatedSize(items[end].batch, metadata: options.metadata))
                end += 1
            }
            if options.encode { encoded.documents.reserveCapacity(estimate) }
            for i in start..<end { encode(items[i].batch, into: &encoded) }
            var handled = 0
            if !ring.append(encoded, handled: &handled) {
                // The batches wholly written are safe; the rest are not.
                var i = start
                while i < end && handled >= items[i].batch.count {
                    handled -= items[i].batch.count
                    i += 1
                }
                return (i, handled)
            }
            start = end
        }
        return nil
    }

    /// Document bytes gathered for one ring append: bounds the extra memory of merging batches.
    static let ringAppendBytes = 256 * 1024

    // MARK: delivery threads

    private enum Fresh {
        case memory(DeliveryWork, DeliveryTicket, records: Int)
        case disk(DeliveryWork, seq: Int, end: RingPosition)
        case idle
        case finished
    }

    private func workerLoop(slot: Int, _ sender: any BatchSender) {
        let policy = RetryPolicy(options: options, sender: sender, progress: progress, deadLetters: deadLetters,
                                 lane: lane, waiter: waiter, slot: slot)
        while !waiter.stopNow {
            // Records whose backoff is over go first: they are the oldest.
            let due = lane.takeDue(now: monotonicSeconds(), maxRecords: options.batch.maxRecords)
            if !due.isEmpty {
                var work = DeliveryWork(EncodedBatch())
                for g in due { work.append(g.work) }
                var decided = 0
                let outcome = policy.deliverOrLeave(work, tickets: DeliveryTicket.distinct(due.flatMap(\.tickets)), fromLane: true, decided: &decided)
                switch outcome {
                case .stopped:
                    // All of them go back, those decided already too: with a disk buffer the lane's
                    // journal keeps them for the next runner, which decides them again; a memory
                    // lane's are counted returned by the abandon (which follows) and read again. So
                    // those decided count as recovered.
                    lane.putBack(due)
                    recovered.add(decided)
                    return
                case .decided, .leftInLane:
                    // Decided after the lane was abandoned: a memory lane counted them returned, and a
                    // journal no longer written keeps them for the next runner. Decided again either way.
                    if lane.settle(due) { recovered.add(decided) }
                    // Stopping: what was left waits in the lane's journal (a new group) for the next start.
                    if outcome == .leftInLane { return }
                    continue
                }
            }
            let wait = min(1, max(0.01, (lane.nextDue ?? .infinity) - monotonicSeconds()))
            switch takeFresh(maxWait: wait) {
            case .memory(let work, let ticket, let n):
                // The ticket (the batches' acks) stays referenced until the records are decided;
                // lane groups made from them keep their own reference.
                var decided = 0
                let done = withExtendedLifetime(ticket) { policy.deliver(work, tickets: [ticket], fromLane: false, decided: &decided) }
                guard done else {
                    // Read again by the input: received again. The records decided already are
                    // counted twice on both sides, the others only in `returned`.
                    ticket.abandon()
                    returned.add(max(0, n - decided))
                    queue.done(n)
                    return
                }
                queue.done(n)
            case .disk(let work, let seq, let end):
                var decided = 0
                switch policy.deliverOrLeave(work, tickets: [], fromLane: false, decided: &decided) {
                case .stopped:
                    // Not committed: the ring keeps the take for the next reader, which decides
                    // again what was decided; what drop_oldest deleted meanwhile was counted dropped.
                    recovered.add(decided)
                    return
                case .decided:
                    commit(seq: seq, end: end, records: work.count)
                case .leftInLane:
                    // Stopping: what was not decided waits in the lane's journal, and the decided
                    // takes after this one commit with it. The rest of the ring waits for the next start.
                    commit(seq: seq, end: end, records: work.count)
                    return
                }
            case .idle:
                // Nothing waits outside the lane (whose stalls are judged on their own): not stuck.
                // Another thread may be stuck in a retry while this one finds nothing new.
                if queue.records.addingSaturating(ring?.bufferedRecords ?? 0) == 0 { progress.idle() }
                lane.syncIfDue()
            case .finished:
                // Memory buffer: what waits in the lane is not acknowledged yet: keep retrying it
                // (a stop gives up at shutdown_timeout). Disk buffer: the lane's journal keeps it.
                if ring == nil && lane.records > 0 {
                    _ = waiter.wait(until: monotonicSeconds() + min(1, max(0.01, (lane.nextDue ?? .infinity) - monotonicSeconds())))
                    continue
                }
                return
            }
        }
    }

    private func takeFresh(maxWait: Double) -> Fresh {
        guard let ring else {
            switch queue.take(limitRecords: options.batch.maxRecords, maxWait: maxWait, countInflight: true) {
            case .idle: return .idle
            case .finished: return .finished
            case .batches(let items):
                var batch = EncodedBatch()
                if options.encode {
                    batch.documents.reserveCapacity(items.reduce(0) { $0 + RecordEncoder.estimatedSize($1.batch, metadata: options.metadata) })
                }
                batch.records.reserveCapacity(items.reduce(0) { $0 + $1.batch.count })
                var n = 0
                for (b, _) in items {
                    encode(b, into: &batch)
                    n += b.count
                }
                return .memory(DeliveryWork(batch), DeliveryTicket(items.map(\.ack)), records: n)
            }
        }
        return takeFromRing(ring, maxWait: maxWait)
    }

    /// Serialises `batch` onto `out`; without `options.encode`, one empty document per record.
    private func encode(_ batch: RecordBatch, into out: inout EncodedBatch) {
        guard options.encode else {
            for r in batch.records {
                out.append(document: UnsafeRawBufferPointer(start: nil, count: 0), timestamp: r.timestamp,
                           sourceID: batch.source.sourceID, offset: r.offset)
            }
            return
        }
        if out.isEmpty { out.documents.reserveCapacity(RecordEncoder.estimatedSize(batch, metadata: options.metadata)) }
        out.append(batch, metadata: options.metadata)
    }

    /// One gatherer at a time, for the whole batch: sequence numbers must follow ring order, or a
    /// thread committing its batch would also commit blocks another thread read in between and has
    /// not delivered yet (records lost on a crash).
    private func takeFromRing(_ ring: DiskRing, maxWait: Double) -> Fresh {
        takeLock.withLock { () -> Fresh in
            let done = queue.isClosing && state.withLock { $0.writerDone }
            if waiter.stopNow { return .finished }
            var batch = EncodedBatch()
            var end: RingPosition?
            let deadline = monotonicSeconds() + options.batch.timeout
            var bytes = 0
            while batch.count < options.batch.maxRecords && bytes < options.batch.maxBytes {
                let wait = end == nil ? (done ? 0.05 : min(0.25, maxWait)) : max(0, deadline - monotonicSeconds())
                // Filling a started batch: woken when the rest of it was written or at the batch
                // timeout, not at every block an input writes.
                guard let r = ring.read(maxRecords: options.batch.maxRecords - batch.count,
                                        maxBytes: options.batch.maxBytes - bytes, timeout: wait, gather: end != nil) else { break }
                if batch.isEmpty {
                    batch = r.batch  // the common case: one read fills the batch, no copy
                } else {
                    batch.append(contentsOf: r.batch)
                }
                bytes = batch.documents.count
                end = r.end
                if waiter.stopNow { return .finished }
            }
            if let end {
                let seq = state.withLock { $0.commits.begin() }
                return .disk(DeliveryWork(batch), seq: seq, end: end)
            }
            return done ? .finished : .idle
        }
    }

    private func commit(seq: Int, end: RingPosition, records: Int) {
        guard let ring else { return }
        state.withLock {
            // After an abandon (stop timeout, reload) a newer ring may own this directory: the
            // take stays in the ring, decided again by its next reader.
            if waiter.stopNow || $0.settled {
                recovered.add(records)
                return
            }
            // Under the lock: positions reach the ring in order.
            let takes = $0.commits.finish(seq, end: end, records: records)
            guard let p = takes.last?.end else { return }
            lane.syncBeforeCommit()  // a power cut must not leave the cursor past unjournaled refusals
            // Records drop_oldest deleted while they were held were counted dropped; decided after
            // all, they are counted twice.
            recovered.add(ring.commit(p, takes: takes))
        }
    }

    /// Once no take will be committed any more: the records of finished takes stuck behind an
    /// unfinished one stay in the ring. They were counted decided; the next reader (a reload's
    /// runner on the same counters) decides them again, so they count as recovered too. Once.
    /// (Those drop_oldest deleted were counted dropped: decided and dropped, also twice.)
    private func settleUncommitted() {
        state.withLock {
            guard !$0.settled else { return }
            $0.settled = true
            recovered.add($0.commits.abandonUncommitted().reduce(0) { $0.addingSaturating($1.records) })
        }
    }

    // MARK: stopping

    func close() {
        queue.close()
        waiter.close()
        // Memory buffer: the records are nowhere else, so requests run to their end (the stop waits up
        // to shutdown_timeout, then `abandon` ends them).
        if ring != nil { requestAbort.abort(after: Self.stopGrace) }
    }

    func abandon() {
        requestAbort.abortNow()
        waiter.abandon()
        settleUncommitted()
        // Memory buffer: what is queued or waits in the lane is read again by the inputs (its acks
        // are abandoned). A disk buffer keeps the lane's records in its journal.
        returned.add(queue.abandon().addingSaturating(lane.abandon()))
        ring?.shutdown()
    }

    func join(timeout: Double) -> Bool {
        let deadline = monotonicSeconds() + timeout
        let (writer, workers) = state.withLock { ($0.writer, $0.workers) }
        for h in workers where !h.join(timeout: max(0, deadline - monotonicSeconds())) {
            return false
        }
        settleUncommitted()
        lane.sync()
        deadLetters.sync()
        // The writer puts what is queued in the ring without waiting for room (`inputsStopping`),
        // then finds the queue closed.
        if let writer, !writer.join(timeout: max(0, deadline - monotonicSeconds())) { return false }
        ring?.shutdown()
        return true
    }

    /// With a disk buffer, what the inputs hand over while the agent stops goes into the ring at
    /// once, past max_bytes if need be (`DiskRing.takeWhatIsQueued`), instead of holding the stop
    /// until shutdown_timeout (a full ring empties only as fast as the destination takes records)
    /// or being read again: read again, it would reach this input's other outputs twice.
    func inputsStopping() {
        ring?.takeWhatIsQueued()
    }

    // MARK: state

    /// Records of finished takes still count in the ring until their commit, but they are decided.
    var pendingRecords: Int {
        let decided = state.withLock { $0.commits.decidedUncommitted }
        // Saturating: a damaged buffer can report up to Int.max records (numbers read from disk).
        return queue.records.addingSaturating(max(0, (ring?.bufferedRecords ?? 0) - decided)).addingSaturating(lane.records)
    }

    /// Undelivered records that the disk buffer keeps for the next start (the ring and the lane's
    /// journal); 0 with a memory buffer.
    /// Per request slot a socket and libcurl's wake-up pair; a disk buffer's writer and reader
    /// segments, cursor and retry-lane journal; the dead-letter file.
    var descriptorsNeeded: Int { options.concurrency * 3 + (ring == nil ? 0 : 4) + 1 }

    /// For tests: ticket references held by the retry lane.
    var laneTicketReferences: Int { lane.ticketReferences }

    var keptRecords: Int { ring.map { $0.bufferedRecords.addingSaturating(lane.records) } ?? 0 }

    var notReadyReason: String? {
        progress.notReadyReason(pending: pendingRecords, lane: lane.summary)
    }

    private func oldestUndeliveredAge() -> Int {
        var others: [Int64?] = [lane.summary.oldestTimestamp]
        // Memory queue: arrival time stands in for the timestamp of what waits unread.
        if let since = queue.oldestSince {
            others.append(wallClockNanos() - Int64((monotonicSeconds() - since) * 1e9))
        }
        return progress.oldestAgeSeconds(others: others)
    }
}
