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
    let bytes = Array(text.utf8)
    var done = 0
    while done < bytes.count {
        let n = bytes.withUnsafeBytes { buf -> Int in
            guard let base = buf.baseAddress else { return 0 }
            return write(2, base + done, buf.count - done)
        }
        if n < 0 && errno == EINTR { continue }
        if n <= 0 { return }
        done += n
    }
}

/// Which characters `trimmed(_:)` removes, as Foundation's CharacterSets of these names: spaces
/// (Unicode Zs and tab), line ends (U+000A-U+000D, U+0085, U+2028, U+2029), or both.
public enum TrimmedCharacters: Sendable {
    case whitespaces, newlines, whitespacesAndNewlines

    func contains(_ u: Unicode.Scalar) -> Bool {
        let space = u == "\t" || u.properties.generalCategory == .spaceSeparator
        let newline = (0x0A...0x0D).contains(u.value) || u.value == 0x85 || u.value == 0x2028 || u.value == 0x2029
        switch self {
        case .whitespaces: return space
        case .newlines: return newline
        case .whitespacesAndNewlines: return space || newline
        }
    }
}

extension StringProtocol {
    /// The text without the given characters at either end.
    public func trimmed(_ set: TrimmedCharacters) -> String {
        let scalars = unicodeScalars
        guard let first = scalars.firstIndex(where: { !set.contains($0) }),
              let last = scalars.lastIndex(where: { !set.contains($0) }) else { return "" }
        var out = String.UnicodeScalarView()
        out.append(contentsOf: scalars[first...last])
        return String(out)
    }

    /// `%XX` sequences decoded; nil when one is malformed or the bytes are not UTF-8 (as
    /// Foundation's `removingPercentEncoding`).
    public var percentDecoded: String? {
        var out: [UInt8] = []
        var it = utf8.makeIterator()
        func hexValue(_ c: UInt8) -> UInt8? {
            switch c {
            case 48...57: return c - 48
            case 65...70: return c - 55
            case 97...102: return c - 87
            default: return nil
            }
        }
        while let b = it.next() {
            guard b == UInt8(ascii: "%") else {
                out.append(b)
                continue
            }
            guard let h = it.next().flatMap(hexValue), let l = it.next().flatMap(hexValue) else { return nil }
            out.append(h << 4 | l)
        }
        let text = String(decoding: out, as: UTF8.self)
        return text.utf8.elementsEqual(out) ? text : nil
    }

    /// Bytes outside a URL query's characters (RFC 3986 unreserved, sub-delims, `:@/?`) as `%XX`,
    /// as Foundation's `addingPercentEncoding(withAllowedCharacters: .urlQueryAllowed)`.
    public var percentEncodedForQuery: String {
        let allowed = Set("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-._~!$&'()*+,;=:@/?".utf8)
        let hex = Array("0123456789ABCDEF".utf8)
        var out: [UInt8] = []
        for b in utf8 {
            if allowed.contains(b) { out.append(b) } else { out += [UInt8(ascii: "%"), hex[Int(b >> 4)], hex[Int(b & 15)]] }
        }
        return String(decoding: out, as: UTF8.self)
    }
}
