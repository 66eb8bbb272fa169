/// Converts segments of format 1 (28-byte block headers without record numbers, written by earlier
/// versions) to format 2 at start-up, so that an upgrade delivers what the old agent buffered.
///
/// Each undelivered format 1 segment is read whole, its intact records are written as format 2 blocks
/// (numbered from 1, or after the format 2 segments before it, in segment order) to a temporary file
/// that then replaces it. A cursor inside a
/// converted segment moves to its start, with the number of its first undelivered record, and is
/// written before the segments are replaced: a crash in between converts again from that cursor (a
/// replay, never a loss). Records in damaged format 1 blocks are counted when their header is intact;
/// bytes without a valid header are logged.
enum LegacySegment {
    static func convertAll(io: any RingStorage, found: [(id: UInt64, size: Int)], cursor: CursorRecord?,
                           options: DiskRingOptions, counters: RingCounters,
                           log: (String) -> Void) -> (found: [(id: UInt64, size: Int)], cursor: CursorRecord?) {
        // Only the first bytes of each segment are read unless one of them is format 1.
        let legacy = found.map { seg -> Bool in
            guard let f = try? io.open(SegmentName.make(seg.id), create: false) else { return false }
            defer { io.close(f) }
            var head = [UInt8](repeating: 0, count: 5)
            return head.withUnsafeMutableBytes { io.read(f, into: $0, at: 0) } == .ok && isLegacy(head)
        }
        guard legacy.contains(true) else { return (found, cursor) }
        var out = found
        var removed = Set<UInt64>()
        var cursor = cursor
        var seq: UInt64 = 1
        for (i, seg) in found.enumerated() {
            if let c = cursor, seg.id < c.position.segment { continue }  // delivered: recovery deletes it
            let name = SegmentName.make(seg.id)
            guard let file = try? io.open(name, create: false) else { continue }
            guard legacy[i] else {
                // Converted already (a crash stopped a conversion half way): later ones number on.
                var scanner = SegmentScanner()
                seq = max(seq, scanner.walk(io, file, from: 0, end: seg.size, verify: false).endSeq)
                io.close(file)
                continue
            }
            var bytes = [UInt8](repeating: 0, count: seg.size)
            let outcome = bytes.withUnsafeMutableBytes { io.read(file, into: $0, at: 0) }
            io.close(file)
            guard outcome == .ok else {
                log("cannot read format 1 segment \(io.path(name)) to convert it; its records are not delivered")
                continue
            }
            let from = cursor.map { $0.position.segment == seg.id ? Int($0.position.offset) : 0 } ?? 0
            let first = seq
            let (blocks, lost, garbage) = reencode(bytes, from: from, seq: &seq, compress: options.compress)
            let temp = name + ".convert"
            do {
                let t = try io.open(temp, create: true)
                defer { io.close(t) }
                var at = 0
                for b in blocks {
                    try io.write(t, bytes: b, at: at)
                    at += b.count
                }
                try io.sync(t)
                if cursor?.position.segment == seg.id {
                    let moved = CursorRecord(position: RingPosition(segment: seg.id, offset: 0), seq: first, generation: 1)
                    try writeCursor(io, moved)
                    cursor = moved
                }
                try io.rename(temp, to: name)
                io.syncDirectory()
                out[i].size = at
            } catch {
                // Never leave a format 1 file where the ring would take it for damaged format 2 (and cut
                // it): set it aside, counted, for an operator to look at.
                try? io.remove(temp)
                let kept = seq >= first ? Int(clamping: seq - first) : 0
                seq = first
                let aside = name + ".format1"
                let moved = (try? io.rename(name, to: aside)) != nil
                counters.corruptBlocks.add()
                counters.corruptRecords.add(kept + lost)
                log("cannot convert format 1 segment \(io.path(name)) (\(error)): its \(kept + lost) records are not delivered"
                    + (moved ? "; the file is kept as \(io.path(aside))" : ""))
                removed.insert(seg.id)
                continue
            }
            if lost > 0 {
                counters.corruptBlocks.add()
                counters.corruptRecords.add(lost)
            }
            log("converted \(io.path(name)) from format 1: \(seq - first) records kept, \(lost) in damaged blocks lost"
                + (garbage > 0 ? ", \(garbage) bytes without a valid block header skipped" : ""))
        }
        return (out.filter { !removed.contains($0.id) }, cursor)
    }

    static func isLegacy(_ bytes: [UInt8]) -> Bool {
        bytes.count >= 5 && bytes[0..<4].elementsEqual([0xAD, 0x55, 0x49, 0x4E]) && bytes[4] == BlockHeader.legacyVersion
    }

    /// Format 2 blocks for the intact records of format 1 `bytes` after `from`.
    private static func reencode(_ bytes: [UInt8], from: Int, seq: inout UInt64,
                                 compress: Bool) -> (blocks: [[UInt8]], lost: Int, garbage: Int) {
        var blocks: [[UInt8]] = []
        var lost = 0
        var garbage = 0
        var scratch: [UInt8] = []
        var pos = from
        while pos < bytes.count {
            let header: BlockHeader? = bytes.withUnsafeBytes { b in
                BlockHeader.parse(UnsafeRawBufferPointer(rebasing: b[pos..<min(b.count, pos + BlockHeader.legacySize)]), legacy: true)
            }
            guard let h = header, h.blockLength <= bytes.count - pos else {
                pos += 1
                garbage += 1
                continue
            }
            var batch = EncodedBatch()
            let result = bytes.withUnsafeBytes { b in
                BlockCodec.decode(h, stored: UnsafeRawBufferPointer(rebasing: b[(pos + h.headerSize)..<(pos + h.blockLength)]),
                                  scratch: &scratch, into: &batch)
            }
            if case .corrupt(let decoded, _) = result { lost += h.recordCount - decoded }
            if !batch.isEmpty {
                var block = BlockCodec.encode(batch, 0..<batch.count, compress: compress)
                block.withUnsafeMutableBytes { BlockHeader.setFirstSeq(seq, in: $0) }
                seq += UInt64(batch.count)
                blocks.append(block)
            }
            pos += h.blockLength
        }
        return (blocks, lost, garbage)
    }

    private static func writeCursor(_ io: any RingStorage, _ c: CursorRecord) throws(POSIXFailure) {
        let f = try io.open(RingCursor.fileName, create: true)
        defer { io.close(f) }
        for g in [c.generation - 1, c.generation] {
            var r = c
            r.generation = g
            let slot = CursorFile.encodeSlot(r)
            try io.write(f, bytes: slot, at: CursorFile.slotOffset(g))
        }
        try io.sync(f)
    }
}
