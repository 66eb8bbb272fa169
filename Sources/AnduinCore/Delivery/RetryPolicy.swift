#if canImport(Glibc)
import Glibc
#endif

/// How one delivery thread sends work and decides the fate of every record in it:
///
/// - delivered: counted, progress;
/// - refused for good (4xx other than 401/403/408/413/429, a lone record too large): dead-lettered;
/// - refused with a retriable status, per item: moved to the retry lane with its own backoff, so the
///   records behind it flow on (retried in place only when the lane is full);
/// - the whole request refused with a retriable status, or answered with an incomplete receipt:
///   retried in place with backoff (the destination refuses everything: nothing else would pass);
/// - within the retry budget only: a record whose budget is spent is dead-lettered with its last
///   status, reason and attempt count;
/// - no answer at all (an outage) and 401/403 (credentials): retried in place, with backoff, for
///   as long as it lasts: that is what the buffer is for. A request that timed out is retried in
///   halves (down to one record): a destination too slow for the whole batch may take half in time.
///   The halved size caps every later request of the output (`RetryWaiter.requestCap`), and grows
///   back by a quarter with each request answered in time; a timeout also pauses the output like an
///   overloaded answer. A destination still working through a request it could not answer in time
///   is not sent more big ones at once.
///
/// An answer saying the destination is overloaded (429 or 503 for the request, 429 for every item of
/// fresh records) pauses every thread of the output (`RetryWaiter.overloaded`): for its `Retry-After`
/// if it gave one, else for a backoff that grows with each such answer in a row, and until an answer
/// without overload, requests go out one per pause. Items refused 429 also wait at least
/// `Retry-After` in the lane. So an overloaded destination gets fewer requests than a healthy one,
/// not a retry storm, while one index refusing its items does not slow the others.
///
/// Every wait lasts until its deadline whatever wakes the thread (`RetryWaiter`), except that a
/// disk-buffered output that is stopping gives up waiting at once.
struct RetryPolicy {
    let options: DeliveryOptions
    let sender: any BatchSender
    let progress: DeliveryProgress
    let deadLetters: DeadLetterStore
    let lane: RetryLane
    let waiter: RetryWaiter
    let slot: Int

    /// Decides every record of `work`: true once each is delivered, dead-lettered or in the lane
    /// (where a stop with a disk buffer puts what is left: `leaveInLane`); false when the runner
    /// stops first otherwise (nothing of it may be acknowledged then). Lane groups made
    /// from it hold `tickets` (memory buffer). `fromLane`: the records came from the lane, so they
    /// go back to it whatever its fill. `decided` grows by each record decided, also when it returns
    /// false: those were counted, and are decided again when the whole work is read again.
    func deliver(_ work: DeliveryWork, tickets: [DeliveryTicket], fromLane: Bool, decided: inout Int) -> Bool {
        deliverOrLeave(work, tickets: tickets, fromLane: fromLane, decided: &decided) != .stopped
    }

    /// How `deliverOrLeave` ended.
    enum Outcome: Equatable {
        /// Every record delivered, dead-lettered or in the lane.
        case decided
        /// Stopping with a disk buffer: what was not decided went to the lane's journal
        /// (`leaveInLane`), so the work counts as decided; the caller takes no more.
        case leftInLane
        /// The runner stopped first: nothing of the work may be acknowledged.
        case stopped
    }

