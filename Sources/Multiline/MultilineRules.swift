import AnduinCore
#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// Decides, line by line, whether a line continues the record before it. Immutable, so shared by
/// every thread. The built-in modes use byte prefix checks only (no regex on the hot path).
public struct MultilineRules: Sendable {
    /// What may follow the lines of an open record.
    public enum State: UInt8, Sendable {
        /// Nothing can continue it (python/go: an ordinary line; custom: a line not matching start_pattern).
        case closed
        /// Any continuation line may follow (java, custom).
        case open
        case pyTraceback, pyAfterError, pyChain
        case goPanic
    }

    let mode: MultilineMode
    let start: ValuePattern?
    let cont: ValuePattern?

    public init(mode: MultilineMode, start: ValuePattern?, cont: ValuePattern?) {
        self.mode = mode
        self.start = start
        self.cont = cont
    }

    public init(_ s: MultilineSettings) {
        self.init(mode: s.mode, start: s.start, cont: s.continuation)
    }

    /// The state of a record that `line` starts.
    public func initial(_ line: UnsafeRawBufferPointer) -> State {
        switch mode {
        case .java: return .open
        case .python: return Self.hasPrefix(line, Prefix.traceback) ? .pyTraceback : .closed
        case .go: return Self.isGoPanicStart(line) ? .goPanic : .closed
        case .custom:
            if let start, cont != nil { return start.matches(line) ? .open : .closed }
            return .open
        }
    }

    /// The new state when `line` continues a record in `state`; nil when it starts a new record.
    public func continues(_ line: UnsafeRawBufferPointer, after state: State) -> State? {
        switch state {
        case .closed: return nil
        case .open:
            switch mode {
            case .java: return Self.isJavaContinuation(line) ? .open : nil
            case .custom:
                if let cont { return cont.matches(line) ? .open : nil }
                if let start { return start.matches(line) ? nil : .open }
                return nil
            case .python, .go: return nil
            }
        case .pyTraceback:
            if Self.isBlank(line) || Self.isIndented(line) { return .pyTraceback }
            // The last line of a traceback names the exception: `ValueError: bad`, `KeyboardInterrupt`.
            return Self.isPythonErrorLine(line) ? .pyAfterError : nil
        case .pyAfterError:
            if Self.isBlank(line) || Self.isIndented(line) { return .pyAfterError }
            if Self.hasPrefix(line, Prefix.pyDuringHandling) || Self.hasPrefix(line, Prefix.pyDirectCause) { return .pyChain }
            return nil
        case .pyChain:
            if Self.isBlank(line) { return .pyChain }
            return Self.hasPrefix(line, Prefix.traceback) ? .pyTraceback : nil
        case .goPanic:
            return Self.isGoContinuation(line) ? .goPanic : nil
        }
    }

    // MARK: byte checks

    enum Prefix {
        static let traceback = Array("Traceback (most recent call last):".utf8)
        static let pyDuringHandling = Array("During handling of the above exception".utf8)
        static let pyDirectCause = Array("The above exception was the direct cause".utf8)
        static let javaIndented: [[UInt8]] = ["at ", "...", "Caused by:", "Suppressed:", "Wrapped by:", "--- End of", "Common frames omitted"]
            .map { Array($0.utf8) }
        static let javaUnindented: [[UInt8]] = ["Caused by:", "Suppressed:", "Wrapped by:", "--- End of"].map { Array($0.utf8) }
        static let exceptionWords: [[UInt8]] = ["Exception", "Error", "Throwable"].map { Array($0.utf8) }
        static let goStarts: [[UInt8]] = ["panic: ", "fatal error: "].map { Array($0.utf8) }
        static let goContinuations: [[UInt8]] = ["goroutine ", "[signal ", "created by ", "exit status ", "runtime: ",
                                                 "runtime stack:", "...additional frames elided...", "[originating from goroutine",
                                                 "panic: ", "fatal error: "].map { Array($0.utf8) }
    }

    @inline(__always) static func isSpace(_ c: UInt8) -> Bool { c == 0x20 || c == 0x09 }

    public static func isBlank(_ line: UnsafeRawBufferPointer) -> Bool {
        line.allSatisfy { $0 == 0x20 || $0 == 0x09 || $0 == 0x0D }
    }

    static func isIndented(_ line: UnsafeRawBufferPointer) -> Bool {
        guard let c = line.first else { return false }
        return isSpace(c)
    }

