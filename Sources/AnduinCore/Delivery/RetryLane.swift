#if canImport(FoundationEssentials)
import FoundationEssentials
#else
import Foundation
#endif
#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif
import Synchronization

/// Records waiting out their backoff after a retriable refusal, kept out of the in-flight window so
/// the records behind them keep flowing (one index refusing its items must not stop the others).
///
/// Each group (the refused records of one request) has its own backoff; the delivery threads take
/// groups that are due, with priority over fresh work. Bounded by `laneMaxBytes`: a full lane makes
/// the request retry in place (the old, blocking way) until room frees up. With a disk buffer the
/// lane is journaled (`LaneJournal`) before the ring's delivered position passes its records; with a
/// memory buffer each group holds its records' acknowledgement (`DeliveryTicket`) until decided.
final class RetryLane: Sendable {
    struct Group {
        let id: UInt64
        var work: DeliveryWork
        var due: Double
        let tickets: [DeliveryTicket]
        let bytes: Int
    }

    private struct State {
        /// Owned by the lane's lock: every journal write happens under it, in lane order.
        var journal: LaneJournal?
        var groups: [UInt64: Group] = [:]
        var checkedOut: Set<UInt64> = []
        var abandoned = false
        var nextID: UInt64 = 1
        var liveBytes = 0
        var liveRecords = 0
    }

    private let state: Mutex<State>
    private let maxBytes: Int
    private let recordsGauge: Gauge
    /// Records loaded from the journal at start (for the accounting identity).
    let recovered: Int
    /// The lane is journaled (disk buffer), even after `abandon` closed the journal.
    private let journaled: Bool

    /// `journalPath`: where to journal the lane (disk buffer), nil to keep it in memory.
    init(maxBytes: Int, journalPath: String?, fsync: FsyncPolicy, stats: ComponentStats, log: @escaping @Sendable (String) -> Void) {
        self.maxBytes = maxBytes
        let journal = journalPath.map { LaneJournal(path: $0, fsync: fsync) }
        recordsGauge = stats.gauge("retry_lane_records", "records waiting out their backoff after a retriable refusal")
        var s = State()
        if let journal {
            // Restart: what was waiting is due now, with its failure history (the budget keeps running).
            let now = monotonicSeconds()
            for (_, work) in journal.load(log: log) {
                let id = s.nextID
                s.nextID += 1
                let b = work.batch.documents.count
                s.groups[id] = Group(id: id, work: work, due: now, tickets: [], bytes: b)
                s.liveBytes += b
                s.liveRecords += work.count
            }
            if !journal.rewrite(s.groups.values.sorted { $0.id < $1.id }.map { ($0.id, $0.work) }) {
                log("retry lane \(journal.path): cannot rewrite it (\(errnoText(errno))); retrying records in place until it can")
            }
            if s.liveRecords > 0 { log("retry lane: \(s.liveRecords) record(s) from the previous run resume their retries") }
        }
        s.journal = journal
        journaled = journal != nil
        recovered = s.liveRecords
        recordsGauge.set(s.liveRecords)
        state = Mutex(s)
    }

    /// Adds a group due at `due` (monotonic). Fresh refusals respect the bound; a group coming back
    /// from the lane (`force`) always fits. False when full or when the journal cannot be written.
    func add(_ work: DeliveryWork, due: Double, tickets: [DeliveryTicket], force: Bool) -> Bool {
        let bytes = work.batch.documents.count
        return state.withLock { s in
            if s.abandoned {
                // The runner gave up: refused, so the caller gives up without counting them decided.
                // Memory buffer: read again at the next start (the caller counts them returned).
                // Disk buffer: the ring's position passed these records long ago, so they are safe only
                // in the journal as it stands (the entry of the group they came from stays).
                for t in tickets { t.abandon() }
                return false
            }
            if !force && s.liveBytes > 0 && s.liveBytes + bytes > maxBytes { return false }
            let id = s.nextID
            s.nextID += 1
            if let journal = s.journal, !journal.add(id, work) { return false }
            s.groups[id] = Group(id: id, work: work, due: due, tickets: DeliveryTicket.distinct(tickets), bytes: bytes)
            s.liveBytes += bytes
            s.liveRecords += work.count
            recordsGauge.set(s.liveRecords)
            return true
        }
    }

