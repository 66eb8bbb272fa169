import Synchronization

/// An input's handle on the running pipeline: where to send batches and whether to stop.
public final class InputControl: Sendable {
    public let name: String
    private let stopping = Atomic<Bool>(false)
    private let wakeLock = ConditionLock()
    private let deliver: @Sendable (RecordBatch, AckToken) -> Void

    public init(name: String, deliver: @escaping @Sendable (RecordBatch, AckToken) -> Void) {
        self.name = name
        self.deliver = deliver
    }

    /// True once the agent is shutting down: finish the current read and return from `run`.
    public var isStopping: Bool { stopping.load(ordering: .acquiring) }

    public func requestStop() {
        stopping.store(true, ordering: .releasing)
        wakeLock.withLock { wakeLock.broadcast() }
    }

    /// Hands a batch to every consumer. `ack` completes once each output that got the batch has it
    /// safe (every consumer keeps its own reference; the caller simply lets go of its own). May block
    /// while an output's queue is full.
    public func emit(_ batch: RecordBatch, ack: AckToken) {
        deliver(batch, ack)
    }

    /// Runs `body`, which emits a run of batches on this thread: each output queue it fills wakes its
    /// output once, when `body` returns (or when a queue is full), rather than once a batch.
    public func emittingRun<R>(_ body: () throws -> R) rethrows -> R {
        try OutputQueue.deferringWakeUps(body)
    }

    /// Sleeps up to `seconds`, returning early when a stop is requested.
    public func sleep(_ seconds: Double) {
        wakeLock.withLock {
            if !isStopping { wakeLock.wait(seconds: seconds) }
        }
    }
}
