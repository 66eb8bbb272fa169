import Logging

/// Runs a network output: its buffer (memory or disk), `concurrency` delivery threads each with its
/// own sender, retries with backoff, dead letters, and acknowledgements.
///
/// Delivery contract:
/// - memory buffer: a batch's ack token is let go once every record of it was delivered or
///   dead-lettered; until then the input does not checkpoint it. Giving up abandons it.
/// - disk buffer: the token is let go once the batch is written to the ring; the ring's cursor
///   advances (in order, whatever the concurrency) once its records were delivered or dead-lettered.
final class DeliveryRunner: OutputStage, @unchecked Sendable {  // mutable state under `lock`
    let name: String
    private let options: DeliveryOptions
    private let logger: Logger
    private let senders: [any BatchSender]
    private let deadLetters: DeadLetterFile
    private let ring: DiskRing?
    private let lock = ConditionLock()
    /// Serialises reading a batch from the ring (see `take`); never held with `lock` waiting.
    private let takeLock = ConditionLock()

    // Memory queue (memory buffer) or hand-off queue to the ring writer (disk buffer).
    private var queue: [(batch: RecordBatch, ack: AckToken, since: Double)] = []
    private var queuedRecords = 0
    private let queueCapacity: Int
    private var closing = false
    private var abandoned = false
    private var writerDone = false
    private var threads: [ThreadHandle] = []

    // In-order commits for the disk ring.
    private var nextTakeSeq = 0
    private var nextCommitSeq = 0
    private var finished: [Int: RingPosition] = [:]

    private let recordsOut, retries, requestFailures, authFailures, splits: Counter
    private let queued: Gauge
    private let queueFull: Counter
    private let requestDuration: Histogram
    private let deliveryLag: Histogram
    private var failing = false
    /// Records taken from the memory queue and not yet delivered (retrying ones included).
    private var inflightRecords = 0
    private var lastLog = -Double.infinity
    private var suppressed = 0

    init(name: String, options: DeliveryOptions, context: ComponentContext,
         makeSender: () throws -> any BatchSender) throws {
        self.name = name
        self.options = options
        self.logger = context.logger
        senders = try (0..<options.concurrency).map { _ in try makeSender() }
        deadLetters = DeadLetterFile(dataDirectory: context.dataDirectory, output: name, stats: context.stats)
        switch options.buffer {
        case .memory(let maxRecords):
            ring = nil
            queueCapacity = maxRecords
        case .disk(let ringOptions):
            let logger = context.logger
            do {
                ring = try DiskRing(directory: context.dataDirectory + "/buffers/" + name, options: ringOptions,
                                    stats: context.stats, log: { logger.warning("\($0)") })
            } catch {
                throw StartupError("disk buffer: \(error)")
            }
            // Only a small hand-off: the ring is the buffer.
            queueCapacity = max(options.maxRecords, 10_000)
        }
        let s = context.stats
        recordsOut = s.counter("records_out", "records delivered to the destination")
        retries = s.counter("retries", "requests retried after a retriable failure")
        requestFailures = s.counter("request_failures", "requests that failed (network, timeout, 408/429/5xx)")
        authFailures = s.counter("auth_failures", "requests refused with 401/403 (retried; check credentials)")
        splits = s.counter("batch_splits", "batches split in two after 413 Request Entity Too Large")
        queued = s.gauge("queued_records", "records waiting in memory for this output")
        queueFull = s.counter("queue_full_events", "times an input waited because this output's queue was full")
        requestDuration = s.histogram("request_duration", "time of one request to the destination, answered or failed",
                                      buckets: [0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60])
        deliveryLag = s.histogram("delivery_lag", "from a record's timestamp to the destination confirming it (oldest record of each request)",
                                  buckets: [0.01, 0.05, 0.1, 0.5, 1, 5, 10, 30, 60, 300, 900, 3600])
    }

    func start() {
        var hs: [ThreadHandle] = []
        if ring != nil {
            hs.append(startThread(name: "buf-\(name)") { [self] in writerLoop() })
        }
        for (i, sender) in senders.enumerated() {
            let box = SenderBox(sender)
            hs.append(startThread(name: "out-\(name)-\(i)") { [self] in workerLoop(box.sender) })
        }
        lock.withLock { threads = hs }
    }

