#if canImport(FoundationEssentials)
import FoundationEssentials
#else
import Foundation
#endif
#if canImport(Glibc)
import Glibc
#endif

/// Writes every byte, retrying short writes and EINTR. Returns false (errno set) on failure.
public func writeAll(fd: Int32, _ bytes: UnsafeRawBufferPointer) -> Bool {
    guard var p = bytes.baseAddress else { return true }
    var left = bytes.count
    while left > 0 {
        let n = write(fd, p, left)
        if n < 0 {
            if errno == EINTR { continue }
            return false
        }
        p += n
        left -= n
    }
    return true
}

/// The whole content of `path`; nil when it does not exist (ENOENT). Any other failure (a
/// permission, an I/O error, a folder, more than `maxBytes`) is an error: unlike
/// `FileManager.contents(atPath:)`, it is never mistaken for a missing file.
public func readWholeFile(_ path: String, maxBytes: Int = .max) -> Result<Data?, POSIXFailure> {
    let fd = open(path, O_RDONLY | O_CLOEXEC)
    guard fd >= 0 else { return errno == ENOENT ? .success(nil) : .failure(POSIXFailure("open \(path)")) }
    defer { close(fd) }
    var data = Data()
    var chunk = [UInt8](repeating: 0, count: 64 << 10)
    while true {
        let n = chunk.withUnsafeMutableBytes { read(fd, $0.baseAddress, $0.count) }
        if n < 0 {
            if errno == EINTR { continue }
            return .failure(POSIXFailure("read \(path)"))
        }
        if n == 0 { return .success(data) }
        data.append(contentsOf: chunk[0..<n])
        if data.count > maxBytes { return .failure(POSIXFailure("read \(path)", code: EFBIG)) }
    }
}
