/// Requests of a network output by how the destination answered: 2xx, 3xx, 4xx (401/403 included:
/// a credentials problem shows here even though it is retried, not failed), 5xx, and no answer.
/// Counted by the senders, so every request is counted once whatever the runner decides.
///
/// The counters are registered at the first request, not when the sender is made: the runner is
/// built after its senders and takes a stats object without counters for its first run (what it
/// finds in the disk buffer is then counted as recovered).
public struct ResponseCounters: Sendable {
    private let stats: ComponentStats

    public init(_ stats: ComponentStats) { self.stats = stats }

    public func answered(_ status: Int) {
        let c = status / 100
        guard c >= 1 && c <= 5 else { return noAnswer() }
        stats.counter("requests_\(c)xx", "requests answered with HTTP \(c)xx").add()
    }

    public func noAnswer() {
        stats.counter("requests_unanswered", "requests that got no answer (cannot connect, timeout, TLS)").add()
    }
}