    /// Due groups (oldest first), up to `maxRecords` records (at least one group), checked out to
    /// the caller until `settle` or `putBack`.
    func takeDue(now: Double, maxRecords: Int) -> [Group] {
        state.withLock { s in
            var out: [Group] = []
            var n = 0
            for g in s.groups.values.sorted(by: { $0.id < $1.id })
            where g.due <= now && !s.checkedOut.contains(g.id) && (out.isEmpty || n + g.work.count <= maxRecords) {
                out.append(g)
                n += g.work.count
                s.checkedOut.insert(g.id)
            }
            return out
        }
    }

    /// Ticket references held by the groups (each group holds each ticket at most once).
    var ticketReferences: Int { state.withLock { s in s.groups.values.reduce(0) { $0 + $1.tickets.count } } }

    /// The checked-out groups were decided (delivered, dead-lettered, or re-added as new groups,
    /// which took their own reference to the tickets). Returns true when the lane was abandoned
    /// first: a memory lane's records were then counted returned (`abandon`), these included, and a
    /// journal is no longer written (these stay in it for the next runner).
    @discardableResult
    func settle(_ taken: [Group]) -> Bool {
        state.withLock { s in
            for g in taken {
                s.checkedOut.remove(g.id)
                guard let old = s.groups.removeValue(forKey: g.id) else { continue }
                s.liveBytes -= old.bytes
                s.liveRecords -= old.work.count
            }
            _ = s.journal?.remove(taken.map(\.id))
            // Rewrite the journal once removed entries make up most of it.
            if let journal = s.journal, journal.bytes > 1 << 20, journal.bytes > 2 * s.liveBytes + (1 << 20) {
                _ = journal.rewrite(s.groups.values.sorted { $0.id < $1.id }.map { ($0.id, $0.work) })
            }
            recordsGauge.set(s.liveRecords)
            return s.abandoned
        }
    }

    /// The runner gives up (stop timeout, reload): what waits here is not acknowledged (memory
    /// buffer: read again; disk buffer: the journal keeps it). Returns the records a memory lane
    /// held at that moment (checked-out groups included; 0 when journaled): nothing is added after.
    func abandon() -> Int {
        state.withLock { s in
            let held = s.abandoned || journaled ? 0 : s.liveRecords
            s.abandoned = true
            for g in s.groups.values { for t in g.tickets { t.abandon() } }
            // No journal I/O after giving up: a reload's new lane owns the file now, and a remove or a
            // compaction from this one would erase what the new one wrote (or what is still undecided).
            s.journal = nil
            return held
        }
    }

    /// Gives checked-out groups back undecided (stopping).
    func putBack(_ taken: [Group]) {
        state.withLock { s in for g in taken { s.checkedOut.remove(g.id) } }
    }

    /// The earliest due time of a group not checked out, if any.
    var nextDue: Double? {
        state.withLock { s in s.groups.values.filter { !s.checkedOut.contains($0.id) }.map(\.due).min() }
    }

    var records: Int { state.withLock { $0.liveRecords } }

    /// Its records are journaled (disk buffer): they may stand in for a take the ring commits.
    var isJournaled: Bool { journaled }

    /// (records, earliest first failure in wall-clock ns, oldest record timestamp, a recent reason).
    var summary: (records: Int, firstFailure: Int64, oldestTimestamp: Int64?, reason: String) {
        state.withLock { s in
            var first: Int64 = 0
            var oldest: Int64?
            var reason = ""
            for g in s.groups.values {
                let f = g.work.firstFailure
                if f > 0 && (first == 0 || f < first) {
                    first = f
                    reason = g.work.states?.first(where: { !$0.reason.isEmpty })?.reason ?? reason
                }
                if let t = g.work.oldestTimestamp { oldest = min(oldest ?? t, t) }
            }
            return (s.liveRecords, first, oldest, reason)
        }
    }

    func sync() { state.withLock { $0.journal?.sync() } }

    /// See `LaneJournal.syncBeforeCommit`.
    func syncBeforeCommit() { state.withLock { $0.journal?.syncBeforeCommit() } }

    func syncIfDue() { state.withLock { $0.journal?.syncIfDue() } }
}
