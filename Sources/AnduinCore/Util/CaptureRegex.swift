import CPCRE2

/// A PCRE2 regular expression with named captures, compiled once (JIT when the CPU allows) and
/// matched on bytes from any number of threads, each with its own `CaptureRegex.Scratch`.
///
/// Byte mode (no UTF): `.` is one byte and invalid UTF-8 cannot make a match fail; captured bytes
/// are escaped when written. A match that runs past the backtracking limit counts as no match, so
/// a pathological line costs a bounded amount of work.
public final class CaptureRegex: @unchecked Sendable {
    // Immutable after init; pcre2_match only reads the code and the match context.
    let code: OpaquePointer
    let context: OpaquePointer?
    public let pattern: String
    /// Named groups, in the order of their group numbers.
    public let names: [(name: String, group: Int)]
    public let groupCount: Int

    public struct CompileError: Error, Sendable, CustomStringConvertible {
        public var message: String
        /// Byte offset in the pattern where PCRE2 found the problem.
        public var offset: Int
        public var description: String { "\(message) at offset \(offset)" }
    }

    /// Backtracking steps a match may take; a line whose match needs more is not matched.
    public static let matchLimit: UInt32 = 200_000

    public init(_ pattern: String) throws(CompileError) {
        self.pattern = pattern
        var err: Int32 = 0
        var offset = 0
        let bytes = Array(pattern.utf8)
        let compiled = bytes.withUnsafeBufferPointer { b in
            pcre2_compile_8(b.baseAddress, b.count, 0, &err, &offset, nil)
        }
        guard let compiled else {
            var buf = [UInt8](repeating: 0, count: 256)
            let n = pcre2_get_error_message_8(err, &buf, buf.count)
            throw CompileError(message: String(decoding: buf.prefix(max(0, Int(n))), as: UTF8.self), offset: offset)
        }
        code = compiled
        // Without JIT (an unsupported CPU) the interpreter is used: slower, same results.
        _ = pcre2_jit_compile_8(compiled, UInt32(PCRE2_JIT_COMPLETE))
        context = pcre2_match_context_create_8(nil)
        if let context { pcre2_set_match_limit_8(context, Self.matchLimit) }

        var count: UInt32 = 0
        var entrySize: UInt32 = 0
        var table: UnsafePointer<UInt8>? = nil
        var captures: UInt32 = 0
        pcre2_pattern_info_8(compiled, UInt32(PCRE2_INFO_CAPTURECOUNT), &captures)
        pcre2_pattern_info_8(compiled, UInt32(PCRE2_INFO_NAMECOUNT), &count)
        pcre2_pattern_info_8(compiled, UInt32(PCRE2_INFO_NAMEENTRYSIZE), &entrySize)
        pcre2_pattern_info_8(compiled, UInt32(PCRE2_INFO_NAMETABLE), &table)
        groupCount = Int(captures)
        var names: [(String, Int)] = []
        if let table, entrySize >= 3 {
            for i in 0..<Int(count) {
                let e = table + i * Int(entrySize)
                let group = Int(e[0]) << 8 | Int(e[1])
                var n = 2
                while n < Int(entrySize), e[n] != 0 { n += 1 }
                names.append((String(decoding: UnsafeBufferPointer(start: e + 2, count: n - 2), as: UTF8.self), group))
            }
        }
        self.names = names.sorted { $0.1 < $1.1 }
    }

    deinit {
        if let context { pcre2_match_context_free_8(context) }
        pcre2_code_free_8(code)
    }

    /// Per-thread match state (PCRE2 match data); reuse it for every line.
    public final class Scratch {
        let data: OpaquePointer?
        public init(for regex: CaptureRegex) {
            data = pcre2_match_data_create_from_pattern_8(regex.code, nil)
        }
        deinit { if let data { pcre2_match_data_free_8(data) } }
    }

    /// Matches `subject`; on a match calls `body` with a function giving each group's byte range
    /// (nil when the group did not take part) and returns true.
    @inline(__always)
    public func match(_ subject: UnsafeRawBufferPointer, _ scratch: Scratch,
                      _ body: ((Int) -> Range<Int>?) -> Void) -> Bool {
        guard let data = scratch.data else { return false }
        let base = subject.baseAddress?.assumingMemoryBound(to: UInt8.self)
        // An empty buffer may have no base address; PCRE2 wants a pointer even for length 0.
        let rc: Int32
        if let base {
            rc = pcre2_match_8(code, base, subject.count, 0, 0, data, context)
        } else {
            var empty: UInt8 = 0
            rc = pcre2_match_8(code, &empty, 0, 0, 0, data, context)
        }
        guard rc > 0 else { return false }
        guard let ov = pcre2_get_ovector_pointer_8(data) else { return false }
        let pairs = Int(pcre2_get_ovector_count_8(data))
        let n = subject.count
        body { g in
            guard g >= 0, g < pairs, g < Int(rc) else { return nil }
            let s = ov[2 * g], e = ov[2 * g + 1]
            // PCRE2_UNSET (~(size_t)0) reads as -1 here.
            guard s >= 0, s <= e, e <= n else { return nil }
            return s..<e
        }
        return true
    }
}

