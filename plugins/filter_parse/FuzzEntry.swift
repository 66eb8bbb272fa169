import AnduinCore

/// Entry point of the logfmt fuzz target (Tests/Fuzz): lifts `bytes` as logfmt and checks that
/// what it wrote, if anything, is a JSON object body the scanner accepts.
public enum LogfmtFuzzing {
    public static func lift(_ bytes: UnsafeRawBufferPointer) {
        var out: [UInt8] = [UInt8(ascii: "{")]
        var scratch = LogfmtScratch()
        let written = Logfmt.lift(bytes, into: &out, scratch: &scratch, renameKey: { $0.first == UInt8(ascii: "@") })
        guard let written, written > 0 else { return }
        out.append(UInt8(ascii: "}"))
        var again: [UInt8] = []
        let members = out.withUnsafeBytes { JSONScan.liftObject($0, into: &again, renameKey: { _ in false }) }
        precondition(members == written, "logfmt produced JSON the scanner reads differently: \(String(decoding: out, as: UTF8.self))")
    }
}