    /// memcmp, not `starts(with:)`: this runs for every line.
    @inline(__always) static func hasPrefix(_ s: UnsafeRawBufferPointer, _ p: [UInt8]) -> Bool {
        guard s.count >= p.count else { return false }
        return p.withUnsafeBytes { pb in
            guard let a = s.baseAddress, let b = pb.baseAddress else { return true }
            return memcmp(a, b, pb.count) == 0
        }
    }

    static func startsWithAny(_ s: UnsafeRawBufferPointer, _ prefixes: [[UInt8]]) -> Bool {
        for p in prefixes where hasPrefix(s, p) { return true }
        return false
    }

    /// `\tat com.x.Y.z(Y.java:1)`, `\t... 12 more`, `Caused by: …`, `java.lang.IllegalStateException: boom`,
    /// `Exception in thread "main" …`: the lines of a Java (or Node.js `    at `) stack trace after its first.
    static func isJavaContinuation(_ line: UnsafeRawBufferPointer) -> Bool {
        // Most lines start with a timestamp, a bracket or a brace: no continuation begins so.
        guard let first = line.first, isSpace(first) || (first | 0x20) >= 0x61 && (first | 0x20) <= 0x7A
                || first == 0x5F || first == 0x24 || first == 0x2D else { return false }
        var i = 0
        while i < line.count && isSpace(line[i]) { i += 1 }
        let rest = UnsafeRawBufferPointer(rebasing: line[i...])
        if i > 0 { return startsWithAny(rest, Prefix.javaIndented) }
        if startsWithAny(rest, Prefix.javaUnindented) { return true }
        // `Exception…`/`Error…` as a word, then a throwable class name as the first token.
        for w in Prefix.exceptionWords where hasPrefix(rest, w) {
            if rest.count == w.count || !isIdentByte(rest[w.count]) { return true }
        }
        return isThrowableName(rest)
    }

    @inline(__always) static func isIdentByte(_ c: UInt8) -> Bool {
        (c >= 0x30 && c <= 0x39) || ((c | 0x20) >= 0x61 && (c | 0x20) <= 0x7A) || c == 0x5F || c == 0x24
    }

    /// First token (up to `:`, a space or the end) is a qualified class name ending in
    /// Exception/Error/Throwable: `java.lang.NullPointerException`, `com.x.Outer$BadThing Error`.
    static func isThrowableName(_ s: UnsafeRawBufferPointer) -> Bool {
        var end = 0
        var dots = 0
        while end < s.count {
            let c = s[end]
            if c == 0x2E { dots += 1 } else if !isIdentByte(c) { break }
            end += 1
        }
        guard dots > 0 else { return false }
        if end < s.count && !(s[end] == 0x3A || isSpace(s[end]) || s[end] == 0x0D) { return false }
        let token = UnsafeRawBufferPointer(rebasing: s[..<end])
        return Prefix.exceptionWords.contains { w in token.count >= w.count && token[(token.count - w.count)...].elementsEqual(w) }
    }

    /// `ValueError: bad value`, `requests.exceptions.ConnectionError: …`, `KeyboardInterrupt`.
    static func isPythonErrorLine(_ line: UnsafeRawBufferPointer) -> Bool {
        var i = 0
        while i < line.count, isIdentByte(line[i]) || line[i] == 0x2E { i += 1 }
        guard i > 0 else { return false }
        return i == line.count || line[i] == 0x3A || line[i] == 0x0D
    }

    static func isGoPanicStart(_ line: UnsafeRawBufferPointer) -> Bool { startsWithAny(line, Prefix.goStarts) }

    /// Lines of a Go panic after its first: goroutine headers, `\t/path/file.go:12 +0x1d`, function
    /// lines such as `main.main()` or `net/http.(*conn).serve(0xc0001, {0x7f…})`, blank lines
    /// between goroutines, `created by …`, `[signal SIGSEGV …]`, `exit status 2`.
    static func isGoContinuation(_ line: UnsafeRawBufferPointer) -> Bool {
        if line.isEmpty || isBlank(line) || isIndented(line) { return true }
        if startsWithAny(line, Prefix.goContinuations) { return true }
        return isGoFunctionLine(line)
    }

    /// `pkg/path.Func(args)` or `pkg.(*T).Method(...)`: no space before the first `(`, ends with `)`.
    static func isGoFunctionLine(_ line: UnsafeRawBufferPointer) -> Bool {
        var end = line.count
        while end > 0 && (line[end - 1] == 0x0D || line[end - 1] == 0x20) { end -= 1 }
        guard end > 0, line[end - 1] == 0x29 else { return false }
        var i = 0
        while i < end {
            let c = line[i]
            if c == 0x28 { return i > 0 }
            if isSpace(c) { return false }
            i += 1
        }
        return false
    }
}
