#if canImport(FoundationEssentials)
import FoundationEssentials
#else
import Foundation
#endif
#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// `scheme://user:password@host/...`: the credentials a URL carries, taken out of it so the URL can be
/// shown and logged, and the password held as a `Secret`.
public struct URLUserinfo: Sendable, Equatable {
    /// The URL without its userinfo.
    public var url: String
    public var user: String?
    public var password: Secret?

    public init(_ url: String) {
        self.url = url
        guard let schemeEnd = url.firstRange(of: "://") else { return }
        let rest = url[schemeEnd.upperBound...]
        let authorityEnd = rest.firstIndex { $0 == "/" || $0 == "?" || $0 == "#" } ?? rest.endIndex
        guard let at = rest[..<authorityEnd].lastIndex(of: "@") else { return }
        let info = rest[..<at]
        self.url = String(url[..<schemeEnd.upperBound]) + rest[rest.index(after: at)...]
        if let colon = info.firstIndex(of: ":") {
            user = Self.decode(info[..<colon])
            password = Secret(Self.decode(info[info.index(after: colon)...]))
        } else {
            user = Self.decode(info)
        }
    }

    private static func decode(_ s: Substring) -> String { s.percentDecoded ?? String(s) }
}
