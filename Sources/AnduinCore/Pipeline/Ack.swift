import Synchronization

/// Tracks one batch on its way to every output it fans out to.
///
/// The producer holds one reference; each hand-off to another consumer `retain`s, each consumer that
/// is done (delivered, or dropped the records on purpose) `release`s. When the count reaches zero
/// `onComplete` runs once, on the thread of the last release: that is when the input may count the
/// batch's source position as safe.
public final class AckToken: Sendable {
    private let count = Atomic<Int>(1)
    private let onComplete: @Sendable () -> Void

    public init(onComplete: @escaping @Sendable () -> Void) {
        self.onComplete = onComplete
    }

    public func retain(_ n: Int = 1) {
        count.add(n, ordering: .relaxed)
    }

    public func release() {
        let (_, now) = count.subtract(1, ordering: .acquiringAndReleasing)
        if now == 0 { onComplete() }
        precondition(now >= 0, "AckToken released more often than retained")
    }

    /// A token for work nobody waits on.
    public static func none() -> AckToken { AckToken(onComplete: {}) }
}
