import NIOCore
import NIOHTTP1
import Synchronization

/// One /tap client's stream: records are queued on its channel (written by NIO as the client reads),
/// at most `maxBytes` and `maxRecords` unsent. A client that falls further behind is disconnected,
/// with a last line `{"tap":"dropped",...,"missed_records":N}`: a stalled reader costs the agent a
/// bounded amount of memory, and the pipeline never waits for it.
final class TapStream: Sendable {
    private let channel: Channel
    private let maxBytes: Int
    private let maxRecords: Int
    private let lingerSeconds: Double
    private let pendingBytes = Atomic<Int>(0)
    private let pendingRecords = Atomic<Int>(0)
    private let dropped = Atomic<Bool>(false)
    private let missed = Atomic<Int>(0)

    /// `lingerSeconds`: how long a dropped client has to read what was queued and the last line.
    init(channel: Channel, maxBytes: Int, maxRecords: Int, lingerSeconds: Double) {
        self.channel = channel
        self.maxBytes = maxBytes
        self.maxRecords = maxRecords
        self.lingerSeconds = lingerSeconds
    }

    /// Called from pipeline threads with one chunk of `records` NDJSON lines. Returns false when the
    /// client fell behind: the caller cancels the subscription, then calls `drop()`.
    func offer(_ bytes: [UInt8], records: Int) -> Bool {
        if dropped.load(ordering: .acquiring) {
            missed.add(records, ordering: .relaxed)
            return false
        }
        let b = pendingBytes.add(bytes.count, ordering: .relaxed).newValue
        let r = pendingRecords.add(records, ordering: .relaxed).newValue
        // One chunk is always allowed when nothing is queued, so a batch larger than the bound
        // still reaches a client that keeps up.
        if (b > maxBytes || r > maxRecords) && b != bytes.count {
            pendingBytes.subtract(bytes.count, ordering: .relaxed)
            pendingRecords.subtract(records, ordering: .relaxed)
            missed.add(records, ordering: .relaxed)
            return false
        }
        var buffer = channel.allocator.buffer(capacity: bytes.count)
        buffer.writeBytes(bytes)
        let count = bytes.count
        channel.writeAndFlush(HTTPServerResponsePart.body(.byteBuffer(buffer))).whenComplete { [self] _ in
            pendingBytes.subtract(count, ordering: .relaxed)
            pendingRecords.subtract(records, ordering: .relaxed)
        }
        return true
    }

    /// Ends the stream of a client that fell behind: a last line with the count of records it
    /// missed, then the connection is closed: once the client has read up to that line, or after
    /// `lingerSeconds` (the API's idle_timeout) whether it did or not. Until then it holds at most
    /// what was queued; closing frees it.
    func drop() {
        guard !dropped.exchange(true, ordering: .acquiringAndReleasing) else { return }
        let channel = self.channel
        channel.eventLoop.execute { [self] in
            let line = #"{"tap":"dropped: the client fell behind","missed_records":\#(missed.load(ordering: .relaxed))}"# + "\n"
            var buffer = channel.allocator.buffer(capacity: line.utf8.count)
            buffer.writeString(line)
            channel.write(HTTPServerResponsePart.body(.byteBuffer(buffer)), promise: nil)
            channel.writeAndFlush(HTTPServerResponsePart.end(nil)).whenComplete { _ in channel.close(promise: nil) }
            channel.eventLoop.scheduleTask(in: .nanoseconds(Int64(clampedSeconds(lingerSeconds) * 1e9))) {
                channel.close(promise: nil)
            }
        }
    }

    /// The normal end (the limit was reached).
    func finish() {
        channel.writeAndFlush(HTTPServerResponsePart.end(nil)).whenComplete { [channel] _ in
            channel.close(promise: nil)
        }
    }
}

/// Open connections of one listener, bounded by `api.max_connections`.
final class ConnectionCount: Sendable {
    private let open = Atomic<Int>(0)
    let limit: Int
    init(limit: Int) { self.limit = limit }

    /// Takes a slot; false when all are in use.
    func acquire() -> Bool {
        if open.add(1, ordering: .relaxed).newValue > limit {
            open.subtract(1, ordering: .relaxed)
            return false
        }
        return true
    }

    func release() { open.subtract(1, ordering: .relaxed) }
    var current: Int { open.load(ordering: .relaxed) }
}

/// `a == b` in time that depends on their lengths only, not on where they differ (token checks).
func constantTimeEqual(_ a: String, _ b: String) -> Bool {
    let x = Array(a.utf8), y = Array(b.utf8)
    var diff = UInt8(truncatingIfNeeded: x.count ^ y.count) | (x.count == y.count ? 0 : 1)
    let n = max(x.count, y.count)
    for i in 0..<n {
        let p = i < x.count ? x[i] : 0
        let q = i < y.count ? y[i] : 0
        diff |= p ^ q
    }
    return diff == 0
}
