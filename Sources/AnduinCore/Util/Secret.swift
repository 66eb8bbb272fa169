/// A config value that must never be shown: a password, an API key, a token, a header value such as
/// `Authorization`, the userinfo of a URL.
///
/// It prints as `***` wherever it is interpolated (logs, errors, `validate`, metrics labels, dead-letter
/// reasons); the only way to the text is `reveal()`, called where the value is handed to libcurl or
/// compared. `CredentialScrubber` removes revealed values, in every form they were sent, from text the
/// agent did not write itself (a receiver's answer that echoes the credentials it was sent).
public struct Secret: Sendable, Hashable, CustomStringConvertible, CustomDebugStringConvertible {
    private let value: String

    public init(_ value: String) { self.value = value }

    /// The secret text, for the one place that sends it.
    public func reveal() -> String { value }

    public var isEmpty: Bool { value.isEmpty }

    public var description: String { "***" }
    public var debugDescription: String { "Secret(***)" }
}

extension String {
    /// Replaces every occurrence of `target` (non-empty) with `replacement`, without Foundation.
    func replacingAll(_ target: String, with replacement: String) -> String {
        guard !target.isEmpty else { return self }
        var result = ""
        var rest = self[...]
        while let r = rest.firstRange(of: target) {
            result += rest[..<r.lowerBound]
            result += replacement
            rest = rest[r.upperBound...]
        }
        result += rest
        return result
    }
}
