#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

// Small replacements for full-Foundation APIs (NSString paths, String(format:), FileHandle): the agent
// links FoundationEssentials only, which has none of them.

/// The directory part of `path`, as `NSString.deletingLastPathComponent` gives it: "" for a bare name,
/// "/" for a name in the root; trailing slashes are not a component.
public func parentDirectory(of path: String) -> String {
    var p = Substring(path)
    while p.count > 1, p.last == "/" { p = p.dropLast() }
    guard let slash = p.lastIndex(of: "/") else { return "" }
    var dir = p[..<slash]
    while dir.count > 1, dir.last == "/" { dir = dir.dropLast() }
    return dir.isEmpty ? "/" : String(dir)
}

/// `dir` and `name` joined by one slash.
public func joinPath(_ dir: String, _ name: String) -> String {
    if dir.isEmpty { return name }
    return dir.hasSuffix("/") ? dir + name : dir + "/" + name
}

/// `value` with `decimals` digits after the point, as printf's `%.Nf` writes it.
public func formatFixed(_ value: Double, decimals: Int) -> String {
    var buf = [CChar](repeating: 0, count: 64)
    let n = withVaList([value]) { args in
        buf.withUnsafeMutableBufferPointer { vsnprintf($0.baseAddress, 64, "%.\(max(0, min(decimals, 20)))f", args) }
    }
    guard n > 0 else { return String(value) }
    if n >= 64 { return String(value) }  // beyond 1e60: printf's digits would be cut; Swift's form is exact
    return String(decoding: buf[..<Int(n)].map { UInt8(bitPattern: $0) }, as: UTF8.self)
}

/// Writes all of `text` to standard error (unbuffered, as FileHandle.standardError does).
public func writeToStandardError(_ text: String) {
    var bytes = Array(text.utf8)
    var done = 0
    while done < bytes.count {
        let n = bytes.withUnsafeMutableBytes { buf -> Int in
            guard let base = buf.baseAddress else { return 0 }
            return write(2, base + done, buf.count - done)
        }
        if n < 0 && errno == EINTR { continue }
        if n <= 0 { return }
        done += n
    }
    bytes.removeAll()
}
