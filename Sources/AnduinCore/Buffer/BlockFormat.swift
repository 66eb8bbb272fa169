import CLZ4

// The byte layouts of the disk ring (see the format description at the top of DiskRing.swift).
// Blocks are encoded before the writer lock and numbered (`BlockHeader.setFirstSeq`) under it.
// All integers are little-endian.

/// The header in front of every block's payload (format 2, 36 bytes; format 1 had 28 and no sequence
/// number, see `LegacySegment`).
///
/// Invariant (checked by `parse`): a header is only trusted when its own CRC matches, so a length read
/// from it can be used to skip a block whose payload is damaged. The magic, the version byte and the
/// header CRC together are the block's sync marker: after damage the reader finds the next block by
/// scanning for them.
struct BlockHeader: Equatable {
    static let size = 36
    static let legacySize = 28
    /// Bytes AD 55 49 4E on disk.
    static let magic: UInt32 = 0x4E49_55AD
    static let magicFirstByte: UInt8 = 0xAD
    static let version: UInt8 = 2
    static let legacyVersion: UInt8 = 1
    static let flagLZ4: UInt8 = 1
    /// Largest payload written or accepted: LZ4 sizes are Int32, and a damaged length must not make the
    /// reader allocate gigabytes.
    static let maxPayload = 1 << 30

    var compressed: Bool
    var recordCount: Int
    /// Length of the framed records before compression.
    var plainLength: Int
    /// Length of the payload as stored (compressed or not).
    var storedLength: Int
    /// CRC32C of the stored payload: checked before decompressing, so LZ4 never sees damaged input.
    var payloadCRC: UInt32
    /// Sequence number of the block's first record. Records are numbered 1, 2, 3… in append order across
    /// all segments, so the gap between two valid blocks is exactly the number of records lost between
    /// them, even when a header is destroyed. 0 only in format 1 blocks.
    var firstSeq: UInt64 = 1
    /// Header size on disk (28 for format 1).
    var headerSize: Int = BlockHeader.size

    var blockLength: Int { headerSize + storedLength }
    var endSeq: UInt64 { firstSeq.addingSaturating(UInt64(recordCount)) }

    func write(to out: UnsafeMutableRawBufferPointer) {
        out.storeBytes(of: Self.magic.littleEndian, toByteOffset: 0, as: UInt32.self)
        out[4] = Self.version
        out[5] = compressed ? Self.flagLZ4 : 0
        out.storeBytes(of: UInt16(0), toByteOffset: 6, as: UInt16.self)
        out.storeBytes(of: UInt32(recordCount).littleEndian, toByteOffset: 8, as: UInt32.self)
        out.storeBytes(of: UInt32(plainLength).littleEndian, toByteOffset: 12, as: UInt32.self)
        out.storeBytes(of: UInt32(storedLength).littleEndian, toByteOffset: 16, as: UInt32.self)
        out.storeBytes(of: payloadCRC.littleEndian, toByteOffset: 20, as: UInt32.self)
        Self.setFirstSeq(firstSeq, in: out)
    }

    /// Stamps the sequence number into an encoded block and reseals its header: blocks are encoded
    /// (compressed) before the writer lock, and numbered under it.
    static func setFirstSeq(_ seq: UInt64, in out: UnsafeMutableRawBufferPointer) {
        out.storeBytes(of: seq.littleEndian, toByteOffset: 24, as: UInt64.self)
        let crc = CRC32C.checksum(UnsafeRawBufferPointer(rebasing: out[0..<32]))
        out.storeBytes(of: crc.littleEndian, toByteOffset: 32, as: UInt32.self)
    }

