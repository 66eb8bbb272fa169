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

/// The acknowledged position in one file.
///
/// A file is identified by device + inode *and* a fingerprint of its first bytes: an inode reused by
/// a new file (a common cause of resuming at a stale offset, see beats #1341) has a different
/// fingerprint, so it is read from the start instead.
public struct FileCheckpoint: Sendable, Equatable {
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
    /// The format `format: auto` found for the file (`docker`, `cri`, `raw`), nil when not detected:
    /// a restart decodes the lines after `offset` as the first run did, whatever line it resumes at.
    public var format: String?

    public init(device: UInt64, inode: UInt64, fingerprintLength: Int, fingerprint: UInt64, offset: Int64,
                delivered: Int64? = nil, path: String, generation: Int? = nil,
                realPath: String? = nil, seen: Int64? = nil, format: String? = nil) {
        self.delivered = delivered
        self.format = format
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

    /// Reads one entry of the checkpoint file (`dev`, `ino`, `fp_len`, `fp`, `offset` and `path`
    /// required; `held` is read from files of older versions only).
    init(json v: JSONValue) throws(CheckpointFormatError) {
        guard v.members != nil else { throw CheckpointFormatError("an entry is not an object") }
        device = try Self.number(v, "dev")
        inode = try Self.number(v, "ino")
        fingerprintLength = try Self.number(v, "fp_len")
        fingerprint = try Self.number(v, "fp")
        offset = try Self.number(v, "offset")
        guard let p = v["path"]?.string else { throw CheckpointFormatError("an entry has no \"path\" string") }
        path = p
        delivered = try Self.optionalNumber(v, "delivered")
        generation = try Self.optionalNumber(v, "generation")
        seen = try Self.optionalNumber(v, "seen")
        switch v["real_path"] {
        case nil, .null?: realPath = nil
        case .string(let r)?: realPath = r
        default: throw CheckpointFormatError("\"real_path\" of \(path) is not a string")
        }
        switch v["format"] {
        case nil, .null?: format = nil
        case .string(let f)?: format = f
        default: throw CheckpointFormatError("\"format\" of \(path) is not a string")
        }
        // Older versions wrote, per stream, where records a filter still held began. Those records
        // were not delivered: resume no later than the first of them, and count nothing from there
        // on as delivered (what else was delivered there is shipped again). Its `through_*`
        // entries only saved duplicates.
        if let held = v["held"], held != .null {
            var lowest: Int64?
            for stream in ["none", "stdout", "stderr"] {
                if let o: Int64 = try Self.optionalNumber(held, stream) { lowest = min(lowest ?? o, o) }
            }
            if let lowest {
                offset = min(offset, lowest)
                if let d = delivered { delivered = min(d, lowest) > offset ? min(d, lowest) : nil }
            }
        }
    }

    private static func number<T: FixedWidthInteger>(_ v: JSONValue, _ key: String) throws(CheckpointFormatError) -> T {
        guard let n: T = try optionalNumber(v, key) else { throw CheckpointFormatError("an entry has no \"\(key)\"") }
        return n
    }

    /// An integer member in range for `T`; nil when absent or null.
    private static func optionalNumber<T: FixedWidthInteger>(_ v: JSONValue, _ key: String) throws(CheckpointFormatError) -> T? {
        switch v[key] {
        case nil, .null?: return nil
        case .number(let text)?:
            guard let n = T(text) else { throw CheckpointFormatError("\"\(key)\" is \(text), not an integer in range") }
            return n
        default: throw CheckpointFormatError("\"\(key)\" is not a number")
        }
    }

    /// Appends the entry as a JSON object, members in name order.
    func write(to w: inout JSONWriter) {
        var first = true
        func member(_ name: StaticString) {
            w.writeRaw(first ? "{\"" : ",\"")
            first = false
            w.writeRaw(name)
            w.writeRaw("\":")
        }
        func unsigned(_ v: UInt64) { w.writeRaw(Array(String(v).utf8)) }
        if let delivered { member("delivered"); w.writeInt(delivered) }
        member("dev"); unsigned(device)
        member("fp"); unsigned(fingerprint)
        member("fp_len"); w.writeInt(Int64(fingerprintLength))
        if let format { member("format"); w.writeString(format) }
        if let generation { member("generation"); w.writeInt(Int64(generation)) }
        member("ino"); unsigned(inode)
        member("offset"); w.writeInt(offset)
        member("path"); w.writeString(path)
        if let realPath { member("real_path"); w.writeString(realPath) }
        if let seen { member("seen"); w.writeInt(seen) }
        w.writeRaw("}")
    }
}

/// Why a checkpoint file could not be used.
public struct CheckpointFormatError: Error, Sendable, CustomStringConvertible {
    public let description: String
    init(_ description: String) { self.description = description }
}

/// Persists an input's checkpoints as JSON in `data_dir/checkpoints/<input>.json`, atomically:
/// written to a temporary file, fsynced, renamed over the old one, directory fsynced. A crash at any
/// point leaves either the old or the new file, never a torn one.
///
/// The file is `{"files":[…],"version":1}`. A file this version cannot use (not JSON, entries missing
/// fields, or a newer `version`) is moved aside (`<name>.json.unreadable`, or `.v<N>` for version
/// N) and the input starts as on a first start; nothing else is lost, and a newer agent's file can be
/// put back for that agent.
public struct CheckpointStore: Sendable {
    public let path: String
    /// The format this version reads and writes.
    public static let version = 1

