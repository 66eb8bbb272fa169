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

/// Produces the auth part of each request; used by one delivery thread.
public final class HTTPAuthenticator {
    private let options: HTTPAuthOptions
    private var tokenFile: SecretFile?
    private var password: String?

    public init(_ options: HTTPAuthOptions) {
        self.options = options
        password = options.password?.reveal()
    }

    /// Basic credentials for libcurl (never put in the URL), or nil.
    public func basic() throws -> (String, String)? {
        guard let user = options.user else { return nil }
        if let file = options.passwordFile {
            // Re-read each time: cheap, and a rotated secret is picked up without a restart.
            guard let data = FileManager.default.contents(atPath: file) else {
                throw HTTPAuthError("cannot read password_file \(file)")
            }
            password = String(decoding: data, as: UTF8.self).trimmed(.newlines)
        }
        return (user, password ?? "")
    }

    /// Extra `Authorization` header for api_key / bearer token.
    public func header() throws -> (String, String)? {
        if let key = options.apiKey { return ("Authorization", "ApiKey " + key.reveal()) }
        guard let file = options.tokenFile else { return nil }
        let reader = tokenFile ?? SecretFile(path: file)
        tokenFile = reader
        do {
            return ("Authorization", "Bearer " + (try reader.current()).reveal())
        } catch {
            throw HTTPAuthError("cannot read token_file \(error)")
        }
    }
}

public struct HTTPAuthError: Error, CustomStringConvertible, Sendable {
    public let description: String
    init(_ d: String) { description = d }
}