    // MARK: input side

    func enqueue(_ batch: RecordBatch, _ ack: AckToken) {
        let n = batch.count
        lock.withLock {
            var waited = false
            while !abandoned && queuedRecords > 0 && queuedRecords + n > queueCapacity {
                if !waited {
                    waited = true
                    queueFull.add()
                }
                lock.wait(seconds: 0.5)
            }
            if abandoned {
                ack.abandon()
                return
            }
            queue.append((batch, ack, monotonicSeconds()))
            queuedRecords += n
            queued.add(n)
            lock.broadcast()
        }
    }

    /// Pops queued batches for one delivery: up to maxRecords, waiting up to the batch timeout for more.
    private func takeQueued(limitRecords: Int) -> [(batch: RecordBatch, ack: AckToken)]? {
        lock.withLock {
            while true {
                if abandoned { return nil }
                if let first = queue.first {
                    let due = monotonicSeconds() - first.since >= options.batchTimeout
                    if queuedRecords >= limitRecords || due || closing || ring != nil { break }
                    lock.wait(seconds: max(0.001, options.batchTimeout - (monotonicSeconds() - first.since)))
                    continue
                }
                if closing { return nil }
                lock.wait(seconds: 1)
            }
            var out: [(RecordBatch, AckToken)] = []
            var n = 0
            while let first = queue.first, out.isEmpty || n + first.batch.count <= limitRecords {
                queue.removeFirst()
                n += first.batch.count
                out.append((first.batch, first.ack))
            }
            queuedRecords -= n
            queued.add(-n)
            lock.broadcast()
            return out
        }
    }

    // MARK: disk buffer writer

    private func writerLoop() {
        guard let ring else { return }
        while let items = takeQueued(limitRecords: options.maxRecords) {
            for (i, (batch, _)) in items.enumerated() {
                var encoded = EncodedBatch()
                encoded.append(batch)
                guard ring.append(encoded) else {
                    // Shut down: not acknowledged, read again at the next start.
                    for (_, ack) in items[i...] { ack.abandon() }
                    return
                }
            }
        }
        lock.withLock {
            writerDone = true
            lock.broadcast()
        }
    }

    // MARK: delivery

    private enum Work {
        case memory(EncodedBatch, [AckToken])
        case disk(EncodedBatch, seq: Int, end: RingPosition)
    }

    private func take() -> Work? {
        if let ring {
            // One gatherer at a time, for the whole batch: sequence numbers must follow ring order,
            // or a thread committing its batch would also commit blocks another thread read in
            // between and has not delivered yet (records lost on a crash).
            return takeLock.withLock { () -> Work? in
                while true {
                    let (done, stop) = lock.withLock { (closing && writerDone, abandoned) }
                    if stop { return nil }
                    var batch = EncodedBatch()
                    var end: RingPosition?
                    let deadline = monotonicSeconds() + options.batchTimeout
                    var bytes = 0
                    while batch.count < options.maxRecords && bytes < options.maxBytes {
                        let wait = end == nil ? (done ? 0.05 : 0.25) : max(0, deadline - monotonicSeconds())
                        guard let r = ring.read(maxRecords: options.maxRecords - batch.count,
                                                maxBytes: options.maxBytes - bytes, timeout: wait) else { break }
                        if batch.isEmpty {
                            batch = r.batch  // the common case: one read fills the batch, no copy
                        } else {
                            batch.append(contentsOf: r.batch)
                        }
                        bytes = batch.documents.count
                        end = r.end
                        if isAbandoned { return nil }
                    }
                    if let end {
                        let seq = lock.withLock { () -> Int in
                            defer { nextTakeSeq += 1 }
                            return nextTakeSeq
                        }
                        return .disk(batch, seq: seq, end: end)
                    }
                    if done || isAbandoned { return nil }
                }
            }
        }
        guard let items = takeQueued(limitRecords: options.maxRecords) else { return nil }
        var batch = EncodedBatch()
        for (b, _) in items { batch.append(b) }
        return .memory(batch, items.map(\.ack))
    }

