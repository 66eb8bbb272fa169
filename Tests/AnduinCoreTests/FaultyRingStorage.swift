import Foundation
@testable import AnduinCore
#if canImport(Glibc)
import Glibc
#endif

/// An in-memory `RingStorage` for tests: injects errors on chosen operations, limits the space, and
/// simulates crashes. A crash invalidates every open handle (the process is gone); a power failure also
/// forgets what was not synced: names created since the last `syncDirectory`, and bytes written to a file
/// since its last `sync` (an appended tail survives in part, as a torn write would).
final class FaultyRingStorage: RingStorage, @unchecked Sendable {  // all state is guarded by `state`
    let directory: String

    enum Op: Equatable { case open, create, read, write, sync, truncate, remove, rename }

    struct Fault {
        var op: Op
        /// Only files whose name starts with this.
        var prefix: String
        var code: Int32
        var remaining: Int
    }

    private final class File {
        var data: [UInt8] = []
        var synced: [UInt8] = []
    }

    private struct State {
        var names: [String: File] = [:]
        var durable: [String: File] = [:]
        var handles: [Int32: (name: String, file: File)] = [:]
        var nextHandle: Int32 = 3
        var faults: [Fault] = []
        var capacity = Int.max
        var failures = 0
    }

    private let state = Locked(State())

    init(directory: String = "/faulty/ring") { self.directory = directory }

    // MARK: Test controls

    /// The next `count` `op`s on files named `prefix…` fail with `code`.
    func inject(_ op: Op, _ code: Int32, count: Int = 1, prefix: String = "segment-") {
        state.withLock { $0.faults.append(Fault(op: op, prefix: prefix, code: code, remaining: count)) }
    }

    /// Total bytes all files may hold; a write past it stores what fits and fails with ENOSPC.
    func setCapacity(_ bytes: Int) { state.withLock { $0.capacity = bytes } }

    /// Injected failures that happened so far.
    var failures: Int { state.withLock { $0.failures } }

    /// The process dies: every handle becomes invalid. With `powerLoss`, unsynced names and bytes go too
    /// (`keepUnsynced(n)` says how many of `n` unsynced appended bytes survive).
    func crash(powerLoss: Bool, keepUnsynced: (Int) -> Int = { _ in 0 }) {
        state.withLock { s in
            s.handles = [:]
            s.faults = []
            guard powerLoss else { return }
            s.names = s.durable
            for f in s.names.values {
                if f.data.count > f.synced.count && f.data.starts(with: f.synced) {
                    f.data = Array(f.data[0..<(f.synced.count + keepUnsynced(f.data.count - f.synced.count))])
                } else {
                    f.data = f.synced
                }
                f.synced = f.data
            }
        }
    }

    func names() -> [String] { state.withLock { $0.names.keys.sorted() } }

    /// Changes a file's bytes behind the ring's back (damage); `body` gets the current content.
    func damage(_ name: String, _ body: (inout [UInt8]) -> Void) {
        state.withLock { s in
            guard let f = s.names[name] else { return }
            body(&f.data)
            f.synced = f.data
        }
    }

    func contents(_ name: String) -> [UInt8]? { state.withLock { $0.names[name]?.data } }

    /// The directory is deleted (`rm -rf`) while the ring runs: every name goes; open handles keep
    /// their (now nameless) files, as on a real filesystem.
    func removeAll() {
        state.withLock { s in
            s.names = [:]
            s.durable = [:]
        }
    }

    // MARK: RingStorage

    private func take(_ s: inout State, _ op: Op, _ name: String) -> POSIXFailure? {
        guard let i = s.faults.firstIndex(where: { $0.op == op && name.hasPrefix($0.prefix) && $0.remaining > 0 }) else { return nil }
        let code = s.faults[i].code
        s.faults[i].remaining -= 1
        if s.faults[i].remaining == 0 { s.faults.remove(at: i) }
        s.failures += 1
        return POSIXFailure("\(op) \(name)", code: code)
    }

    func prepareDirectory() throws(POSIXFailure) {}

    func isLinked(_ file: RingFile) -> Bool {
        state.withLock { s in
            guard let h = s.handles[file.raw] else { return true }
            return s.names.values.contains { $0 === h.file }
        }
    }

    func list() throws(POSIXFailure) -> [String] { names() }

