import CDeflate

/// Reusable gzip compressor for whole request bodies, on libdeflate.
///
/// Why libdeflate and not zlib: on real Elasticsearch bulk bodies (`make bench-deflate` compares
/// them) libdeflate is clearly faster than zlib at the same level, with output no larger. ISA-L igzip
/// is faster still but its output is markedly larger than zlib's at every level, and the wire bytes
/// are what a cluster's ingest pays for. A body is always whole in memory, so the whole-buffer API
/// loses nothing; zlib stays for decompression, which streams.
///
/// Levels are libdeflate's, on zlib's scale: 1 fastest … 6 default … 9 (zlib's maximum) … 12
/// smallest; 0 stores. Each level is faster than zlib's and its output smaller.
///
/// Not thread-safe; meant to be owned by one output thread. Copies are independent (copy on
/// write): a copy that compresses gets its own compressor.
public struct GzipEncoder {
    public let level: Int32
    private var compressor: DeflateCompressor

    /// `level` 0...12, or -1 (zlib's `Z_DEFAULT_COMPRESSION`) for 6.
    public init(level: Int32) throws {
        guard level == -1 || (0...12).contains(level) else { throw GzipError.invalidLevel(level) }
        self.level = level == -1 ? 6 : level
        self.compressor = try DeflateCompressor(level: self.level)
    }

    /// Appends one complete gzip member (header, deflate data, CRC and size trailer) holding
    /// `input` to `out`. On error `out` is left as it was.
    public mutating func compress(_ input: UnsafeRawBufferPointer, into out: inout [UInt8]) throws {
        if !isKnownUniquelyReferenced(&compressor) {
            compressor = try DeflateCompressor(level: level)
        }
        try compressor.compress(input, into: &out)
    }

    public mutating func compress(_ input: [UInt8], into out: inout [UInt8]) throws {
        try input.withUnsafeBytes { try compress($0, into: &out) }
    }
}

/// Owns a libdeflate compressor (its match finder's tables, allocated once per level).
private final class DeflateCompressor {
    private let handle: OpaquePointer
    /// Level 0 stores: its output is never smaller than its input.
    private let stores: Bool

    init(level: Int32) throws {
        stores = level == 0
        guard let h = libdeflate_alloc_compressor(level) else {
            throw GzipError.libdeflate(operation: "allocating a level \(level) compressor")
        }
        handle = h
    }

    deinit { libdeflate_free_compressor(handle) }

    func compress(_ input: UnsafeRawBufferPointer, into out: inout [UInt8]) throws {
        // First into room for a quarter of the input: log bodies compress to about a tenth, and the
        // output array (reused) stays that size instead of the bound's (zero-filled and resident per
        // delivery thread). Only input that does not compress to a quarter is compressed again,
        // into the bound, which covers stored blocks plus header and trailer.
        let bound = libdeflate_gzip_compress_bound(handle, input.count)
        if !stores && bound > 64 << 10 && attempt(input, room: input.count / 4 + 1024, into: &out) { return }
        guard attempt(input, room: bound, into: &out) else {
            throw GzipError.libdeflate(operation: "compressing \(input.count) bytes")
        }
    }

    /// Compresses `input` into `room` bytes appended to `out`; false (and `out` as it was) when it
    /// does not fit.
    private func attempt(_ input: UnsafeRawBufferPointer, room: Int, into out: inout [UInt8]) -> Bool {
        let start = out.count
        out.append(contentsOf: repeatElement(0, count: room))
        let written = out.withUnsafeMutableBytes { o in
            libdeflate_gzip_compress(handle, input.baseAddress, input.count, o.baseAddress.map { $0 + start }, room)
        }
        guard written > 0 else {
            out.removeSubrange(start...)
            return false
        }
        out.removeLast(room - written)
        return true
    }
}
