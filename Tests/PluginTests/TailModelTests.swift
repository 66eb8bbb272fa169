import AnduinCore
import Foundation
import Logging
import XCTest
@testable import in_tail

/// A model test of the tail (FileTable + LineReader + CheckpointRegistry, driven through
/// `TailInput.turn` as the loop drives them) against a reference model, with no agent process.
///
/// A seeded script works on a real temporary directory laid out like kubelet's
/// `<pod>/<container>/0.log`: appends (whole lines, lines without their newline yet, lines written
/// in pieces), rename rotation (`0.log` → `0.log.<n>` and a new `0.log`, sometimes with a late
/// write to the renamed file), copytruncate, deletion, deletion followed by a new file that may get
/// the freed inode, and restarts (graceful, or a crash after a turn) that build a new input from the
/// saved checkpoints, sometimes with filesystem changes while it is down. Batches are acknowledged
/// in order, out of order, or held; a restart abandons the held ones.
///
/// Each container writes plain lines, CRI lines or Docker json-file lines (chosen per seed, read with
/// `format: auto`). A CRI or Docker line is written in one to three parts (`P` lines then an `F`
/// line; `log` without its "\n" then with it), on stdout or stderr; a line left open (its last part
/// not written yet) may be followed by whole lines on the other stream before it ends. Partial
/// records are not timed out here (`partial_timeout` is an hour: the decoder stamps a part with the
/// process's clock, not the turn's `now` that the script advances 1 s a turn): an open line is ended
/// by its container, or shipped as it is when its file is closed after a rotation.
///
/// The model: every line is delivered (emitted in a batch whose acknowledgement was given) exactly
/// once over all runs; un-acknowledged lines come again after a restart, acknowledged ones never.
/// Where the design does not promise that, the line is marked `atMostOnce` (documented limits):
/// - copytruncate: what the file held when it was truncated and was not yet acknowledged (unread
///   bytes are in the copy, which no glob matches; records in flight are superseded at a restart);
/// - a file deleted (or copytruncated, or deleted and its inode reused) while the agent is down, or
///   while it is followed but not fully acknowledged when the agent restarts: the descriptor that
///   kept its content is gone;
/// - a file deleted, or renamed to a name no glob matches, before any turn saw it;
/// - a rotated plain file whose only content is a first line without newline: a file has no identity
///   (fingerprint) before its first line is complete, so it is never read.
/// And where a line may come again (`again`, `anyCount`):
/// - a batch acknowledged while an earlier batch of its file was not: the checkpoint stays before the
///   earlier one, so after a restart both come again (at least once);
/// - a copytruncate copy that gets the inode of a deleted followed file: the search for that file's
///   checkpoint finds the copy and, its content being other, reads it from the start.
/// The step is 1 s of the loop's clock, so each turn re-checks fingerprints: a truncated file that
/// grew back past the read offset within one fingerprint interval (a window where stale-offset reads
/// happen) is not exercised here.
final class TailModelTests: XCTestCase {
    func testRandomScriptsDeliverEveryLineOnce() throws {
        // TAIL_MODEL_SEED=n replays one seed; TAIL_MODEL_SEEDS=a-b runs a range (a longer search).
        let env = ProcessInfo.processInfo.environment
        let range = env["TAIL_MODEL_SEEDS"].map { $0.split(separator: "-").compactMap { UInt64($0) } }
        let seeds = env["TAIL_MODEL_SEED"].flatMap(UInt64.init).map { [$0] }
            ?? range.flatMap { $0.count == 2 && $0[0] <= $0[1] ? Array($0[0]...$0[1]) : nil }
            ?? Array(1...40)
        var stats = TailModelRun.Totals()
        for seed in seeds {
            let run = try TailModelRun(seed: seed)
            defer { run.cleanUp() }
            try run.run(steps: 120)
            if let failure = run.failure {
                // The whole script and log, for reading the failure.
                let dump = NSTemporaryDirectory() + "anduin-tail-model-seed-\(seed).txt"
                try? (run.script + ["--- log ---"] + run.logs.lines).joined(separator: "\n").write(toFile: dump, atomically: false, encoding: .utf8)
                XCTFail("seed \(seed): \(failure) (script and log: \(dump))\n--- script (last 60) ---\n\(run.script.suffix(60).joined(separator: "\n"))\n--- log (last 60) ---\n\(run.logs.lines.suffix(60).joined(separator: "\n"))")
                return
            }
            stats.add(run.totals)
        }
        print("tail model: \(seeds.count) seeds, \(stats.rotations) rotations, \(stats.truncations) copytruncates, \(stats.restarts) restarts, \(stats.inodeReuses) inode reuses, \(stats.deliveredLines) lines delivered (CRI \(stats.criLines), Docker \(stats.dockerLines), in several parts \(stats.multiPartLines))")
        // The script must really exercise what it is about.
        if seeds.count > 1 {
            XCTAssertGreaterThan(stats.rotations, 50)
            XCTAssertGreaterThan(stats.truncations, 20)
            XCTAssertGreaterThan(stats.restarts, 50)
            XCTAssertGreaterThan(stats.deliveredLines, 2000)
            XCTAssertGreaterThan(stats.criLines, 500)
            XCTAssertGreaterThan(stats.dockerLines, 500)
            XCTAssertGreaterThan(stats.multiPartLines, 500)
            // ext4 reuses freed inodes at once; tmpfs never does (then that case is not exercised).
            if stats.inodeReuses == 0 { print("tail model: no inode was reused on \(NSTemporaryDirectory())") }
        }
    }
}

