/// Requests of a network output by how the destination answered: 2xx, 3xx, 4xx (401/403 included:
/// a credentials problem shows here even though it is retried, not failed), 5xx, and no answer.
/// Counted by the senders, so every request is counted once whatever the runner decides.
public final class ResponseCounters: Sendable {
    private let classes: [Counter]
    private let unanswered: Counter

    public init(_ stats: ComponentStats) {
        classes = (1...5).map { stats.counter("requests_\($0)xx", "requests answered with HTTP \($0)xx") }
        unanswered = stats.counter("requests_unanswered", "requests that got no answer (cannot connect, timeout, TLS)")
    }

    public func answered(_ status: Int) {
        let c = status / 100
        guard c >= 1 && c <= 5 else { return unanswered.add() }
        classes[c - 1].add()
    }

    public func noAnswer() { unanswered.add() }
}
