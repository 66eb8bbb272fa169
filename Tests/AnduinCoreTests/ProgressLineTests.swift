import AnduinCore
import XCTest

/// The progress line on a terminal: said when something changed, quiet while nothing does.
final class ProgressLineTests: XCTestCase {
    func testQuietWhileNothingChangesAndSaysTheTimeToCatchUp() {
        var t = ProgressLine.Totals()
        t.files = 2
        var p = ProgressLine(start: t)
        // Reading: said, with the time to catch up at the acknowledged rate.
        t.lines = 500
        t.behind = 10_000
        t.ackedRate = 1_000
        XCTAssertEqual(p.next(t, seconds: 5, quietWhenUnchanged: true),
                       "files 2 | 100 lines/s | behind 9.8 KiB (caught up in ~10s) | buffered 0 records | errors 0")
        // Caught up and idle: said once (0 lines/s), then quiet, even as the estimate's rate decays.
        t.behind = 0
        XCTAssertEqual(p.next(t, seconds: 5, quietWhenUnchanged: true),
                       "files 2 | 0 lines/s | behind 0 B | buffered 0 records | errors 0")
        XCTAssertNil(p.next(t, seconds: 5, quietWhenUnchanged: true))
        t.ackedRate = 0
        XCTAssertNil(p.next(t, seconds: 5, quietWhenUnchanged: true))
        // In a log (not a terminal) every line is written: a heartbeat.
        XCTAssertNotNil(p.next(t, seconds: 60, quietWhenUnchanged: false))
        // Something changes: said again.
        t.errors = 1
        XCTAssertEqual(p.next(t, seconds: 5, quietWhenUnchanged: true),
                       "files 2 | 0 lines/s | behind 0 B | buffered 0 records | errors 1")
        XCTAssertNil(p.next(t, seconds: 5, quietWhenUnchanged: true))
    }
}
