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
    private let onComplete: (@Sendable () -> Void)?
    /// Tokens this one keeps alive (a record merged from lines of several batches).
    private let parents: [AckToken]

    public init(onComplete: @escaping @Sendable () -> Void) {
        self.onComplete = onComplete
        self.parents = []
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

    deinit {
        guard !abandoned.load(ordering: .acquiring), let onComplete else { return }
        onComplete()
    }
}
