import AnduinCore

/// Turns out-of-order batch completions into in-order, per-file acknowledged offsets.
///
/// Each emitted batch is registered with the offset its file may be checkpointed at once the batch is
/// safe everywhere. A later batch completing first does not move the checkpoint: only the longest
/// completed prefix of the registration order does. Thread-safe: registrations come from the input
/// thread, completions from output threads.
final class AckTracker: Sendable {
    private struct Entry {
        var fileID: Int
        var position: Position
        var done: Bool
        /// Monotonic time the batch was read, for the read-to-acknowledged latency.
        var readAt: Double
    }
    /// `resume`: where reading restarts; `delivered`: records ending before it were delivered, except
    /// those of a stream at or after its `held` offset (a stateful filter still held them: not delivered).
    struct Position: Equatable {
        var resume: Int64
        var delivered: Int64
        var held: HeldFrom = .nothing
    }
    private struct State {
        var entries: [Entry] = []
        var head = 0
        var firstSeq = 0
        /// Acknowledged offset per file id.
        var acked: [Int: Position] = [:]
        var outstanding: [Int: Int] = [:]
        var dirty = false
    }
    private let state = Locked(State())
    /// Observes, per batch, the seconds from reading it to every output having it safe.
    private let latency: (@Sendable (Double) -> Void)?

    init(latency: (@Sendable (Double) -> Void)? = nil) {
        self.latency = latency
    }

    /// Registers a batch; returns its sequence number for `complete`.
    func register(fileID: Int, position: Position) -> Int {
        state.withLock { s in
            s.entries.append(Entry(fileID: fileID, position: position, done: false, readAt: monotonicSeconds()))
            s.outstanding[fileID, default: 0] += 1
            return s.firstSeq + s.entries.count - 1
        }
    }

    /// `held`: what stateful filters held back of the batch; the file then resumes no later than that.
    func complete(_ seq: Int, held: HeldFrom = .nothing) {
        let readAt: Double? = state.withLock { s in
            let i = seq - s.firstSeq
            guard i >= s.head, i < s.entries.count else { return nil }
            s.entries[i].done = true
            if !held.isEmpty {
                if let lowest = held.lowest { s.entries[i].position.resume = min(s.entries[i].position.resume, lowest) }
                var merged = held
                let replaying = s.entries[i].position.held
                for stream in [LogStream.none, .stdout, .stderr] {
                    merged[through: stream] = max(merged[through: stream], replaying[through: stream])
                }
                s.entries[i].position.held = merged
            }
            let readAt = s.entries[i].readAt
            while s.head < s.entries.count, s.entries[s.head].done {
                let e = s.entries[s.head]
                s.acked[e.fileID] = e.position
                s.outstanding[e.fileID, default: 1] -= 1
                if s.outstanding[e.fileID] == 0 { s.outstanding[e.fileID] = nil }
                s.head += 1
                s.dirty = true
            }
            if s.head > 1024 && s.head * 2 > s.entries.count {
                s.entries.removeFirst(s.head)
                s.firstSeq += s.head
                s.head = 0
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

    func hasOutstanding(_ fileID: Int) -> Bool { state.withLock { $0.outstanding[fileID] != nil } }

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