    /// `deliver`, telling a stop that left the rest in the lane apart.
    func deliverOrLeave(_ work: DeliveryWork, tickets: [DeliveryTicket], fromLane: Bool, decided: inout Int) -> Outcome {
        // A buffer hands over what it holds (a whole input read, a whole ring block): the request
        // size limits are applied here, for every buffer kind. Sent in order (popLast).
        var stack = Array(work.chunked(maxRecords: options.batch.maxRecords, maxBytes: options.batch.maxBytes).reversed())
        var backoff = Backoff(initial: options.retry.initial, max: options.retry.max, jitter: .equal)
        defer { progress.sending(slot: slot, nil) }
        /// Stopping with a disk buffer before `pending` and the rest are decided: they go to the lane,
        /// journaled like a per-item refusal, and count as decided. So a take commits, and the decided
        /// takes after it commit too; lane groups are settled, their undecided records in the new
        /// group. Left as they were (in the ring, or whole in the journal), what was decided would
        /// be decided again by the next reader (a dead letter delivered after all, a duplicate).
        func leaveInLane(_ pending: DeliveryWork) -> Outcome {
            guard !waiter.stopNow, waiter.isClosing, lane.isJournaled else { return .stopped }
            var rest = pending
            for w in stack.reversed() { rest.append(w) }
            guard rest.isEmpty || lane.add(rest, due: monotonicSeconds(), tickets: tickets, force: true) else { return .stopped }
            decided += rest.count
            return .leftInLane
        }
        while var pending = stack.popLast() {
            while !pending.isEmpty {
                if waiter.stopNow || !waiter.beforeRequest() { return leaveInLane(pending) }
                if let cap = waiter.requestCap, pending.count > cap {
                    progress.splits.add()
                    stack.append(pending.subset(cap..<pending.count))
                    pending = pending.subset(0..<cap)
                }
                progress.sending(slot: slot, pending)
                let started = monotonicSeconds()
                let result = sender.send(pending.batch)
                progress.requestDuration.observe(seconds: monotonicSeconds() - started)
                let now = wallClockNanos()
                // Read for the answers it applies to only: 0 when absent, garbage or in the past.
                var retryAfter = 0.0
                switch result {
                case .retryAll(429, _), .retryAll(503, _):
                    retryAfter = retryAfterSeconds(now)
                    waiter.overloaded(retryAfter: retryAfter)
                case .perRecord(let outcomes) where outcomes.contains(where: { if case .retry(429, _) = $0 { true } else { false } }):
                    // Retry-After applies to the refused items. The whole output pauses only when
                    // nothing of a fresh request got through: a request of lane retries refused again
                    // may be one index refusing its items, which must not hold up the others.
                    retryAfter = retryAfterSeconds(now)
                    if outcomes.contains(.delivered) {
                        waiter.answeredNormally(sentAt: started)
                    } else if !fromLane {
                        waiter.overloaded(retryAfter: retryAfter)
                    }
                case .delivered, .perRecord, .tooLarge:
                    waiter.answeredNormally(sentAt: started)
                case .timedOut:
                    waiter.overloaded(retryAfter: 0)
                default:
                    break
                }
                switch result {
                case .timedOut: waiter.timedOut(records: pending.count)
                case .unreachable, .tooLarge: break
                // Answered in time, whatever it said: the destination can take requests this large.
                default: waiter.answeredInTime(records: pending.count, limit: options.batch.maxRecords)
                }
                var failure: String?
                var loud = false
                switch result {
                case .delivered:
                    progress.delivered(pending)
                    decided += pending.count
                    pending = DeliveryWork(EncodedBatch())
                case .tooLarge:
                    if pending.count > 1 {
                        progress.splits.add()
                        let half = pending.count / 2
                        stack.append(pending.subset(half..<pending.count))
                        pending = pending.subset(0..<half)
                        continue
                    }
                    pending.fail(0, status: 413, reason: "request entity too large: the record alone exceeds the server's limit", now: now)
                    if let f = deadLetter(pending, [0], budgetSpent: false) {
                        failure = f
                    } else {
                        decided += 1
                        pending = DeliveryWork(EncodedBatch())
                    }
                case .perRecord(let outcomes):
                    var ok: [Int] = [], dead: [Int] = [], retry: [Int] = []
                    for i in 0..<pending.count {
                        // A sender that answered for fewer records than it got: retry the rest.
                        let o = i < outcomes.count ? outcomes[i] : .retry(status: 0, reason: "no answer for this item")
                        switch o {
                        case .delivered: ok.append(i)
                        case .retry(let status, let why):
                            pending.fail(i, status: status, reason: why, now: now)
                            retry.append(i)
                        case .deadLetter(let status, let why):
                            pending.fail(i, status: status, reason: why, now: now)
                            dead.append(i)
                        }
                    }
                    let spent = retry.filter { budgetSpent(pending.state($0), now) }
                    let keep = retry.filter { !budgetSpent(pending.state($0), now) }
                    // The local disk refused: everything again, in place (same _id: no duplicate).
                    if let f = deadLetter(pending, dead, budgetSpent: false) {
                        failure = f
                        break
                    }
                    if let f = deadLetter(pending, spent, budgetSpent: true) {
                        // The rest go round again; those dead-lettered already do not.
                        decided += dead.count
                        let deadSet = Set(dead)
                        pending = pending.subset((0..<pending.count).filter { !deadSet.contains($0) })
                        failure = f
                        break
                    }
                    progress.delivered(pending.subset(ok))
                    decided += ok.count + dead.count + spent.count
                    if keep.isEmpty {
                        pending = DeliveryWork(EncodedBatch())
                        break
                    }
                    let rest = pending.subset(keep)
                    // Rounded up to a grid so that groups refused around the same time are retried
                    // together, in one request (never earlier than their backoff).
                    let grid = max(0.1, options.retry.initial)
                    let delay = max(backoff.delay(attempt: rest.maxAttempts), retryAfter)
                    progress.debug("\(keep.count) record(s) refused (HTTP \(rest.state(0).status): \(rest.state(0).reason)): retried in \(clampedMillis(delay))ms")
                    let due = ((monotonicSeconds() + delay) / grid).rounded(.up) * grid
                    if lane.add(rest, due: due, tickets: tickets, force: fromLane) {
                        decided += rest.count
                        pending = DeliveryWork(EncodedBatch())
                    } else {
                        pending = rest
                        failure = "\(keep.count) record(s) to retry (retry lane full): \(rest.state(0).reason)"
                    }
                case .retryAll(let status, let why):
                    progress.requestFailures.add()
                    for i in 0..<pending.count { pending.fail(i, status: status, reason: why, now: now) }
                    let spent = (0..<pending.count).filter { budgetSpent(pending.state($0), now) }
                    if !spent.isEmpty {
                        if let f = deadLetter(pending, spent, budgetSpent: true) {
                            failure = f
                            break
                        }
                        decided += spent.count
                        let spentSet = Set(spent)
                        pending = pending.subset((0..<pending.count).filter { !spentSet.contains($0) })
                    }
                    failure = why
                case .unreachable(let why):
                    progress.requestFailures.add()
                    failure = why
                case .timedOut(let why):
                    // Sent again in halves: the request cap was just halved (above).
                    progress.requestFailures.add()
                    failure = why
                case .authFailure(let why):
                    progress.authFailures.add()
                    failure = "authentication refused (check user/password, api_key or token_file): \(why)"
                    loud = true
                }
                guard let failure, !pending.isEmpty else {
                    backoff.reset()
                    continue
                }
                progress.failed(failure)
                // Stopping with a disk buffer: what is not delivered waits in the lane's journal, so
                // a failing destination does not hold up a stop or reload.
                if waiter.giveUpWhileFailing { return leaveInLane(pending) }
                progress.retries.add()
                let delay = max(backoff.next(), retryAfter)
                progress.logRateLimited("delivery failed, retrying in \(clampedMillis(delay))ms: \(failure)", loud: loud)
                if waiter.wait(until: monotonicSeconds() + delay) { return leaveInLane(pending) }
            }
        }
        return .decided
    }

