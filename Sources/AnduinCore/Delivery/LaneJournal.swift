#if canImport(FoundationEssentials)
import FoundationEssentials
#else
import Foundation
#endif
#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// The retry lane's file, for outputs with a disk buffer: records leave the ring (its delivered
/// position passes them) only once they are here, so they survive kill -9 and restarts.
///
/// `data_dir/buffers/<output>.retry-lane`: an append-only log of entries, each
/// `[u32 length][u32 CRC32C][payload]` (little endian); a payload adds a group of records (with
/// their failure history) or removes one. Read back at start up to the first damaged entry (a torn
/// tail), then rewritten compactly; rewritten again whenever dead entries pass half of the file.
/// Used under the lane's lock.
final class LaneJournal {
    let path: String
    private let fsync: FsyncPolicy
    private var fd: Int32 = -1
    /// A failed append left bytes that could not be truncated away: appends are refused.
    private var torn = false
    /// No entries are known to be on disk beyond what this object wrote: a missing file may be
    /// created empty. False after `load` found entries, until a `rewrite` put them back.
    private var mayStartEmpty = true
    private var fileBytes = 0
    private var lastSync = monotonicSeconds()
    private var dirty = false

    init(path: String, fsync: FsyncPolicy) {
        self.path = path
        self.fsync = fsync
    }

    deinit { if fd >= 0 { close(fd) } }

    /// Reads the groups still live in the file (added, not removed), in order.
    func load(log: (String) -> Void) -> [(id: UInt64, work: DeliveryWork)] {
        guard let data = FileManager.default.contents(atPath: path) else { return [] }
        let bytes = [UInt8](data)
        // The file holds entries only it knows of now: never start it over empty (see `append`).
        if !bytes.isEmpty { mayStartEmpty = false }
        var live: [UInt64: DeliveryWork] = [:]
        var order: [UInt64] = []
        var i = 0
        while bytes.count - i >= 8 {
            let len = Int(LaneJournal.u32(bytes, i)), crc = LaneJournal.u32(bytes, i + 4)
            guard len > 0, bytes.count - i - 8 >= len else { break }
            let payload = Array(bytes[(i + 8)..<(i + 8 + len)])
            guard CRC32C.checksum(payload) == crc, let e = LaneJournal.decode(payload) else { break }
            switch e {
            case .add(let id, let work):
                if live[id] == nil { order.append(id) }
                live[id] = work
            case .remove(let id):
                live[id] = nil
            }
            i += 8 + len
        }
        if i < bytes.count {
            log("retry lane \(path): \(bytes.count - i) damaged or torn byte(s) at the end ignored")
        }
        return order.compactMap { id in live[id].map { (id, $0) } }
    }

    /// Replaces the file with exactly `groups` (at start, and when dead entries dominate).
    func rewrite(_ groups: [(id: UInt64, work: DeliveryWork)]) -> Bool {
        var out: [UInt8] = []
        for g in groups { LaneJournal.frame(LaneJournal.encodeAdd(g.id, g.work), into: &out) }
        do {
            try AtomicFile.write(Data(out), to: path, durable: fsync != .never)
        } catch {
            return false
        }
        if fd >= 0 { close(fd) }
        fd = open(path, O_WRONLY | O_APPEND | O_CLOEXEC)
        torn = false
        fchmod(fd, 0o600)
        fileBytes = out.count
        mayStartEmpty = fd >= 0
        return fd >= 0
    }

    func add(_ id: UInt64, _ work: DeliveryWork) -> Bool {
        var out: [UInt8] = []
        LaneJournal.frame(LaneJournal.encodeAdd(id, work), into: &out)
        return append(out)
    }

    func remove(_ ids: [UInt64]) -> Bool {
        var out: [UInt8] = []
        for id in ids {
            var p: [UInt8] = [2]
            LaneJournal.put64(id, &p)
            LaneJournal.frame(p, into: &out)
        }
        return append(out)
    }

    var bytes: Int { fileBytes }

    func syncIfDue() {
        if case .interval(let s) = fsync, dirty, monotonicSeconds() - lastSync >= s { sync() }
    }

    /// Before the ring's delivered position moves past records this journal holds: the journal must
    /// not be less durable than the ring's cursor (unless fsync is off altogether).
    func syncBeforeCommit() {
        if fsync != .never && dirty { sync() }
    }

    func sync() {
        if fd >= 0 && dirty { _ = Glibc.fsync(fd) }
        dirty = false
        lastSync = monotonicSeconds()
    }