/// Log lines kept for a failure message.
private final class LogCollector: @unchecked Sendable {  // one test thread
    var lines: [String] = []
}

private struct CollectingHandler: LogHandler {
    let collector: LogCollector
    var metadata: Logger.Metadata = [:]
    var logLevel: Logger.Level = .debug
    subscript(metadataKey key: String) -> Logger.Metadata.Value? {
        get { metadata[key] }
        set { metadata[key] = newValue }
    }
    func log(event: LogEvent) {
        collector.lines.append("[\(event.level)] \(event.message)")
        if collector.lines.count > 40000 { collector.lines.removeFirst(20000) }
    }
}

/// SplitMix64: reproducible from the seed.
private struct SeededRandom: RandomNumberGenerator {
    var state: UInt64
    mutating func next() -> UInt64 {
        state &+= 0x9E37_79B9_7F4A_7C15
        var z = state
        z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
        z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
        return z ^ (z >> 31)
    }
}

private final class TailModelRun {
    struct Totals {
        var rotations = 0, truncations = 0, restarts = 0, deliveredLines = 0, inodeReuses = 0
        /// Delivered lines of CRI and Docker files, and of those the ones written in several parts.
        var criLines = 0, dockerLines = 0, multiPartLines = 0
        mutating func add(_ o: Totals) {
            rotations += o.rotations; truncations += o.truncations; restarts += o.restarts
            deliveredLines += o.deliveredLines; inodeReuses += o.inodeReuses
            criLines += o.criLines; dockerLines += o.dockerLines; multiPartLines += o.multiPartLines
        }
    }

    struct Line {
        let id: String
        /// What is in the file so far (without the newline).
        var written: String
        var complete = false
        var delivered = 0
        /// Not promised (a documented limit): delivered at most once.
        var atMostOnce = false
        /// Not promised at all: may be delivered again (see `copytruncate`).
        var anyCount = false
        /// Deliveries allowed beyond the first: acknowledged out of order after a batch of its file
        /// that was never acknowledged, it is past the file's checkpoint and comes again after a restart.
        var again = 0
        /// CRI and Docker: stdout or stderr.
        var stream = "stdout"
        /// CRI and Docker: parts it was written in.
        var parts = 0
    }

    /// How a container frames its lines.
    enum Format: CaseIterable { case raw, cri, docker }

