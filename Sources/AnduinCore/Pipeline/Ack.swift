import Synchronization

/// The finaliser of one batch of source records: it fires once, when the last holder lets go.
///
/// Nobody counts. The pipeline hands the token to every consumer of the batch (each output's queue, a
/// stateful filter holding a line, a combined token of a merged record); each keeps its reference for
/// as long as the records' fate is undecided and drops it when they are delivered, dead-lettered or
/// dropped on purpose. When the last reference goes, `onComplete` runs on that thread: the input may
/// count the batch's source position as safe.
///
/// A holder that gives up without delivering (shutdown timeout, reload) calls `abandon()` before it lets
/// go: then `onComplete` never runs, and the input does not checkpoint the batch (it is read again).
///
/// Invariant for holders: keep the token referenced until the records are safe. Swift may release a
/// reference after its last use, so a holder that uses the token only *after* the delivery keeps it
/// alive across the delivery with `withExtendedLifetime`.
public final class AckToken: Sendable {
    private let abandoned = Atomic<Bool>(false)
    /// Written only by stateful filters (once per batch at most), read once at completion.
    private let held = Mutex(HeldFrom())
    private let onComplete: (@Sendable (HeldFrom) -> Void)?
    /// Tokens this one keeps alive (a record merged from lines of several batches).
    private let parents: [AckToken]

    /// A token whose completion learns which records a filter held back (see `hold(from:stream:)`).
    public init(onComplete: @escaping @Sendable (HeldFrom) -> Void) {
        self.onComplete = onComplete
        self.parents = []
    }

    public convenience init(onComplete: @escaping @Sendable () -> Void) {
        self.init(onComplete: { (_: HeldFrom) in onComplete() })
    }

    /// A token that keeps `parents` until it completes: they complete after it, or are abandoned with it.
    public init(holding parents: [AckToken]) {
        self.onComplete = nil
        self.parents = parents
    }

    /// A token for work nobody waits on.
    public static func none() -> AckToken { AckToken(holding: []) }

    /// The records will not be delivered: when the last holder lets go, nothing is acknowledged.
    public func abandon() {
        abandoned.store(true, ordering: .releasing)
        for p in parents { p.abandon() }
    }

    public var isAbandoned: Bool { abandoned.load(ordering: .acquiring) }

    /// Called by a stateful filter that keeps this token because a record of `stream` beginning at
    /// `offset` (in this batch's source file) was still open when the batch ended: the source may
    /// acknowledge the batch but must resume no later than `offset`.
    public func hold(from offset: Int64, stream: LogStream) {
        held.withLock { $0[stream] = min($0[stream], offset) }
    }

    /// Called when that held record is emitted: it will have been delivered by the time this token
    /// completes (it keeps this token), so the hold at `offset` is lifted, and records of `stream`
    /// starting before `through` (the held record's lines) count as delivered.
    public func release(heldFrom offset: Int64, through end: Int64, stream: LogStream) {
        held.withLock {
            if $0[stream] == offset { $0[stream] = .max }
            $0[through: stream] = max($0[through: stream], end)
        }
    }

    deinit {
        guard !abandoned.load(ordering: .acquiring), let onComplete else { return }
        onComplete(held.withLock { $0 })
    }
}

/// What stateful filters held back of one batch, per stream (none, stdout, stderr):
/// - pending (`self[stream]`): the offset of the first record still held when the batch completed
///   (not delivered), `Int64.max` when none;
/// - `through`: records of the stream starting before it were delivered (a held record's lines that lie
///   past the batch's end), 0 when nothing is known beyond the batch.
/// Plain fields, no arrays: one is made per batch.
public struct HeldFrom: Sendable, Equatable {
    public var none: Int64 = .max, stdout: Int64 = .max, stderr: Int64 = .max
    public var throughNone: Int64 = 0, throughStdout: Int64 = 0, throughStderr: Int64 = 0

    public init() {}

    public static let nothing = HeldFrom()

    public var isEmpty: Bool { self == .nothing }
    /// The lowest pending offset, or nil.
    public var lowest: Int64? {
        let m = Swift.min(none, stdout, stderr)
        return m == .max ? nil : m
    }

    /// The pending offset of `stream`.
    public subscript(stream: LogStream) -> Int64 {
        get {
            switch stream {
            case .none: return none
            case .stdout: return stdout
            case .stderr: return stderr
            }
        }
        set {
            switch stream {
            case .none: none = newValue
            case .stdout: stdout = newValue
            case .stderr: stderr = newValue
            }
        }
    }

    public subscript(through stream: LogStream) -> Int64 {
        get {
            switch stream {
            case .none: return throughNone
            case .stdout: return throughStdout
            case .stderr: return throughStderr
            }
        }
        set {
            switch stream {
            case .none: throughNone = newValue
            case .stdout: throughStdout = newValue
            case .stderr: throughStderr = newValue
            }
        }
    }
}