    private func append(_ out: [UInt8]) -> Bool {
        // No file while entries loaded at start are not written back (the start-up rewrite failed), or a
        // tear that could not be cut off: refuse, so the caller retries in place. Never start the file
        // over from here then: the journal does not know the live groups.
        if fd < 0 && !(mayStartEmpty && rewrite([])) { return false }
        guard !torn else { return false }
        guard out.withUnsafeBytes({ writeAll(fd: fd, $0) }) else {
            // A partial frame would hide every later entry from `load` (it stops at the first bad
            // CRC): cut it off, or stop appending.
            if ftruncate(fd, off_t(fileBytes)) != 0 { torn = true }
            return false
        }
        fileBytes += out.count
        dirty = true
        if fsync == .always { sync() } else { syncIfDue() }
        return true
    }

    // MARK: encoding

    enum Entry {
        case add(UInt64, DeliveryWork)
        case remove(UInt64)
    }

    static func frame(_ payload: [UInt8], into out: inout [UInt8]) {
        put32(UInt32(payload.count), &out)
        put32(CRC32C.checksum(payload), &out)
        out += payload
    }

    static func encodeAdd(_ id: UInt64, _ work: DeliveryWork) -> [UInt8] {
        var p: [UInt8] = [1]
        put64(id, &p)
        put32(UInt32(work.count), &p)
        for i in 0..<work.count {
            let r = work.batch.records[i], s = work.state(i)
            put64(UInt64(bitPattern: r.timestamp), &p)
            put64(r.sourceID, &p)
            put64(UInt64(bitPattern: r.offset), &p)
            put32(UInt32(clamping: s.attempts), &p)
            put64(UInt64(bitPattern: s.firstFailure), &p)
            put32(UInt32(clamping: max(0, s.status)), &p)
            let reason = Array(s.reason.utf8.prefix(1000))
            put32(UInt32(reason.count), &p)
            p += reason
            work.batch.withDocument(i) { doc in
                put32(UInt32(doc.count), &p)
                p.append(contentsOf: doc)
            }
        }
        return p
    }

    static func decode(_ p: [UInt8]) -> Entry? {
        guard p.count >= 9 else { return nil }
        let id = u64(p, 1)
        if p[0] == 2 { return .remove(id) }
        guard p[0] == 1, p.count >= 13 else { return nil }
        let n = Int(u32(p, 9))
        var i = 13
        var batch = EncodedBatch()
        var states: [ItemState] = []
        for _ in 0..<n {
            guard p.count - i >= 40 else { return nil }
            let ts = Int64(bitPattern: u64(p, i)), src = u64(p, i + 8), off = Int64(bitPattern: u64(p, i + 16))
            var s = ItemState()
            s.attempts = Int(u32(p, i + 24))
            s.firstFailure = Int64(bitPattern: u64(p, i + 28))
            s.status = Int(u32(p, i + 36))
            i += 40
            guard p.count - i >= 4 else { return nil }
            let rl = Int(u32(p, i))
            i += 4
            guard p.count - i >= rl else { return nil }
            s.reason = String(decoding: p[i..<(i + rl)], as: UTF8.self)
            i += rl
            guard p.count - i >= 4 else { return nil }
            let dl = Int(u32(p, i))
            i += 4
            guard p.count - i >= dl else { return nil }
            p.withUnsafeBytes { b in
                batch.append(document: UnsafeRawBufferPointer(rebasing: b[i..<(i + dl)]), timestamp: ts, sourceID: src, offset: off)
            }
            i += dl
            states.append(s)
        }
        return .add(id, DeliveryWork(batch, states: states))
    }

    static func put32(_ v: UInt32, _ out: inout [UInt8]) {
        withUnsafeBytes(of: v.littleEndian) { out.append(contentsOf: $0) }
    }

    static func put64(_ v: UInt64, _ out: inout [UInt8]) {
        withUnsafeBytes(of: v.littleEndian) { out.append(contentsOf: $0) }
    }

    static func u32(_ b: [UInt8], _ i: Int) -> UInt32 {
        var v: UInt32 = 0
        for k in 0..<4 { v |= UInt32(b[i + k]) << (8 * k) }
        return v
    }

    static func u64(_ b: [UInt8], _ i: Int) -> UInt64 {
        var v: UInt64 = 0
        for k in 0..<8 { v |= UInt64(b[i + k]) << (8 * k) }
        return v
    }
}