    /// One file (one inode's content, one truncation generation of it).
    final class File {
        let name: Int
        /// Its path now; nil once deleted.
        var path: String?
        /// The container directory it belongs to.
        let container: String
        var lines: [Int] = []
        /// The line being written (no newline yet).
        var open: Int?
        /// Still written to by its container (not rotated away, deleted or truncated).
        var live = true
        /// A turn of the running agent instance saw it (holds its descriptor, or its checkpoint).
        var seen = false
        /// An agent instance saw it: it has a checkpoint (saved in that turn).
        var known = false
        let format: Format
        init(name: Int, path: String, container: String, format: Format) {
            self.name = name
            self.path = path
            self.container = container
            self.format = format
        }
    }

    let seed: UInt64
    var random: SeededRandom
    let root: String
    let dataDir: String
    var containers: [String] = []
    var formats: [String: Format] = [:]
    var lines: [Line] = []
    var lineByID: [String: Int] = [:]
    var files: [File] = []
    var liveFile: [String: File] = [:]
    var input: TailInput?
    var sink = CollectingSink()
    let logs = LogCollector()
    var clock: Double
    var rotationCounter = 0
    var usedInodes: Set<UInt64> = []
    var script: [String] = []
    var failure: String?
    /// Batches acknowledged since the agent started: (sequence, lines).
    var ackedThisRun: [(Int, [Int])] = []
    var totals = Totals()

    init(seed: UInt64) throws {
        self.seed = seed
        random = SeededRandom(state: seed)
        // On the work disk (ext4 here), where a freed inode is reused; tmpfs never reuses one.
        root = NSTemporaryDirectory() + "anduin-tail-model-\(getpid())-\(seed)"
        // Checkpoints on tmpfs when there is one: saved at almost every turn, fsync there costs nothing.
        let shm = "/dev/shm"
        dataDir = (FileManager.default.isWritableFile(atPath: shm) ? shm + "/anduin-tail-model-\(getpid())-\(seed)" : root) + "/data"
        try? FileManager.default.removeItem(atPath: root)
        for c in ["ns_a_1/app", "ns_b_2/app"] {
            try FileManager.default.createDirectory(atPath: root + "/pods/" + c, withIntermediateDirectories: true)
            containers.append(root + "/pods/" + c)
            formats[root + "/pods/" + c] = Format.allCases[Int.random(in: 0..<Format.allCases.count, using: &random)]
        }
        try FileManager.default.createDirectory(atPath: dataDir, withIntermediateDirectories: true)
        clock = monotonicSeconds()
    }

    func cleanUp() {
        input = nil
        try? FileManager.default.removeItem(atPath: root)
        try? FileManager.default.removeItem(atPath: String(dataDir.dropLast("/data".count)))
    }

    // MARK: the agent

    let env = ProcessInfo.processInfo.environment

    func startAgent() {
        var config = TailConfig(paths: [root + "/pods/*/*/*.log"])
        config.format = .auto
        config.partialTimeout = 3600
        config.watch = .poll
        config.globInterval = 0.5
        config.rotateWait = 2
        config.checkpointInterval = 0.5
        config.maxRotatedFiles = 1000
        config.readBudget = Int.random(in: 0..<2, using: &random) == 0 ? 4096 : 1 << 20
        // Sometimes few descriptors: idle files are closed and reopened at their checkpoint, new
        // ones wait for one.
        if let limit = env["TAIL_MODEL_MAX_OPEN"].flatMap(Int.init) ?? (Int.random(in: 0..<4, using: &random) == 0 ? Int.random(in: 2...4, using: &random) : nil) {
            config.maxOpenFiles = limit
        }
        var logger = Logger(label: "tail-model", factory: { [logs] _ in CollectingHandler(collector: logs) })
        logger.logLevel = .debug
        let context = ComponentContext(name: "in", kind: .input, dataDirectory: dataDir, logger: logger,
                                       stats: ComponentStats(component: "in", kind: .input))
        let input = TailInput(config: config, context: context)
        sink = CollectingSink()
        input.prepare(backend: PollBackend(sleep: { _ in }), sink: sink)
        self.input = input
        logs.lines.append("--- agent started")
    }

