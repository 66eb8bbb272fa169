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
