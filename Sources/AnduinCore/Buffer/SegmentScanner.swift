/// Finds the blocks of one segment file, also after damage: a valid header (magic, version and header
/// CRC: the sync marker) is searched for byte by byte after anything that is not one. Holds its read
/// buffers, so one scanner serves one thread.
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
    mutating func probe(_ io: any RingStorage, _ file: RingFile, at pos: Int, end: Int) -> Probe {
        if end - pos >= BlockHeader.size {
            switch header.withUnsafeMutableBytes({ io.read(file, into: $0, at: pos) }) {
            case .ok:
                if let h = header.withUnsafeBytes({ BlockHeader.parse($0) }), h.blockLength <= end - pos { return .block(h) }
            case .eof: return .garbage(next: end)
            case .failed(let e): return .failed(e)
            }
        }
        switch findHeader(io, file, from: pos + 1, end: end) {
        case .success(let next): return .garbage(next: next ?? end)
        case .failure(let e): return .failed(e.code)
        }
    }

    struct ScanFailure: Error { var code: Int32 }

    /// The offset of the next valid header in `[from, end)` whose block also ends by `end`, or nil.
    /// Only runs on damaged data, so a plain byte loop is fine.
    mutating func findHeader(_ io: any RingStorage, _ file: RingFile, from: Int, end: Int) -> Result<Int?, ScanFailure> {
        let hs = BlockHeader.size
        var at = from
        while end - at >= hs {
            let n = min(chunk.count, end - at)
            switch chunk.withUnsafeMutableBytes({ io.read(file, into: UnsafeMutableRawBufferPointer(rebasing: $0[0..<n]), at: at) }) {
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

    /// What recovery needs to know about one segment.
    struct Walk {
        /// Sequence number of the first valid block's first record, and the end of the last valid block
        /// (0 when the segment has no valid block).
        var firstSeq: UInt64 = 0
        var endSeq: UInt64 = 0
        /// With `verify`: the end of the last block whose payload checksum matches; everything after it is a
        /// torn tail. Without: where the walk stopped.
        var goodEnd: Int
        var endSeqAtGoodEnd: UInt64 = 0
        /// With `verify`: records in the torn tail's blocks whose header is intact (their count is known),
        /// in two kinds. Cut: the last block, which the file ends inside of: a write that did not finish.
        var cutRecords = 0
        /// Damaged: whole blocks whose payload fails its checksum.
        var damagedRecords = 0
        var error: Int32 = 0
    }

    /// Walks `[from, end)`; with `verify`, also reads each payload and checks its CRC.
    mutating func walk(_ io: any RingStorage, _ file: RingFile, from: Int, end: Int, verify: Bool) -> Walk {
        var w = Walk(goodEnd: from)
        var pos = from
        while pos < end {
            switch probe(io, file, at: pos, end: end) {
            case .failed(let e):
                w.error = e
                return w
            case .garbage(let next):
                // A block cut short at the end keeps its header: its records are known to be lost.
                if verify && next == end, let h = intactHeader(io, file, at: pos), h.blockLength > end - pos {
                    w.cutRecords += h.recordCount
                }
                pos = next
            case .block(let h):
                if w.firstSeq == 0 { w.firstSeq = h.firstSeq }
                w.endSeq = max(w.endSeq, h.endSeq)
                pos += h.blockLength
                guard verify else { continue }
                let n = h.storedLength
                if payload.count < n { payload = [UInt8](repeating: 0, count: n) }
                let outcome = payload.withUnsafeMutableBytes {
                    io.read(file, into: UnsafeMutableRawBufferPointer(rebasing: $0[0..<n]), at: pos - n)
                }
                if case .failed(let e) = outcome {
                    w.error = e
                    return w
                }
                let good = outcome == .ok && payload.withUnsafeBytes {
                    CRC32C.checksum(UnsafeRawBufferPointer(rebasing: $0[0..<n])) == h.payloadCRC
                }
                if good {
                    w.goodEnd = pos
                    w.endSeqAtGoodEnd = h.endSeq
                    w.cutRecords = 0
                    w.damagedRecords = 0
                } else {
                    w.damagedRecords += h.recordCount
                }
            }
        }
        if !verify {
            w.goodEnd = pos
            w.endSeqAtGoodEnd = w.endSeq
        }
        return w
    }

    private mutating func intactHeader(_ io: any RingStorage, _ file: RingFile, at pos: Int) -> BlockHeader? {
        guard header.withUnsafeMutableBytes({ io.read(file, into: $0, at: pos) }) == .ok else { return nil }
        return header.withUnsafeBytes { BlockHeader.parse($0) }
    }

    /// Up to `max` bytes from the start of a small file, or the errno of a failed read.
    static func readPrefix(_ io: any RingStorage, _ file: RingFile, max: Int) -> Result<[UInt8], POSIXFailure> {
        let size: Int
        do { size = try io.size(file) } catch { return .failure(error) }
        var buf = [UInt8](repeating: 0, count: min(size, max))
        switch buf.withUnsafeMutableBytes({ io.read(file, into: $0, at: 0) }) {
        case .ok, .eof: return .success(buf)
        case .failed(let e): return .failure(POSIXFailure("read", code: e))
        }
    }
}