    /// A restart: held batches are abandoned (never acknowledged); files whose descriptor kept
    /// their content are gone with it.
    func stopAgent(graceful: Bool) {
        guard let input else { return }
        var again: Set<Int> = []
        for b in sink.batches {
            b.token.abandon()
            // What was acknowledged after it from its file is past the checkpoint: it comes again.
            guard let owner = b.messages.first.flatMap(lineIndex).flatMap(lineOwner) else { continue }
            for (seq, acked) in ackedThisRun where seq > b.seq {
                for i in acked where lineOwner(i) === owner { again.insert(i) }
            }
        }
        for i in again { lines[i].again += 1 }
        ackedThisRun = []
        sink.batches = []
        if graceful { input.finish() }
        self.input = nil
        totals.restarts += 1
        for f in files {
            if f.path == nil { markAtMostOnce(f) }
            // The next instance holds no descriptor until its first turn.
            f.seen = false
        }
        logs.lines.append("--- agent stopped (\(graceful ? "graceful" : "crash")); checkpoints: "
            + ((try? String(contentsOfFile: dataDir + "/checkpoints/in.json", encoding: .utf8)) ?? "none"))
    }

    func turn() {
        guard let input else { return }
        clock += 1
        sink.room = Int.random(in: 0..<8, using: &random) != 0
        logs.lines.append("--- turn at \(clock)\(sink.room ? "" : " (no room)")")
        _ = input.turn(now: clock, isStopping: { false })
        // Which files the agent holds open now (with max_open_files some wait for a descriptor).
        let open = Set(input.table?.files.keys.map(\.inode) ?? [])
        for f in files {
            guard let path = f.path else { continue }
            var st = stat()
            f.seen = stat(path, &st) == 0 && open.contains(UInt64(st.st_ino))
            if f.seen { f.known = true }
        }
    }

    /// Gives acknowledgements: none, all, an in-order prefix, all but the oldest, or a random subset.
    func acknowledge(all: Bool = false) {
        let n = sink.batches.count
        guard n > 0 else { return }
        var chosen: [Int]
        switch all ? 1 : Int.random(in: 0..<5, using: &random) {
        case 0: chosen = []
        case 1: chosen = Array(0..<n)
        case 2: chosen = Array(0..<Int.random(in: 0...n, using: &random))
        case 3: chosen = Array(1..<n)  // all but the oldest: later batches complete first
        default: chosen = (0..<n).filter { _ in Bool.random(using: &random) }
        }
        let picked = Set(chosen)
        var taken: [AckToken] = []
        var kept: [CollectedBatch] = []
        for (i, b) in sink.batches.enumerated() {
            if picked.contains(i) {
                deliver(b.messages)
                ackedThisRun.append((b.seq, b.messages.compactMap(lineIndex)))
                taken.append(b.token)
            } else {
                kept.append(b)
            }
        }
        sink.batches = kept
        // A token completes when its last reference goes: here, in the order given.
        while !taken.isEmpty { taken.removeFirst() }
    }

    func deliver(_ messages: [String]) {
        logs.lines.append("# acknowledged \(messages.map { $0.prefix(while: { $0 != ":" }) }.joined(separator: " "))")
        for m in messages {
            guard let i = lineIndex(m) else {
                fail("delivered a record that is no line written: \"\(m)\"")
                return
            }
            if m != lines[i].written {
                fail("delivered \"\(m)\" but line \(lines[i].id) is \"\(lines[i].written)\" (complete: \(lines[i].complete))")
                return
            }
            if !lines[i].complete && isWritable(lineOwner(i)) {
                fail("delivered line \(lines[i].id) before its newline, while its file is still written")
                return
            }
            lines[i].delivered += 1
            totals.deliveredLines += 1
            switch lineOwner(i)?.format {
            case .cri: totals.criLines += 1
            case .docker: totals.dockerLines += 1
            default: break
            }
            if lines[i].parts > 1 { totals.multiPartLines += 1 }
            if lines[i].delivered > 1 + lines[i].again && !lines[i].anyCount {
                fail("line \(lines[i].id) delivered \(lines[i].delivered) times (acknowledged earlier, yet emitted again)")
                return
            }
        }
    }

