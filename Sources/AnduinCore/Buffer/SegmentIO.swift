#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

enum ReadOutcome: Equatable {
    case ok
    /// The file ends before the requested bytes.
    case eof
    case failed(Int32)
}

/// Reads exactly `buf.count` bytes at `offset`, retrying short reads and EINTR.
func preadFully(_ fd: Int32, _ buf: UnsafeMutableRawBufferPointer, at offset: Int) -> ReadOutcome {
    guard let base = buf.baseAddress else { return .ok }
    var done = 0
    while done < buf.count {
        let n = pread(fd, base + done, buf.count - done, off_t(offset + done))
        if n < 0 {
            if errno == EINTR { continue }
            return .failed(errno)
        }
        if n == 0 { return .eof }
        done += n
    }
    return .ok
}

/// Writes every byte at `offset`, retrying short writes and EINTR. Returns false (errno set) on failure.
func pwriteAll(_ fd: Int32, _ bytes: UnsafeRawBufferPointer, at offset: Int) -> Bool {
    guard let base = bytes.baseAddress else { return true }
    var done = 0
    while done < bytes.count {
        let n = pwrite(fd, base + done, bytes.count - done, off_t(offset + done))
        if n < 0 {
            if errno == EINTR { continue }
            return false
        }
        done += n
    }
    return true
}

/// Flushes a file's data (and the size, which fdatasync includes) to stable storage.
func syncData(_ fd: Int32) -> Bool {
    #if os(Linux)
    return fdatasync(fd) == 0
    #else
    return fsync(fd) == 0
    #endif
}

/// Makes a created or removed name in `dir` durable. Best effort: some filesystems refuse it.
func syncDirectory(_ dir: String) {
    let fd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC)
    if fd >= 0 {
        fsync(fd)
        close(fd)
    }
}

func errnoText(_ code: Int32) -> String { String(cString: strerror(code)) }

/// Walks the blocks of one segment file. Holds the read buffers, so one scanner serves one thread.
struct SegmentScanner {
    private var header = [UInt8](repeating: 0, count: BlockHeader.size)
    private var chunk = [UInt8](repeating: 0, count: 64 * 1024)
    private var payload: [UInt8] = []

    enum Probe: Equatable {
        /// A block with a valid header that lies wholly before `end` (its payload is not checked yet).
        case block(BlockHeader)
        /// No valid block starts here; the next one (or `end`) is at `next`.
        case garbage(next: Int)
        case failed(Int32)
    }

    /// What is at `pos`, looking no further than `end`.
    mutating func probe(fd: Int32, at pos: Int, end: Int) -> Probe {
        if end - pos >= BlockHeader.size {
            switch header.withUnsafeMutableBytes({ preadFully(fd, $0, at: pos) }) {
            case .ok:
                if let h = header.withUnsafeBytes({ BlockHeader.parse($0) }), h.blockLength <= end - pos { return .block(h) }
            case .eof: return .garbage(next: end)
            case .failed(let e): return .failed(e)
            }
        }
        switch findHeader(fd: fd, from: pos + 1, end: end) {
        case .success(let next): return .garbage(next: next ?? end)
        case .failure(let e): return .failed(e.code)
        }
    }

    struct ScanFailure: Error { var code: Int32 }

    /// The offset of the next valid header in `[from, end)` whose block also ends by `end`, or nil.
    /// Only runs on damaged data, so a plain byte loop is fine.
    mutating func findHeader(fd: Int32, from: Int, end: Int) -> Result<Int?, ScanFailure> {
        let hs = BlockHeader.size
        var at = from
        while end - at >= hs {
            let n = min(chunk.count, end - at)
            switch chunk.withUnsafeMutableBytes({ preadFully(fd, UnsafeMutableRawBufferPointer(rebasing: $0[0..<n]), at: at) }) {
            case .ok: break
            case .eof: return .success(nil)
            case .failed(let e): return .failure(ScanFailure(code: e))
            }
            let base = at
            let hit: Int? = chunk.withUnsafeBytes { b in
                var i = 0
                while i + hs <= n {
                    if b[i] == BlockHeader.magicFirstByte,
                       let h = BlockHeader.parse(UnsafeRawBufferPointer(rebasing: b[i..<(i + hs)])),
                       h.blockLength <= end - (base + i) {
                        return i
                    }
                    i += 1
                }
                return nil
            }
            if let hit { return .success(at + hit) }
            if n == end - at { break }
            at += n - hs + 1  // overlap so a header straddling two chunks is seen
        }
        return .success(nil)
    }

    struct Walk {
        /// Records in blocks with a valid header (damaged payloads included: the reader will skip and count
        /// them, and a commit past them subtracts them).
        var records = 0
        /// With `verify`: the end of the last block whose payload checksum matches; everything after it is a
        /// torn tail. Without: where the walk stopped.
        var goodEnd: Int
        var recordsAtGoodEnd = 0
        var error: Int32 = 0
    }

    /// Walks `[from, end)`; with `verify`, also reads each payload and checks its CRC.
    mutating func walk(fd: Int32, from: Int, end: Int, verify: Bool) -> Walk {
        var w = Walk(goodEnd: from)
        var pos = from
        while pos < end {
            switch probe(fd: fd, at: pos, end: end) {
            case .failed(let e):
                w.error = e
                return w
            case .garbage(let next):
                pos = next
            case .block(let h):
                w.records += h.recordCount
                if verify {
                    if payload.count < h.storedLength { payload = [UInt8](repeating: 0, count: h.storedLength) }
                    let n = h.storedLength
                    let outcome = payload.withUnsafeMutableBytes {
                        preadFully(fd, UnsafeMutableRawBufferPointer(rebasing: $0[0..<n]), at: pos + BlockHeader.size)
                    }
                    if case .failed(let e) = outcome {
                        w.error = e
                        return w
                    }
                    let good = outcome == .ok && payload.withUnsafeBytes {
                        CRC32C.checksum(UnsafeRawBufferPointer(rebasing: $0[0..<n])) == h.payloadCRC
                    }
                    pos += h.blockLength
                    if good {
                        w.goodEnd = pos
                        w.recordsAtGoodEnd = w.records
                    }
                } else {
                    pos += h.blockLength
                }
            }
        }
        if !verify {
            w.goodEnd = pos
            w.recordsAtGoodEnd = w.records
        }
        return w
    }
}

/// Up to `max` bytes from the start of a small file, or nil (errno set) on a read error.
func readPrefix(_ fd: Int32, max: Int) -> [UInt8]? {
    var buf = [UInt8](repeating: 0, count: max)
    var done = 0
    while done < max {
        let n = buf.withUnsafeMutableBytes { pread(fd, $0.baseAddress.map { $0 + done }, max - done, off_t(done)) }
        if n < 0 {
            if errno == EINTR { continue }
            return nil
        }
        if n == 0 { break }
        done += n
    }
    return Array(buf[0..<done])
}
