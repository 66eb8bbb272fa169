import CSupport

/// CRC-32C (Castagnoli; reflected polynomial 0x82F63B78), the checksum of iSCSI, ext4 and Vector's disk
/// buffer. The CPU's CRC32C instruction when it has one (x86-64 SSE4.2: the ring checksums every record
/// and block on write and on read, so the table version is a visible share of a disk buffer's CPU),
/// else table-driven slicing-by-8 (about a byte per cycle).
///
/// `checksum(b, continuing: checksum(a)) == checksum(a + b)`.
public enum CRC32C {
    /// Eight 256-entry tables, flattened (`tables[k * 256 + byte]`): table k is the CRC of a byte followed
    /// by k zero bytes, which lets the loop fold eight input bytes per step.
    static let tables: [UInt32] = {
        var t = [UInt32](repeating: 0, count: 8 * 256)
        for i in 0..<256 {
            var c = UInt32(i)
            for _ in 0..<8 { c = (c & 1) != 0 ? (c >> 1) ^ 0x82F6_3B78 : c >> 1 }
            t[i] = c
        }
        for i in 0..<256 {
            var c = t[i]
            for k in 1..<8 {
                c = t[Int(c & 0xFF)] ^ (c >> 8)
                t[k * 256 + i] = c
            }
        }
        return t
    }()

    static let hardware = anduin_crc32c_hw_available() != 0

    public static func checksum(_ bytes: UnsafeRawBufferPointer, continuing crc: UInt32 = 0) -> UInt32 {
        if hardware, let base = bytes.baseAddress {
            return ~anduin_crc32c_hw(~crc, base, bytes.count)
        }
        return software(bytes, continuing: crc)
    }

    /// The portable version (also the reference the tests compare the hardware one with).
    static func software(_ bytes: UnsafeRawBufferPointer, continuing crc: UInt32 = 0) -> UInt32 {
        var c = ~crc
        let n = bytes.count
        tables.withUnsafeBufferPointer { t in
            var p = 0
            while n - p >= 8 {
                let v = bytes.loadUnaligned(fromByteOffset: p, as: UInt64.self).littleEndian ^ UInt64(c)
                c = t[7 * 256 + Int(v & 0xFF)] ^ t[6 * 256 + Int((v >> 8) & 0xFF)]
                    ^ t[5 * 256 + Int((v >> 16) & 0xFF)] ^ t[4 * 256 + Int((v >> 24) & 0xFF)]
                    ^ t[3 * 256 + Int((v >> 32) & 0xFF)] ^ t[2 * 256 + Int((v >> 40) & 0xFF)]
                    ^ t[1 * 256 + Int((v >> 48) & 0xFF)] ^ t[Int(v >> 56)]
                p += 8
            }
            while p < n {
                c = t[Int((c ^ UInt32(bytes[p])) & 0xFF)] ^ (c >> 8)
                p += 1
            }
        }
        return ~c
    }

    public static func checksum(_ bytes: [UInt8], continuing crc: UInt32 = 0) -> UInt32 {
        bytes.withUnsafeBytes { checksum($0, continuing: crc) }
    }
}