    func lineIndex(_ message: String) -> Int? {
        // "<file>.<n>:" prefixes every line.
        guard let colon = message.firstIndex(of: ":") else { return nil }
        return lineByID[String(message[..<colon])]
    }

    var ownerOf: [Int: File] = [:]
    func lineOwner(_ i: Int) -> File? { ownerOf[i] }
    func isWritable(_ f: File?) -> Bool { f?.live ?? false }

    func note(_ line: String) {
        script.append(line)
        logs.lines.append("# " + line)
    }

    func fail(_ message: String) {
        if failure == nil { failure = message }
    }

    // MARK: the filesystem

    func newFile(in container: String) {
        let f = File(name: files.count, path: container + "/0.log", container: container, format: formats[container] ?? .raw)
        guard FileManager.default.createFile(atPath: container + "/0.log", contents: nil) else { return fail("cannot create a file in \(container)") }
        var st = stat()
        if stat(container + "/0.log", &st) == 0 {
            if usedInodes.contains(UInt64(st.st_ino)) { totals.inodeReuses += 1; note("  (inode \(st.st_ino) reused)") }
            usedInodes.insert(UInt64(st.st_ino))
        }
        files.append(f)
        liveFile[container] = f
        note("  (file \(f.name) is inode \(st.st_ino), \(f.format))")
    }

    func append(_ f: File, _ text: String) {
        guard let path = f.path, let h = FileHandle(forWritingAtPath: path) else {
            fail("cannot write \(f.path ?? "(deleted)")")
            return
        }
        h.seekToEndOfFile()
        h.write(Data(text.utf8))
        h.closeFile()
    }

    func randomText() -> String {
        let letters = Array("abcdefghijklmnopqrstuvwxyz ")
        let n = Int.random(in: 1...(Int.random(in: 0..<10, using: &random) == 0 ? 3000 : 60), using: &random)
        return String((0..<n).map { _ in letters[Int.random(in: 0..<letters.count, using: &random)] })
    }

    /// One part of a line as its container frames it: plain text, a CRI line (`P` or `F`), or a Docker
    /// json-file line (`log` ends with "\n" in the last part). Plain text gets its newline only when
    /// `last`; CRI and Docker parts are whole lines.
    func framed(_ text: String, _ f: File, stream: String, last: Bool) -> String {
        switch f.format {
        case .raw: return text + (last ? "\n" : "")
        case .cri: return "2026-12-06T10:00:00.123456789Z \(stream) \(last ? "F" : "P") \(text)\n"
        case .docker: return "{\"log\":\"\(text)\(last ? "\\n" : "")\",\"stream\":\"\(stream)\",\"time\":\"2026-12-06T10:00:00.123456789Z\"}\n"
        }
    }

    /// `text` of line `line` in one to three parts (CRI and Docker), the last one `last` or not.
    func framedInParts(_ text: String, _ f: File, line: Int, last: Bool) -> String {
        let stream = lines[line].stream
        guard f.format != .raw else { return framed(text, f, stream: stream, last: last) }
        var parts: [String] = []
        var rest = Substring(text)
        for _ in 1..<Int.random(in: 1...3, using: &random) where rest.count > 1 {
            let n = Int.random(in: 1..<rest.count, using: &random)
            parts.append(String(rest.prefix(n)))
            rest = rest.dropFirst(n)
        }
        parts.append(String(rest))
        lines[line].parts += parts.count
        return parts.enumerated().map { framed($1, f, stream: stream, last: last && $0 == parts.count - 1) }.joined()
    }

    /// Adds a line of `f` (not written yet): its index.
    func newLine(_ f: File, _ body: String, complete: Bool, stream: String) -> Int {
        let id = String(body.prefix(while: { $0 != ":" }))
        let i = lines.count
        lines.append(Line(id: id, written: body, complete: complete, stream: stream))
        lineByID[id] = i
        ownerOf[i] = f
        f.lines.append(i)
        return i
    }

