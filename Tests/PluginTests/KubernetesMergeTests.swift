import XCTest
@testable import filter_kubernetes

/// The kubernetes filter never writes `kubernetes` twice into a batch's shared fields (issue 24, item
/// 7): a `modify` before it that set `kubernetes.x`, or a second kubernetes filter, is merged.
final class KubernetesMergeTests: XCTestCase {
    private func merge(_ rendered: String, into shared: String) -> String {
        String(decoding: KubernetesMerge.adding(Array(rendered.utf8), to: Array(shared.utf8)), as: UTF8.self)
    }

    /// Parses `{<fields>}` the strict way (Python's json with a duplicate check would refuse).
    private func keysUnique(_ fields: String) throws -> Bool {
        let data = Data("{\(fields)}".utf8)
        _ = try JSONSerialization.jsonObject(with: data)
        var seen = Set<String>()
        // Top-level keys only: the rendered and merged objects are flat per level in these cases.
        var depth = 0
        var i = fields.startIndex
        var inString = false
        var start = fields.startIndex
        while i < fields.endIndex {
            let c = fields[i]
            if inString {
                if c == "\\" { i = fields.index(after: i) } else if c == "\"" {
                    inString = false
                    let next = fields.index(after: i)
                    if depth == 0 && next < fields.endIndex && fields[next] == ":" {
                        if !seen.insert(String(fields[start...i])).inserted { return false }
                    }
                }
            } else if c == "\"" {
                inString = true
                start = i
            } else if c == "{" || c == "[" {
                depth += 1
            } else if c == "}" || c == "]" {
                depth -= 1
            }
            i = fields.index(after: i)
        }
        return true
    }

    func testAddedWhenAbsent() throws {
        XCTAssertEqual(merge(#""kubernetes":{"pod_name":"p"}"#, into: #""env":"prod""#), #""env":"prod","kubernetes":{"pod_name":"p"}"#)
    }

    func testAnEarlierKubernetesObjectIsMergedAndTheRenderingWins() throws {
        let out = merge(#""kubernetes":{"pod_name":"p","namespace_name":"n"}"#,
                        into: #""env":"prod","kubernetes":{"pod_name":"old","team":"a"},"z":1"#)
        XCTAssertEqual(out, #""env":"prod","z":1,"kubernetes":{"pod_name":"p","namespace_name":"n","team":"a"}"#)
        XCTAssertTrue(try keysUnique(out))
    }

    func testAnEarlierKubernetesValueThatIsNotAnObjectIsReplaced() throws {
        XCTAssertEqual(merge(#""kubernetes":{"pod_name":"p"}"#, into: #""kubernetes":"x""#), #""kubernetes":{"pod_name":"p"}"#)
        XCTAssertEqual(merge(#""kubernetes":{"pod_name":"p"}"#, into: #""a":1,"kubernetes":[1,2]"#), #""a":1,"kubernetes":{"pod_name":"p"}"#)
    }

    /// A second kubernetes filter: the same rendering twice is one object.
    func testTheSameRenderingTwiceIsOneObject() throws {
        let r = #""kubernetes":{"pod_name":"p","labels":{"app":"a"}}"#
        let out = merge(r, into: r)
        XCTAssertEqual(out, r)
    }
}
