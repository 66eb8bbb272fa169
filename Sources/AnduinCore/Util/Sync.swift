import CSupport
import Synchronization
#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// A mutex with a condition variable, for the few places where a thread must wait for another
/// (bounded queues, stop signals). Plain pthreads: our stages are threads, not async tasks, because
/// they block in read(2), inotify and libcurl.
///
/// Invariant: `wait` is only called with the lock held (inside `withLock`).
/// Why the Sendable conformance is unchecked: its only state is the pthread mutex and condition, which exist to be shared.
public final class ConditionLock: @unchecked Sendable {
    private let mutex: UnsafeMutablePointer<pthread_mutex_t>
    private let cond: UnsafeMutablePointer<pthread_cond_t>

    public init() {
        mutex = .allocate(capacity: 1)
        cond = .allocate(capacity: 1)
        pthread_mutex_init(mutex, nil)
        var attr = pthread_condattr_t()
        pthread_condattr_init(&attr)
        #if os(Linux)
        pthread_condattr_setclock(&attr, CLOCK_MONOTONIC)
        #endif
        pthread_cond_init(cond, &attr)
        pthread_condattr_destroy(&attr)
    }

    deinit {
        pthread_cond_destroy(cond)
        pthread_mutex_destroy(mutex)
        cond.deallocate()
        mutex.deallocate()
    }

    @inline(__always)
    public func withLock<R>(_ body: () throws -> R) rethrows -> R {
        pthread_mutex_lock(mutex)
        defer { pthread_mutex_unlock(mutex) }
        return try body()
    }

    /// Runs `body` under the lock if it is free at once; nil (without running it) if another thread
    /// holds it. For callers that must not wait behind a holder that may be waiting for them.
    public func withLockIfFree<R>(_ body: () throws -> R) rethrows -> R? {
        guard pthread_mutex_trylock(mutex) == 0 else { return nil }
        defer { pthread_mutex_unlock(mutex) }
        return try body()
    }

    /// Waits until signalled or `seconds` pass. Call with the lock held.
    public func wait(seconds: Double) {
        var ts = timespec()
        #if os(Linux)
        clock_gettime(CLOCK_MONOTONIC, &ts)
        #else
        clock_gettime(CLOCK_REALTIME, &ts)
        #endif
        let total = Double(ts.tv_sec) + Double(ts.tv_nsec) / 1e9 + clampedSeconds(seconds)
        ts.tv_sec = Int(total)
        ts.tv_nsec = Int((total - Double(Int(total))) * 1e9)
        pthread_cond_timedwait(cond, mutex, &ts)
    }

    /// Waits until signalled. Call with the lock held.
    public func wait() { pthread_cond_wait(cond, mutex) }

    public func broadcast() { pthread_cond_broadcast(cond) }
}

/// A value guarded by a lock, with a condition to wait on: the one way shared mutable state is kept
/// in this project. A class whose mutable fields live in a `Locked` and whose other stored properties
/// are `let`s of Sendable types is `Sendable` without `@unchecked`: the compiler checks it.
///
/// Unlike `Mutex` it is a class (closures and several owners share it), has a condition variable
/// (`withLockWaiting`, `broadcast`), and offers `current`.
///
/// Why the Sendable conformance is unchecked: `value` is touched only inside `withLock`/`withLockWaiting`, under `lock`;
/// waiting happens between calls of the body, never while it holds `inout` access to `value`.
/// A non-Sendable `Value` must not be handed out of the lock to another thread (callers return copies
/// of plain data).
public final class Locked<Value>: @unchecked Sendable {
    private let lock = ConditionLock()
    private var value: Value
    public init(_ value: Value) { self.value = value }

    @inline(__always)
    public func withLock<R>(_ body: (inout Value) throws -> R) rethrows -> R {
        try lock.withLock { try body(&value) }
    }

    /// Runs `body` under the lock until it returns `.done`; after `.wait(seconds:)` the lock is
    /// released until a `broadcast` or the time passes, then `body` runs again.
    public func withLockWaiting<R>(_ body: (inout Value) throws -> LockStep<R>) rethrows -> R {
        try lock.withLock {
            while true {
                switch try body(&value) {
                case .done(let result): return result
                case .wait(let seconds): lock.wait(seconds: seconds)
                }
            }
        }
    }

    /// Runs `body` under the lock until it returns a value or `deadline` (monotonic seconds) passes;
    /// nil means the deadline passed first.
    public func withLock<R>(waitingUntil deadline: Double, _ body: (inout Value) throws -> R?) rethrows -> R? {
        try withLockWaiting { value -> LockStep<R?> in
            if let result = try body(&value) { return .done(result) }
            let left = deadline - monotonicSeconds()
            return left <= 0 ? .done(nil) : .wait(seconds: left)
        }
    }

    /// Wakes every thread waiting in `withLockWaiting`. May be called with or without the lock held.
    public func broadcast() { lock.broadcast() }

    public var current: Value { withLock { $0 } }
}

/// What a `withLockWaiting` body decides: finished with a result, or wait (lock released) and run again.
public enum LockStep<Result> {
    case done(Result)
    case wait(seconds: Double)
}