    /// The last answer's `Retry-After` in seconds, within 0...retry.max (0: none or unusable).
    private func retryAfterSeconds(_ nowNanos: Int64) -> Double {
        guard let text = sender.retryAfter else { return 0 }
        return RetryAfter.seconds(text, nowSeconds: nowNanos / 1_000_000_000, max: options.retry.max) ?? 0
    }

    private func budgetSpent(_ s: ItemState, _ now: Int64) -> Bool {
        options.retry.budget.spent(attempts: s.attempts, firstFailure: s.firstFailure, now: now)
    }

    /// Writes records `indices` of `work` to the dead-letter store; an error text if it failed.
    private func deadLetter(_ work: DeliveryWork, _ indices: [Int], budgetSpent: Bool) -> String? {
        guard !indices.isEmpty else { return nil }
        let now = wallClockNanos()
        let entries = indices.map { i -> DeadLetterStore.Entry in
            let s = work.state(i)
            var reason = s.reason
            if budgetSpent {
                let age = s.firstFailure > 0 ? Int(saturating: secondsBetween(s.firstFailure, now)) : 0
                reason = "retry budget spent (\(s.attempts) attempts over \(age)s): " + reason
            }
            return DeadLetterStore.Entry(index: i, status: s.status, reason: reason, attempts: s.attempts)
        }
        guard deadLetters.write(work.batch, entries) else {
            return "cannot write the dead-letter store \(deadLetters.directory) (\(errnoText(errno)))"
        }
        progress.decided()
        let first = entries[0]
        progress.logRateLimited("\(entries.count) record(s) dead-lettered (HTTP \(first.status): \(first.reason)) in \(deadLetters.directory)", loud: false)
        return nil
    }
}