    private func workerLoop(_ sender: any BatchSender) {
        while let work = take() {
            switch work {
            case .memory(let batch, let acks):
                lock.withLock { inflightRecords += batch.count }
                defer { lock.withLock { inflightRecords -= batch.count } }
                // The tokens stay referenced until the records' fate is decided.
                guard withExtendedLifetime(acks, { deliver(batch, sender) }) else {
                    for a in acks { a.abandon() }
                    return
                }
            case .disk(let batch, let seq, let end):
                guard deliver(batch, sender) else { return }
                commit(seq: seq, end: end)
            }
        }
    }

    private func commit(seq: Int, end: RingPosition) {
        guard let ring else { return }
        lock.withLock {
            // After an abandon (stop timeout, reload) a newer ring may own this directory.
            if abandoned { return }
            finished[seq] = end
            var last: RingPosition?
            while let p = finished.removeValue(forKey: nextCommitSeq) {
                last = p
                nextCommitSeq += 1
            }
            if let last { ring.commit(last) }
        }
    }

    /// Delivers every record (or dead-letters it). Returns false when abandoned at shutdown.
    private func deliver(_ batch: EncodedBatch, _ sender: any BatchSender) -> Bool {
        // A buffer hands over what it holds (a whole input read, a whole ring block): the request
        // size limits are applied here, for every buffer kind. Sent in order (popLast).
        var work = Array(batch.chunked(maxRecords: options.maxRecords, maxBytes: options.maxBytes).reversed())
        var backoff = Backoff(initial: options.retryInitial, max: options.retryMax)
        while var pending = work.popLast() {
            while !pending.isEmpty {
                if isAbandoned { return false }
                var failure: String?
                let started = monotonicSeconds()
                let result = sender.send(pending)
                requestDuration.observe(seconds: monotonicSeconds() - started)
                if result == .delivered || { if case .perRecord = result { return true } else { return false } }(),
                   let oldest = pending.records.lazy.map(\.timestamp).min() {
                    deliveryLag.observe(seconds: Double(wallClockNanos() - oldest) / 1e9)
                }
                switch result {
                case .delivered:
                    recordsOut.add(pending.count)
                    pending = EncodedBatch()
                case .tooLarge:
                    if pending.count == 1 {
                        failure = deadLetter(pending, [(0, 413, "request entity too large: the record alone exceeds the server's limit")])
                        if failure == nil { pending = EncodedBatch() }
                    } else {
                        splits.add()
                        let half = pending.count / 2
                        work.append(pending.subset(half..<pending.count))
                        pending = pending.subset(0..<half)
                        continue
                    }
                case .perRecord(let outcomes):
                    var retry: [Int] = []
                    var dead: [(Int, Int, String)] = []
                    var ok = 0
                    var lastReason = ""
                    for (i, o) in outcomes.enumerated() where i < pending.count {
                        switch o {
                        case .delivered: ok += 1
                        case .retry(let why): retry.append(i); lastReason = why
                        case .deadLetter(let status, let reason): dead.append((i, status, reason))
                        }
                    }
                    // A sender that answered for fewer records than it got: retry the rest.
                    if outcomes.count < pending.count { retry += outcomes.count..<pending.count }
                    if let f = deadLetter(pending, dead) {
                        failure = f
                        break
                    }
                    recordsOut.add(ok)
                    if retry.isEmpty {
                        pending = EncodedBatch()
                    } else {
                        pending = pending.subset(retry)
                        failure = "\(retry.count) record(s) to retry: \(lastReason)"
                    }
                case .retryAll(let why):
                    requestFailures.add()
                    failure = why
                case .authFailure(let why):
                    authFailures.add()
                    failure = "authentication refused (check user/password, api_key or token_file): \(why)"
                }
                if let failure {
                    let giveUp: Bool = lock.withLock {
                        failing = true
                        // Stopping with a disk buffer: the ring keeps what is not delivered, so a
                        // failing destination does not hold up a stop or reload.
                        return closing && ring != nil
                    }
                    if giveUp { return false }
                    retries.add()
                    let delay = backoff.next()
                    logRateLimited("delivery failed, retrying in \(clampedMillis(delay))ms: \(failure)",
                                   loud: failure.hasPrefix("authentication"))
                    if sleepUnlessAbandoned(delay) { return false }
                } else {
                    if backoff.attempt > 0 { lock.withLock { failing = false } }
                    backoff.reset()
                }
            }
        }
        return true
    }

