import CZlib

/// A zlib failure, with what was being done and zlib's own message.
public enum GzipError: Error, Sendable, CustomStringConvertible {
    /// Compression level outside 0...9 (or -1 for zlib's default).
    case invalidLevel(Int32)
    /// zlib returned `code` during `operation`.
    case zlib(operation: String, code: Int32, message: String)
    /// The input is not complete gzip data.
    case corrupt(detail: String)
    /// Decompressed output would exceed the caller's limit.
    case tooLarge(limit: Int)

    public var description: String {
        switch self {
        case .invalidLevel(let l):
            return "gzip: compression level \(l) is invalid; use 1 (fastest) to 9 (smallest), or 0 for none"
        case .zlib(let op, let code, let msg):
            return "gzip: \(op) failed (zlib code \(code)\(msg.isEmpty ? "" : ": \(msg)"))"
        case .corrupt(let detail):
            return "gzip: input is not valid gzip data: \(detail)"
        case .tooLarge(let limit):
            return "gzip: decompressed data exceeds the limit of \(limit) bytes"
        }
    }
}

/// Reusable gzip compressor: one deflate state, reset between payloads, so compressing many
/// batches costs no allocator churn inside zlib.
///
/// Not thread-safe; meant to be owned by one output thread. Copies are independent (copy on
/// write): a copy that compresses gets its own zlib state.
public struct GzipEncoder {
    public let level: Int32
    private var stream: DeflateStream

    public init(level: Int32) throws {
        guard level == Z_DEFAULT_COMPRESSION || (0...9).contains(level) else {
            throw GzipError.invalidLevel(level)
        }
        self.level = level
        self.stream = try DeflateStream(level: level)
    }

    /// Appends one complete gzip member (header, deflate data, CRC and size trailer) holding
    /// `input` to `out`. On error `out` is left as it was.
    public mutating func compress(_ input: UnsafeRawBufferPointer, into out: inout [UInt8]) throws {
        if !isKnownUniquelyReferenced(&stream) {
            stream = try DeflateStream(level: level)
        }
        try stream.compress(input, into: &out)
    }

    public mutating func compress(_ input: [UInt8], into out: inout [UInt8]) throws {
        try input.withUnsafeBytes { try compress($0, into: &out) }
    }
}

/// Owns a heap-allocated z_stream (zlib keeps a back pointer to it, so it must never move) and
/// the scratch buffer deflate writes into, both kept across payloads.
private final class DeflateStream {
    private let strm: UnsafeMutablePointer<z_stream>
    private var scratch: UnsafeMutableRawBufferPointer

    init(level: Int32) throws {
        strm = .allocate(capacity: 1)
        strm.initialize(to: z_stream())
        scratch = .allocate(byteCount: 64 << 10, alignment: 16)
        // windowBits 15 + 16 selects the gzip wrapper; memLevel 8 is zlib's default.
        let rc = deflateInit2_(strm, level, Z_DEFLATED, 15 + 16, 8, Z_DEFAULT_STRATEGY,
                               zlibVersion(), Int32(MemoryLayout<z_stream>.size))
        guard rc == Z_OK else {
            let err = zlibError("deflateInit2", rc, strm)
            strm.deinitialize(count: 1)
            strm.deallocate()
            scratch.deallocate()
            throw err
        }
    }

    deinit {
        deflateEnd(strm)
        strm.deinitialize(count: 1)
        strm.deallocate()
        scratch.deallocate()
    }

    func compress(_ input: UnsafeRawBufferPointer, into out: inout [UInt8]) throws {
        let rc0 = deflateReset(strm)
        guard rc0 == Z_OK else { throw zlibError("deflateReset", rc0, strm) }
        // deflateBound covers the whole member (gzip header and trailer included), so a scratch
        // buffer that large lets deflate finish in one call. Capped: huge inputs take a few passes
        // rather than pinning a huge buffer for the encoder's lifetime.
        let want = min(Int(deflateBound(strm, uLong(input.count))), 32 << 20)
        if scratch.count < want {
            scratch.deallocate()
            scratch = .allocate(byteCount: want, alignment: 16)
        }
        let start = out.count
        var consumed = 0
        let chunkMax = Int(UInt32.max)
        do {
            while true {
                let inChunk = min(input.count - consumed, chunkMax)
                let flush = consumed + inChunk == input.count ? Z_FINISH : Z_NO_FLUSH
                strm.pointee.next_in = input.baseAddress.map {
                    UnsafeMutablePointer(mutating: $0.assumingMemoryBound(to: Bytef.self) + consumed)
                }
                strm.pointee.avail_in = uInt(inChunk)
                strm.pointee.next_out = scratch.baseAddress?.assumingMemoryBound(to: Bytef.self)
                strm.pointee.avail_out = uInt(scratch.count)
                let rc = deflate(strm, flush)
                consumed += inChunk - Int(strm.pointee.avail_in)
                let produced = scratch.count - Int(strm.pointee.avail_out)
                out.append(contentsOf: UnsafeRawBufferPointer(rebasing: scratch[..<produced]))
                if rc == Z_STREAM_END { break }
                // Z_BUF_ERROR means "no progress possible"; with fresh output room that is a bug.
                guard rc == Z_OK || (rc == Z_BUF_ERROR && produced > 0) else {
                    throw zlibError("deflate", rc, strm)
                }
            }
        } catch {
            out.removeSubrange(start...)
            throw error
        }
    }
}

