#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif
#if canImport(FoundationEssentials)
import FoundationEssentials
#else
import Foundation
#endif

/// Removes a request's credentials from text the destination sent back. Receivers quote requests in
/// their answers (Elasticsearch's per-item `reason` can read `request auth was ApiKey …`), and those
/// texts end up in the log, the retry journal, the dead-letter store, readiness reasons and
/// `anduin status`: every such text passes through one of these first.
///
/// The forms replaced (each by `***`), for every credential the request carried:
/// - Basic auth: the password, `user:password` and its base64 (what libcurl sends);
/// - each header value (`Authorization`, API keys, custom headers), and the credential after its
///   scheme (`Bearer TOKEN`, `ApiKey KEY`, `Basic B64`); a credential that is base64 of `id:key`
///   (an Elasticsearch API key, a Basic header) also decoded, whole and its part after the colon;
/// - the userinfo of the URL (raw and percent-decoded, its password, and its base64);
/// - each of these as it appears inside a JSON string (`/` as `\/`, quotes and backslashes escaped).
///
/// Values shorter than 4 bytes are left alone: replacing them would mangle unrelated text and hide
/// nothing.
public struct CredentialScrubber: Sendable {
    /// What is replaced, longest first (so `user:password` goes whole before `password` alone).
    public let secrets: [Secret]
    private let needles: [[UInt8]]

    /// Scrubs nothing (a request without credentials).
    public static let none = CredentialScrubber(forms: [])

    public init(url: String, headers: [(String, String)], basicAuth: (String, String)?) {
        var s: [String] = []
        if let (user, password) = basicAuth {
            s.append(password)
            s.append(user + ":" + password)
            s.append(Data((user + ":" + password).utf8).base64EncodedString())
        }
        for (name, value) in headers {
            let lower = name.lowercased()
            if lower == "content-type" || lower == "content-encoding" || lower == "expect" { continue }
            s.append(value)
            // `Bearer TOKEN`, `ApiKey KEY`, `Basic B64`: the credential alone may be echoed too.
            let credential = value.firstIndex(of: " ").map { String(value[value.index(after: $0)...]) } ?? value
            s.append(credential)
            s += Self.decodedPair(credential)
        }
        if let info = CredentialScrubber.userinfo(of: url) {
            s.append(info)
            if let decoded = info.percentDecoded { s.append(decoded) }
            if let colon = info.firstIndex(of: ":") {
                let password = String(info[info.index(after: colon)...])
                s.append(password)
                if let decoded = password.percentDecoded { s.append(decoded) }
            }
            let plain = info.percentDecoded ?? info
            s.append(Data(plain.utf8).base64EncodedString())
        }
        self.init(forms: s)
    }

    init(forms: [String]) {
        var all = Set<String>()
        for f in forms where f.utf8.count >= 4 {
            all.insert(f)
            // As a JSON writer would put it inside a string: escaped, and with `/` as `\/`.
            var w = JSONWriter()
            w.writeString(f)
            let escaped = String(decoding: w.bytes.dropFirst().dropLast(), as: UTF8.self)
            all.insert(escaped)
            if escaped.contains("/") { all.insert(escaped.replacingAll("/", with: "\\/")) }
        }
        let sorted = all.sorted { $0.utf8.count != $1.utf8.count ? $0.utf8.count > $1.utf8.count : $0 < $1 }
        secrets = sorted.map(Secret.init)
        needles = sorted.map { Array($0.utf8) }
    }

    /// `id:key` and `key` when `credential` is the base64 of printable `id:key` text, else nothing.
    static func decodedPair(_ credential: String) -> [String] {
        guard credential.utf8.count >= 8, let data = Data(base64Encoded: credential),
              let text = String(data: data, encoding: .utf8),
              text.unicodeScalars.allSatisfy({ $0.value >= 0x20 && $0.value != 0x7F }),
              let colon = text.firstIndex(of: ":") else { return [] }
        return [text, String(text[text.index(after: colon)...])]
    }

    /// `user:password` of `scheme://user:password@host/...`, nil when there is none.
    static func userinfo(of url: String) -> String? {
        guard let schemeEnd = url.firstRange(of: "://") else { return nil }
        let rest = url[schemeEnd.upperBound...]
        let authEnd = rest.firstIndex(where: { $0 == "/" || $0 == "?" || $0 == "#" }) ?? rest.endIndex
        let authority = rest[..<authEnd]
        guard let at = authority.lastIndex(of: "@") else { return nil }
        let info = String(authority[..<at])
        return info.isEmpty ? nil : info
    }

    public var isEmpty: Bool { needles.isEmpty }

    public func scrub(_ text: String) -> String {
        guard !needles.isEmpty, !text.isEmpty else { return text }
        let bytes = Array(text.utf8)
        let clean = scrub(bytes)
        return clean == bytes ? text : String(decoding: clean, as: UTF8.self)
    }

    /// `body` with every form replaced; the same array, not copied, when there is none in it.
    public func scrub(_ body: [UInt8]) -> [UInt8] {
        guard !needles.isEmpty, !body.isEmpty else { return body }
        var text = body
        for needle in needles {
            guard var hit = Self.find(needle, in: text, from: 0) else { continue }
            var out: [UInt8] = []
            out.reserveCapacity(text.count)
            var pos = 0
            while true {
                out.append(contentsOf: text[pos..<hit])
                out.append(contentsOf: [0x2A, 0x2A, 0x2A])
                pos = hit + needle.count
                guard let next = Self.find(needle, in: text, from: pos) else { break }
                hit = next
            }
            out.append(contentsOf: text[pos...])
            text = out
        }
        return text
    }

    /// Every reason `result` carries, scrubbed.
    public func scrub(_ result: SendResult) -> SendResult {
        guard !needles.isEmpty else { return result }
        switch result {
        case .delivered, .tooLarge: return result
        case .retryAll(let status, let reason): return .retryAll(status: status, reason: scrub(reason))
        case .unreachable(let why): return .unreachable(scrub(why))
        case .timedOut(let why): return .timedOut(scrub(why))
        case .authFailure(let why): return .authFailure(scrub(why))
        case .perRecord(let outcomes):
            return .perRecord(outcomes.map { o in
                switch o {
                case .delivered: return o
                case .retry(let status, let reason): return .retry(status: status, reason: scrub(reason))
                case .deadLetter(let status, let reason): return .deadLetter(status: status, reason: scrub(reason))
                }
            })
        }
    }

    /// Offset of the first `needle` in `text` at or after `from`.
    static func find(_ needle: [UInt8], in text: [UInt8], from: Int) -> Int? {
        guard from >= 0, from < text.count, !needle.isEmpty else { return nil }
        guard text.count - from >= needle.count else { return nil }
        return text.withUnsafeBytes { t in
            needle.withUnsafeBytes { n in
                guard let tb = t.baseAddress, let nb = n.baseAddress else { return nil }
                let first = Int32(n[0])
                var i = from
                let last = t.count - n.count
                // memchr to each candidate first byte, memcmp for the rest (glibc's memmem is a GNU extension).
                while i <= last {
                    guard let hit = memchr(tb + i, first, last - i + 1) else { return nil }
                    let at = tb.distance(to: UnsafeRawPointer(hit))
                    if memcmp(tb + at, nb, n.count) == 0 { return at }
                    i = at + 1
                }
                return nil
            }
        }
    }
}