    /// Writes refused records to the dead-letter file; returns an error text if that failed.
    private func deadLetter(_ batch: EncodedBatch, _ entries: [(Int, Int, String)]) -> String? {
        if entries.isEmpty { return nil }
        if deadLetters.write(batch, entries.map { (index: $0.0, status: $0.1, reason: $0.2) }) {
            logRateLimited("\(entries.count) record(s) refused for good (HTTP \(entries[0].1): \(entries[0].2)); written to \(deadLetters.path)", loud: false)
            return nil
        }
        return "cannot write the dead-letter file \(deadLetters.path)"
    }

    /// One line per 10 s at most, with how many were folded into it: a down destination must not
    /// flood the agent's own logs.
    private func logRateLimited(_ message: String, loud: Bool) {
        let now = monotonicSeconds()
        let (emit, folded): (Bool, Int) = lock.withLock {
            if now - lastLog >= 10 {
                lastLog = now
                defer { suppressed = 0 }
                return (true, suppressed)
            }
            suppressed += 1
            return (false, 0)
        }
        guard emit else { return }
        let suffix = folded > 0 ? " (\(folded) similar message(s) in the last 10s)" : ""
        if loud { logger.error("output \(name): \(message)\(suffix)") } else { logger.warning("output \(name): \(message)\(suffix)") }
    }

    private var isAbandoned: Bool { lock.withLock { abandoned } }

    private func sleepUnlessAbandoned(_ seconds: Double) -> Bool {
        lock.withLock {
            if !abandoned { lock.wait(seconds: seconds) }
            return abandoned
        }
    }

    // MARK: stopping

    func close() {
        lock.withLock {
            closing = true
            lock.broadcast()
        }
    }

    func abandon() {
        lock.withLock {
            abandoned = true
            for item in queue { item.ack.abandon() }
            queue = []
            lock.broadcast()
        }
        ring?.shutdown()
    }

    func join(timeout: Double) -> Bool {
        let deadline = monotonicSeconds() + timeout
        for h in lock.withLock({ threads }) where !h.join(timeout: max(0, deadline - monotonicSeconds())) {
            return false
        }
        ring?.shutdown()
        return true
    }

    var pendingRecords: Int { lock.withLock { queuedRecords + inflightRecords } + (ring?.bufferedRecords ?? 0) }

    var health: (failing: Bool, full: Bool) {
        let (f, queueFull) = lock.withLock { (failing, queuedRecords + inflightRecords >= queueCapacity) }
        guard let ring else { return (f, queueFull) }
        // Full: no room for another segment (appends block or drop), or the hand-off queue is full.
        let ringFull = ring.bufferedBytes + ring.options.segmentBytes > ring.options.maxBytes
        return (f, ringFull || queueFull)
    }
}

/// Moves a non-Sendable sender to the one thread that will use it.
private final class SenderBox: @unchecked Sendable {
    let sender: any BatchSender
    init(_ s: any BatchSender) { sender = s }
}

extension EncodedBatch {
    /// Splits into batches of at most `maxRecords` records and about `maxBytes` of documents (a single
    /// record larger than `maxBytes` goes alone). Returns `[self]`, uncopied, when already within.
    public func chunked(maxRecords: Int, maxBytes: Int) -> [EncodedBatch] {
        if count <= maxRecords && documents.count <= maxBytes { return [self] }
        var out: [EncodedBatch] = []
        var start = 0
        while start < count {
            var end = start
            var bytes = 0
            while end < count && end - start < maxRecords {
                let size = records[end].document.count
                if end > start && bytes + size > maxBytes { break }
                bytes += size
                end += 1
            }
            out.append(subset(start..<end))
            start = end
        }
        return out
    }

    /// The records at `indices`, with their documents copied.
    public func subset<S: Sequence<Int>>(_ indices: S) -> EncodedBatch {
        var out = EncodedBatch()
        for i in indices {
            withDocument(i) { doc in
                let r = records[i]
                out.append(document: doc, timestamp: r.timestamp, sourceID: r.sourceID, offset: r.offset)
            }
        }
        return out
    }
}
