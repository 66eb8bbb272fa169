import NIOCore

/// A FIFO between threads, bounded by the total weight of its items (records, bytes) and by their
/// number: an output's queue (`OutputQueue`) and the tail's hand-off to its emitting thread.
///
/// Invariants:
/// - **Capacity.** An item fits when the queue holds nothing (neither queued nor outstanding: an item
///   heavier than the capacity still goes into an empty queue, progress over strictness), or when one
///   more item stays within `maxItems` and its weight, with the queued and outstanding weight, within
///   `capacity`. Weight taken with `holding: true` is outstanding until `release`d.
/// - **Order.** Items are taken in the order they were appended; a taken item is no longer
///   referenced by the queue.
/// - **Who blocks.** `append(whenFull: .wait)` waits while its item does not fit; `waitForRoom` waits
///   for room once, up to a timeout; `take` waits for an item that is due, up to `maxWait`.
///   `append(whenFull: .exceed)` never blocks: its caller keeps the bound by checking `hasRoom` first.
/// - **Due.** The first item is due once it waited `linger`, or at once when closing, when the queued
///   weight reaches the take's limit, or when an appender waits for room (nothing more can arrive).
/// - **Close.** Takers take what is queued without lingering, then get `.finished`. Appends are still
///   accepted (a closing producer's last batches).
/// - **Abandon.** What is queued is handed back to the caller, every later append is refused, takers
///   get `.finished`, and appenders waiting for room are refused.
/// - **Wake-ups.** One lock and its one condition serve both sides; a broadcast goes out only when a
///   waiter of the side it concerns exists (counted under the lock): takers when items arrive (at
///   once, or deferred to `wakeTakers`) and when an appender starts waiting; appenders when a take or
///   a `release` makes room. Close and abandon wake everyone. Appenders waiting for
///   room re-check every 0.5 s as well.
public final class BoundedQueue<Element>: Sendable {
    public enum Taken {
        case items([Element])
        /// Nothing was due within the wait.
        case idle
        /// Closed and drained, or abandoned.
        case finished
    }

    /// What `append` does when the item does not fit.
    public enum WhenFull {
        /// Waits for room (refused once abandoned).
        case wait
        /// Appends anyway: the caller bounds the queue by checking `hasRoom` before producing.
        case exceed
    }

    /// When an append wakes the takers.
    public enum WakeTakers {
        case now
        /// At the next `wakeTakers` (or when an appender starts waiting for room).
        case later
        /// Later, or now once `items` were appended since the takers were last woken or `weight` is queued.
        case atBacklog(items: Int, weight: Int)
    }

    private struct State {
        var queue = CircularBuffer<(element: Element, weight: Int, since: Double)>()
        var weight = 0
        /// Taken with `holding: true` and not released: counted against the capacity.
        var outstanding = 0
        var closing = false
        var abandoned = false
        /// Items appended since the takers were last woken.
        var unwoken = 0
        var takersWaiting = 0
        /// Appenders blocked in `append` or `waitForRoom`.
        var roomWaiters = 0

        func fits(_ weight: Int, capacity: Int, maxItems: Int) -> Bool {
            let held = self.weight.addingSaturating(outstanding)
            return (queue.isEmpty && held == 0) || (queue.count < maxItems && held.addingSaturating(weight) <= capacity)
        }
    }
    private enum AppendStep { case appended, refused, mustWait }
    private let state = Locked(State())
    public let capacity: Int
    public let maxItems: Int

    public init(capacity: Int, maxItems: Int = .max) {
        self.capacity = capacity
        self.maxItems = maxItems
    }

    // MARK: appending

    /// Appends `element`; false when refused (abandoned). With `whenFull: .wait`, `onWait` runs once
    /// (outside the lock) when it starts waiting for room.
    @discardableResult
    public func append(_ element: Element, weight: Int, whenFull: WhenFull = .wait,
                       wakeTakers: WakeTakers = .now, onWait: () -> Void = {}) -> Bool {
        var registered = false
        while true {
            var wake = false
            let step = state.withLockWaiting { s -> LockStep<AppendStep> in
                let fits = whenFull == .exceed || s.fits(weight, capacity: capacity, maxItems: maxItems)
                if s.abandoned {
                    if registered { s.roomWaiters -= 1 }
                    return .done(.refused)
                }
                if !fits {
                    if registered { return .wait(seconds: 0.5) }
                    // Counted under the lock before it is released: a take meanwhile wakes it.
                    s.roomWaiters += 1
                    registered = true
                    // Its takers need not wait for more: the first item is due.
                    wake = s.takersWaiting > 0
                    s.unwoken = 0
                    return .done(.mustWait)
                }
                if registered { s.roomWaiters -= 1 }
                s.queue.append((element, weight, monotonicSeconds()))
                s.weight += weight
                s.unwoken += 1
                switch wakeTakers {
                case .now: wake = true
                case .later: break
                case .atBacklog(let items, let backlog): wake = s.unwoken >= items || s.weight >= backlog
                }
                if wake {
                    wake = s.takersWaiting > 0
                    s.unwoken = 0
                }
                return .done(.appended)
            }
            if wake { state.broadcast() }
            switch step {
            case .appended: return true
            case .refused: return false
            case .mustWait: onWait()
            }
        }
    }

