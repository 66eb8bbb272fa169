#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// The libFuzzer entry for the disk ring's recovery and reader (Tests/Fuzz/Sources/FuzzRing): the
/// fuzzer's bytes become a ring directory, then the ring is opened, read to its end, appended to,
/// reopened and read again. Nothing may trap, and every read must stay within its limits.
///
/// Random bytes rarely pass a checksum, so the input is a small program that writes segments: runs
/// of raw bytes, and blocks whose header fields (counts, lengths, sequence numbers, flags) come from
/// the input with their checksums made valid, so the reader's trust in a checksummed header is what
/// gets tested. A cursor with input-chosen fields and a valid checksum may be written too.
public enum FuzzRing {
    public static func run(_ input: UnsafeRawBufferPointer, directory: String) {
        var r = Reader(bytes: input)
        let segmentBytes = DiskRingOptions.minimumSegmentBytes << Int(r.byte() % 8)
        let options = DiskRingOptions(maxBytes: segmentBytes * (2 + Int(r.byte() % 16)), segmentBytes: segmentBytes,
                                      whenFull: r.byte() & 1 == 0 ? .block : .drop_oldest, fsync: .never,
                                      compress: r.byte() & 1 == 0)
        let io = PosixRingStorage(directory: directory)
        do { try io.prepareDirectory() } catch { return }
        defer { clear(io) }
        clear(io)

        let segments = 1 + Int(r.byte() % 4)
        let firstID = UInt64(r.byte() % 3) == 0 ? UInt64.max - UInt64(r.byte() % 4) : 1 + UInt64(r.byte() % 8)
        for k in 0..<segments {
            var bytes: [UInt8] = []
            let chunks = Int(r.byte() % 6)
            for _ in 0..<chunks { appendChunk(&r, into: &bytes) }
            write(io, SegmentName.make(firstID &+ UInt64(k)), bytes)
        }
        if r.byte() & 1 == 0 {
            let position = RingPosition(segment: firstID &+ UInt64(r.byte() % 5), offset: Int64(r.u32() % 70_000),
                                        record: Int(r.byte() % 8))
            let slot = CursorFile.encodeSlot(CursorRecord(position: position, seq: r.u64(), generation: UInt64(r.byte())))
            write(io, RingCursor.fileName, slot + slot)
        }

        for round in 0..<2 {
            let stats = ComponentStats(component: "fuzz", kind: .output)
            guard let ring = try? DiskRing(storage: io, options: options, stats: stats, log: { _ in }) else { return }
            drain(ring, maxRecords: 1 + Int(r.byte() % 50))
            // A ring numbered at the very top cannot start another segment; an append would wait.
            if round == 0 && firstID < UInt64.max - 16 {
                var batch = EncodedBatch()
                for i in 0..<Int(r.byte() % 6) {
                    let doc = [UInt8](repeating: 0x61, count: Int(r.byte()) * (i + 1))
                    doc.withUnsafeBytes { batch.append(document: $0, timestamp: Int64(bitPattern: r.u64()), sourceID: 1, offset: Int64(i)) }
                }
                // No reader runs beside this append: with when_full: block, a ring the drain left
                // full waits for one. Shut down after 100 ms so such an input ends.
                let stop = StopSignal()
                let watchdog = startThread(name: "fuzz-watchdog") { [ring] in
                    if !stop.sleep(seconds: 0.1) { ring.shutdown() }
                }
                _ = ring.append(batch)
                stop.set()
                _ = watchdog.join()
                drain(ring, maxRecords: 7)
            }
            precondition(ring.bufferedRecords >= 0)
            ring.shutdown()
        }
    }

    private static func drain(_ ring: DiskRing, maxRecords: Int) {
        var reads = 0
        while reads < 10_000, let got = ring.read(maxRecords: maxRecords, maxBytes: 1 << 20, timeout: 0) {
            precondition(got.batch.count <= maxRecords || got.batch.count == 1, "read past maxRecords")
            for rec in got.batch.records {
                precondition(rec.document.lowerBound >= 0 && rec.document.upperBound <= got.batch.documents.count, "document outside the batch")
            }
            ring.commit(got.end)
            reads += 1
        }
    }

    /// One run of a segment: raw bytes, or a block with input-chosen fields and valid checksums
    /// (payload checksum right or wrong), or a well-formed block of input documents.
    private static func appendChunk(_ r: inout Reader, into out: inout [UInt8]) {
        switch r.byte() % 4 {
        case 0:
            out += r.take(Int(r.byte()))
        case 1, 2:
            let payload = r.take(Int(r.u16() % 2048))
            var header = [UInt8](repeating: 0, count: BlockHeader.size)
            let compressed = r.byte() & 1 == 0
            let count = Int(r.u16() % 300)
            let plain = r.byte() & 1 == 0 ? payload.count : Int(r.u32() % 4096)
            let good = r.byte() % 4 != 0
            header.withUnsafeMutableBytes { h in
                BlockHeader(compressed: compressed, recordCount: count, plainLength: plain, storedLength: payload.count,
                            payloadCRC: good ? CRC32C.checksum(payload) : r.u32(), firstSeq: 0).write(to: h)
                BlockHeader.setFirstSeq(r.byte() % 4 == 0 ? r.u64() : UInt64(r.u16()), in: h)
            }
            out += header + payload
        default:
            var batch = EncodedBatch()
            for _ in 0..<(1 + Int(r.byte() % 8)) {
                let doc = r.take(Int(r.byte()))
                doc.withUnsafeBytes { batch.append(document: $0, timestamp: Int64(bitPattern: r.u64()), sourceID: r.u64(), offset: Int64(bitPattern: r.u64())) }
            }
            var block = BlockCodec.encode(batch, 0..<batch.count, compress: r.byte() & 1 == 0)
            block.withUnsafeMutableBytes { BlockHeader.setFirstSeq(r.byte() % 4 == 0 ? r.u64() : 1 + UInt64(r.u16()), in: $0) }
            out += block
        }
    }

    private static func write(_ io: PosixRingStorage, _ name: String, _ bytes: [UInt8]) {
        guard let f = try? io.open(name, create: true) else { return }
        try? io.write(f, bytes: bytes, at: 0)
        io.close(f)
    }

    private static func clear(_ io: PosixRingStorage) {
        for name in (try? io.list()) ?? [] where name != "." && name != ".." { try? io.remove(name) }
    }

    /// Reads the fuzzer's bytes front to back; zeros once they run out.
    private struct Reader {
        let bytes: UnsafeRawBufferPointer
        var at = 0
        mutating func byte() -> UInt8 {
            guard at < bytes.count else { return 0 }
            defer { at += 1 }
            return bytes[at]
        }
        mutating func u16() -> UInt16 { UInt16(byte()) | UInt16(byte()) << 8 }
        mutating func u32() -> UInt32 { UInt32(u16()) | UInt32(u16()) << 16 }
        mutating func u64() -> UInt64 { UInt64(u32()) | UInt64(u32()) << 32 }
        mutating func take(_ n: Int) -> [UInt8] {
            let k = max(0, min(n, bytes.count - at))
            defer { at += k }
            return Array(bytes[at..<(at + k)])
        }
    }
}
