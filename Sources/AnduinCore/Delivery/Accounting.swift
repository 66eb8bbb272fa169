/// Where an output's records went: records in = delivered + dead-lettered + dropped (by reason) +
/// returned (handed back to be read again) + pending (queued, buffered, in flight, retrying). Read from the output's counters, so `/metrics`,
/// `/status` and `anduin status` agree.
public struct Accounting: Sendable, Equatable {
    /// Records the pipeline handed to the output in this process.
    public var received = 0
    /// Records found in the disk buffer and retry lane at start (received by an earlier run).
    public var recovered = 0
    public var delivered = 0
    public var deadLettered = 0
    /// Deleted from a full disk buffer (`when_full: drop_oldest`).
    public var droppedOldest = 0
    /// Lost in damaged disk buffer blocks.
    public var droppedCorrupt = 0
    /// Records of a disk buffer block cut short by a crash during its write, found at start: not
    /// acknowledged, so read again from their files (and received again). Outside the identity: this
    /// process neither recovered nor received them as such.
    public var torn = 0
    /// Received, then handed back to the inputs unacknowledged (a stop or reload with a disk buffer
    /// that they had not entered yet): read again, so received again.
    public var returned = 0
    public var pending = 0

    public init(output stats: ComponentStats) {
        for c in stats.counters {
            switch c.name {
            case "records_in": received = c.current
            case "records_recovered": recovered = c.current
            case "records_out": delivered = c.current
            case "dead_lettered_records": deadLettered = c.current
            case "buffer_records_dropped": droppedOldest = c.current
            case "buffer_corrupt_records": droppedCorrupt = c.current
            case "buffer_torn_records": torn = c.current
            case "records_returned": returned = c.current
            default: break
            }
        }
        var queued: Int?
        var entering = 0
        for g in stats.gauges {
            switch g.name {
            case "pending_records": pending = g.current
            case "queued_records": queued = g.current
            case "entering_records": entering = g.current
            default: break
            }
        }
        // Outputs without a delivery runner (file, stdout): what waits is their queue.
        if !stats.gauges.contains(where: { $0.name == "pending_records" }) { pending = queued ?? 0 }
        // Records handed over but waiting for room in the queue.
        pending = pending.addingSaturating(entering)
    }

    /// 0 when every record is accounted for.
    public var unaccounted: Int {
        // Saturating: a damaged buffer can report up to Int.max records (numbers read from disk).
        let out = [deadLettered, droppedOldest, droppedCorrupt, returned, pending].reduce(delivered) { $0.addingSaturating($1) }
        return received.addingSaturating(recovered).subtractingSaturating(out)
    }
}
