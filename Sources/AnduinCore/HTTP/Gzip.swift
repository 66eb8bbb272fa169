import CZlib

/// A gzip failure (compression by libdeflate, decompression by zlib), with what was being done.
public enum GzipError: Error, Sendable, CustomStringConvertible {
    /// Compression level outside 0...12 (or -1 for the default, 6).
    case invalidLevel(Int32)
    /// libdeflate could not allocate a compressor, or produced nothing.
    case libdeflate(operation: String)
    /// zlib returned `code` during `operation`.
    case zlib(operation: String, code: Int32, message: String)
    /// The input is not complete gzip data.
    case corrupt(detail: String)
    /// Decompressed output would exceed the caller's limit.
    case tooLarge(limit: Int)

    public var description: String {
        switch self {
        case .invalidLevel(let l):
            return "gzip: compression level \(l) is invalid; use 1 (fastest) to 12 (smallest), or 0 for none"
        case .libdeflate(let op):
            return "gzip: \(op) failed (libdeflate; out of memory?)"
        case .zlib(let op, let code, let msg):
            return "gzip: \(op) failed (zlib code \(code)\(msg.isEmpty ? "" : ": \(msg)"))"
        case .corrupt(let detail):
            return "gzip: input is not valid gzip data: \(detail)"
        case .tooLarge(let limit):
            return "gzip: decompressed data exceeds the limit of \(limit) bytes"
        }
    }
}

private func zlibError(_ op: String, _ rc: Int32, _ strm: UnsafeMutablePointer<z_stream>) -> GzipError {
    let msg = strm.pointee.msg.map { String(cString: $0) } ?? ""
    return .zlib(operation: op, code: rc, message: msg)
}

/// One-shot gzip helpers, for tests and tools. The agent's hot path uses `GzipEncoder`;
/// decompression streams through zlib (members of any size, concatenated members, a size limit).
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
