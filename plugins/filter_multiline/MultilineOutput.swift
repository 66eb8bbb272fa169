import AnduinCore
import Multiline

extension MultilineFilter {
    /// The records one `process` call ships: the batch's own (zero copy) and merged ones of the same
    /// source in one batch, merged ones of other sources (a trace begun before a rotation) apart.
    struct Output {
        /// The input's records; `batch.bytes` still is the input's arena (merged records are appended
        /// at its end), so their ranges stay valid.
        let input: [Record]
        var batch: RecordBatch
        /// Tokens of earlier batches whose lines are in `batch`, owned here until emitted.
        var tokens: [AckToken] = []
        var sides = SideBatches()

        init(_ input: RecordBatch) {
            self.input = input.records
            batch = input
            batch.records = []
            batch.records.reserveCapacity(input.count)
        }

        mutating func appendOriginal(_ index: Int) {
            batch.records.append(input[index])
        }

        mutating func appendMerged(_ m: Merged, ack: AckToken) {
            if m.source === batch.source && m.inputName == batch.inputName && m.sharedFields == batch.sharedFields {
                MultilineFilter.append(m, to: &batch)
                tokens.append(contentsOf: m.tokens)
            } else {
                sides.add(m, currentAck: ack)
            }
        }

        /// Emits side batches first (older records), then the main one.
        mutating func emit(ack: AckToken, _ emit: (RecordBatch, AckToken) -> Void) {
            sides.emit(emit)
            guard !batch.records.isEmpty else { return }
            if tokens.isEmpty {
                emit(batch, ack)
                return
            }
            let t = AckToken(holding: [ack] + tokens)
            tokens = []
            emit(batch, t)
        }
    }

    /// Merged records grouped into batches by source (one `source` and `sharedFields` per batch).
    struct SideBatches {
        var batches: [(batch: RecordBatch, tokens: [AckToken])] = []

        /// `currentAck`: the token of the batch being processed, kept here too if `m` has lines from it.
        mutating func add(_ m: Merged, currentAck: AckToken?) {
            var tokens = m.tokens
            if m.hasCurrent, let a = currentAck { tokens.append(a) }
            if let i = batches.firstIndex(where: { $0.batch.source === m.source && $0.batch.inputName == m.inputName
                                                  && $0.batch.sharedFields == m.sharedFields }) {
                MultilineFilter.append(m, to: &batches[i].batch)
                batches[i].tokens.append(contentsOf: tokens)
            } else {
                var b = RecordBatch(source: m.source, inputName: m.inputName)
                b.sharedFields = m.sharedFields
                MultilineFilter.append(m, to: &b)
                batches.append((b, tokens))
            }
        }

        mutating func emit(_ emit: (RecordBatch, AckToken) -> Void) {
            for (b, tokens) in batches {
                emit(b, tokens.count == 1 ? tokens[0] : AckToken(holding: tokens))
            }
            batches = []
        }
    }

    static func append(_ m: Merged, to b: inout RecordBatch) {
        let message = m.message.withUnsafeBytes { b.append(bytes: $0) }
        let fields = m.fields.isEmpty ? 0..<0 : m.fields.withUnsafeBytes { b.append(bytes: $0) }
        b.records.append(Record(timestamp: m.timestamp, offset: m.offset, message: message, fields: fields,
                                stream: m.stream, flags: m.flags))
    }
}
