/// A filter that may hold records across batches (multiline) or needs a clock (throttle reports).
///
/// Token rules (so a checkpoint never passes a line that is still held):
/// - `process`: `ack` is lent for the call; the caller releases its own reference afterwards. A record
///   kept past the call must keep its batch alive: `ack.retain()`, and release it only once the record
///   containing it was emitted and that emitted batch completed (see `AckToken.combining`).
/// - `emit(batch, token)`: the token is lent for the call (the pipeline retains it for each output it
///   hands the batch to); the filter releases its own reference to a token it made after `emit` returns.
///
/// Thread-safety: `process` runs on input threads (several inputs may feed one filter), `tick` on the
/// pipeline's ticker thread, `flushAll` on the stopping thread; implementations lock their state.
/// `emit` may block (backpressure) and routes downstream of this filter only.
public protocol StatefulFilter: Filter {
    /// Takes a batch and its ack token; emits what is ready (possibly records held from earlier
    /// batches) via `emit`, each emitted batch with a token.
    func process(_ batch: RecordBatch, ack: AckToken, emit: (RecordBatch, AckToken) -> Void)
    /// Called about every 100 ms from a pipeline thread (`now` is `monotonicSeconds()`): emit records
    /// pending longer than their timeout.
    func tick(now: Double, emit: (RecordBatch, AckToken) -> Void)
    /// At stop, after the inputs stopped and before the outputs close: emit everything pending.
    func flushAll(emit: (RecordBatch, AckToken) -> Void)
}

public extension StatefulFilter {
    /// Unused: the pipeline calls the stateful form. Passing the batch through unchanged keeps a
    /// stateful filter harmless if some caller only knows `Filter`.
    func process(_ batch: inout RecordBatch) {}
}

public extension AckToken {
    /// A token that holds `tokens` until it completes, then releases each once.
    ///
    /// Takes over one reference of each token (the caller retained them for this); the result starts
    /// with one reference, owned by the caller. One token is returned as is: its reference simply
    /// changes hands, which avoids an allocation on the common path.
    static func combining(_ tokens: [AckToken]) -> AckToken {
        if tokens.count == 1 { return tokens[0] }
        if tokens.isEmpty { return .none() }
        return AckToken {
            for t in tokens { t.release() }
        }
    }
}