    /// The header at the start of `b` (format 2, or format 1 when `legacy`), or nil if it is not a
    /// valid one.
    static func parse(_ b: UnsafeRawBufferPointer, legacy: Bool = false) -> BlockHeader? {
        let hs = legacy ? legacySize : size
        guard b.count >= hs, b.loadUnaligned(fromByteOffset: 0, as: UInt32.self).littleEndian == magic,
              b[4] == (legacy ? legacyVersion : version),
              CRC32C.checksum(UnsafeRawBufferPointer(rebasing: b[0..<(hs - 4)]))
                == b.loadUnaligned(fromByteOffset: hs - 4, as: UInt32.self).littleEndian,
              b[5] & ~flagLZ4 == 0, b.loadUnaligned(fromByteOffset: 6, as: UInt16.self) == 0
        else { return nil }
        let h = BlockHeader(
            compressed: b[5] & flagLZ4 != 0,
            recordCount: Int(b.loadUnaligned(fromByteOffset: 8, as: UInt32.self).littleEndian),
            plainLength: Int(b.loadUnaligned(fromByteOffset: 12, as: UInt32.self).littleEndian),
            storedLength: Int(b.loadUnaligned(fromByteOffset: 16, as: UInt32.self).littleEndian),
            payloadCRC: b.loadUnaligned(fromByteOffset: 20, as: UInt32.self).littleEndian,
            firstSeq: legacy ? 0 : b.loadUnaligned(fromByteOffset: 24, as: UInt64.self).littleEndian,
            headerSize: hs)
        guard h.recordCount >= 1, h.plainLength >= h.recordCount * BlockCodec.recordOverhead,
              h.plainLength <= maxPayload, h.storedLength >= 1, h.storedLength <= maxPayload,
              h.compressed || h.storedLength == h.plainLength, legacy || h.firstSeq >= 1
        else { return nil }
        return h
    }
}

/// Frames records into block payloads and back.
///
/// A record is `[u32 length][u32 crc32c][u64 timestamp][u64 sourceID][i64 offset][document]`; `length`
/// counts the bytes after the CRC (24 + document), the CRC covers those same bytes.
enum BlockCodec {
    static let recordOverhead = 32

    enum Decoded: Equatable {
        case intact
        /// The block is damaged; the first `decoded` records were good and were appended.
        case corrupt(decoded: Int, reason: String)
    }

    static func plainLength(_ batch: EncodedBatch, _ range: Range<Int>) -> Int {
        range.reduce(0) { $0 + recordOverhead + batch.records[$1].document.count }
    }

    /// Splits a batch into runs of records whose framed size fits `maxPayload`, so that every block fits
    /// a segment. A single record larger than that gets a run of its own.
    static func runs(_ batch: EncodedBatch, maxPayload: Int) -> [Range<Int>] {
        var out: [Range<Int>] = []
        var start = 0
        var size = 0
        for i in batch.records.indices {
            let n = recordOverhead + batch.records[i].document.count
            if i > start && size + n > maxPayload {
                out.append(start..<i)
                start = i
                size = 0
            }
            size += n
        }
        if start < batch.count { out.append(start..<batch.count) }
        return out
    }

    /// The whole block (header + payload) for `batch.records[range]`. Compressed with LZ4 when asked and
    /// when that saves at least 1/16 of the payload (less is not worth decompressing); otherwise stored
    /// as is.
    static func encode(_ batch: EncodedBatch, _ range: Range<Int>, compress: Bool) -> [UInt8] {
        let plainLength = plainLength(batch, range)
        let hs = BlockHeader.size
        if compress {
            let plain = [UInt8](unsafeUninitializedCapacity: plainLength) { buf, n in
                frame(batch, range, into: UnsafeMutableRawBufferPointer(buf))
                n = plainLength
            }
            let bound = Int(LZ4_compressBound(Int32(plainLength)))
            var stored = 0
            let block = [UInt8](unsafeUninitializedCapacity: hs + bound) { buf, n in
                let out = UnsafeMutableRawBufferPointer(buf)
                stored = plain.withUnsafeBytes { lz4Compress($0, into: UnsafeMutableRawBufferPointer(rebasing: out[hs...])) }
                if stored > 0 && stored <= plainLength - plainLength / 16 {
                    let crc = CRC32C.checksum(UnsafeRawBufferPointer(rebasing: out[hs..<hs + stored]))
                    BlockHeader(compressed: true, recordCount: range.count, plainLength: plainLength,
                                storedLength: stored, payloadCRC: crc).write(to: out)
                    n = hs + stored
                } else {
                    n = 0
                }
            }
            if !block.isEmpty { return block }
            // Incompressible: store the framed bytes we already have.
            return [UInt8](unsafeUninitializedCapacity: hs + plainLength) { buf, n in
                let out = UnsafeMutableRawBufferPointer(buf)
                plain.withUnsafeBytes { UnsafeMutableRawBufferPointer(rebasing: out[hs...]).copyMemory(from: $0) }
                BlockHeader(compressed: false, recordCount: range.count, plainLength: plainLength,
                            storedLength: plainLength, payloadCRC: CRC32C.checksum(plain)).write(to: out)
                n = hs + plainLength
            }
        }
        return [UInt8](unsafeUninitializedCapacity: hs + plainLength) { buf, n in
            let out = UnsafeMutableRawBufferPointer(buf)
            let payload = UnsafeMutableRawBufferPointer(rebasing: out[hs...])
            frame(batch, range, into: payload)
            BlockHeader(compressed: false, recordCount: range.count, plainLength: plainLength, storedLength: plainLength,
                        payloadCRC: CRC32C.checksum(UnsafeRawBufferPointer(payload))).write(to: out)
            n = hs + plainLength
        }
    }