    /// Wakes the takers for what was appended without waking them (`.later`, `.atBacklog`).
    public func wakeTakers() {
        let wake = state.withLock { s in
            defer { s.unwoken = 0 }
            return s.unwoken > 0 && s.takersWaiting > 0
        }
        if wake { state.broadcast() }
    }

    /// Below both bounds: another item may be appended.
    public var hasRoom: Bool { state.withLock { $0.fits(1, capacity: capacity, maxItems: maxItems) } }

    /// Waits up to `seconds` for room, once (returns at the first wake-up), unless there is room or
    /// `unless` holds. The takers are woken first for what was appended without waking them.
    public func waitForRoom(seconds: Double, unless: () -> Bool) {
        wakeTakers()
        var waited = false
        state.withLockWaiting { s -> LockStep<Void> in
            if waited {
                s.roomWaiters -= 1
                return .done(())
            }
            if s.fits(1, capacity: capacity, maxItems: maxItems) || s.abandoned || unless() { return .done(()) }
            waited = true
            s.roomWaiters += 1
            return .wait(seconds: seconds)
        }
    }

    // MARK: taking

    /// The first items up to `limit` weight and `maxItems` items (at least one), once the first is due
    /// (see the type's invariants); waits at most `maxWait` for one. With `holding`, their weight stays
    /// counted against the capacity until `release`.
    public func take(limit: Int, maxItems: Int = .max, linger: Double = 0, holding: Bool = false, maxWait: Double) -> Taken {
        let deadline = monotonicSeconds() + maxWait
        var waiting = false
        var room = false
        let taken = state.withLockWaiting { s -> LockStep<Taken> in
            if waiting {
                s.takersWaiting -= 1
                waiting = false
            }
            if s.abandoned { return .done(.finished) }
            if let first = s.queue.first {
                let left = linger - (monotonicSeconds() - first.since)
                if !(left <= 0 || s.closing || s.weight >= limit || s.roomWaiters > 0) {
                    waiting = true
                    s.takersWaiting += 1
                    return .wait(seconds: max(0.001, left))
                }
            } else {
                if s.closing { return .done(.finished) }
                let left = deadline - monotonicSeconds()
                if left <= 0 { return .done(.idle) }
                waiting = true
                s.takersWaiting += 1
                return .wait(seconds: left)
            }
            var out: [Element] = []
            var n = 0
            while let first = s.queue.first, out.isEmpty || (out.count < maxItems && n.addingSaturating(first.weight) <= limit) {
                s.queue.removeFirst()
                n += first.weight
                out.append(first.element)
            }
            s.weight -= n
            if holding { s.outstanding += n }
            room = s.roomWaiters > 0
            return .done(.items(out))
        }
        if room { state.broadcast() }
        return taken
    }

    /// Outstanding weight was dealt with: room for as much.
    public func release(_ weight: Int) {
        let room = state.withLock { s in
            s.outstanding -= weight
            return s.roomWaiters > 0
        }
        if room { state.broadcast() }
    }

    // MARK: ending

    /// Takers take what is queued at once, then finish.
    public func close() {
        state.withLock { $0.closing = true }
        state.broadcast()
    }

    /// Drops what is queued (returned, in order) and refuses what comes.
    public func abandon() -> [Element] {
        let dropped = state.withLock { s -> [Element] in
            s.abandoned = true
            let items = s.queue.map(\.element)
            s.queue.removeAll()
            s.weight = 0
            return items
        }
        state.broadcast()
        return dropped
    }

    // MARK: state

    public var isClosing: Bool { state.withLock { $0.closing } }
    /// Queued plus outstanding weight.
    public var heldWeight: Int { state.withLock { $0.weight + $0.outstanding } }
    public var queuedWeight: Int { state.withLock { $0.weight } }
    public var count: Int { state.withLock { $0.queue.count } }
    /// Threads waiting in `take` (tests wait for a taker to be waiting before checking what wakes it).
    var waitingTakers: Int { state.withLock { $0.takersWaiting } }
    /// When the oldest queued item was appended (monotonic), if any.
    public var oldestSince: Double? { state.withLock { $0.queue.first?.since } }
}