/// A non-Sendable value (an input, an output) waiting for the thread that will own it: `take` moves
/// it out once (`sending`: the compiler checks the giver keeps no reference), later calls get nil.
public final class TakeOnceSlot<Value>: Sendable {
    private let slot: Mutex<Value?>
    public init(_ value: sending Value?) { slot = Mutex(value) }

    public func take() -> sending Value? {
        slot.withLock { slot -> sending Value? in
            let taken = slot
            slot = nil
            return taken
        }
    }
}

/// A flag one thread sets to stop another, which sleeps on it between rounds of work.
public final class StopSignal: Sendable {
    private let stopped = Locked(false)
    public init() {}

    public var isSet: Bool { stopped.withLock { $0 } }

    public func set() {
        stopped.withLock { $0 = true }
        stopped.broadcast()
    }

    /// Sleeps up to `seconds` unless set first (or meanwhile). True if set.
    @discardableResult
    public func sleep(seconds: Double) -> Bool {
        let deadline = monotonicSeconds() + min(max(0, seconds), maximumWaitSeconds)
        return stopped.withLock(waitingUntil: deadline) { $0 ? true : nil } ?? false
    }
}

/// Longest wait the runtime honours: about 31 years. A config may validly say `poll_interval: 1e300s`
/// or an infinite duration; every sleep, wait and conversion to integers goes through this so such a
/// value means "very long", never a trap.
public let maximumWaitSeconds: Double = 1e9

/// `seconds` made safe to wait on or convert to an integer: NaN and negatives are 0, huge values
/// and infinity are `maximumWaitSeconds`.
@inline(__always)
public func clampedSeconds(_ seconds: Double) -> Double {
    guard seconds > 0 else { return 0 }  // NaN too
    return min(seconds, maximumWaitSeconds)
}

/// Whole milliseconds of `seconds` (clamped), for messages and APIs that take integers.
@inline(__always)
public func clampedMillis(_ seconds: Double) -> Int {
    Int((clampedSeconds(seconds) * 1000).rounded())
}

/// Monotonic clock in seconds, for timeouts and intervals (never jumps with wall-clock changes).
@inline(__always)
public func monotonicSeconds() -> Double {
    var ts = timespec()
    clock_gettime(CLOCK_MONOTONIC, &ts)
    return Double(ts.tv_sec) + Double(ts.tv_nsec) / 1e9
}

/// Wall-clock nanoseconds since the Unix epoch.
@inline(__always)
public func wallClockNanos() -> Int64 {
    var ts = timespec()
    clock_gettime(CLOCK_REALTIME, &ts)
    return Int64(ts.tv_sec) * 1_000_000_000 + Int64(ts.tv_nsec)
}

/// Starts a named thread running `body`. Our stages are long-lived threads.
///
/// `body` is `sending`, not `@Sendable`: it may own non-Sendable state (an output, a reader) that
/// from then on belongs to the new thread alone; the compiler checks that nobody else keeps it.
public func startThread(name: String, _ body: sending @escaping () -> Void) -> ThreadHandle {
    let handle = ThreadHandle()
    let box = ThreadStart(name: name, body: body, handle: handle)
    let ptr = Unmanaged.passRetained(box).toOpaque()
    var tid = pthread_t()
    let rc = pthread_create(&tid, nil, { arg in
        guard let arg else { return nil }
        let start = Unmanaged<ThreadStart>.fromOpaque(arg).takeRetainedValue()
        // `top -H`, gdb and /proc show it; the kernel keeps 15 bytes.
        _ = anduin_name_this_thread(threadName(start.name))
        start.body()
        start.handle.markDone()
        return nil
    }, ptr)
    if rc != 0 {
        // Could not start a thread (resource limit): run inline so no work is silently skipped.
        let start = Unmanaged<ThreadStart>.fromOpaque(ptr).takeRetainedValue()
        start.body()
        handle.markDone()
    } else {
        pthread_detach(tid)
    }
    return handle
}

/// `name` cut to the 15 bytes a Linux thread name holds, on a character boundary.
func threadName(_ name: String) -> String {
    var out = ""
    var bytes = 0
    for c in name.unicodeScalars {
        let n = String(c).utf8.count
        if bytes + n > 15 { break }
        bytes += n
        out.unicodeScalars.append(c)
    }
    return out
}

/// Handed to the new thread exactly once, through `Unmanaged` (not Sendable: it never needs to be).
private final class ThreadStart {
    let name: String
    let body: () -> Void
    let handle: ThreadHandle
    init(name: String, body: sending @escaping () -> Void, handle: ThreadHandle) {
        self.name = name
        self.body = body
        self.handle = handle
    }
}

/// Lets another thread wait for a thread's end.
public final class ThreadHandle: Sendable {
    private let done = Locked(false)
    func markDone() {
        done.withLock { $0 = true }
        done.broadcast()
    }
    /// Returns true if the thread ended within `seconds`.
    @discardableResult
    public func join(timeout seconds: Double = .infinity) -> Bool {
        let deadline = monotonicSeconds() + clampedSeconds(seconds)
        return done.withLock(waitingUntil: deadline) { $0 ? true : nil } ?? false
    }
}
