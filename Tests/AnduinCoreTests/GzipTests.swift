import XCTest
import Foundation
import AnduinCore
import CZlib

final class GzipTests: XCTestCase {
    /// Deterministic, moderately compressible bytes (log-like text with varying numbers).
    private func sample(_ count: Int) -> [UInt8] {
        var line = Array("{\"seq\":00000000,\"level\":\"info\",\"msg\":\"request served\"}\n".utf8)
        var out = [UInt8](repeating: 0, count: count)
        var state: UInt64 = 0x9E37_79B9_7F4A_7C15
        var i = 0
        // Per line, a pseudo-random 8-digit field keeps the data from being trivially repetitive.
        while i < count {
            state = state &* 6364136223846793005 &+ 1442695040888963407
            var v = state >> 33
            for d in 0..<8 { line[14 - d] = UInt8(ascii: "0") + UInt8(v % 10); v /= 10 }
            let n = min(line.count, count - i)
            out.withUnsafeMutableBufferPointer { o in for j in 0..<n { o[i + j] = line[j] } }
            i += n
        }
        return out
    }

    private func assertRoundTrip(_ input: [UInt8], level: Int32 = 6, file: StaticString = #filePath, line: UInt = #line) throws {
        var enc = try GzipEncoder(level: level)
        var out: [UInt8] = []
        try enc.compress(input, into: &out)
        XCTAssertGreaterThanOrEqual(out.count, 18, file: file, line: line)
        XCTAssertEqual(Array(out.prefix(3)), [0x1F, 0x8B, 0x08], "gzip magic + deflate", file: file, line: line)
        XCTAssertEqual(try Gzip.decompress(out), input, file: file, line: line)
    }

    func testRoundTripEmptySmallLarge() throws {
        try assertRoundTrip([])
        try assertRoundTrip(Array("hello, world".utf8))
        try assertRoundTrip([0])
        try assertRoundTrip(sample(10 * 1024 * 1024))
    }

    func testIncompressibleData() throws {
        var state: UInt64 = 42
        let noise = (0..<300_000).map { _ -> UInt8 in
            state = state &* 6364136223846793005 &+ 1442695040888963407
            return UInt8(truncatingIfNeeded: state >> 56)
        }
        try assertRoundTrip(noise, level: 9)
    }

    func testAllLevels() throws {
        let input = sample(200_000)
        var sizes: [Int32: Int] = [:]
        for level: Int32 in 0...12 {
            var enc = try GzipEncoder(level: level)
            var out: [UInt8] = []
            try enc.compress(input, into: &out)
            XCTAssertEqual(try Gzip.decompress(out), input, "level \(level)")
            sizes[level] = out.count
        }
        XCTAssertGreaterThan(sizes[0] ?? 0, input.count, "level 0 stores")
        XCTAssertLessThan(sizes[9] ?? .max, sizes[1] ?? 0, "9 compresses better than 1")
        XCTAssertLessThanOrEqual(sizes[12] ?? .max, sizes[9] ?? 0, "12 compresses at least as well as 9")
        XCTAssertEqual(try GzipEncoder(level: -1).level, 6, "zlib's default means 6")
        XCTAssertThrowsError(try GzipEncoder(level: 13))
        XCTAssertThrowsError(try GzipEncoder(level: -2))
    }

    /// An Elasticsearch bulk body like the benchmark's: action line, then a record.
    private func bulkBody(records: Int) -> [UInt8] {
        var s = ""
        var state: UInt64 = 7
        let words = ["lorem", "ipsum", "dolor", "sit", "amet", "elit", "sed", "tempor", "magna", "aliqua"]
        for i in 0..<records {
            state = state &* 6364136223846793005 &+ 1442695040888963407
            let w = (0..<9).map { words[Int((state >> UInt64(8 + $0 * 4)) % 10)] }.joined(separator: " ")
            s += #"{"create":{"_index":"logs-2026.11.18","_id":"4c43c6259d120dcc\#(String(format: "%016x", i))"}}"# + "\n"
            s += #"{"@timestamp":"2026-11-18T11:06:56.\#(String(format: "%06d", i))123Z","stream":"stdout","level":"info","#
            s += #""msg":"hello \#(i) \#(w)","user":"u\#(i % 1000)","log":{"file":{"path":"/var/log/pods/a/b/0.log"},"#
            s += #""offset":\#(i * 191)},"event":{"id":"4c43c6259d120dcc\#(String(format: "%016x", i))"}}"# + "\n"
        }
        return Array(s.utf8)
    }