    /// Writes the framed records; `out.count` must be `plainLength(batch, range)`.
    static func frame(_ batch: EncodedBatch, _ range: Range<Int>, into out: UnsafeMutableRawBufferPointer) {
        batch.documents.withUnsafeBytes { docs in
            var p = 0
            for i in range {
                let r = batch.records[i]
                let len = 24 + r.document.count
                out.storeBytes(of: UInt32(len).littleEndian, toByteOffset: p, as: UInt32.self)
                out.storeBytes(of: UInt64(bitPattern: r.timestamp).littleEndian, toByteOffset: p + 8, as: UInt64.self)
                out.storeBytes(of: r.sourceID.littleEndian, toByteOffset: p + 16, as: UInt64.self)
                out.storeBytes(of: UInt64(bitPattern: r.offset).littleEndian, toByteOffset: p + 24, as: UInt64.self)
                if !r.document.isEmpty {
                    UnsafeMutableRawBufferPointer(rebasing: out[(p + 32)..<(p + 8 + len)])
                        .copyMemory(from: UnsafeRawBufferPointer(rebasing: docs[r.document]))
                }
                let crc = CRC32C.checksum(UnsafeRawBufferPointer(rebasing: out[(p + 8)..<(p + 8 + len)]))
                out.storeBytes(of: crc.littleEndian, toByteOffset: p + 4, as: UInt32.self)
                p += 8 + len
            }
        }
    }

    /// Checks the payload CRC, decompresses into `scratch` if needed, and appends the records to `out`.
    static func decode(_ h: BlockHeader, stored: UnsafeRawBufferPointer, scratch: inout [UInt8],
                       into out: inout EncodedBatch) -> Decoded {
        guard stored.count == h.storedLength else { return .corrupt(decoded: 0, reason: "payload is short") }
        guard CRC32C.checksum(stored) == h.payloadCRC else {
            return .corrupt(decoded: 0, reason: "payload checksum mismatch")
        }
        if !h.compressed { return unframe(stored, count: h.recordCount, into: &out) }
        if scratch.count < h.plainLength { scratch = [UInt8](repeating: 0, count: h.plainLength) }
        let n = scratch.withUnsafeMutableBytes { lz4Decompress(stored, into: UnsafeMutableRawBufferPointer(rebasing: $0[0..<h.plainLength])) }
        guard n == h.plainLength else { return .corrupt(decoded: 0, reason: "LZ4 payload does not decompress") }
        return scratch.withUnsafeBytes { unframe(UnsafeRawBufferPointer(rebasing: $0[0..<n]), count: h.recordCount, into: &out) }
    }

