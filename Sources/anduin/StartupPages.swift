#if canImport(Glibc)
import Glibc
#endif

/// Hands back the code and read-only data pages that only start-up used, once the pipeline runs.
///
/// Why: an idle agent's resident memory is mostly its own code. The kernel maps 64 KiB around each
/// code fault, and reading the command line and the YAML config and building the plugins touch code
/// all over the binary, while the running pipeline needs a small part of it (`make bench`'s idle
/// figure shows the difference).
///
/// Safe by construction: `MADV_PAGEOUT` (Linux 5.4) reclaims pages as memory pressure would. Clean
/// file pages are dropped and fault back in from the file when used again; anonymous or dirty pages
/// (relocated data) are kept, or swapped, never changed; pages other processes map too are left
/// alone. Private mappings of files are passed, writable ones too: the linker places the binary's
/// `.rodata` in its writable segment, and the pages of it that only start-up read are clean file
/// pages like the code's. Shared mappings are not. On older kernels `madvise` fails with EINVAL and
/// nothing happens.
func releaseStartupPages() {
    #if os(Linux)
    let madvPageout: Int32 = 21  // <linux/mman.h>; not in Swift's Glibc module
    guard let maps = fopen("/proc/self/maps", "r") else { return }
    defer { fclose(maps) }
    var line = [CChar](repeating: 0, count: 4096)
    while fgets(&line, Int32(line.count), maps) != nil {
        // "start-end perms offset dev inode path"
        let text = String(decoding: line.prefix { $0 != 0 }.map { UInt8(bitPattern: $0) }, as: UTF8.self)
        let fields = text.split(separator: " ", omittingEmptySubsequences: true)
        guard fields.count >= 6, fields[5].hasPrefix("/"), fields[1].count == 4,
              fields[1].last == "p" else { continue }  // a private mapping of a file
        let range = fields[0].split(separator: "-")
        guard range.count == 2, let start = UInt(range[0], radix: 16), let end = UInt(range[1], radix: 16),
              end > start, let address = UnsafeMutableRawPointer(bitPattern: start) else { continue }
        _ = madvise(address, Int(end - start), madvPageout)
    }
    #endif
}
