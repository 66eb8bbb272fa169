/// Exponential backoff, the project's one implementation: network outputs, the record outputs'
/// write retries and the Kubernetes watch all wait with it.
///
/// `delay(attempt:)` for attempt 1, 2, 3… is `initial`, `2·initial`, `4·initial`… capped at `max`,
/// then jittered so many agents retrying against one recovering server do not retry in step.
public struct Backoff: Sendable {
    public enum Jitter: Sendable {
        /// Uniform in 0...delay (the AWS architecture blog's "full jitter"): the widest spread.
        case full
        /// Uniform in delay/2...delay: spread, but never much shorter than the nominal delay.
        case equal
        /// Exactly the nominal delay (tests, and waits where spreading does not matter).
        case none
    }

    public let initial: Double
    public let max: Double
    public let jitter: Jitter
    /// Failures so far in the current streak.
    public private(set) var attempt = 0

    public init(initial: Double, max: Double, jitter: Jitter = .full) {
        self.initial = initial
        self.max = Swift.max(initial, max)
        self.jitter = jitter
    }

    /// The nominal (unjittered) delay after the `attempt`-th consecutive failure (1-based).
    public static func nominal(attempt: Int, initial: Double, max: Double) -> Double {
        var d = initial
        var n = 1
        while n < attempt && d < max {
            d *= 2
            n += 1
        }
        return Swift.min(d, max)
    }

    /// The delay to wait after the `attempt`-th consecutive failure (1-based), jittered.
    public func delay(attempt: Int) -> Double {
        let d = Backoff.nominal(attempt: Swift.max(1, attempt), initial: initial, max: max)
        switch jitter {
        case .full: return Double.random(in: 0...d)
        case .equal: return d / 2 + Double.random(in: 0...(d / 2))
        case .none: return d
        }
    }

    /// Counts one more failure and returns how long to wait before the next try.
    public mutating func next() -> Double {
        attempt += 1
        return delay(attempt: attempt)
    }

    /// A success: the next failure starts again from `initial`.
    public mutating func reset() { attempt = 0 }
}
