import Foundation
import XCTest
@testable import AnduinCore

/// Issue 24 (3): every form in which the agent sends a credential is removed from what comes back.
final class CredentialScrubberTests: XCTestCase {
    private func assertClean(_ s: CredentialScrubber, _ text: String, of secrets: [String],
                             file: StaticString = #filePath, line: UInt = #line) {
        let clean = s.scrub(text)
        for secret in secrets {
            XCTAssertFalse(clean.contains(secret), "\(secret) left in \(clean)", file: file, line: line)
        }
        let bytes = s.scrub(Array(text.utf8))
        XCTAssertEqual(String(decoding: bytes, as: UTF8.self), clean, file: file, line: line)
    }

    func testElasticsearchAPIKeyRawAndDecoded() {
        let id = "VuaCfGcBCdbkQm-e5aOx"
        let key = "ui2lp2axTNmsyakw9tvNnw"
        let apiKey = Data("\(id):\(key)".utf8).base64EncodedString()
        let s = CredentialScrubber(url: "http://127.0.0.1:9200/_bulk", headers: [("Authorization", "ApiKey " + apiKey)], basicAuth: nil)
        assertClean(s, "request auth was ApiKey \(apiKey)", of: [apiKey, key])
        assertClean(s, "the key \(apiKey) and the pair \(id):\(key), the secret part \(key)", of: [apiKey, key])
        XCTAssertEqual(s.scrub("request auth was ApiKey \(apiKey)"), "request auth was ***")
        // The key id alone is not a secret; it stays readable.
        XCTAssertTrue(s.scrub("id \(id) only").contains(id))
    }

    func testAPIKeyThatIsNotBase64IsScrubbedRaw() {
        let s = CredentialScrubber(url: "http://h/", headers: [("Authorization", "ApiKey plain-key-value")], basicAuth: nil)
        XCTAssertEqual(s.scrub("auth ApiKey plain-key-value; plain-key-value"), "auth ***; ***")
    }

    func testBasicAuthEveryForm() {
        let b64 = Data("bob:hunter2-long".utf8).base64EncodedString()
        let s = CredentialScrubber(url: "http://h/", headers: [], basicAuth: ("bob", "hunter2-long"))
        assertClean(s, "Authorization: Basic \(b64); pair bob:hunter2-long; password hunter2-long", of: [b64, "hunter2-long"])
        // A Basic header given as a custom header is decoded too.
        let h = CredentialScrubber(url: "http://h/", headers: [("Authorization", "Basic " + b64)], basicAuth: nil)
        assertClean(h, "Basic \(b64) / bob:hunter2-long / hunter2-long", of: [b64, "hunter2-long"])
    }

    func testBearerTokenAndCustomHeaders() {
        let s = CredentialScrubber(url: "http://h/", headers: [("Authorization", "Bearer tok.en-123456789"),
                                                              ("X-Tenant-Token", "tenant-abcdef"),
                                                              ("Content-Type", "application/json")], basicAuth: nil)
        assertClean(s, "got Bearer tok.en-123456789 and tok.en-123456789 and tenant-abcdef", of: ["tok.en-123456789", "tenant-abcdef"])
        XCTAssertTrue(s.scrub("application/json").contains("application/json"), "content type is not a credential")
    }

    func testSecretsAsJSONWritersEscapeThem() {
        // Base64 holds `/`, which some JSON writers send as `\/`; quotes and backslashes are escaped.
        let s = CredentialScrubber(url: "http://h/", headers: [("Authorization", "Bearer ab/cd+ef==/gh"),
                                                              ("X-K", #"q"uo\te-secret"#)], basicAuth: nil)
        assertClean(s, #"{"reason":"Bearer ab\/cd+ef==\/gh","k":"q\"uo\\te-secret"}"#,
                    of: [#"ab\/cd+ef==\/gh"#, "ab/cd+ef==/gh", #"q\"uo\\te-secret"#])
    }

    func testURLUserinfo() {
        let s = CredentialScrubber(url: "https://alice:p%40ss-w0rd@es.example:9200/_bulk", headers: [], basicAuth: nil)
        let b64 = Data("alice:p@ss-w0rd".utf8).base64EncodedString()
        assertClean(s, "alice:p%40ss-w0rd p@ss-w0rd Basic \(b64)", of: ["p%40ss-w0rd", "p@ss-w0rd", b64])
    }

    func testSendResultReasonsAreScrubbed() {
        let s = CredentialScrubber(url: "http://h/", headers: [("Authorization", "ApiKey apikey-Secret-4")], basicAuth: nil)
        let r = s.scrub(SendResult.perRecord([.delivered, .retry(status: 429, reason: "busy apikey-Secret-4"),
                                              .deadLetter(status: 400, reason: "request auth was ApiKey apikey-Secret-4")]))
        XCTAssertEqual(r, .perRecord([.delivered, .retry(status: 429, reason: "busy ***"),
                                      .deadLetter(status: 400, reason: "request auth was ***")]))
        XCTAssertEqual(s.scrub(SendResult.retryAll(status: 503, reason: "x apikey-Secret-4")), .retryAll(status: 503, reason: "x ***"))
        XCTAssertEqual(s.scrub(SendResult.authFailure("apikey-Secret-4")), .authFailure("***"))
        XCTAssertEqual(s.scrub(SendResult.unreachable("apikey-Secret-4")), .unreachable("***"))
        XCTAssertEqual(CredentialScrubber.none.scrub("apikey-Secret-4"), "apikey-Secret-4")
    }

    func testShortValuesAndTextWithoutSecretsAreLeftAlone() {
        let s = CredentialScrubber(url: "http://h/", headers: [("X-A", "abc")], basicAuth: nil)
        XCTAssertEqual(s.scrub("abc abc"), "abc abc")
        let t = CredentialScrubber(url: "http://h/", headers: [("X-A", "long-secret")], basicAuth: nil)
        let body = Array("nothing here".utf8)
        XCTAssertEqual(t.scrub(body), body)
        XCTAssertEqual(t.scrub("long-secretlong-secret"), "******")
        XCTAssertEqual(t.scrub("long-secre"), "long-secre")
    }
}