/// The stop signals and waits of one output, shared by its threads, and the pause an overloaded
/// destination asked for.
final class RetryWaiter: Sendable {
    private struct Flags {
        var closing = false
        var abandoned = false
        /// No request before this (monotonic seconds).
        var notBefore = 0.0
        /// Overloaded answers in a row (0: not overloaded).
        var overloads = 0
        /// The pause between requests while overloaded.
        var pause = 0.0
        /// When the latest overloaded answer came.
        var lastOverload = -Double.infinity
        /// Records per request since a request timed out; nil: no cap but the batch options.
        var requestCap: Int?
    }
    private let flags = Locked(Flags())
    /// With a disk buffer, a stop does not wait for a failing destination.
    private let diskBuffered: Bool
    private let retryInitial: Double
    private let retryMax: Double

    init(diskBuffered: Bool, retryInitial: Double = 0.1, retryMax: Double = 30) {
        self.diskBuffered = diskBuffered
        self.retryInitial = retryInitial
        self.retryMax = max(retryInitial, retryMax)
    }

    var stopNow: Bool { flags.withLock { $0.abandoned } }
    var isClosing: Bool { flags.withLock { $0.closing } }
    var giveUpWhileFailing: Bool { flags.withLock { Self.giveUp($0, diskBuffered) } }

    private static func giveUp(_ f: Flags, _ diskBuffered: Bool) -> Bool { f.abandoned || (f.closing && diskBuffered) }

    /// Sleeps until `deadline` (monotonic), resuming after any unrelated wake-up. True if the caller
    /// must stop instead: abandoned, or stopping with a disk buffer (which keeps the records).
    func wait(until deadline: Double) -> Bool {
        flags.withLock(waitingUntil: deadline) { Self.giveUp($0, diskBuffered) ? true : nil } ?? false
    }

    /// Holds a request while the destination's pause lasts; while it is overloaded, lets one request
    /// through per pause, whichever thread asks. False if the caller must stop instead (as `wait`).
    func beforeRequest() -> Bool {
        let diskBuffered = self.diskBuffered
        return flags.withLockWaiting { f -> LockStep<Bool> in
            if f.abandoned { return .done(false) }
            let now = monotonicSeconds()
            if now >= f.notBefore {
                if f.overloads > 0 { f.notBefore = now + f.pause }
                return .done(true)
            }
            if f.closing && diskBuffered { return .done(false) }
            return .wait(seconds: f.notBefore - now)
        }
    }

    /// An answer saying the destination is overloaded: no request from any thread for `retryAfter`
    /// seconds (0: none given), and at least a backoff that grows with each such answer in a row.
    func overloaded(retryAfter: Double) {
        let (initial, most) = (retryInitial, retryMax)
        flags.withLock { f in
            f.overloads = min(f.overloads + 1, 64)
            let nominal = Backoff.nominal(attempt: f.overloads, initial: initial, max: most)
            let jittered = nominal / 2 + Double.random(in: 0...(nominal / 2))
            f.pause = min(most, max(jittered, retryAfter))
            let now = monotonicSeconds()
            f.notBefore = max(f.notBefore, now + f.pause)
            f.lastOverload = now
        }
    }

    /// An answer without overload to a request sent at `sentAt`: the pause ends, unless an overloaded
    /// answer came after that request was sent.
    func answeredNormally(sentAt: Double) {
        let reopened = flags.withLock { f -> Bool in
            guard f.overloads > 0, sentAt > f.lastOverload else { return false }
            f.overloads = 0
            f.pause = 0
            f.notBefore = 0
            return true
        }
        if reopened { flags.broadcast() }
    }

    /// At most this many records per request (nil: no cap but the batch options).
    var requestCap: Int? { flags.withLock { $0.requestCap } }

    /// A request of `records` records timed out: later requests of every thread take at most half
    /// of it (and of the cap before), down to one record.
    func timedOut(records: Int) {
        flags.withLock { f in f.requestCap = max(1, min(f.requestCap ?? records, records) / 2) }
    }

    /// A request of `records` records was answered in time: a cap grows back by a quarter, and goes
    /// once it reaches `limit` (batch.max_records). A smaller request says nothing about the cap.
    func answeredInTime(records: Int, limit: Int) {
        flags.withLock { f in
            guard let cap = f.requestCap, records >= cap else { return }
            let grown = cap.addingSaturating(max(1, cap / 4))
            f.requestCap = grown >= limit ? nil : grown
        }
    }

    func close() {
        flags.withLock { $0.closing = true }
        flags.broadcast()
    }

    func abandon() {
        flags.withLock { $0.abandoned = true }
        flags.broadcast()
    }
}
