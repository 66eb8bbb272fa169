import Foundation

/// The acknowledged position in one file.
///
/// A file is identified by device + inode *and* a fingerprint of its first bytes: an inode reused by
/// a new file (a common cause of resuming at a stale offset, see beats #1341) has a different
/// fingerprint, so it is read from the start instead.
public struct FileCheckpoint: Codable, Sendable, Equatable {
    public var device: UInt64
    public var inode: UInt64
    /// How many leading bytes the fingerprint covers (the first line, at most 1 KiB).
    public var fingerprintLength: Int
    public var fingerprint: UInt64
    /// Reading resumes here: everything before it was delivered.
    public var offset: Int64
    /// Records that *end* before this offset were delivered too. It is past `offset` when a record
    /// built from several lines (a CRI `P` / Docker split partial, a joined multi-line record) was
    /// still open on one stream while complete records of the other stream were delivered: on restart
    /// those are decoded again (to rebuild the open one) but not shipped twice. nil means equal to
    /// `offset`.
    public var delivered: Int64?
    /// Last path the file was seen at (informational, for people reading the file).
    public var path: String
    /// Times the file was truncated in place and read again (part of its records' identity).
    public var generation: Int?
    /// Where the file really was (a symlink's target): after a restart, a file rotated away from a
    /// symlinked name is looked for in this directory.
    public var realPath: String?
    /// Wall-clock seconds when the file was last seen; entries of files gone longer than
    /// `checkpoint_ttl` are dropped.
    public var seen: Int64?

    public init(device: UInt64, inode: UInt64, fingerprintLength: Int, fingerprint: UInt64, offset: Int64,
                delivered: Int64? = nil, path: String, generation: Int? = nil,
                realPath: String? = nil, seen: Int64? = nil) {
        self.delivered = delivered
        self.generation = generation
        self.realPath = realPath
        self.seen = seen
        self.device = device
        self.inode = inode
        self.fingerprintLength = fingerprintLength
        self.fingerprint = fingerprint
        self.offset = offset
        self.path = path
    }

    enum CodingKeys: String, CodingKey {
        case device = "dev", inode = "ino", fingerprintLength = "fp_len", fingerprint = "fp", offset, delivered, path, generation
        case realPath = "real_path", seen
        /// Read only: older versions wrote, per stream, where records a filter still held began.
        case legacyHeld = "held"
    }

    public init(from decoder: any Decoder) throws {
        let c = try decoder.container(keyedBy: CodingKeys.self)
        device = try c.decode(UInt64.self, forKey: .device)
        inode = try c.decode(UInt64.self, forKey: .inode)
        fingerprintLength = try c.decode(Int.self, forKey: .fingerprintLength)
        fingerprint = try c.decode(UInt64.self, forKey: .fingerprint)
        offset = try c.decode(Int64.self, forKey: .offset)
        delivered = try c.decodeIfPresent(Int64.self, forKey: .delivered)
        path = try c.decode(String.self, forKey: .path)
        generation = try c.decodeIfPresent(Int.self, forKey: .generation)
        realPath = try c.decodeIfPresent(String.self, forKey: .realPath)
        seen = try c.decodeIfPresent(Int64.self, forKey: .seen)
        // Those records were not delivered: resume no later than the first of them, and count
        // nothing from there on as delivered (what else was delivered there is shipped again).
        if let held = try c.decodeIfPresent(LegacyHeld.self, forKey: .legacyHeld),
           let lowest = [held.none, held.stdout, held.stderr].compactMap({ $0 }).min() {
            offset = min(offset, lowest)
            if let d = delivered { delivered = min(d, lowest) > offset ? min(d, lowest) : nil }
        }
    }

    public func encode(to encoder: any Encoder) throws {
        var c = encoder.container(keyedBy: CodingKeys.self)
        try c.encode(device, forKey: .device)
        try c.encode(inode, forKey: .inode)
        try c.encode(fingerprintLength, forKey: .fingerprintLength)
        try c.encode(fingerprint, forKey: .fingerprint)
        try c.encode(offset, forKey: .offset)
        try c.encodeIfPresent(delivered, forKey: .delivered)
        try c.encode(path, forKey: .path)
        try c.encodeIfPresent(generation, forKey: .generation)
        try c.encodeIfPresent(realPath, forKey: .realPath)
        try c.encodeIfPresent(seen, forKey: .seen)
    }

    /// The pending offsets of the older `held` field (its `through_*` entries only saved duplicates).
    private struct LegacyHeld: Decodable {
        var none: Int64?
        var stdout: Int64?
        var stderr: Int64?
    }
}

/// Persists an input's checkpoints as JSON in `data_dir/checkpoints/<input>.json`, atomically:
/// written to a temporary file, fsynced, renamed over the old one, directory fsynced. A crash at any
/// point leaves either the old or the new file, never a torn one.
public struct CheckpointStore: Sendable {
    public let path: String

    public init(dataDirectory: String, input: String) {
        path = dataDirectory + "/checkpoints/" + input + ".json"
    }

    private struct FileFormat: Codable {
        var version: Int
        var files: [FileCheckpoint]
    }

    /// Loads saved checkpoints. A missing file means a first start; an unreadable one is reported
    /// and treated as empty (the agent never refuses to start because of its own state).
    public func load() -> Result<[FileCheckpoint], StartupError> {
        guard let data = FileManager.default.contents(atPath: path) else { return .success([]) }
        do {
            return .success(try JSONDecoder().decode(FileFormat.self, from: data).files)
        } catch {
            return .failure(StartupError("checkpoint file \(path) is unreadable (\(error)); starting without it"))
        }
    }

    public func save(_ files: [FileCheckpoint]) throws {
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.sortedKeys]
        let data = try encoder.encode(FileFormat(version: 1, files: files))
        try AtomicFile.write(data, to: path)
    }
}
