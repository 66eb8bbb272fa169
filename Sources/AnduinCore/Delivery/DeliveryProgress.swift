import Logging
import Synchronization

/// What an output's delivery threads tell each other and the operator: records delivered, the
/// last progress, what each thread has in flight, the current failure, and from those `/ready`'s
/// verdict and the age metrics.
final class DeliveryProgress: Sendable {
    let name: String
    private let stallAfter: Double
    private let logger: Logger
    private let started = monotonicSeconds()
    private struct State {
        var lastDelivery: Double?
        var lastProgress = monotonicSeconds()
        var lastIdle = monotonicSeconds()
        var failure: String?
        /// When the current run of failures began (monotonic seconds); nil while delivering.
        var failingSince: Double?
        /// Oldest record timestamp (wall-clock ns) of what each thread is sending.
        var inflight: [Int: Int64] = [:]
        var lastLog = -Double.infinity
        var suppressed = 0
    }
    private let state = Mutex(State())

    let recordsOut, retries, requestFailures, authFailures, splits: Counter
    let requestDuration, deliveryLag: Histogram
    let sinceDelivery, oldestAge: Gauge
    /// The last failure's text, kept after the output recovers (`anduin status` shows it with its age).
    let lastError: Note

    init(name: String, stallAfter: Double, logger: Logger, stats s: ComponentStats) {
        self.name = name
        self.stallAfter = stallAfter
        self.logger = logger
        recordsOut = s.counter("records_out", "records delivered to the destination")
        retries = s.counter("retries", "requests retried after a retriable failure")
        requestFailures = s.counter("request_failures", "requests that failed (network, timeout, 408/429/5xx, incomplete bulk response)")
        authFailures = s.counter("auth_failures", "requests refused with 401/403 (retried; check credentials)")
        splits = s.counter("batch_splits", "batches split in two after 413 Request Entity Too Large or a request timeout")
        requestDuration = s.histogram("request_duration", "time of one request to the destination, answered or failed",
                                      buckets: [0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60])
        deliveryLag = s.histogram("delivery_lag", "from a record's timestamp to the destination confirming it (oldest record of each request)",
                                  buckets: [0.01, 0.05, 0.1, 0.5, 1, 5, 10, 30, 60, 300, 900, 3600])
        sinceDelivery = s.gauge("seconds_since_last_delivery", "seconds since the destination last confirmed a record (since start if never)")
        oldestAge = s.gauge("oldest_undelivered_age_seconds", "age (from its own timestamp) of the oldest record in flight or retrying; 0 when none")
        lastError = s.note("last_error")
    }

    // MARK: events

    func delivered(_ work: DeliveryWork) {
        guard !work.isEmpty else { return }
        recordsOut.add(work.count)
        if let t = work.oldestTimestamp { deliveryLag.observe(seconds: max(0, secondsBetween(t, wallClockNanos()))) }
        let now = monotonicSeconds()
        let wasFailing: String? = state.withLock {
            $0.lastDelivery = now
            $0.lastProgress = now
            let was = $0.failure
            $0.failure = nil
            $0.failingSince = nil
            return was
        }
        if wasFailing != nil { logger.notice("output \(name): delivering again") }
    }

    /// Dead-lettered records are decided too: progress.
    func decided() { state.withLock { $0.lastProgress = monotonicSeconds() } }

    /// A thread found nothing to do: nothing is stuck.
    func idle() { state.withLock { $0.lastIdle = monotonicSeconds() } }

    func sending(slot: Int, _ work: DeliveryWork?) {
        let oldest = work?.oldestTimestamp
        state.withLock { $0.inflight[slot] = oldest }
    }

    func failed(_ why: String) {
        let now = monotonicSeconds()
        state.withLock {
            $0.failure = why
            if $0.failingSince == nil { $0.failingSince = now }
        }
        lastError.set(why)
    }

    // MARK: verdicts

    /// Why the output is not ready, or nil: no progress for `stall_after` while records wait, or
    /// records refused for longer than `stall_after` and still retrying. The buffer's fill does not
    /// matter: a stuck output is not ready even with room left.
    func notReadyReason(pending: Int, lane: (records: Int, firstFailure: Int64, oldestTimestamp: Int64?, reason: String)) -> String? {
        let now = monotonicSeconds()
        let (since, why, failingSince) = state.withLock { (max($0.lastProgress, $0.lastIdle), $0.failure, $0.failingSince) }
        if pending > 0 && now - since >= stallAfter {
            // The cause first: it is what the operator has to act on.
            if let why, let failingSince {
                return "output \(name): \(why) since \(Int(now - failingSince))s; no record delivered for \(Int(now - since))s while \(pending) record(s) wait"
            }
            return "output \(name): no record delivered for \(Int(now - since))s while \(pending) record(s) wait"
        }
        if lane.records > 0 && lane.firstFailure > 0 {
            let age = secondsBetween(lane.firstFailure, wallClockNanos())
            if age >= stallAfter {
                return "output \(name): \(lane.records) record(s) refused for \(Int(saturating: age))s and still retrying (\(lane.reason)); "
                    + "they are dead-lettered once their retry budget is spent"
            }
        }
        return nil
    }

    func secondsSinceLastDelivery() -> Int {
        let now = monotonicSeconds()
        return Int(now - (state.withLock { $0.lastDelivery } ?? started))
    }

    /// Seconds since the oldest timestamp among what is in flight and `others`; 0 when nothing.
    func oldestAgeSeconds(others: [Int64?]) -> Int {
        let oldest = (state.withLock { Array($0.inflight.values) } + others.compactMap { $0 }).min()
        guard let oldest else { return 0 }
        return Int(max(0, wallClockNanos().subtractingSaturating(oldest) / 1_000_000_000))
    }

    // MARK: logging

    /// A decision worth a line at debug level only.
    func debug(_ message: @autoclosure () -> String) {
        logger.debug("output \(name): \(message())")
    }

    /// One line per 10 s at most, with how many were folded into it: a down destination must not
    /// flood the agent's own logs.
    func logRateLimited(_ message: String, loud: Bool) {
        let now = monotonicSeconds()
        let (emit, folded): (Bool, Int) = state.withLock {
            if now - $0.lastLog >= 10 {
                $0.lastLog = now
                let folded = $0.suppressed
                $0.suppressed = 0
                return (true, folded)
            }
            $0.suppressed += 1
            return (false, 0)
        }
        // At debug level every decision is said, folded or not.
        guard emit else {
            logger.debug("output \(name): \(message)")
            return
        }
        let suffix = folded > 0 ? " (\(folded) similar message(s) in the last 10s)" : ""
        if loud { logger.error("output \(name): \(message)\(suffix)") } else { logger.warning("output \(name): \(message)\(suffix)") }
    }
}
