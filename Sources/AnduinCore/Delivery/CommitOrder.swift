/// Memory buffer: holds the acknowledgements of the batches of one take until every record of them
/// is decided (delivered or dead-lettered), wherever the records went meanwhile: the delivery thread
/// holds the ticket during the request, and each retry-lane group holding some of its records holds
/// it too. When the last holder lets go, the tokens go and the inputs may checkpoint. A runner that
/// gives up first calls `abandon()`: then nothing is acknowledged (the records are read again).
final class DeliveryTicket: Sendable {
    private let acks: [AckToken]

    init(_ acks: [AckToken]) { self.acks = acks }

    func abandon() { for a in acks { a.abandon() } }
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
