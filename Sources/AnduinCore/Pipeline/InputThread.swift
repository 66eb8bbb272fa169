/// One input on its own thread: `run`, then `finish` once the pipeline says everything it read is
/// settled. The input is moved to the thread at `start` and never leaves it, so it needs no lock and
/// is not Sendable; the pipeline talks to the thread only through `state`.
///
/// Invariant: `finish` runs at most once, only after `run` returned and only when the pipeline
/// decided so (`settle(finish: true)`); an input that returns after the pipeline gave up on it
/// (`settle(finish: false)`) ends without writing its final checkpoint.
final class InputThread: Sendable {
    let name: String
    let control: InputControl
    private let input: TakeOnceSlot<any Input>
    private struct State {
        var returned = false
        /// nil until the pipeline decides: true → call `finish`, false → skip it.
        var settle: Bool?
        var finished = false
    }
    private let state = Locked(State())

    init(name: String, input: sending any Input, control: InputControl) {
        self.name = name
        self.input = TakeOnceSlot(input)
        self.control = control
    }

    func start() {
        guard let input = input.take() else { return }  // started already
        _ = startThread(name: "in-\(name)") { [self] in
            input.run(control)
            state.withLock { $0.returned = true }
            state.broadcast()
            let finish = state.withLockWaiting { s -> LockStep<Bool> in
                if let settle = s.settle { return .done(settle) }
                return .wait(seconds: maximumWaitSeconds)
            }
            if finish { input.finish() }
            state.withLock { $0.finished = true }
            state.broadcast()
        }
    }

    /// Waits until `run` returned; false if `deadline` (monotonic seconds) passed first.
    func waitReturned(until deadline: Double) -> Bool {
        state.withLock(waitingUntil: deadline) { $0.returned ? true : nil } ?? false
    }

    var hasReturned: Bool { state.withLock { $0.returned } }

    /// Tells the thread whether to write its final state; with `finish`, waits up to `timeout`
    /// for it. False if the input had not returned from `run` (nothing is finished) or timed out.
    @discardableResult
    func settle(finish: Bool, timeout: Double) -> Bool {
        let returned = state.withLock { s -> Bool in
            if s.settle == nil { s.settle = finish && s.returned }
            return s.returned
        }
        state.broadcast()
        guard finish && returned else { return false }
        let deadline = monotonicSeconds() + timeout
        return state.withLock(waitingUntil: deadline) { $0.finished ? true : nil } ?? false
    }
}
