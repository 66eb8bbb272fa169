import Synchronization

/// Memory buffer: holds the acknowledgements of the batches of one take until every record of them
/// is decided (delivered or dead-lettered), wherever the records went meanwhile (the request itself,
/// or groups of the retry lane). The one place where a delivery runner releases ack tokens.
final class DeliveryTicket: Sendable {
    private let acks: [AckToken]
    /// The take itself, plus one per retry-lane group holding some of its records.
    private let pending = Atomic<Int>(1)

    init(_ acks: [AckToken]) { self.acks = acks }

    func hold() { pending.add(1, ordering: .relaxed) }

    /// One holder is done; the last one releases the acknowledgements (the inputs may checkpoint).
    func decided() {
        let (_, left) = pending.subtract(1, ordering: .acquiringAndReleasing)
        if left == 0 { for a in acks { a.release() } }
    }
}

/// Disk buffer: the ring's delivered position advances in take order, whatever the concurrency and
/// the order in which requests finish. A take is finished once each of its records is delivered,
/// dead-lettered or journaled in the retry lane.
struct RingCommitOrder {
    private var nextTake = 0
    private var nextCommit = 0
    private var finished: [Int: RingPosition] = [:]

    /// The sequence number of the next take (call in ring order).
    mutating func begin() -> Int {
        defer { nextTake += 1 }
        return nextTake
    }

    /// Take `seq` (ending at `end`) is finished; returns the position to commit now, if any.
    mutating func finish(_ seq: Int, end: RingPosition) -> RingPosition? {
        finished[seq] = end
        var last: RingPosition?
        while let p = finished.removeValue(forKey: nextCommit) {
            last = p
            nextCommit += 1
        }
        return last
    }
}
