import AnduinCore

/// Reads a `_bulk` response body with the project's JSON scanner (no Foundation, no boxing).
///
/// A response is a delivery receipt only when it accounts for every action: a JSON object whose
/// `items` array has exactly one entry per action sent. Anything else (invalid JSON, an HTML page
/// from a proxy, `"errors":false` with missing, empty or extra `items`) is a failed request, retried
/// whole: nothing is acknowledged on its word.
///
/// Fast path: with `"errors":false` before `items` (as Elasticsearch and OpenSearch write it), the
/// items are only counted, not read.
public enum BulkResponse {
    /// Per item: 2xx is delivered; 409 is delivered when `conflictIsDelivered` (op_type create with
    /// our own `_id`: the document is already there, a replay); 429 and 5xx are retried; any other
    /// status is dead-lettered with the error's type and reason.
    ///
    /// Every text taken from the body (reasons, the start of an unreadable body) is passed through
    /// `scrubber` before it is cut to length, so no part of a credential survives the cut.
    public static func read(_ body: [UInt8], actions: Int, conflictIsDelivered: Bool,
                            scrubber: CredentialScrubber = .none) -> SendResult {
        body.withUnsafeBytes { read($0, actions: actions, conflictIsDelivered: conflictIsDelivered, scrubber: scrubber) }
    }

    public static func read(_ body: UnsafeRawBufferPointer, actions: Int, conflictIsDelivered: Bool,
                            scrubber: CredentialScrubber = .none) -> SendResult {
        var scan = Scanner(body, scrubber: scrubber)
        switch scan.document(actions: actions, conflictIsDelivered: conflictIsDelivered) {
        case .failure(let problem):
            let clean = scrubber.scrub(Array(body))
            return .retryAll(status: 200, reason: "\(problem): \(HTTPStatusClass.snippet(Array(clean.prefix(300))))")
        case .success(let outcomes):
            if let outcomes { return outcomes.allSatisfy({ $0 == .delivered }) ? .delivered : .perRecord(outcomes) }
            return .delivered
        }
    }

    struct Problem: Error, CustomStringConvertible {
        let description: String
        init(_ d: String) { description = d }
    }

    /// Walks the response once. Bounds-checked everywhere: garbage fails, never traps.
    struct Scanner {
        let p: UnsafePointer<UInt8>?
        let n: Int
        let scrubber: CredentialScrubber
        var i = 0

        init(_ body: UnsafeRawBufferPointer, scrubber: CredentialScrubber) {
            p = body.baseAddress?.assumingMemoryBound(to: UInt8.self)
            n = body.count
            self.scrubber = scrubber
        }

        /// The outcomes, or nil when `"errors":false` came first and the item count matched.
        mutating func document(actions: Int, conflictIsDelivered: Bool) -> Result<[RecordOutcome]?, Problem> {
            guard let p else { return .failure(Problem("empty bulk response")) }
            i = JSONScan.skipWS(p, 0, n)
            guard i < n, p[i] == 0x7B else { return .failure(Problem("bulk response is not a JSON object")) }
            i += 1
            var errors: Bool?
            var outcomes: [RecordOutcome]?
            var counted: Int?
            var first = true
            while true {
                i = JSONScan.skipWS(p, i, n)
                guard i < n else { return .failure(Problem("truncated bulk response")) }
                if p[i] == 0x7D { i += 1; break }
                if !first {
                    guard p[i] == 0x2C else { return .failure(Problem("invalid JSON in bulk response")) }
                    i = JSONScan.skipWS(p, i + 1, n)
                }
                first = false
                guard let key = key() else { return .failure(Problem("invalid JSON in bulk response")) }
                switch key {
                case .errors:
                    if literal("true") { errors = true } else if literal("false") { errors = false } else {
                        return .failure(Problem("bulk response: \"errors\" is not a boolean"))
                    }
                case .items:
                    guard i < n, p[i] == 0x5B else { return .failure(Problem("bulk response: \"items\" is not an array")) }
                    if errors == false {
                        guard let c = countElements() else { return .failure(Problem("invalid JSON in bulk response items")) }
                        counted = c
                    } else {
                        switch items(conflictIsDelivered: conflictIsDelivered) {
                        case .success(let o): outcomes = o
                        case .failure(let e): return .failure(e)
                        }
                    }
                case .other:
                    guard JSONScan.skipValue(p, &i, n) else { return .failure(Problem("invalid JSON in bulk response")) }
                }
            }
            guard JSONScan.skipWS(p, i, n) == n else { return .failure(Problem("trailing bytes after the bulk response")) }
            let have = outcomes?.count ?? counted
            guard let have else { return .failure(Problem("bulk response without items for \(actions) actions")) }
            guard have == actions else {
                return .failure(Problem("bulk response has \(have) items for \(actions) actions"))
            }
            if let outcomes { return .success(outcomes) }
            return .success(nil)
        }

        enum Key { case errors, items, other }

        /// Reads `"key":` and leaves `i` at the value.
        mutating func key() -> Key? {
            guard let p, i < n, p[i] == 0x22 else { return nil }
            let start = i + 1
            var j = start
            guard JSONScan.scanString(p, &j, n) != nil else { return nil }
            let raw = UnsafeRawBufferPointer(start: p + start, count: j - 1 - start)
            i = JSONScan.skipWS(p, j, n)
            guard i < n, p[i] == 0x3A else { return nil }
            i = JSONScan.skipWS(p, i + 1, n)
            if raw.elementsEqual("errors".utf8) { return .errors }
            if raw.elementsEqual("items".utf8) { return .items }
            return .other
        }

