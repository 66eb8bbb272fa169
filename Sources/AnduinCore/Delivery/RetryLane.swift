import Foundation

/// Records waiting out their backoff after a retriable refusal, kept out of the in-flight window so
/// the records behind them keep flowing (one index refusing its items must not stop the others).
///
/// Each group (the refused records of one request) has its own backoff; the delivery threads take
/// groups that are due, with priority over fresh work. Bounded by `laneMaxBytes`: a full lane makes
/// the request retry in place (the old, blocking way) until room frees up. With a disk buffer the
/// lane is journaled (`LaneJournal`) before the ring's delivered position passes its records; with a
/// memory buffer each group holds its records' acknowledgement (`DeliveryTicket`) until decided.
final class RetryLane: @unchecked Sendable {  // everything under `lock`
    struct Group {
        let id: UInt64
        var work: DeliveryWork
        var due: Double
        let tickets: [DeliveryTicket]
        let bytes: Int
    }

    private let lock = ConditionLock()
    private let maxBytes: Int
    private let journal: LaneJournal?
    private var groups: [UInt64: Group] = [:]
    private var checkedOut: Set<UInt64> = []
    private var abandoned = false
    private var nextID: UInt64 = 1
    private var liveBytes = 0
    private var liveRecords = 0
    private let recordsGauge: Gauge
    /// Records loaded from the journal at start (for the accounting identity).
    private(set) var recovered = 0

    init(maxBytes: Int, journal: LaneJournal?, stats: ComponentStats, log: (String) -> Void) {
        self.maxBytes = maxBytes
        self.journal = journal
        recordsGauge = stats.gauge("retry_lane_records", "records waiting out their backoff after a retriable refusal")
        guard let journal else { return }
        // Restart: what was waiting is due now, with its failure history (the budget keeps running).
        let loaded = journal.load(log: log)
        let now = monotonicSeconds()
        for (_, work) in loaded {
            let id = nextID
            nextID += 1
            let b = work.batch.documents.count
            groups[id] = Group(id: id, work: work, due: now, tickets: [], bytes: b)
            liveBytes += b
            liveRecords += work.count
        }
        if !journal.rewrite(groups.values.sorted { $0.id < $1.id }.map { ($0.id, $0.work) }) {
            log("retry lane \(journal.path): cannot rewrite it (\(errnoText(errno))); retrying records in place until it can")
        }
        recordsGauge.set(liveRecords)
        recovered = liveRecords
        if liveRecords > 0 { log("retry lane: \(liveRecords) record(s) from the previous run resume their retries") }
    }


    /// Adds a group due at `due` (monotonic). Fresh refusals respect the bound; a group coming back
    /// from the lane (`force`) always fits. False when full or when the journal cannot be written.
    func add(_ work: DeliveryWork, due: Double, tickets: [DeliveryTicket], force: Bool) -> Bool {
        let bytes = work.batch.documents.count
        return lock.withLock {
            if abandoned {
                // The runner gave up: not acknowledged, read again at the next start (a disk buffer's
                // ring keeps them: its position is not committed any more).
                for t in tickets { t.abandon() }
                return true
            }
            if !force && liveBytes > 0 && liveBytes + bytes > maxBytes { return false }
            let id = nextID
            nextID += 1
            if let journal, !journal.add(id, work) { return false }
            groups[id] = Group(id: id, work: work, due: due, tickets: tickets, bytes: bytes)
            liveBytes += bytes
            liveRecords += work.count
            recordsGauge.set(liveRecords)
            lock.broadcast()
            return true
        }
    }

    /// Due groups (oldest first), up to `maxRecords` records (at least one group), checked out to
    /// the caller until `settle` or `putBack`.
    func takeDue(now: Double, maxRecords: Int) -> [Group] {
        lock.withLock {
            var out: [Group] = []
            var n = 0
            for g in groups.values.sorted(by: { $0.id < $1.id })
            where g.due <= now && !checkedOut.contains(g.id) && (out.isEmpty || n + g.work.count <= maxRecords) {
                out.append(g)
                n += g.work.count
                checkedOut.insert(g.id)
            }
            return out
        }
    }

    /// The checked-out groups were decided (delivered, dead-lettered, or re-added as new groups,
    /// which took their own reference to the tickets).
    func settle(_ taken: [Group]) {
        lock.withLock {
            for g in taken {
                checkedOut.remove(g.id)
                guard let old = groups.removeValue(forKey: g.id) else { continue }
                liveBytes -= old.bytes
                liveRecords -= old.work.count
            }
            _ = journal?.remove(taken.map(\.id))
            compactIfWorthIt()
            recordsGauge.set(liveRecords)
            lock.broadcast()
        }
    }

    /// The runner gives up (stop timeout, reload): what waits here is not acknowledged (memory
    /// buffer: read again; disk buffer: the journal keeps it).
    func abandon() {
        lock.withLock {
            abandoned = true
            for g in groups.values { for t in g.tickets { t.abandon() } }
        }
    }

    /// Gives checked-out groups back undecided (stopping).
    func putBack(_ taken: [Group]) {
        lock.withLock { for g in taken { checkedOut.remove(g.id) } }
    }

    /// The earliest due time of a group not checked out, if any.
    var nextDue: Double? {
        lock.withLock { groups.values.filter { !checkedOut.contains($0.id) }.map(\.due).min() }
    }

    var records: Int { lock.withLock { liveRecords } }

    /// (records, earliest first failure in wall-clock ns, oldest record timestamp, a recent reason).
    var summary: (records: Int, firstFailure: Int64, oldestTimestamp: Int64?, reason: String) {
        lock.withLock {
            var first: Int64 = 0
            var oldest: Int64?
            var reason = ""
            for g in groups.values {
                let f = g.work.firstFailure
                if f > 0 && (first == 0 || f < first) {
                    first = f
                    reason = g.work.states?.first(where: { !$0.reason.isEmpty })?.reason ?? reason
                }
                if let t = g.work.oldestTimestamp { oldest = min(oldest ?? t, t) }
            }
            return (liveRecords, first, oldest, reason)
        }
    }

    func sync() { lock.withLock { journal?.sync() } }

    func syncIfDue() { lock.withLock { journal?.syncIfDue() } }

    /// Rewrites the journal once removed entries make up most of it.
    private func compactIfWorthIt() {
        guard let journal, journal.bytes > 1 << 20, journal.bytes > 2 * liveBytes + (1 << 20) else { return }
        _ = journal.rewrite(groups.values.sorted { $0.id < $1.id }.map { ($0.id, $0.work) })
    }
}
