import Foundation
import XCTest

@testable import filter_parse

/// `time_zone:` names are read from the tz database files (the agent links no ICU): the offsets
/// agree with Foundation's TimeZone (ICU's copy of the same database), past the files' last
/// transition too (their POSIX TZ rule).
final class ZoneInfoTests: XCTestCase {
    func testOffsetsAgreeWithFoundationsTimeZone() throws {
        let zones = ["Europe/Berlin", "America/New_York", "Australia/Sydney", "Asia/Kolkata", "America/Sao_Paulo",
                     "Pacific/Chatham", "Europe/Dublin", "America/St_Johns", "Asia/Tokyo", "Etc/GMT+5", "Europe/London",
                     "America/Santiago", "Pacific/Auckland", "Asia/Tehran", "Africa/Cairo"]
        for name in zones {
            let rule = try XCTUnwrap(TimeZoneRule.parse(name), name)
            let tz = try XCTUnwrap(TimeZone(identifier: name), name)
            var mismatches = 0
            // Every 5 days and 7 hours from 1971 to 2150.
            var t: Int64 = 31_536_000
            while t < 5_681_692_800 {
                let want = Int64(tz.secondsFromGMT(for: Date(timeIntervalSince1970: TimeInterval(t))))
                if rule.offset(atUTC: t) != want {
                    mismatches += 1
                    if mismatches <= 3 { XCTFail("\(name) at \(t): \(rule.offset(atUTC: t)), Foundation \(want)") }
                }
                t += 5 * 86400 + 7 * 3600
            }
        }
    }

    func testUnknownZonesAndPathsAreRefused() {
        for name in ["Nowhere/Atlantis", "../../etc/passwd", "/etc/localtime", "Europe//Berlin", "", "Europe/../Europe/Berlin"] {
            XCTAssertNil(TimeZoneRule.parse(name), name)
        }
    }

    func testPosixRuleDates() throws {
        let rule = try XCTUnwrap(PosixTZ("CET-1CEST,M3.5.0,M10.5.0/3"))
        XCTAssertEqual(rule.std, 3600)
        XCTAssertEqual(rule.dst, 7200)
        // 2030: last Sunday of March is the 31st, of October the 27th.
        let changes = rule.transitions(year: 2030)
        XCTAssertEqual(changes[0].0, Int64(daysFromCivil(2030, 3, 31)) * 86400 + 3600)
        XCTAssertEqual(changes[1].0, Int64(daysFromCivil(2030, 10, 27)) * 86400 + 3600)
        XCTAssertNil(PosixTZ("X"))
    }
}

extension ZoneInfoTests {
    /// A zone file whose last transition is near the end of Int64 (a damaged or hostile file under
    /// TZDIR) is read at once, without a trap.
    func testExtremeTransitionTimesDoNotTrap() throws {
        let dir = NSTemporaryDirectory() + "zoneinfo-\(getpid())"
        try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(atPath: dir) }
        func be32(_ v: UInt32) -> [UInt8] { (0..<4).map { UInt8(truncatingIfNeeded: v >> (24 - 8 * $0)) } }
        func be64(_ v: Int64) -> [UInt8] { (0..<8).map { UInt8(truncatingIfNeeded: UInt64(bitPattern: v) >> (56 - 8 * $0)) } }
        func header(_ timecnt: UInt32) -> [UInt8] {
            Array("TZif2".utf8) + [UInt8](repeating: 0, count: 15) + be32(0) + be32(0) + be32(0) + be32(timecnt) + be32(2) + be32(4)
        }
        // v1 block: no transitions, 2 types; v2 block: one transition at Int64.max - 1; footer rule.
        let types = be32(3600) + [0, 0] + be32(7200) + [1, 0] + Array("CET\0".utf8)
        var file = header(0) + types
        file += header(1) + be64(Int64.max - 1) + [1] + types
        file += Array("\nCET-1CEST,M3.5.0,M10.5.0/3\n".utf8)
        try Data(file).write(to: URL(fileURLWithPath: dir + "/Test"))
        setenv("TZDIR", dir, 1)
        defer { unsetenv("TZDIR") }
        let started = Date()
        let rule = try XCTUnwrap(TimeZoneRule.parse("Test"))
        XCTAssertEqual(rule.offset(atUTC: 0), 3600)
        // Year by year up to the year of that transition took 40 s; years past 2200 are not needed.
        XCTAssertLessThan(Date().timeIntervalSince(started), 10)
    }
}
