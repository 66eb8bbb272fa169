/// A filter that may hold records across batches (multiline) or needs a clock (throttle reports).
///
/// Acknowledgement rules (so a checkpoint never passes a line that is still held):
/// - `process`: a record kept past the call keeps its batch's `ack` referenced (store the token beside
///   the record); the merged record that is finally emitted carries `AckToken(holding:)` of every token
///   its lines came with. An input acknowledges in order, so it does not checkpoint past a held line.
/// - `emit(batch, token)`: the pipeline keeps its own references; the filter just lets go of `token`.
/// - `discardAll`: at stop, after the outputs were closed or abandoned: what is still held will not be
///   delivered, so its tokens are abandoned (never acknowledged by being dropped).
///
/// Thread-safety: `process` runs on input threads (several inputs may feed one filter), `tick` on the
/// pipeline's ticker thread, `flushAll` and `discardAll` on the stopping thread; implementations lock
/// their state. `emit` may block (backpressure) and routes downstream of this filter only.
public protocol StatefulFilter: Filter {
    /// Takes a batch and its ack token; emits what is ready (possibly records held from earlier
    /// batches) via `emit`, each emitted batch with a token.
    func process(_ batch: RecordBatch, ack: AckToken, emit: (RecordBatch, AckToken) -> Void)
    /// Called about every 100 ms from a pipeline thread (`now` is `monotonicSeconds()`): emit records
    /// pending longer than their timeout.
    func tick(now: Double, emit: (RecordBatch, AckToken) -> Void)
    /// At stop, after the inputs stopped and before the outputs close: emit everything pending.
    func flushAll(emit: (RecordBatch, AckToken) -> Void)
    /// At stop, last: abandon the tokens of whatever is still held (not flushed), then drop it.
    func discardAll()
}

public extension StatefulFilter {
    /// Unused: the pipeline calls the stateful form. Passing the batch through unchanged keeps a
    /// stateful filter harmless if some caller only knows `Filter`.
    func process(_ batch: inout RecordBatch) {}
    /// A filter that holds no records has nothing to abandon.
    func discardAll() {}
}