    public init(dataDirectory: String, input: String) {
        path = dataDirectory + "/checkpoints/" + input + ".json"
    }

    /// Loads saved checkpoints. A missing file means a first start; one that cannot be used is moved
    /// aside and reported, and treated as empty (the agent never refuses to start because of its own
    /// state; the error says what happens and what to do).
    ///
    /// Throws when the file is there but cannot be read now (a permission, an I/O error): starting
    /// without it would ship every file again from `start_at`, and the next save would replace it.
    public func load() throws(POSIXFailure) -> Result<[FileCheckpoint], StartupError> {
        guard let data = try readWholeFile(path).get() else { return .success([]) }
        let files: [FileCheckpoint]
        do throws(CheckpointFormatError) {
            files = try Self.decode(data)
        } catch {
            if let newer = Self.newerVersion(data) {
                let aside = moveAside(".v\(newer)")
                return .failure(StartupError("checkpoint file \(path) has version \(newer); this anduin reads version \(Self.version) only (the file was written by a newer anduin). Not used: \(aside); every file is followed as on a first start (start_at), so what was already shipped may be shipped again. To keep the newer agent's positions, run that version with the file put back"))
            }
            let aside = moveAside(".unreadable")
            return .failure(StartupError("checkpoint file \(path) is unreadable (\(error)); not used: \(aside); every file is followed as on a first start (start_at), so what was already shipped may be shipped again"))
        }
        return .success(files)
    }

    /// The `version` of a file newer than this agent reads, nil for anything else.
    private static func newerVersion(_ data: Data) -> Int? {
        guard let v = try? JSONValue.parse(data), let n = v["version"]?.int, n > version else { return nil }
        return n
    }

    static func decode(_ data: Data) throws(CheckpointFormatError) -> [FileCheckpoint] {
        let doc: JSONValue
        do throws(JSONValue.ParseError) {
            doc = try JSONValue.parse(data)
        } catch {
            throw CheckpointFormatError("not JSON: \(error)")
        }
        guard doc.members != nil else { throw CheckpointFormatError("not a JSON object") }
        guard let v = doc["version"]?.int else { throw CheckpointFormatError("no integer \"version\"") }
        guard v == version else { throw CheckpointFormatError("version \(v) is not \(version)") }
        guard let list = doc["files"]?.array else { throw CheckpointFormatError("no \"files\" array") }
        var files: [FileCheckpoint] = []
        files.reserveCapacity(list.count)
        for entry in list { files.append(try FileCheckpoint(json: entry)) }
        return files
    }

    /// Renames the file to `path + suffix`; says where it went (or that it stays, and is replaced at
    /// the next save).
    private func moveAside(_ suffix: String) -> String {
        let target = path + suffix
        if rename(path, target) == 0 { return "moved to \(target)" }
        return "could not move it to \(target) (\(String(cString: strerror(errno)))): it is replaced at the next save"
    }

    public func save(_ files: [FileCheckpoint]) throws {
        var w = JSONWriter(capacity: 64 + files.count * 200)
        w.writeRaw("{\"files\":[")
        for (i, f) in files.enumerated() {
            if i > 0 { w.writeByte(UInt8(ascii: ",")) }
            f.write(to: &w)
        }
        w.writeRaw("],\"version\":")
        w.writeInt(Int64(Self.version))
        w.writeRaw("}")
        try AtomicFile.write(Data(w.bytes), to: path)
    }
}
