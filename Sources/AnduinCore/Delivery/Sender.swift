import Synchronization

/// What every output implements (Elasticsearch, HTTP, file, stdout, blackhole): send one batch of
/// encoded records and say what became of each. The runner around it (`DeliveryRunner`) does the
/// batching, buffering, retries, backoff, dead-lettering and acknowledgements, the same way for every
/// output.
///
/// A sender is used by one thread at a time (the runner makes one per concurrent request slot).
public protocol BatchSender: AnyObject {
    func send(_ batch: EncodedBatch) -> SendResult
    /// The `Retry-After` header of the answer to the last `send`, as the destination wrote it (nil
    /// when it sent none, or sent no answer). The runner reads it for 429/503 answers and per-item 429s.
    var retryAfter: String? { get }
}

public extension BatchSender {
    var retryAfter: String? { nil }
}

/// Tells the requests of one output to give up: set by its runner when it stops. With a disk buffer a
/// stop does not wait for a destination that does not answer (the ring keeps the records for the next
/// start): a request still unanswered `grace` seconds after the stop began, or after it was sent if
/// later, is abandoned. Once the runner gives up (shutdown_timeout, reload), every request is.
public final class RequestAbort: Sendable {
    private struct State {
        var closedAt: Double?
        var grace = 0.0
        var now = false
    }
    private let state = Mutex(State())

    public init() {}

    /// Whether a request sent at `startedAt` (monotonic seconds) should be abandoned now.
    public func shouldAbort(startedAt: Double) -> Bool {
        state.withLock { s in
            if s.now { return true }
            guard let closedAt = s.closedAt else { return false }
            return monotonicSeconds() - max(closedAt, startedAt) >= s.grace
        }
    }

    /// From now on, requests unanswered for `grace` seconds are abandoned.
    func abort(after grace: Double) {
        state.withLock { s in
            if s.closedAt == nil {
                s.closedAt = monotonicSeconds()
                s.grace = max(0, grace)
            }
        }
    }

    /// Every request is abandoned at once.
    func abortNow() { state.withLock { $0.now = true } }
}

public enum SendResult: Sendable, Equatable {
    /// The destination confirmed every record.
    case delivered
    /// The destination answered, nothing was delivered, and trying again may work (408, 429, 5xx, or a
    /// 2xx whose body is not a complete receipt). Retried with backoff within the retry budget.
    case retryAll(status: Int, reason: String)
    /// No answer (cannot connect, timeout, TLS, DNS): an outage, which the buffer is for. Retried with
    /// backoff for as long as it lasts; the retry budget does not apply.
    case unreachable(String)
    /// No complete answer within the request timeout: retried like an outage, and a batch of several
    /// records is halved for the retry (a destination too slow for the whole batch may take half of
    /// it in time; the halves go in order).
    case timedOut(String)
    /// 401/403: a configuration problem, not a data problem. Retried with backoff and logged loudly;
    /// never dead-lettered (fix the credentials and the data flows again).
    case authFailure(String)
    /// 413: the request was too large. The runner splits the batch and sends the halves.
    case tooLarge
    /// One outcome per record of the batch, in order (a bulk API's per-item answer).
    case perRecord([RecordOutcome])
}

public enum RecordOutcome: Sendable, Equatable {
    case delivered
    /// Failed with a retriable status (429, 5xx): retried with backoff within the retry budget.
    case retry(status: Int, reason: String)
    /// The destination will never take it (mapping error, bad request): written to the dead-letter file.
    case deadLetter(status: Int, reason: String)
}

/// Which HTTP statuses are worth retrying, shared by the outputs so they agree.
public enum HTTPStatusClass {
    /// The outcome of a whole request for `count` records: any refusal not worth retrying sends
    /// them all to the dead-letter file with the status and the start of the body.
    public static func result(status: Int, body: [UInt8], count: Int) -> SendResult {
        switch status {
        case 200..<300: return .delivered
        case 401, 403: return .authFailure("HTTP \(status): \(snippet(body))")
        case 413: return .tooLarge
        case 408, 429, 500..<600: return .retryAll(status: status, reason: "HTTP \(status): \(snippet(body))")
        default:
            let reason = "HTTP \(status): \(snippet(body))"
            return .perRecord(Array(repeating: .deadLetter(status: status, reason: reason), count: count))
        }
    }

    /// The start of a response body, for error messages (bodies can be huge).
    public static func snippet(_ body: [UInt8], limit: Int = 300) -> String {
        let s = String(decoding: body.prefix(limit), as: UTF8.self)
            .replacing("\n", with: " ")
        return body.count > limit ? s + "…" : s
    }
}