    /// Writes to `f`: completes its open line (a CRI or Docker container may first write whole
    /// lines on its other stream), or starts new ones (whole, or the last without its end).
    func write(_ f: File) {
        if let o = f.open {
            if f.format != .raw && Int.random(in: 0..<3, using: &random) == 0 {
                let stream = lines[o].stream == "stdout" ? "stderr" : "stdout"
                var text = ""
                let count = Int.random(in: 1...2, using: &random)
                for _ in 0..<count {
                    let body = "\(f.name).\(f.lines.count):" + randomText()
                    text += framedInParts(body, f, line: newLine(f, body, complete: true, stream: stream), last: true)
                }
                append(f, text)
                note("write \(f.name): \(count) line(s) on \(stream) while line \(lines[o].id) is open on \(lines[o].stream)")
                return
            }
            // A CRI or Docker part carries text (a plain line may just get its newline).
            let more = f.format != .raw || Bool.random(using: &random) ? randomText() : ""
            let finish = Int.random(in: 0..<3, using: &random) != 0
            lines[o].written += more
            append(f, f.format == .raw ? more + (finish ? "\n" : "") : framedInParts(more, f, line: o, last: finish))
            if finish {
                lines[o].complete = true
                f.open = nil
            }
            note("write \(f.name): continue line \(lines[o].id)\(finish ? " and end it" : "")")
            return
        }
        let count = Int.random(in: 1...6, using: &random)
        var text = ""
        for k in 0..<count {
            let id = "\(f.name).\(f.lines.count)"
            var body = id + ":" + randomText()
            let last = k == count - 1
            let unterminated = last && Int.random(in: 0..<4, using: &random) == 0
            if unterminated && f.format == .raw && Bool.random(using: &random) {
                body = String(body.prefix(id.count + 1 + Int.random(in: 0...3, using: &random)))
            }
            let stream = Bool.random(using: &random) ? "stdout" : "stderr"
            let i = newLine(f, body, complete: !unterminated, stream: stream)
            text += framedInParts(body, f, line: i, last: !unterminated)
            if unterminated { f.open = i }
        }
        append(f, text)
        note("write \(f.name): \(count) line(s)\(f.open != nil ? ", the last without its end" : "")")
    }

    /// Lines of `f` not delivered yet are no longer promised.
    func markAtMostOnce(_ f: File) {
        for i in f.lines where lines[i].delivered == 0 { lines[i].atMostOnce = true }
    }

    /// A file that was rotated away, deleted or truncated: its unterminated last line never ends.
    func retire(_ f: File) {
        f.live = false
        if let o = f.open, f.lines.first == o, f.format == .raw {
            // Not one complete line: no identity, never read (a documented limit). A CRI or Docker
            // part is a whole line.
            lines[o].atMostOnce = true
        }
        f.open = nil
    }

    func rotate(_ container: String) {
        guard let f = liveFile[container], let path = f.path else { return }
        rotationCounter += 1
        let to = path + ".2026120\(rotationCounter % 10)-\(String(format: "%06d", rotationCounter))"
        guard rename(path, to) == 0 else { return fail("rename \(path)") }
        f.path = to
        let lineEnded = f.open == nil
        retire(f)
        totals.rotations += 1
        note("rotate \(f.name) -> \(to.split(separator: "/").last ?? "")")
        newFile(in: container)
        if lineEnded && Int.random(in: 0..<3, using: &random) == 0 {
            // The runtime still had the old descriptor: a last line lands in the renamed file.
            let body = "\(f.name).\(f.lines.count):late" + randomText()
            append(f, framedInParts(body, f, line: newLine(f, body, complete: true, stream: "stdout"), last: true))
            note("late write to \(f.name)")
        }
        // Renamed to a name no glob matches before any scan saw it: never known to the agent.
        if !f.known { markAtMostOnce(f) }
    }