        mutating func literal(_ word: StaticString) -> Bool {
            guard let p else { return false }
            let len = word.utf8CodeUnitCount
            guard n - i >= len else { return false }
            for k in 0..<len where p[i + k] != word.utf8Start[k] { return false }
            i += len
            return true
        }

        /// Counts the elements of the array at `i` (structurally checked), moving past it.
        mutating func countElements() -> Int? {
            guard let p else { return nil }
            i = JSONScan.skipWS(p, i + 1, n)
            if i < n && p[i] == 0x5D { i += 1; return 0 }
            var count = 0
            while true {
                guard JSONScan.skipValue(p, &i, n) else { return nil }
                count += 1
                i = JSONScan.skipWS(p, i, n)
                guard i < n else { return nil }
                if p[i] == 0x5D { i += 1; return count }
                guard p[i] == 0x2C else { return nil }
                i = JSONScan.skipWS(p, i + 1, n)
            }
        }

        /// Reads every item: `{"<action>":{"status":N,"error":{"type":…,"reason":…},…}}`.
        mutating func items(conflictIsDelivered: Bool) -> Result<[RecordOutcome], Problem> {
            guard let p else { return .failure(Problem("empty")) }
            var out: [RecordOutcome] = []
            i = JSONScan.skipWS(p, i + 1, n)
            if i < n && p[i] == 0x5D { i += 1; return .success(out) }
            while true {
                guard i < n, p[i] == 0x7B else { return .failure(Problem("bulk response item is not an object")) }
                let start = i
                guard JSONScan.skipValue(p, &i, n) else { return .failure(Problem("invalid JSON in bulk response items")) }
                out.append(Scanner.item(UnsafeRawBufferPointer(start: p + start, count: i - start),
                                        conflictIsDelivered: conflictIsDelivered, scrubber: scrubber))
                i = JSONScan.skipWS(p, i, n)
                guard i < n else { return .failure(Problem("truncated bulk response items")) }
                if p[i] == 0x5D { i += 1; return .success(out) }
                guard p[i] == 0x2C else { return .failure(Problem("invalid JSON in bulk response items")) }
                i = JSONScan.skipWS(p, i + 1, n)
            }
        }

        /// One item object (its bytes, braces included).
        static func item(_ raw: UnsafeRawBufferPointer, conflictIsDelivered: Bool,
                         scrubber: CredentialScrubber = .none) -> RecordOutcome {
            // The members fragment inside the braces, as `JSONScan.lookup` takes it.
            guard raw.count >= 2 else { return .retry(status: 0, reason: "bulk item without a status") }
            let inner = UnsafeRawBufferPointer(rebasing: raw[1..<(raw.count - 1)])
            // The action name varies (create, index); the item has one member: skip its key.
            guard let base = inner.baseAddress?.assumingMemoryBound(to: UInt8.self) else {
                return .retry(status: 0, reason: "bulk item without a status")
            }
            var j = JSONScan.skipWS(base, 0, inner.count)
            guard j < inner.count, base[j] == 0x22 else { return .retry(status: 0, reason: "bulk item without a status") }
            j += 1
            guard JSONScan.scanString(base, &j, inner.count) != nil else { return .retry(status: 0, reason: "bulk item without a status") }
            j = JSONScan.skipWS(base, j, inner.count)
            guard j < inner.count, base[j] == 0x3A else { return .retry(status: 0, reason: "bulk item without a status") }
            j = JSONScan.skipWS(base, j + 1, inner.count)
            var end = j
            guard j < inner.count, base[j] == 0x7B, JSONScan.skipValue(base, &end, inner.count), end - j >= 2 else {
                return .retry(status: 0, reason: "bulk item without a status")
            }
            let result = UnsafeRawBufferPointer(start: base + j + 1, count: end - j - 2)
            guard let s = JSONScan.lookup(result, path: [Array("status".utf8)]),
                  let status = Int(String(decoding: result[s], as: UTF8.self)) else {
                return .retry(status: 0, reason: "bulk item without a status")
            }
            switch status {
            case 200..<300: return .delivered
            case 409 where conflictIsDelivered: return .delivered  // this _id is already indexed: a replay
            default: break
            }
            let type = string(result, ["error", "type"], scrubber) ?? "error"
            let why = string(result, ["error", "reason"], scrubber) ?? ""
            let reason = why.isEmpty && type == "error" ? "HTTP \(status)" : "\(type): \(why)"
            switch status {
            case 429, 500..<600: return .retry(status: status, reason: reason)
            default: return .deadLetter(status: status, reason: reason)
            }
        }

        /// A string member at `path`, decoded and scrubbed (at most 500 bytes of it).
        static func string(_ members: UnsafeRawBufferPointer, _ path: [String],
                           _ scrubber: CredentialScrubber = .none) -> String? {
            guard let r = JSONScan.lookup(members, path: path.map { Array($0.utf8) }),
                  r.count >= 2, members[r.lowerBound] == 0x22 else { return nil }
            var out: [UInt8] = []
            var k = 1
            let value = UnsafeRawBufferPointer(rebasing: members[r])
            guard JSONScan.appendUnescapedString(value, from: &k, to: &out) else { return nil }
            return String(decoding: scrubber.scrub(out).prefix(500), as: UTF8.self)
        }
    }
}
