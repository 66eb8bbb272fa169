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

    /// An answered request's body (see `HTTPRequester.lastBody`): bytes as sent (compressed when
    /// compression is on) and before compression.
    public func sent(_ body: (uncompressed: Int, sent: Int)) {
        stats.counter("bytes_sent", "request body bytes sent to the destination, as sent (after compression) and answered").add(body.sent)
        stats.counter("bytes_sent_uncompressed", "request body bytes sent to the destination, before compression").add(body.uncompressed)
    }

    public func noAnswer() {
        stats.counter("requests_unanswered", "requests that got no answer (cannot connect, timeout, TLS)").add()
    }
}
