import AnduinCore
#if canImport(Glibc)
import Glibc
#endif

/// A file's content identity: a hash of its first line (at most 1 KiB), mixed with device and inode
/// into the 64-bit source id that prefixes every `event.id`.
enum Fingerprint {
    static let maxLength = 1024

    /// (length, hash) of the first line including its newline, capped at 1 KiB; nil while the file
    /// has neither a complete first line nor 1 KiB. `final`: the file will not grow (rotated away),
    /// and a shorter unterminated first line is all there is: it identifies the file.
    static func compute(fd: Int32, final: Bool = false) -> (Int, UInt64)? {
        var buf = [UInt8](repeating: 0, count: maxLength)
        let n = buf.withUnsafeMutableBytes { pread(fd, $0.baseAddress, maxLength, 0) }
        guard n > 0 else { return nil }
        let len: Int
        if let nl = buf[0..<n].firstIndex(of: UInt8(ascii: "\n")) {
            len = nl + 1
        } else if n == maxLength || final {
            len = n
        } else {
            return nil
        }
        return (len, fnv1a(buf[0..<len]))
    }

    static func hash(fd: Int32, length: Int) -> UInt64? {
        var buf = [UInt8](repeating: 0, count: length)
        let n = buf.withUnsafeMutableBytes { pread(fd, $0.baseAddress, length, 0) }
        guard n == length else { return nil }
        return fnv1a(buf[...])
    }

    static func fnv1a(_ bytes: ArraySlice<UInt8>) -> UInt64 {
        var h: UInt64 = 0xcbf2_9ce4_8422_2325
        for b in bytes {
            h ^= UInt64(b)
            h &*= 0x0000_0100_0000_01B3
        }
        return h
    }

    /// Mixes device, inode and fingerprint into the 64-bit source identity used by `event.id`.
    static func sourceID(key: FileKey, fingerprint: UInt64, generation: Int = 0) -> UInt64 {
        var h = fingerprint
        // Generation 0 leaves the mix as it always was: ids of files never truncated do not change.
        let parts = generation == 0 ? [key.device, key.inode] : [key.device, key.inode, UInt64(generation)]
        for v in parts {
            h ^= v &+ 0x9E37_79B9_7F4A_7C15 &+ (h << 6) &+ (h >> 2)
        }
        // splitmix64 finaliser: spreads the bits so ids look uniform.
        h = (h ^ (h >> 30)) &* 0xBF58_476D_1CE4_E5B9
        h = (h ^ (h >> 27)) &* 0x94D0_49BB_1331_11EB
        return h ^ (h >> 31)
    }
}

extension Fingerprint {
    /// True when the file starts with the gzip magic bytes: a compressed rotation, never text.
    static func isGzip(fd: Int32) -> Bool {
        var magic: (UInt8, UInt8) = (0, 0)
        let n = withUnsafeMutableBytes(of: &magic) { pread(fd, $0.baseAddress, 2, 0) }
        return n == 2 && magic.0 == 0x1F && magic.1 == 0x8B
    }
}
