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

public enum Compression: String, CaseIterable, Sendable { case gzip, none }

/// Compresses request bodies with a reused libdeflate compressor (`GzipEncoder`); used by one
/// delivery thread.
public struct BodyEncoder {
    private var gzip: GzipEncoder?
    public private(set) var body: [UInt8] = []

    public init(_ compression: Compression, level: Int32) throws {
        if compression == .gzip { gzip = try GzipEncoder(level: level) }
    }

    public var contentEncoding: String? { gzip == nil ? nil : "gzip" }

    /// Calls `send` with the bytes to send for `raw`: itself, or its gzip (in a buffer reused for
    /// every request).
    public mutating func withEncoded<R>(_ raw: UnsafeRawBufferPointer,
                                        _ send: (UnsafeRawBufferPointer) throws -> R) throws -> R {
        guard gzip != nil else { return try send(raw) }
        body.removeAll(keepingCapacity: true)
        try gzip?.compress(raw, into: &body)
        return try body.withUnsafeBytes(send)
    }
}