private func zlibError(_ op: String, _ rc: Int32, _ strm: UnsafeMutablePointer<z_stream>) -> GzipError {
    let msg = strm.pointee.msg.map { String(cString: $0) } ?? ""
    return .zlib(operation: op, code: rc, message: msg)
}

/// One-shot gzip helpers, for tests and tools. The agent's hot path uses `GzipEncoder`.
public enum Gzip {
    /// Compresses `input` into one gzip member.
    public static func compress(_ input: [UInt8], level: Int32 = 6) throws -> [UInt8] {
        var enc = try GzipEncoder(level: level)
        var out: [UInt8] = []
        try enc.compress(input, into: &out)
        return out
    }

    /// Decompresses gzip data like `gunzip`: concatenated members are joined. Throws on
    /// truncated or corrupt input, or when the output would exceed `limit` bytes.
    public static func decompress(_ input: [UInt8], limit: Int = .max) throws -> [UInt8] {
        try input.withUnsafeBytes { try decompress($0, limit: limit) }
    }

    public static func decompress(_ input: UnsafeRawBufferPointer, limit: Int = .max) throws -> [UInt8] {
        guard !input.isEmpty else { throw GzipError.corrupt(detail: "empty input") }
        let strm = UnsafeMutablePointer<z_stream>.allocate(capacity: 1)
        strm.initialize(to: z_stream())
        defer { strm.deinitialize(count: 1); strm.deallocate() }
        // 15 + 16: gzip wrapper only, so raw zlib data is rejected rather than guessed at.
        let rc0 = inflateInit2_(strm, 15 + 16, zlibVersion(), Int32(MemoryLayout<z_stream>.size))
        guard rc0 == Z_OK else { throw zlibError("inflateInit2", rc0, strm) }
        defer { inflateEnd(strm) }

        let scratch = UnsafeMutableRawBufferPointer.allocate(byteCount: 256 << 10, alignment: 16)
        defer { scratch.deallocate() }
        var out: [UInt8] = []
        var consumed = 0
        let chunkMax = Int(UInt32.max)
        while true {
            let inChunk = min(input.count - consumed, chunkMax)
            strm.pointee.next_in = input.baseAddress.map {
                UnsafeMutablePointer(mutating: $0.assumingMemoryBound(to: Bytef.self) + consumed)
            }
            strm.pointee.avail_in = uInt(inChunk)
            strm.pointee.next_out = scratch.baseAddress?.assumingMemoryBound(to: Bytef.self)
            strm.pointee.avail_out = uInt(scratch.count)
            let rc = inflate(strm, Z_NO_FLUSH)
            let usedIn = inChunk - Int(strm.pointee.avail_in)
            let produced = scratch.count - Int(strm.pointee.avail_out)
            consumed += usedIn
            guard produced <= limit - out.count else { throw GzipError.tooLarge(limit: limit) }
            out.append(contentsOf: UnsafeRawBufferPointer(rebasing: scratch[..<produced]))
            switch rc {
            case Z_STREAM_END:
                if consumed == input.count { return out }
                // Another member follows (gunzip joins them).
                let rr = inflateReset(strm)
                guard rr == Z_OK else { throw zlibError("inflateReset", rr, strm) }
            case Z_OK:
                continue
            case Z_BUF_ERROR:
                // Output room was fresh, so no progress means the input ended mid-stream.
                if usedIn + produced == 0 {
                    throw GzipError.corrupt(detail: "truncated after \(consumed) bytes")
                }
            case Z_DATA_ERROR:
                let msg = strm.pointee.msg.map { String(cString: $0) } ?? "bad data"
                throw GzipError.corrupt(detail: "\(msg) at input byte \(consumed)")
            default:
                throw zlibError("inflate", rc, strm)
            }
        }
    }
}
