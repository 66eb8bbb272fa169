#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// What `DiskRing` finds in its directory at start-up: the cursor, the segments still holding undelivered
/// records, the sequence numbers of the records, and the active segment opened for writing.
/// Damaged content is logged, counted and worked around, never fatal.
struct RingRecovery {
    var segments: [RingLedgerState.Segment]
    var commitPos: RingPosition
    var commitSeq: UInt64
    var nextSeq: UInt64
    var cursor: CursorRecord?
    var active: RingFile

    static func run(io: any RingStorage, options: DiskRingOptions, counters: RingCounters,
                    log: (String) -> Void) throws -> RingRecovery {
        do { try io.prepareDirectory() } catch { throw DiskRingError(path: io.directory, message: "\(error)") }
        try? io.remove(RingCursor.fileName + ".tmp")  // left by format 1's replace-by-rename
        var cursor = readCursor(io, log: log)

        let names: [String]
        do { names = try io.list() } catch { throw DiskRingError(path: io.directory, message: "\(error)") }
        var found: [(id: UInt64, size: Int)] = []
        for id in names.compactMap(SegmentName.parse).sorted() {
            let name = SegmentName.make(id)
            guard let f = try? io.open(name, create: false) else {
                log("ignoring \(io.path(name)): cannot be opened")
                continue
            }
            let size = (try? io.size(f)) ?? 0
            io.close(f)
            found.append((id, size))
        }
        (found, cursor) = LegacySegment.convertAll(io: io, found: found, cursor: cursor, options: options, counters: counters, log: log)

        // Segments are deleted only after a cursor past them is durable (RingCursor, drop_oldest), so
        // the cursor's record number is right even when its segment is gone.
        let cursorSeq = cursor?.seq ?? 0

        // Segments wholly before the cursor were delivered: a crash between persisting the cursor and
        // deleting them leaves them behind.
        if let c = cursor?.position {
            var deleted: [String] = []
            while let first = found.first,
                  first.id < c.segment || (first.id == c.segment && c.offset >= Int64(first.size) && found.count > 1) {
                found.removeFirst()
                do {
                    try io.remove(SegmentName.make(first.id))
                    deleted.append(SegmentName.make(first.id))
                } catch {
                    log("cannot delete delivered segment: \(error)")
                }
            }
            if !deleted.isEmpty {
                log("deleted \(deleted.count) already delivered segment(s) left by the last run: \(deleted.joined(separator: ", "))")
            }
        }

        var commit = cursor?.position ?? RingPosition(segment: found.first?.id ?? 1, offset: 0)
        var scanner = SegmentScanner()
        var walked: [(id: UInt64, size: Int, first: UInt64, end: UInt64)] = []
        var active: RingFile?
        var needNewSegment = found.isEmpty
        for (index, seg) in found.enumerated() {
            let isLast = index == found.count - 1
            let name = SegmentName.make(seg.id)
            var size = seg.size
            if seg.id == commit.segment && commit.offset > Int64(size) {
                log("cursor \(commit) is past the end of \(io.path(name)) (\(size) bytes; blocks lost in a power failure?): resuming at its end")
                commit = RingPosition(segment: commit.segment, offset: Int64(size))
                // New blocks must not land below the stale cursor on disk, or a restart before the next
                // persist would take them for delivered.
                if isLast { needNewSegment = true }
            }
            let start = seg.id == commit.segment ? Int(commit.offset) : 0
            let file: RingFile
            do {
                file = try io.open(name, create: false)
            } catch {
                if isLast { throw DiskRingError(path: io.path(name), message: "cannot open segment for writing: \(errnoText(error.code))") }
                log("cannot open \(io.path(name)) (\(errnoText(error.code))); the reader will skip it")
                walked.append((seg.id, size, 0, 0))
                continue
            }
            var walk = scanner.walk(io, file, from: start, end: size, verify: isLast)
            if walk.error != 0 {
                let next = isLast ? "; new blocks go to a new segment" : ""
                log("reading \(io.path(name)) failed (\(errnoText(walk.error))); record counts may be low\(next)")
                if isLast { needNewSegment = true }
            } else if isLast && walk.goodEnd < size {
                do { try io.truncate(file, to: walk.goodEnd) } catch {
                    throw DiskRingError(path: io.path(name), message: "cannot truncate the incomplete block at its end: \(errnoText(error.code))")
                }
                // A block the file ends inside of is a write that did not finish: its batch was not
                // acknowledged (that waits for the whole take to be in the ring), so the inputs read its
                // lines again. Not lost, then: counted apart. Whole blocks that fail their checksum
                // are damage, and lost.
                if walk.cutRecords > 0 { counters.tornRecords.add(walk.cutRecords) }
                if walk.damagedRecords > 0 {
                    counters.corruptBlocks.add()
                    counters.corruptRecords.add(walk.damagedRecords)
                }
                var what = walk.cutRecords > 0
                    ? "a block cut short by a crash during its write; its \(walk.cutRecords) record(s) were not acknowledged, "
                        + "so the inputs read them again from their files"
                    : "a write cut short by a crash, or damaged data"
                if walk.damagedRecords > 0 { what += "; \(walk.damagedRecords) record(s) in damaged blocks lost" }
                log("truncated \(size - walk.goodEnd) bytes at the end of \(io.path(name)) (offset \(walk.goodEnd)): \(what)")
                size = walk.goodEnd
                walk.endSeq = walk.endSeqAtGoodEnd
            }
            walked.append((seg.id, size, walk.firstSeq, walk.endSeq))
            if isLast && !needNewSegment { active = file } else { io.close(file) }
        }

        // Record numbers: the next one to write follows the last record on disk (or the cursor, when
        // everything was delivered); the first undelivered one is the cursor's, else the first found.
        var nextSeq = max(1, cursorSeq, walked.map(\.end).max() ?? 0)
        let commitSeq = cursorSeq != 0 ? cursorSeq : (walked.first(where: { $0.first != 0 })?.first ?? nextSeq)
        nextSeq = max(nextSeq, commitSeq)
        var segments: [RingLedgerState.Segment] = []
        var known = commitSeq
        for w in walked {
            let first = segments.isEmpty ? commitSeq : known
            segments.append(RingLedgerState.Segment(id: w.id, size: w.size, firstSeq: first))
            if w.end != 0 { known = w.end } else if w.first != 0 { known = w.first }
        }
        if needNewSegment || active == nil {
            // Above every segment name in the directory, also one set aside or left unconverted.
            let highest = max(segments.last?.id ?? 0, cursor?.position.segment ?? 0, names.compactMap(SegmentName.parse).max() ?? 0)
            guard highest < UInt64.max else {
                throw DiskRingError(path: io.directory, message: "segment numbers are used up (a file or the cursor names segment \(highest)); "
                                    + "move the directory aside to start an empty buffer")
            }
            let id = highest + 1
            do {
                active = try io.open(SegmentName.make(id), create: true)
            } catch {
                throw DiskRingError(path: io.path(SegmentName.make(id)), message: "cannot create segment: \(errnoText(error.code))")
            }
            if options.fsync != .never { io.syncDirectory() }
            segments.append(RingLedgerState.Segment(id: id, size: 0, firstSeq: nextSeq))
            if cursor == nil && segments.count == 1 { commit = RingPosition(segment: id, offset: 0) }
        }
        guard let active else { throw DiskRingError(path: io.directory, message: "no active segment") }
        return RingRecovery(segments: segments, commitPos: commit, commitSeq: commitSeq, nextSeq: nextSeq,
                            cursor: cursor, active: active)
    }

    private static func readCursor(_ io: any RingStorage, log: (String) -> Void) -> CursorRecord? {
        let path = io.path(RingCursor.fileName)
        let file: RingFile
        do {
            file = try io.open(RingCursor.fileName, create: false)
        } catch {
            if error.code != ENOENT {
                log("cannot open cursor file \(path) (\(errnoText(error.code))); replaying from the oldest segment (records may be delivered twice)")
            }
            return nil
        }
        defer { io.close(file) }
        switch SegmentScanner.readPrefix(io, file, max: CursorFile.fileSize) {
        case .failure(let e):
            log("cursor file \(path) cannot be read (\(e)); replaying from the oldest segment (records may be delivered twice)")
            return nil
        case .success(let bytes):
            switch CursorFile.decode(bytes) {
            case .success(let c): return c
            case .failure(let e):
                log("cursor file \(path) \(e.reason); replaying from the oldest segment (records may be delivered twice)")
                return nil
            }
        }
    }
}