    /// zlib's own gzip of `input` at `level`, the size libdeflate's default must not exceed.
    private func zlibGzip(_ input: [UInt8], level: Int32) throws -> [UInt8] {
        var strm = z_stream()
        XCTAssertEqual(deflateInit2_(&strm, level, Z_DEFLATED, 15 + 16, 8, Z_DEFAULT_STRATEGY, zlibVersion(),
                                     Int32(MemoryLayout<z_stream>.size)), Z_OK)
        defer { deflateEnd(&strm) }
        var out = [UInt8](repeating: 0, count: Int(deflateBound(&strm, uLong(input.count))))
        var input = input
        let produced = input.withUnsafeMutableBufferPointer { i in
            out.withUnsafeMutableBufferPointer { o -> Int in
                strm.next_in = i.baseAddress
                strm.avail_in = uInt(i.count)
                strm.next_out = o.baseAddress
                strm.avail_out = uInt(o.count)
                XCTAssertEqual(deflate(&strm, Z_FINISH), Z_STREAM_END)
                return o.count - Int(strm.avail_out)
            }
        }
        return Array(out.prefix(produced))
    }

    /// The wire format is unchanged (zlib inflates libdeflate's gzip to the same bytes) and the
    /// default level's output is no larger than zlib level 6's on a bulk body.
    func testLibdeflateOutputIsGzipAndNoLargerThanZlib6() throws {
        let body = bulkBody(records: 5_000)
        var enc = try GzipEncoder(level: 6)
        var gz: [UInt8] = []
        try enc.compress(body, into: &gz)
        XCTAssertEqual(Array(gz.prefix(3)), [0x1F, 0x8B, 0x08])
        XCTAssertEqual(try Gzip.decompress(gz), body, "zlib inflates it back")
        let zlib6 = try zlibGzip(body, level: 6)
        XCTAssertEqual(try Gzip.decompress(zlib6), body)
        XCTAssertLessThanOrEqual(gz.count, zlib6.count, "libdeflate 6: \(gz.count) bytes, zlib 6: \(zlib6.count)")
    }

    func testReuseAppendsCompleteMembers() throws {
        var enc = try GzipEncoder(level: 1)
        let a = sample(50_000), b = Array("second".utf8)
        var out: [UInt8] = [0xAA]
        try enc.compress(a, into: &out)
        XCTAssertEqual(out.first, 0xAA, "appends, keeps what was there")
        let firstEnd = out.count
        try enc.compress(b, into: &out)
        XCTAssertEqual(try Gzip.decompress(Array(out[1..<firstEnd])), a)
        XCTAssertEqual(try Gzip.decompress(Array(out[firstEnd...])), b)
        // Concatenated members decode as one stream, as gunzip does.
        XCTAssertEqual(try Gzip.decompress(Array(out[1...])), a + b)

        // A copy gets its own compressor; both keep working.
        var copy = enc
        var o1: [UInt8] = [], o2: [UInt8] = []
        try copy.compress(a, into: &o1)
        try enc.compress(b, into: &o2)
        XCTAssertEqual(try Gzip.decompress(o1), a)
        XCTAssertEqual(try Gzip.decompress(o2), b)
    }

    func testSystemGunzipReadsOutput() throws {
        let gunzip = ["/usr/bin/gunzip", "/bin/gunzip"].first { FileManager.default.isExecutableFile(atPath: $0) }
        // gzip is an essential package on Debian/Ubuntu: missing, the setup is broken, say so.
        guard let gunzip else { return XCTFail("no gunzip in /usr/bin or /bin (install gzip): cannot check the output with it") }
        let input = sample(300_000)
        var enc = try GzipEncoder(level: 6)
        var gz: [UInt8] = []
        try enc.compress(input, into: &gz)
        let path = FileManager.default.temporaryDirectory.appendingPathComponent("anduin-gzip-\(getpid()).gz")
        try Data(gz).write(to: path)
        defer { try? FileManager.default.removeItem(at: path) }
        let p = Process()
        p.executableURL = URL(fileURLWithPath: gunzip)
        p.arguments = ["-c", path.path]
        let pipe = Pipe()
        p.standardOutput = pipe
        try p.run()
        let decoded = pipe.fileHandleForReading.readDataToEndOfFile()
        p.waitUntilExit()
        XCTAssertEqual(p.terminationStatus, 0)
        XCTAssertEqual(Array(decoded), input)
    }

    func testDecompressRejectsBadInput() throws {
        let gz = try Gzip.compress(sample(10_000))
        XCTAssertThrowsError(try Gzip.decompress(Array(gz.dropLast(5)))) { e in
            XCTAssertTrue("\(e)".contains("not valid gzip"), "\(e)")
        }
        XCTAssertThrowsError(try Gzip.decompress(Array("plain text".utf8)))
        XCTAssertThrowsError(try Gzip.decompress([]))
        XCTAssertThrowsError(try Gzip.decompress(gz, limit: 9_999)) { e in
            guard case GzipError.tooLarge = e else { return XCTFail("\(e)") }
        }
        XCTAssertEqual(try Gzip.decompress(gz, limit: 10_000).count, 10_000)
    }
}