    func open(_ name: String, create: Bool) throws(POSIXFailure) -> RingFile {
        let r: Result<RingFile, POSIXFailure> = state.withLock { s in
            if let f = take(&s, create ? .create : .open, name) { return .failure(f) }
            let file: File
            if create {
                file = File()
                s.names[name] = file
            } else {
                guard let existing = s.names[name] else { return .failure(POSIXFailure("open \(name)", code: ENOENT)) }
                file = existing
            }
            let h = s.nextHandle
            s.nextHandle += 1
            s.handles[h] = (name, file)
            return .success(RingFile(raw: h))
        }
        return try r.get()
    }

    func duplicate(_ file: RingFile) throws(POSIXFailure) -> RingFile {
        let r: Result<RingFile, POSIXFailure> = state.withLock { s in
            guard let h = s.handles[file.raw] else { return .failure(POSIXFailure("dup", code: EBADF)) }
            let n = s.nextHandle
            s.nextHandle += 1
            s.handles[n] = h
            return .success(RingFile(raw: n))
        }
        return try r.get()
    }

    func close(_ file: RingFile) { state.withLock { _ = $0.handles.removeValue(forKey: file.raw) } }

    func size(_ file: RingFile) throws(POSIXFailure) -> Int {
        let r: Result<Int, POSIXFailure> = state.withLock { s in
            guard let h = s.handles[file.raw] else { return .failure(POSIXFailure("fstat", code: EBADF)) }
            return .success(h.file.data.count)
        }
        return try r.get()
    }

    func read(_ file: RingFile, into buffer: UnsafeMutableRawBufferPointer, at offset: Int) -> ReadOutcome {
        state.withLock { s in
            guard let h = s.handles[file.raw] else { return .failed(EBADF) }
            if let f = take(&s, .read, h.name) { return .failed(f.code) }
            let data = h.file.data
            let n = max(0, min(buffer.count, data.count - offset))
            if n > 0 { data.withUnsafeBytes { buffer.baseAddress?.copyMemory(from: $0.baseAddress! + offset, byteCount: n) } }
            return n == buffer.count ? .ok : .eof
        }
    }

    func write(_ file: RingFile, _ bytes: UnsafeRawBufferPointer, at offset: Int) throws(POSIXFailure) {
        let failure: POSIXFailure? = state.withLock { s in
            guard let h = s.handles[file.raw] else { return POSIXFailure("write", code: EBADF) }
            if let f = take(&s, .write, h.name) { return f }
            let used = s.names.values.reduce(0) { $0 + $1.data.count }
            let growth = max(0, offset + bytes.count - h.file.data.count)
            var n = bytes.count
            var full = false
            if used + growth > s.capacity {
                n = max(0, bytes.count - (used + growth - s.capacity))
                full = true
            }
            if h.file.data.count < offset + n { h.file.data += [UInt8](repeating: 0, count: offset + n - h.file.data.count) }
            for i in 0..<n { h.file.data[offset + i] = bytes[i] }
            if full {
                s.failures += 1
                return POSIXFailure("write \(h.name)", code: ENOSPC)
            }
            return nil
        }
        if let failure { throw failure }
    }

    func sync(_ file: RingFile) throws(POSIXFailure) {
        let failure: POSIXFailure? = state.withLock { s in
            guard let h = s.handles[file.raw] else { return POSIXFailure("fsync", code: EBADF) }
            if let f = take(&s, .sync, h.name) { return f }
            h.file.synced = h.file.data
            return nil
        }
        if let failure { throw failure }
    }

    func truncate(_ file: RingFile, to size: Int) throws(POSIXFailure) {
        let failure: POSIXFailure? = state.withLock { s in
            guard let h = s.handles[file.raw] else { return POSIXFailure("truncate", code: EBADF) }
            if let f = take(&s, .truncate, h.name) { return f }
            if h.file.data.count > size { h.file.data.removeLast(h.file.data.count - size) } else {
                h.file.data += [UInt8](repeating: 0, count: size - h.file.data.count)
            }
            return nil
        }
        if let failure { throw failure }
    }

    func remove(_ name: String) throws(POSIXFailure) {
        let failure: POSIXFailure? = state.withLock { s in
            if let f = take(&s, .remove, name) { return f }
            s.names.removeValue(forKey: name)
            s.durable.removeValue(forKey: name)
            return nil
        }
        if let failure { throw failure }
    }

    func rename(_ from: String, to: String) throws(POSIXFailure) {
        let failure: POSIXFailure? = state.withLock { s in
            if let f = take(&s, .rename, from) { return f }
            guard let f = s.names.removeValue(forKey: from) else { return POSIXFailure("rename \(from)", code: ENOENT) }
            s.names[to] = f
            return nil
        }
        if let failure { throw failure }
    }

    func syncDirectory() { state.withLock { $0.durable = $0.names } }
}
