import AnduinCore

/// Turns out-of-order batch completions into in-order, per-file acknowledged offsets.
///
/// Each emitted batch is registered with the offset its file may be checkpointed at once the batch is
/// safe everywhere. A later batch of the same file completing first does not move that file's
/// checkpoint: only the longest completed prefix of the file's own registrations does. Files do not
/// wait for each other: a slow batch of one file never stalls the checkpoints of the others. Thread-safe: registrations come from the input
/// thread, completions from output threads.
final class AckTracker: Sendable {
    private struct Entry {
        var position: Position
        var done: Bool
        /// Monotonic time the batch was read, for the read-to-acknowledged latency.
        var readAt: Double
    }
    /// `resume`: where reading restarts; `delivered`: records ending before it were delivered.
    struct Position: Equatable {
        var resume: Int64
        var delivered: Int64
    }
    /// A registered batch, for `complete`.
    struct Registration: Sendable {
        var fileID: Int
        var seq: Int
    }
    /// One file's registrations in order; `entries[head...]` are not yet all acknowledged.
    private struct FileQueue {
        var entries: [Entry] = []
        var head = 0
        var firstSeq = 0
        var outstanding: Int { entries.count - head }
    }
    private struct State {
        var queues: [Int: FileQueue] = [:]
        /// Acknowledged offset per file id.
        var acked: [Int: Position] = [:]
        var dirty = false
    }
    private let state = Locked(State())
    /// Observes, per batch, the seconds from reading it to every output having it safe.
    private let latency: (@Sendable (Double) -> Void)?

    init(latency: (@Sendable (Double) -> Void)? = nil) {
        self.latency = latency
    }

    /// Registers a batch of file `fileID`.
    func register(fileID: Int, position: Position) -> Registration {
        state.withLock { s in
            var q = s.queues.removeValue(forKey: fileID) ?? FileQueue()
            q.entries.append(Entry(position: position, done: false, readAt: monotonicSeconds()))
            let seq = q.firstSeq + q.entries.count - 1
            s.queues[fileID] = q
            return Registration(fileID: fileID, seq: seq)
        }
    }

    func complete(_ registration: Registration) {
        let readAt: Double? = state.withLock { s in
            // Taken out and put back: mutating it in place through the dictionary would copy the array.
            guard var q = s.queues.removeValue(forKey: registration.fileID) else { return nil }
            defer { if q.outstanding > 0 { s.queues[registration.fileID] = q } }
            let i = registration.seq - q.firstSeq
            guard i >= q.head, i < q.entries.count else { return nil }
            q.entries[i].done = true
            let readAt = q.entries[i].readAt
            while q.head < q.entries.count, q.entries[q.head].done {
                s.acked[registration.fileID] = q.entries[q.head].position
                q.head += 1
                s.dirty = true
            }
            // Fully acknowledged, the queue is dropped (the defer above); registrations are completed once.
            if q.outstanding > 0 && q.head > 1024 && q.head * 2 > q.entries.count {
                q.entries.removeFirst(q.head)
                q.firstSeq += q.head
                q.head = 0
            }
            return readAt
        }
        if let readAt, let latency { latency(monotonicSeconds() - readAt) }
    }

    /// Sets a file's acknowledged offset directly (a file resumed from a checkpoint, or started at its end).
    func setAcked(fileID: Int, position: Position) {
        state.withLock {
            $0.acked[fileID] = position
            $0.dirty = true
        }
    }

    func acked(_ fileID: Int) -> Position? { state.withLock { $0.acked[fileID] } }

    func hasOutstanding(_ fileID: Int) -> Bool { state.withLock { $0.queues[fileID] != nil } }

    func forget(_ fileID: Int) {
        state.withLock {
            $0.acked[fileID] = nil
            $0.dirty = true
        }
    }

    /// Returns true (and clears the flag) when offsets changed since the last call.
    func takeDirty() -> Bool {
        state.withLock { s in
            defer { s.dirty = false }
            return s.dirty
        }
    }
}
