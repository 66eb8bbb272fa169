/// What the runner knows about one record's failures so far.
struct ItemState: Sendable, Equatable {
    var attempts = 0
    /// Wall-clock nanoseconds of the first failure; 0 while it never failed.
    var firstFailure: Int64 = 0
    var status = 0
    var reason = ""

    mutating func failed(status: Int, reason: String, now: Int64) {
        attempts += 1
        if firstFailure == 0 { firstFailure = now }
        self.status = status
        self.reason = reason
    }
}

/// Records delivered together, with their failure history (`states` nil: none has failed yet, the
/// common case, which costs no allocation).
struct DeliveryWork: Sendable {
    var batch: EncodedBatch
    var states: [ItemState]?

    init(_ batch: EncodedBatch, states: [ItemState]? = nil) {
        self.batch = batch
        self.states = states
    }

    var count: Int { batch.count }
    var isEmpty: Bool { batch.isEmpty }

    func state(_ i: Int) -> ItemState { states?[i] ?? ItemState() }

    mutating func fail(_ i: Int, status: Int, reason: String, now: Int64) {
        if states == nil { states = Array(repeating: ItemState(), count: batch.count) }
        states?[i].failed(status: status, reason: reason, now: now)
    }

    func subset<S: Sequence<Int>>(_ indices: S) -> DeliveryWork {
        let idx = Array(indices)
        return DeliveryWork(batch.subset(idx), states: states.map { s in idx.map { s[$0] } })
    }

    /// Splits like `EncodedBatch.chunked`, keeping each record's state with it.
    func chunked(maxRecords: Int, maxBytes: Int) -> [DeliveryWork] {
        let parts = batch.chunked(maxRecords: maxRecords, maxBytes: maxBytes)
        if parts.count == 1 { return [self] }
        guard let states else { return parts.map { DeliveryWork($0) } }
        var out: [DeliveryWork] = []
        var start = 0
        for p in parts {
            out.append(DeliveryWork(p, states: Array(states[start..<(start + p.count)])))
            start += p.count
        }
        return out
    }

    mutating func append(_ other: DeliveryWork) {
        if states != nil || other.states != nil {
            var s = states ?? Array(repeating: ItemState(), count: batch.count)
            s += other.states ?? Array(repeating: ItemState(), count: other.count)
            states = s
        }
        batch.append(contentsOf: other.batch)
    }

    /// The most attempts any record has had.
    var maxAttempts: Int { states?.lazy.map(\.attempts).max() ?? 0 }
    /// The earliest first failure (wall-clock ns), 0 if none failed.
    var firstFailure: Int64 { states?.lazy.map(\.firstFailure).filter { $0 > 0 }.min() ?? 0 }
    /// The oldest record's own timestamp (wall-clock ns).
    var oldestTimestamp: Int64? { batch.records.lazy.map(\.timestamp).min() }
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
