/// Memory buffer: holds the acknowledgements of the batches of one take until every record of them
/// is decided (delivered or dead-lettered), wherever the records went meanwhile: the delivery thread
/// holds the ticket during the request, and each retry-lane group holding some of its records holds
/// it too. When the last holder lets go, the tokens go and the inputs may checkpoint. A runner that
/// gives up first calls `abandon()`: then nothing is acknowledged (the records are read again).
final class DeliveryTicket: Sendable {
    private let acks: [AckToken]

    init(_ acks: [AckToken]) { self.acks = acks }

    func abandon() { for a in acks { a.abandon() } }

    /// `tickets` without repeats, in order. Groups retried together hand all their tickets to each
    /// group their refused records make; kept with repeats, the references multiplied with every
    /// round of a refusal (a memory buffer grew by gigabytes in seconds: torture seed 61208 run 3).
    static func distinct(_ tickets: [DeliveryTicket]) -> [DeliveryTicket] {
        guard tickets.count > 1 else { return tickets }
        var seen = Set<ObjectIdentifier>()
        return tickets.filter { seen.insert(ObjectIdentifier($0)).inserted }
    }
}

/// Disk buffer: the ring's delivered position advances in take order, whatever the concurrency and
/// the order in which requests finish. A take is finished once each of its records is delivered,
/// dead-lettered or journaled in the retry lane.
///
/// Records of finished takes wait here until the takes before them finish too: they are decided
/// (counted delivered, dead-lettered or in the lane) but still in the ring's buffered count
/// (`decidedUncommitted`), and a stop before their commit leaves them in the ring to be read again.
struct RingCommitOrder {
    private var nextTake = 0
    private var nextCommit = 0
    private var finished: [Int: (end: RingPosition, records: Int)] = [:]
    /// Records of finished takes not committed yet.
    private(set) var decidedUncommitted = 0

    /// The sequence number of the next take (call in ring order).
    mutating func begin() -> Int {
        defer { nextTake += 1 }
        return nextTake
    }

    /// Take `seq` (ending at `end`, holding `records`) is finished; returns the takes to commit now,
    /// in order (the last one's end is the position to commit), if any.
    mutating func finish(_ seq: Int, end: RingPosition, records: Int = 0) -> [(end: RingPosition, records: Int)] {
        finished[seq] = (end, records)
        decidedUncommitted = decidedUncommitted.addingSaturating(records)
        var now: [(end: RingPosition, records: Int)] = []
        while let f = finished.removeValue(forKey: nextCommit) {
            now.append(f)
            decidedUncommitted = decidedUncommitted.subtractingSaturating(f.records)
            nextCommit += 1
        }
        return now
    }

    /// Stopping: the finished takes will never be committed (a take before them was not); returns
    /// them, in order: the ring keeps them for the next reader.
    mutating func abandonUncommitted() -> [(end: RingPosition, records: Int)] {
        defer {
            finished.removeAll()
            decidedUncommitted = 0
        }
        return finished.sorted { $0.key < $1.key }.map(\.value)
    }
}