    /// Appends the block's records to `out`. The whole plain payload is copied into `out.documents`
    /// at once and the records point into it (between their frame headers): one memcpy per block
    /// instead of an append per record.
    static func unframe(_ plain: UnsafeRawBufferPointer, count: Int, into out: inout EncodedBatch) -> Decoded {
        let base = out.documents.count
        out.documents.append(contentsOf: plain)
        out.records.reserveCapacity(out.records.count + count)
        var p = 0
        for n in 0..<count {
            guard plain.count - p >= 8 else { return .corrupt(decoded: n, reason: "record \(n) is cut off") }
            let len = Int(plain.loadUnaligned(fromByteOffset: p, as: UInt32.self).littleEndian)
            guard len >= 24, plain.count - p - 8 >= len else { return .corrupt(decoded: n, reason: "record \(n) has a bad length") }
            let body = UnsafeRawBufferPointer(rebasing: plain[(p + 8)..<(p + 8 + len)])
            guard CRC32C.checksum(body) == plain.loadUnaligned(fromByteOffset: p + 4, as: UInt32.self).littleEndian else {
                return .corrupt(decoded: n, reason: "record \(n) checksum mismatch")
            }
            out.records.append(EncodedRecord(
                document: (base + p + 32)..<(base + p + 8 + len),
                timestamp: Int64(bitPattern: body.loadUnaligned(fromByteOffset: 0, as: UInt64.self).littleEndian),
                sourceID: body.loadUnaligned(fromByteOffset: 8, as: UInt64.self).littleEndian,
                offset: Int64(bitPattern: body.loadUnaligned(fromByteOffset: 16, as: UInt64.self).littleEndian)))
            p += 8 + len
        }
        return p == plain.count ? .intact : .corrupt(decoded: count, reason: "trailing bytes after the last record")
    }

    /// LZ4's speed/ratio knob: faster than the default at a small cost in ratio; much higher is
    /// slower again overall (more bytes to write and read back).
    static let lz4Acceleration: Int32 = 4

    /// Compressed size, or 0 if LZ4 failed (the caller then stores the payload uncompressed).
    static func lz4Compress(_ src: UnsafeRawBufferPointer, into dst: UnsafeMutableRawBufferPointer) -> Int {
        guard let s = src.baseAddress, let d = dst.baseAddress else { return 0 }
        return Int(LZ4_compress_fast(s.assumingMemoryBound(to: CChar.self), d.assumingMemoryBound(to: CChar.self),
                                        Int32(src.count), Int32(dst.count), lz4Acceleration))
    }

    /// Decompressed size, or a negative number for damaged input.
    static func lz4Decompress(_ src: UnsafeRawBufferPointer, into dst: UnsafeMutableRawBufferPointer) -> Int {
        guard let s = src.baseAddress, let d = dst.baseAddress else { return -1 }
        return Int(LZ4_decompress_safe(s.assumingMemoryBound(to: CChar.self), d.assumingMemoryBound(to: CChar.self),
                                       Int32(src.count), Int32(dst.count)))
    }
}

/// The `cursor` file: the delivered position, rewritten in place at every commit (a positional write of
/// one slot, no new file). Two 64-byte slots, written alternately, each
/// `[u32 magic][u32 version 2][u64 generation][u64 segment][i64 offset][u64 seq][u32 records into the block]`
/// `[u32 crc32c of bytes 0..<44]`;
/// the valid slot with the higher generation wins, so a write torn by a power failure falls back to the
/// previous position (a replay, never a loss). Format 1 was one 28-byte record without generation or seq.
struct CursorRecord: Equatable {
    var position: RingPosition
    /// Sequence number of the first record after `position`; 0 when unknown (format 1).
    var seq: UInt64
    var generation: UInt64
}

enum CursorFile {
    static let slotSize = 64
    static let fileSize = 2 * slotSize
    static let legacySize = 28
    /// Bytes AD 55 43 52 on disk.
    static let magic: UInt32 = 0x5243_55AD

    static func encodeSlot(_ c: CursorRecord) -> [UInt8] {
        [UInt8](unsafeUninitializedCapacity: slotSize) { buf, n in
            let out = UnsafeMutableRawBufferPointer(buf)
            out.initializeMemory(as: UInt8.self, repeating: 0)
            out.storeBytes(of: magic.littleEndian, toByteOffset: 0, as: UInt32.self)
            out.storeBytes(of: UInt32(2).littleEndian, toByteOffset: 4, as: UInt32.self)
            out.storeBytes(of: c.generation.littleEndian, toByteOffset: 8, as: UInt64.self)
            out.storeBytes(of: c.position.segment.littleEndian, toByteOffset: 16, as: UInt64.self)
            out.storeBytes(of: c.position.offset.littleEndian, toByteOffset: 24, as: Int64.self)
            out.storeBytes(of: c.seq.littleEndian, toByteOffset: 32, as: UInt64.self)
            out.storeBytes(of: UInt32(clamping: c.position.record).littleEndian, toByteOffset: 40, as: UInt32.self)
            let crc = CRC32C.checksum(UnsafeRawBufferPointer(rebasing: out[0..<44]))
            out.storeBytes(of: crc.littleEndian, toByteOffset: 44, as: UInt32.self)
            n = slotSize
        }
    }