    func copytruncate(_ container: String) {
        guard let f = liveFile[container], let path = f.path else { return }
        rotationCounter += 1
        // The copy goes to a name no glob matches (logrotate's `.1`): unread lines are in it only.
        let copy = path + ".\(rotationCounter)"
        _ = try? FileManager.default.copyItem(atPath: path, toPath: copy)
        var st = stat()
        if stat(copy, &st) == 0 && usedInodes.contains(UInt64(st.st_ino)) {
            // The copy got the inode of a file the agent followed (deleted since): a search for that
            // file's checkpoint finds the copy by identity, sees other content, and reads it from the
            // start as it would a file created and rotated while the agent was down. Its lines may come
            // again (at least once, never lost to the search).
            for i in f.lines { lines[i].anyCount = true }
            note("  (the copy reuses inode \(st.st_ino))")
        }
        guard truncate(path, 0) == 0 else { return fail("truncate \(path)") }
        markAtMostOnce(f)
        retire(f)
        f.path = nil  // the content is gone; the inode carries on as a new file
        let g = File(name: files.count, path: path, container: container, format: f.format)
        files.append(g)
        liveFile[container] = g
        totals.truncations += 1
        note("copytruncate \(f.name) (now \(g.name))")
    }

    func delete(_ f: File, recreate: Bool) {
        guard let path = f.path else { return }
        guard unlink(path) == 0 else { return fail("unlink \(path)") }
        if input == nil || !f.seen { markAtMostOnce(f) }
        retire(f)
        f.path = nil
        note("delete \(f.name)\(input == nil ? " (agent down)" : "")")
        if liveFile[f.container] === f {
            liveFile[f.container] = nil
            if recreate {
                newFile(in: f.container)
                note("  new file \(files.count - 1) in its place")
            }
        }
    }

    /// While the agent is down a truncation or a deletion loses what was not acknowledged.
    func fsStep() {
        let container = containers[Int.random(in: 0..<containers.count, using: &random)]
        let roll = Int.random(in: 0..<100, using: &random)
        guard let f = liveFile[container] else {
            if roll < 50 { newFile(in: container); note("new file \(files.count - 1) in \(container.split(separator: "/").suffix(2).joined(separator: "/"))") }
            return
        }
        switch roll {
        case 0..<60: write(f)
        case 60..<70: rotate(container)
        case 70..<75: copytruncate(container)
        case 75..<78: delete(f, recreate: true)
        case 78..<80: delete(f, recreate: false)
        case 80..<85:
            // Kubelet removes old rotations.
            if let old = files.first(where: { $0.container == container && !$0.live && $0.path != nil }) { delete(old, recreate: false) }
        default: write(f)
        }
    }

    // MARK: the script

    func run(steps: Int) throws {
        startAgent()
        for _ in 0..<steps where failure == nil {
            for _ in 0..<Int.random(in: 0...3, using: &random) { fsStep() }
            acknowledge()
            turn()
            if Int.random(in: 0..<20, using: &random) == 0 {
                stopAgent(graceful: Bool.random(using: &random))
                note("restart")
                for _ in 0..<Int.random(in: 0...3, using: &random) { fsStep() }
                startAgent()
            }
        }
        guard failure == nil else { return }
        // Drain: the containers end their open lines and stop writing; everything is acknowledged.
        for (_, f) in liveFile {
            if let o = f.open {
                append(f, framed("", f, stream: lines[o].stream, last: true))
                lines[o].complete = true
                f.open = nil
            }
        }
        // 40 turns at least (rotated files close, a duplicate has time to show), more while lines
        // are missing: with few descriptors a file found by the search waits for one, and the
        // search comes every 10 s.
        func expected(_ i: Int) -> Bool {
            let l = lines[i]
            return (l.complete || !isWritable(lineOwner(i))) && !l.atMostOnce && !l.anyCount
        }
        for n in 0..<300 where failure == nil {
            acknowledge(all: true)
            turn()
            if n >= 40 && !lines.indices.contains(where: { expected($0) && lines[$0].delivered == 0 }) { break }
        }
        acknowledge(all: true)
        guard failure == nil else { return }
        for (i, l) in lines.enumerated() {
            if expected(i) && (l.delivered < 1 || l.delivered > 1 + l.again) {
                fail("line \(l.id) (\(l.written.count) bytes, complete: \(l.complete)) delivered \(l.delivered) times, expected once (\(l.again) more allowed)")
                return
            }
        }
    }
}
