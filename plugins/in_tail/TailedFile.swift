import AnduinCore
import Multiline
#if canImport(Glibc)
import Glibc
#endif

/// Device and inode: which file, as long as it is not deleted and its inode reused.
struct FileKey: Hashable, Sendable {
    var device: UInt64
    var inode: UInt64
}

/// A file being followed. Owned by the tail input's thread.
final class TailedFile {
    var id: Int
    let key: FileKey
    /// The path it was found at (a symlink under /var/log/containers on a node).
    var path: String
    /// Where it really is (the symlink's target when opened); its directory holds its rotations.
    var realPath: String
    let fd: Int32
    /// First byte not yet consumed into a complete line.
    var readOffset: Int64
    var decoder: LineDecoder
    /// `multiline:` joins decoded records here, per stream; nil without it.
    var joiner: LineJoiner?
    /// Set once the first line is complete (see `establishIdentity`).
    var fingerprintLength = 0
    var fingerprint: UInt64 = 0
    var source: SourceInfo?
    /// The path no longer leads to this file (renamed away or deleted): drain it, then close it.
    var rotatedAt: Double?
    /// Last time new bytes were read.
    var lastDataAt: Double
    /// The last read found no complete line left (the file is read to its end).
    var atEnd = false
    /// Since when it has been read to its end with every batch acknowledged (rotated files close
    /// `rotate_wait` after this, so a full buffer pauses the clock).
    var drainedSince: Double?
    /// A line longer than max_line_bytes is being skipped to its end; it started here.
    var longLineStart: Int64?
    /// inotify watch descriptor, or nil when polled.
    var watch: Int32?
    /// inotify said it changed, or it has more to read than its budget allowed.
    var dirty = true
    /// When the fingerprint was last re-checked against the file (detects truncate-and-rewrite).
    var fingerprintCheckedAt: Double = 0
    /// Its size when it was last read (nil before); with an inotify watch and no event since, the
    /// size now.
    var sizeAtRead: Int64?

    init(id: Int, key: FileKey, path: String, realPath: String, fd: Int32, offset: Int64, format: LogFormat, maxLineBytes: Int,
         multiline: MultilineSettings? = nil) {
        self.id = id
        self.key = key
        self.path = path
        self.realPath = realPath
        self.fd = fd
        self.readOffset = offset
        self.decoder = LineDecoder(format: format, maxRecordBytes: maxLineBytes)
        self.joiner = multiline.map(LineJoiner.init)
        self.lastDataAt = monotonicSeconds()
    }

    deinit { close(fd) }

    /// Records ending before this offset were already delivered by an earlier run (see
    /// `FileCheckpoint.delivered`): they are decoded again but not shipped.
    var replayUntil: Int64 = 0

    /// What a checkpoint may record: nothing before `resume` is still pending in this file's state.
    var position: AckTracker.Position {
        var o = readOffset
        if let p = decoder.pendingStart { o = min(o, p) }
        if let j = joiner?.openStart { o = min(o, j) }
        if let l = longLineStart { o = min(o, l) }
        return AckTracker.Position(resume: o, delivered: max(readOffset, replayUntil))
    }

    func size() -> Int64? {
        var st = stat()
        return fstat(fd, &st) == 0 ? Int64(st.st_size) : nil
    }

    /// Size, mtime (ns) and link count, from the open descriptor.
    func status() -> (size: Int64, mtime: Int64, links: Int)? {
        var st = stat()
        guard fstat(fd, &st) == 0 else { return nil }
        return (Int64(st.st_size), Int64(st.st_mtim.tv_sec) * 1_000_000_000 + Int64(st.st_mtim.tv_nsec), Int(st.st_nlink))
    }

    /// The directory its rotations go to.
    var directory: String {
        guard let slash = realPath.lastIndex(of: "/") else { return "." }
        return String(realPath[..<slash])
    }

    /// Computes the fingerprint once the first line is complete (or 1 KiB long). Until then the file
    /// has no records to identify. Returns false while that is not yet the case. `final`: the file
    /// was rotated away and read to its end; an unterminated first line identifies it.
    func establishIdentity(final: Bool = false) -> Bool {
        if source != nil { return true }
        guard let (len, hash) = Fingerprint.compute(fd: fd, final: final) else { return false }
        fingerprintLength = len
        fingerprint = hash
        source = SourceInfo(path: path, sourceID: Fingerprint.sourceID(key: key, fingerprint: hash, generation: generation))
        return true
    }

    /// How many times this inode was truncated in place and started over. Part of the identity, so
    /// new content after a copytruncate never reuses the event.ids of the old content, even when its
    /// first line is the same (a destination would drop it as a replay).
    private(set) var generation = 0

    func setGeneration(_ g: Int) {
        generation = g
        if let s = source {
            source = SourceInfo(path: s.path, sourceID: Fingerprint.sourceID(key: key, fingerprint: fingerprint, generation: g))
        }
    }

    /// `readOffset` is not at a line start by design: an unterminated last line was shipped (a
    /// rotated file closing), or the file was opened at a position no line end precedes (started at
    /// an end inside a long last line, or a checkpoint written there).
    var readOffsetMidLine = false

    /// Whether a newline must be the byte just before `readOffset` (it starts a line as read). Not
    /// at 0, nor where it is mid-line by design: skipping an over-long line, `readOffsetMidLine`.
    var lineEndCheckApplies: Bool { readOffset > 0 && longLineStart == nil && !readOffsetMidLine }

    func byteBeforeReadOffsetIsNewline() -> Bool {
        var b: UInt8 = 0
        return pread(fd, &b, 1, off_t(readOffset - 1)) == 1 && b == 0x0A
    }

    /// What `format: auto` makes of the file's first non-blank line (its first 4 KiB suffice: the
    /// choice rests on the line's first byte or CRI header), nil when there is none yet.
    func detectFormatFromStart() -> LogFormat? {
        var buf = [UInt8](repeating: 0, count: 4096)
        let n = buf.withUnsafeMutableBytes { pread(fd, $0.baseAddress, $0.count, 0) }
        guard n > 0 else { return nil }
        var start = 0
        while start < n {
            let end = buf[start..<n].firstIndex(of: 0x0A) ?? n
            let blank = end == start || (end == start + 1 && buf[start] == 0x0D)
            if !blank {
                return buf[start..<end].withUnsafeBytes { LineDecoder.detect($0) }
            }
            start = end + 1
        }
        return nil
    }

    /// True when the bytes the fingerprint covers are unchanged.
    func fingerprintMatches() -> Bool {
        guard fingerprintLength > 0 else { return true }
        return Fingerprint.hash(fd: fd, length: fingerprintLength) == fingerprint
    }

    func renamed(to newPath: String) {
        path = newPath
        if let s = source { source = SourceInfo(path: newPath, sourceID: s.sourceID) }
    }

    /// Forget everything read: the file was truncated (copytruncate) and starts over.
    func restart() {
        readOffset = 0
        replayUntil = 0
        readOffsetMidLine = false
        generation = generation.addingSaturating(1)
        decoder.reset()
        joiner?.reset()
        longLineStart = nil
        fingerprintLength = 0
        fingerprint = 0
        source = nil
    }
}