    /// Where slot `generation % 2` lives.
    static func slotOffset(_ generation: UInt64) -> Int { Int(generation % 2) * slotSize }

    /// The newest valid position in a cursor file's bytes (format 2 or 1), or why there is none.
    static func decode(_ bytes: [UInt8]) -> Result<CursorRecord, CursorDecodeError> {
        if bytes.count == legacySize { return decodeLegacy(bytes) }
        guard bytes.count >= slotSize else { return .failure(.init(reason: "has \(bytes.count) bytes instead of \(fileSize)")) }
        var best: CursorRecord?
        for slot in 0..<min(2, bytes.count / slotSize) {
            let c: CursorRecord? = bytes.withUnsafeBytes { all in
                let b = UnsafeRawBufferPointer(rebasing: all[(slot * slotSize)..<((slot + 1) * slotSize)])
                guard b.loadUnaligned(fromByteOffset: 0, as: UInt32.self).littleEndian == magic,
                      b.loadUnaligned(fromByteOffset: 4, as: UInt32.self).littleEndian == 2,
                      CRC32C.checksum(UnsafeRawBufferPointer(rebasing: b[0..<44]))
                        == b.loadUnaligned(fromByteOffset: 44, as: UInt32.self).littleEndian
                else { return nil }
                let offset = b.loadUnaligned(fromByteOffset: 24, as: Int64.self).littleEndian
                guard offset >= 0 else { return nil }
                return CursorRecord(
                    position: RingPosition(segment: b.loadUnaligned(fromByteOffset: 16, as: UInt64.self).littleEndian, offset: offset,
                                           record: Int(b.loadUnaligned(fromByteOffset: 40, as: UInt32.self).littleEndian)),
                    seq: b.loadUnaligned(fromByteOffset: 32, as: UInt64.self).littleEndian,
                    generation: b.loadUnaligned(fromByteOffset: 8, as: UInt64.self).littleEndian)
            }
            if let c, c.generation >= (best?.generation ?? 0) { best = c }
        }
        guard let best else { return .failure(.init(reason: "has no slot with a valid magic number, version and checksum")) }
        return .success(best)
    }

    private static func decodeLegacy(_ bytes: [UInt8]) -> Result<CursorRecord, CursorDecodeError> {
        bytes.withUnsafeBytes { b in
            guard b.loadUnaligned(fromByteOffset: 0, as: UInt32.self).littleEndian == magic,
                  b.loadUnaligned(fromByteOffset: 4, as: UInt32.self).littleEndian == 1
            else { return .failure(.init(reason: "has an unknown magic number or version")) }
            guard CRC32C.checksum(UnsafeRawBufferPointer(rebasing: b[0..<24]))
                    == b.loadUnaligned(fromByteOffset: 24, as: UInt32.self).littleEndian
            else { return .failure(.init(reason: "fails its checksum")) }
            let offset = b.loadUnaligned(fromByteOffset: 16, as: Int64.self).littleEndian
            guard offset >= 0 else { return .failure(.init(reason: "has a negative offset")) }
            return .success(CursorRecord(
                position: RingPosition(segment: b.loadUnaligned(fromByteOffset: 8, as: UInt64.self).littleEndian, offset: offset),
                seq: 0, generation: 0))
        }
    }

    struct CursorDecodeError: Error { var reason: String }
}

enum SegmentName {
    /// `segment-<20-digit id>.ring`: fixed width, so names sort like ids.
    static func make(_ id: UInt64) -> String {
        let digits = String(id)
        return "segment-" + String(repeating: "0", count: max(0, 20 - digits.count)) + digits + ".ring"
    }

    static func parse(_ name: String) -> UInt64? {
        let u = Array(name.utf8)
        guard u.count == 33, name.hasPrefix("segment-"), name.hasSuffix(".ring"),
              u[8..<28].allSatisfy({ $0 >= 0x30 && $0 <= 0x39 })
        else { return nil }
        return UInt64(String(decoding: u[8..<28], as: UTF8.self))
    }
}
